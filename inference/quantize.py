"""int8 on the native kernels: which convs run on the integer units, how each input is quantized.

An int8 conv reads u8 activations with one scale and zero point per image and layer, set from the
exact range of what it reads: the engine already gathers, row by row, the min and max of every
channel of every map (beside the sums of its GroupNorm statistics), and the pending GroupNorm
affine and LeakyReLU are monotone per channel, so the range of the activated map is known
exactly before the layer runs, with no calibration set. Asymmetric u8 (a zero point) is used:
LeakyReLU leaves only a short negative tail, which a symmetric range would spend half its codes
on. The zero point folds exactly into a per-channel bias from the weights' sums (every band is
padded with real, reflected values), so oneDNN runs plain u8 x s8 -> s32.

Maps between layers are stored in 8 bits too, each row and channel with its own scale and offset
(from the same per-row min and max), so storage adds almost nothing to the activations' own error.

`FLOAT_IN_INT8` names the convs kept out of int8: the output conv (1x1, 32 -> 3) is the one whose
int8 costs most (README, precision section: the per-layer table, `scripts/int8_sensitivity.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from inference import network
from inference.precision import Precision

# Convs an int8 engine runs in floating point instead (measured: dB lost when only that layer is int8).
FLOAT_IN_INT8: Final = frozenset({"out_layer.0"})
# The storage of every map of a precision (u8: a scale and an offset per row and channel).
MAP_STORE: Final = {Precision.FP32: "f32", Precision.BF16: "bf16", Precision.INT8: "u8"}
STORE_BYTES: Final = {"f32": 4, "bf16": 2, "u8": 1}


def conv_mode(precision: Precision, conv: network.Conv, *, float_convs: frozenset[str] = FLOAT_IN_INT8) -> str:
    """The native conv mode of a layer: f32, bf16 or int8 (an int8 engine's float layers run in f32)."""
    if precision is Precision.INT8:
        return "f32" if conv.name in float_convs else "int8"
    return "bf16" if precision is Precision.BF16 else "f32"


@dataclass(frozen=True)
class Plan:
    """How a native engine computes: each conv's mode (f32, bf16, int8), every map's storage, and
    the range an int8 input is quantized over (`clip` None: the exact min and max; k: within each
    channel's mean +- k standard deviations). `for_precision` is what the engine runs; other plans
    measure (the per-layer sensitivity table, the clip and storage choices)."""

    store: str
    modes: Mapping[str, str] = field(default_factory=dict)  # conv name -> mode; missing: `default`
    default: str = "f32"
    clip: float | None = None

    @classmethod
    def for_precision(cls, precision: Precision) -> Plan:
        modes = {conv.name: conv_mode(precision, conv) for conv in network.convs()}
        return cls(MAP_STORE[precision], modes, {"fp32": "f32"}.get(precision, str(precision)))

    def mode(self, conv: network.Conv) -> str:
        return self.modes.get(conv.name, self.default)


@dataclass(frozen=True)
class Totals:
    """A map's whole-map figures per channel: sums and sums of squares (float64, in row order),
    min and max, and the values per channel."""

    sums: np.ndarray
    sumsqs: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    count: int


@dataclass(frozen=True)
class Quant:
    """A u8 conv input: q = v / scale + zero (the zero point need not be a whole number: it is folded)."""

    scale: float = 1.0
    zero: float = 0.0


NONE: Final = Quant()


def input_range(
    totals: Totals, scale: np.ndarray | None, shift: np.ndarray | None, *, lrelu: bool
) -> tuple[float, float]:
    """The exact min and max of lrelu?(v * scale + shift) over the map (per channel, then overall)."""
    lo, hi = totals.mins.astype(np.float64), totals.maxs.astype(np.float64)
    if scale is not None and shift is not None:
        a, b = scale.astype(np.float64), shift.astype(np.float64)
        lo, hi = np.minimum(lo * a, hi * a) + b, np.maximum(lo * a, hi * a) + b
    if lrelu:
        lo = np.where(lo > 0, lo, network.LRELU_SLOPE * lo)
        hi = np.where(hi > 0, hi, network.LRELU_SLOPE * hi)
    return float(lo.min()), float(hi.max())


def clipped_range(
    totals: Totals, scale: np.ndarray | None, shift: np.ndarray | None, *, lrelu: bool, k: float
) -> tuple[float, float]:
    """The range of lrelu?(v * scale + shift) within each channel's mean +- k standard deviations
    (and within the exact extremes): the outliers beyond clip, the rest gets finer steps."""
    mean = totals.sums / totals.count
    std = np.sqrt(np.maximum(totals.sumsqs / totals.count - mean * mean, 0.0))
    lo, hi = np.maximum(mean - k * std, totals.mins), np.minimum(mean + k * std, totals.maxs)
    clipped = Totals(totals.sums, totals.sumsqs, lo, hi, totals.count)
    return input_range(clipped, scale, shift, lrelu=lrelu)


def quant_for(lo: float, hi: float) -> Quant:
    """Asymmetric u8 over [lo, hi]: lo maps to 0 and hi to 255."""
    span = hi - lo
    scale = span / 255 if span > 0 else max(abs(lo), 1e-6) / 255
    return Quant(scale, -lo / scale)
