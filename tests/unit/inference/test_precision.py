"""The precision choice: auto from the CPU's flags, an explicit bf16 refused where it would be emulated."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.errors import PrecisionError
from inference.precision import (
    Precision,
    bf16_runtime_installed,
    cpu_flags,
    has_native_bf16,
    read_cpu_flags,
    resolve_precision,
)

ZEN3 = frozenset({"sse4_2", "avx", "avx2", "fma"})
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})
SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"})
AMX_ONLY = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(ZEN3, Precision.FP32), (ZEN4, Precision.BF16), (SAPPHIRE_RAPIDS, Precision.BF16), (AMX_ONLY, Precision.BF16)],
)
def test_auto_picks_bf16_only_where_the_cpu_runs_it_natively(flags: frozenset[str], expected: Precision) -> None:
    assert resolve_precision("auto", flags=flags, runtime=True) is expected


def test_auto_falls_back_to_fp32_without_openvino() -> None:
    assert resolve_precision("auto", flags=SAPPHIRE_RAPIDS, runtime=False) is Precision.FP32


def test_fp32_is_always_available() -> None:
    assert resolve_precision("fp32", flags=frozenset(), runtime=False) is Precision.FP32


def test_explicit_bf16_on_a_cpu_without_it_is_refused_with_one_clear_line() -> None:
    with pytest.raises(PrecisionError) as caught:
        resolve_precision("bf16", flags=ZEN3, runtime=True)
    message = str(caught.value)
    assert "\n" not in message
    assert "AVX512_BF16 or AMX-BF16" in message
    assert "avx2" in message  # names what the CPU does have
    assert "auto or fp32" in message
    assert "ANIMEGAN_PRECISION" in message


def test_explicit_bf16_without_a_bf16_runtime_is_refused() -> None:
    with pytest.raises(PrecisionError, match="libdnnl-dev") as caught:
        resolve_precision("bf16", flags=SAPPHIRE_RAPIDS, runtime=False)
    assert "OpenVINO" in str(caught.value)


def test_unknown_precisions_are_refused() -> None:
    with pytest.raises(PrecisionError, match="auto, fp32, bf16"):
        resolve_precision("fp16")


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_this_machine_resolves_auto_from_its_own_flags() -> None:
    # The hardware decides: whichever CPU runs this, auto must match what its flags say.
    native = has_native_bf16(cpu_flags()) and bf16_runtime_installed()
    assert resolve_precision("auto") is (Precision.BF16 if native else Precision.FP32)


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
