"""Which number format the engine computes in: fp32 everywhere, bf16 where the CPU has it natively.

bf16 halves the bytes of every map and doubles (AVX512_BF16) or multiplies (AMX) the convolution
throughput, but only on CPUs with native bf16 instructions: elsewhere a runtime emulates it, some
100x slower. So `auto` picks bf16 only when the CPU says it has AVX512_BF16 or AMX-BF16, and an
explicit `bf16` on any other CPU is refused at start with one line instead of running slowly.
Reads /proc/cpuinfo (Linux) and, where OpenVINO is installed, its own capability report.
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

REQUESTS: Final = ("auto", "fp32", "bf16")
# The instruction sets that run bf16 natively (Linux /proc/cpuinfo spelling).
BF16_FLAGS: Final = ("avx512_bf16", "amx_bf16")
INFO_FLAGS: Final = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


class Precision(StrEnum):
    """What the engine computes in; fp32 runs on ONNX Runtime, bf16 on the native oneDNN kernels (or OpenVINO)."""

    FP32 = "fp32"
    BF16 = "bf16"

    @property
    def runtime(self) -> str:
        """The runtime an engine of this precision runs on here: bf16 takes the native kernels when built."""
        if self is Precision.FP32:
            return "onnxruntime"
        from inference import runtime_onednn

        return "onednn" if runtime_onednn.available() else "openvino"


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


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags, read once."""
    return read_cpu_flags()


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


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def bf16_runtime_installed() -> bool:
    """A bf16 runtime is here: the native kernels (built with the package) or OpenVINO; loads neither."""
    from inference import runtime_onednn

    return runtime_onednn.built() or openvino_installed()


def has_native_bf16(flags: frozenset[str]) -> bool:
    """True when the flags include an instruction set that computes bf16 natively."""
    return any(flag in flags for flag in BF16_FLAGS)


def bf16_flags_line(flags: frozenset[str]) -> str:
    """The flags that decide the precision, for logs and the benchmark header."""
    present = [flag for flag in INFO_FLAGS if flag in flags]
    return " ".join(present) if present else "none of " + " ".join(INFO_FLAGS)


def resolve_precision(requested: str, *, flags: frozenset[str] | None = None, runtime: bool | None = None) -> Precision:
    """`auto` -> bf16 where the CPU has it natively and a bf16 runtime is installed, else fp32.

    `bf16` without native support (or without a bf16 runtime) raises PrecisionError with the
    reason; `flags` and `runtime` (is a bf16 runtime installed) can be injected (tests, other
    machines' flags).
    """
    if requested not in REQUESTS:
        raise PrecisionError(f"Unknown precision {requested!r}: use one of {', '.join(REQUESTS)}.")
    if requested == "fp32":
        return Precision.FP32
    flags = cpu_flags() if flags is None else flags
    runtime = bf16_runtime_installed() if runtime is None else runtime
    native = has_native_bf16(flags)
    if requested == "auto":
        return Precision.BF16 if native and runtime else Precision.FP32
    if not native:
        raise PrecisionError(
            f"Precision bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX-BF16); this CPU "
            f"({cpu_model()}) has {bf16_flags_line(flags)}. Use precision auto or fp32 "
            "(ANIMEGAN_PRECISION, --precision)."
        )
    if not runtime:
        raise PrecisionError(
            "Precision bf16 needs the native kernels (install libdnnl-dev, then the package again) or OpenVINO "
            "(pip install openvino); neither is installed."
        )
    return Precision.BF16
