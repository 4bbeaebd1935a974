"""The precision choice: auto from the CPU's flags, an explicit bf16 or int8 refused where its units are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import PrecisionError
from inference.precision import (
    Precision,
    bf16_runtime_installed,
    capped_flags,
    cpu_flags,
    has_int8_units,
    has_native_bf16,
    native_built,
    read_cpu_flags,
    resolve_precision,
)

ZEN3 = frozenset({"sse4_2", "avx", "avx2", "fma"})
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
AMX_ONLY = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})
CASCADE_LAKE = frozenset({"avx2", "avx512f", "avx512_vnni"})
ALDER_LAKE = frozenset({"avx2", "fma", "avx_vnni"})
# What the graph fallback (the `peers` extra) runs: both precisions, fp32 alone, or nothing.
BOTH, ORT_ONLY, NONE = frozenset({"fp32", "bf16"}), frozenset({"fp32"}), frozenset[str]()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (ZEN3, Precision.FP32),
        (ZEN4, Precision.BF16),
        (SAPPHIRE_RAPIDS, Precision.BF16),
        (AMX_ONLY, Precision.BF16),
        (CASCADE_LAKE, Precision.INT8),
        (ALDER_LAKE, Precision.INT8),
    ],
)
def test_auto_picks_bf16_where_native_else_int8_where_the_int8_units_are(
    flags: frozenset[str], expected: Precision
) -> None:
    assert resolve_precision("auto", flags=flags, native=True, fallbacks=NONE) is expected


def test_auto_falls_back_to_fp32_without_a_runtime_for_the_cpus_units() -> None:
    assert resolve_precision("auto", flags=SAPPHIRE_RAPIDS, native=False, fallbacks=ORT_ONLY) is Precision.FP32
    # OpenVINO serves bf16 without the native kernels; int8 needs them.
    assert resolve_precision("auto", flags=ZEN4, native=False, fallbacks=BOTH) is Precision.BF16
    assert resolve_precision("auto", flags=CASCADE_LAKE, native=False, fallbacks=BOTH) is Precision.FP32


def test_fp32_runs_on_the_native_kernels_or_on_onnx_runtime() -> None:
    assert resolve_precision("fp32", flags=frozenset(), native=True, fallbacks=NONE) is Precision.FP32
    assert resolve_precision("fp32", flags=frozenset(), native=False, fallbacks=ORT_ONLY) is Precision.FP32


@pytest.mark.parametrize("requested", ["auto", "fp32"])
def test_without_the_kernels_and_without_the_peers_nothing_runs_and_one_line_says_what_to_install(
    requested: str,
) -> None:
    with pytest.raises(PrecisionError) as caught:
        resolve_precision(requested, flags=ZEN4, native=False, fallbacks=NONE)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Precision fp32 needs the native kernels or the graph fallback on ONNX Runtime")
    assert "`make wheel`" in message
    assert "libdnnl-dev" in message
    assert "pip install 'animegan[peers]'" in message


def test_explicit_int8_on_a_cpu_without_int8_units_is_refused_with_one_clear_line() -> None:
    with pytest.raises(PrecisionError) as caught:
        resolve_precision("int8", flags=ZEN3, native=True, fallbacks=BOTH)
    message = str(caught.value)
    assert "\n" not in message
    assert "AVX512_VNNI, AVX-VNNI or AMX-INT8" in message
    assert "avx2" in message
    assert "auto or fp32" in message
    assert resolve_precision("int8", flags=ALDER_LAKE, native=True) is Precision.INT8


def test_explicit_int8_without_the_native_kernels_is_refused() -> None:
    with pytest.raises(PrecisionError, match="native kernels") as caught:
        resolve_precision("int8", flags=CASCADE_LAKE, native=False, fallbacks=BOTH)
    assert "libdnnl-dev" in str(caught.value)
    assert "`make wheel`" in str(caught.value)
    assert "peers" not in str(caught.value)  # the graph fallback has no int8
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ("AVX2", Precision.FP32),
        ("AVX512_CORE_VNNI", Precision.INT8),
        ("AVX512_CORE_BF16", Precision.BF16),
        (None, Precision.BF16),
    ],
)
def test_onednn_isa_cap_limits_what_auto_picks(cap: str | None, expected: Precision) -> None:
    # The kernels never run an instruction above oneDNN's cap, so the choice must not assume one.
    flags = capped_flags(SAPPHIRE_RAPIDS | ZEN4, cap)
    assert resolve_precision("auto", flags=flags, native=True, fallbacks=NONE) is expected


def test_the_isa_cap_is_read_from_onednn_s_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from inference import precision

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert precision.isa_cap() == "AVX2"
    assert capped_flags(ZEN4, precision.isa_cap()) == frozenset({"avx2"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert capped_flags(ZEN4, precision.isa_cap()) == frozenset({"avx2", "avx512f", "avx512_vnni"})


def test_explicit_bf16_on_a_cpu_without_it_is_refused_with_one_clear_line() -> None:
    with pytest.raises(PrecisionError) as caught:
        resolve_precision("bf16", flags=ZEN3, native=True)
    message = str(caught.value)
    assert "\n" not in message
    assert "AVX512_BF16 or AMX-BF16" in message
    assert "avx2" in message  # names what the CPU does have
    assert "auto or fp32" in message
    assert "ANIMEGAN_PRECISION" in message


def test_explicit_bf16_without_a_bf16_runtime_is_refused() -> None:
    with pytest.raises(PrecisionError, match="libdnnl-dev") as caught:
        resolve_precision("bf16", flags=SAPPHIRE_RAPIDS, native=False, fallbacks=ORT_ONLY)
    assert "graph fallback on OpenVINO" in str(caught.value)
    assert "pip install 'animegan[peers]'" in str(caught.value)


def test_unknown_precisions_are_refused() -> None:
    with pytest.raises(PrecisionError, match="auto, fp32, bf16, int8"):
        resolve_precision("fp16")


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_this_machine_resolves_auto_from_its_own_flags() -> None:
    # The hardware decides: whichever CPU runs this, auto must match what its flags say.
    flags = cpu_flags()
    if has_native_bf16(flags) and bf16_runtime_installed():
        expected = Precision.BF16
    elif has_int8_units(flags) and native_built():
        expected = Precision.INT8
    else:
        expected = Precision.FP32
    assert resolve_precision("auto") is expected


def test_openvino_agrees_with_the_cpu_flags() -> None:
    from inference.runtime_openvino import bf16_supported

    assert bf16_supported() == has_native_bf16(cpu_flags())


def test_stylize_refuses_bf16_on_a_cpu_without_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, samples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from animegan import stylize_cli as cli
    from inference import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: ZEN3)
    photo = samples_dir / "chelsea.jpg"
    assert cli.main(["stylize", str(photo), "--out", str(tmp_path), "--precision", "bf16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Precision bf16 needs a CPU with native bf16")
    assert not list(tmp_path.iterdir())  # nothing written


def test_stylize_refuses_int8_on_a_cpu_without_int8_units(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, samples_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from animegan import stylize_cli as cli
    from inference import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: ZEN3)
    photo = samples_dir / "chelsea.jpg"
    assert cli.main(["stylize", str(photo), "--out", str(tmp_path), "--precision", "int8"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Precision int8 needs a CPU with int8 dot-product units")
    assert not list(tmp_path.iterdir())


def test_the_graph_fallback_needs_onnx_and_the_runtime_of_the_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from inference.precision import fallbacks_installed

    assert fallbacks_installed() == BOTH  # the dev environment has the peers extra
    monkeypatch.setitem(sys.modules, "openvino", None)  # as an install without it: not importable
    assert fallbacks_installed() == ORT_ONLY
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert fallbacks_installed() == NONE
