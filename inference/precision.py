"""Which number format the engine computes in: fp32 everywhere, bf16 or int8 where the CPU has the units.

bf16 halves the bytes of every map and doubles (AVX512_BF16) or multiplies (AMX) the convolution
throughput, but only on CPUs with native bf16 instructions: elsewhere it is emulated, some 100x
slower. int8 (u8 activations x s8 weights, s32 sums) runs on the integer dot-product units
(AVX512_VNNI, AVX-VNNI, AMX-INT8) at about twice the bf16 rate, storing maps in 8 bits, at
40-46 dB of the fp32 output (`inference.quantize`). `auto` picks bf16 where the CPU has it
(fidelity first), else int8 where it has the int8 units and the native kernels are built, else
fp32; an explicit `bf16` or `int8` on a CPU without its units is refused at start with one line
instead of running slowly.

The native kernels run every precision. Where they are not built, the graph fallback of the `peers`
extra runs fp32 (ONNX Runtime) and bf16 (OpenVINO); with neither installed, the precision is refused
at start with one line naming what to install.

The flags come from /proc/cpuinfo (Linux), capped by oneDNN's own `ONEDNN_MAX_CPU_ISA` when it is
set: the kernels then run no instruction above it, so the choice must not either (the benchmark
uses it to show what older CPUs get).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
from enum import StrEnum
from pathlib import Path
from typing import Final

from inference.errors import PrecisionError

REQUESTS: Final = ("auto", "fp32", "bf16", "int8")
# The instruction sets that run bf16 natively, and int8 dot products (Linux /proc/cpuinfo spelling).
BF16_FLAGS: Final = ("avx512_bf16", "amx_bf16")
INT8_FLAGS: Final = ("avx512_vnni", "avx_vnni", "amx_int8")
INFO_FLAGS: Final = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

# ONEDNN_MAX_CPU_ISA value -> the flags above it that oneDNN then leaves unused.
_ABOVE_AVX2: Final = frozenset(
    {"avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
)
ISA_CAPS: Final[dict[str, frozenset[str]]] = {
    "SSE41": _ABOVE_AVX2 | {"avx2"},
    "AVX": _ABOVE_AVX2 | {"avx2"},
    "AVX2": _ABOVE_AVX2,
    "AVX2_VNNI": _ABOVE_AVX2 - {"avx_vnni"},
    "AVX512_CORE": _ABOVE_AVX2 - {"avx512f"},
    "AVX512_CORE_VNNI": frozenset({"avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}),
    "AVX512_CORE_BF16": frozenset({"amx_tile", "amx_bf16", "amx_int8"}),
    "AVX512_CORE_AMX": frozenset(),
    "ALL": frozenset(),
}


class Precision(StrEnum):
    """What the engine computes in; the native oneDNN kernels run all three (fallbacks: `runtime`)."""

    FP32 = "fp32"
    BF16 = "bf16"
    INT8 = "int8"

    @property
    def runtime(self) -> str:
        """The runtime an engine of this precision runs on here: the native kernels when built, else
        ONNX Runtime's (fp32) or OpenVINO's (bf16) band graphs; int8 has no fallback."""
        from inference import runtime_onednn

        if runtime_onednn.available():
            return "onednn"
        return {Precision.FP32: "onnxruntime", Precision.BF16: "openvino"}.get(self, "onednn")


def default_precision() -> str:
    """``ANIMEGAN_PRECISION`` if set (the CLI's default), else auto: the one place this package reads it."""
    return os.environ.get("ANIMEGAN_PRECISION", "auto").strip().lower() or "auto"


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where there is no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def isa_cap() -> str | None:
    """oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``, or its older name ``DNNL_MAX_CPU_ISA``), if set."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value and value.strip() else None


def capped_flags(flags: frozenset[str], cap: str | None) -> frozenset[str]:
    """The flags oneDNN may use under an ISA cap (unknown caps change nothing)."""
    return flags - ISA_CAPS.get(cap, frozenset()) if cap else flags


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags, read once, as oneDNN's ISA cap leaves them."""
    return capped_flags(read_cpu_flags(), isa_cap())


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, for messages and benchmark headers."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


# The graph fallback (`inference.banded`): ONNX builds every band graph, a runtime runs them.
FALLBACK_MODULES: Final[dict[str, tuple[str, ...]]] = {"fp32": ("onnx", "onnxruntime"), "bf16": ("onnx", "openvino")}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def openvino_installed() -> bool:
    return _installed("openvino")


def native_built() -> bool:
    """The native kernels are installed (without loading them or oneDNN: a worker's main process asks this)."""
    from inference import runtime_onednn

    return runtime_onednn.built()


def fallbacks_installed() -> frozenset[str]:
    """The precisions the graph fallback (the `peers` extra) can run here; loads none of its modules."""
    return frozenset(name for name, modules in FALLBACK_MODULES.items() if all(map(_installed, modules)))


def bf16_runtime_installed() -> bool:
    """A bf16 runtime is here: the native kernels (built with the package) or OpenVINO's fallback; loads neither."""
    return native_built() or "bf16" in fallbacks_installed()


def has_native_bf16(flags: frozenset[str]) -> bool:
    """True when the flags include an instruction set that computes bf16 natively."""
    return any(flag in flags for flag in BF16_FLAGS)


def has_int8_units(flags: frozenset[str]) -> bool:
    """True when the flags include int8 dot-product instructions (VNNI or AMX-INT8)."""
    return any(flag in flags for flag in INT8_FLAGS)


def bf16_flags_line(flags: frozenset[str]) -> str:
    """The flags that decide the precision, for logs and the benchmark header."""
    present = [flag for flag in INFO_FLAGS if flag in flags]
    return " ".join(present) if present else "none of " + " ".join(INFO_FLAGS)


def resolve_precision(
    requested: str,
    *,
    flags: frozenset[str] | None = None,
    native: bool | None = None,
    fallbacks: frozenset[str] | None = None,
) -> Precision:
    """`auto` -> bf16 where the CPU has it natively and a bf16 runtime is installed, else int8 where
    it has int8 units and the native kernels are built, else fp32.

    A precision without its units, or with no runtime installed for it (neither the native kernels
    nor the graph fallback), raises PrecisionError with the reason. `flags`, `native` (the native
    kernels are built) and `fallbacks` (the precisions the graph fallback runs) can be injected
    (tests, other machines' flags).
    """
    if requested not in REQUESTS:
        raise PrecisionError(f"Unknown precision {requested!r}: use one of {', '.join(REQUESTS)}.")
    native = native_built() if native is None else native
    fallbacks = fallbacks_installed() if fallbacks is None else fallbacks
    runs = {precision for precision in Precision if native or str(precision) in fallbacks}
    if requested == "fp32":
        return _runnable(Precision.FP32, runs)
    flags = cpu_flags() if flags is None else flags
    if requested == "auto":
        if has_native_bf16(flags) and Precision.BF16 in runs:
            return Precision.BF16
        return Precision.INT8 if has_int8_units(flags) and native else _runnable(Precision.FP32, runs)
    if requested == "bf16":
        return _explicit_bf16(flags, runs)
    return _explicit_int8(flags, native)


def _runnable(precision: Precision, runs: set[Precision]) -> Precision:
    """`precision` when a runtime for it is installed, else PrecisionError saying what to install (one line)."""
    if precision in runs:
        return precision
    kernels = (
        "install the manylinux wheel (`make wheel`), which carries them and oneDNN, or install g++ and "
        "libdnnl-dev, then the package again"
    )
    if precision is Precision.INT8:
        raise PrecisionError(f"Precision int8 needs the native kernels, which are not built here: {kernels}.")
    peer = "ONNX Runtime" if precision is Precision.FP32 else "OpenVINO"
    raise PrecisionError(
        f"Precision {precision} needs the native kernels or the graph fallback on {peer}, and neither is "
        f"installed: {kernels}; or install the fallback: pip install 'animegan[peers]'."
    )


def _explicit_bf16(flags: frozenset[str], runs: set[Precision]) -> Precision:
    if not has_native_bf16(flags):
        raise PrecisionError(
            f"Precision bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX-BF16); this CPU "
            f"({cpu_model()}) has {bf16_flags_line(flags)}. Use precision auto or fp32 "
            "(ANIMEGAN_PRECISION, --precision)."
        )
    return _runnable(Precision.BF16, runs)


def _explicit_int8(flags: frozenset[str], native: bool) -> Precision:
    if not has_int8_units(flags):
        raise PrecisionError(
            f"Precision int8 needs a CPU with int8 dot-product units (AVX512_VNNI, AVX-VNNI or AMX-INT8); this "
            f"CPU ({cpu_model()}) has {bf16_flags_line(flags)}. Use precision auto or fp32 "
            "(ANIMEGAN_PRECISION, --precision)."
        )
    if not native:
        _runnable(Precision.INT8, set())
    return Precision.INT8
