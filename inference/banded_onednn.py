"""The schedule's steps on the native engine (`inference._onednn`): one native call per layer.

The same band logic as `inference.banded` (row bands with halos, exact whole-map GroupNorm
statistics, input bands released as soon as no later band needs them, bands merged in order so
results do not depend on the thread count), run inside the extension: this module only decides,
per layer, what the call needs — the pending norm as a per-channel scale and shift (from the
map's totals), an int8 conv's input quantization (`inference.quantize`), the bilinear tables of
an upsample — and keeps each map with the norm still to apply to it.

- Statistics are per-row sums added in map order in float64: a band split changes no addition,
  and oneDNN gives each output the same value in any band shape, so any band height gives
  bit-identical results.
- The head runs block_a.0 twice per band (statistics, then normalised into block_a.1's stride-2
  conv), so no 32-channel full-resolution map exists.
- An upsample is folded into the next conv: each band activates the few source rows it needs,
  resamples them (torch's bilinear coordinates, with the conv's reflection padding in the index
  tables) and convolves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from inference import network, quantize, schedule
from inference.bands import Moments, bilinear_table
from inference.runtime_onednn import make_conv, native

if TYPE_CHECKING:
    from inference._onednn import Conv, Map as RawMap, Runner


@dataclass
class NativeMap:
    """A native map and the GroupNorm still to apply to it ("" for a block's output value)."""

    raw: RawMap
    norm: str = ""
    _totals: quantize.Totals | None = field(default=None, repr=False)

    @property
    def height(self) -> int:
        return self.raw.height

    @property
    def width(self) -> int:
        return self.raw.width

    @property
    def channels(self) -> int:
        return self.raw.channels

    def totals(self) -> quantize.Totals:
        """Sums, sums of squares, mins and maxs per channel, over the whole map (computed once)."""
        if self._totals is None:
            c = self.channels
            sums, sumsqs = np.empty(c), np.empty(c)
            mins, maxs = np.empty(c, np.float32), np.empty(c, np.float32)
            count = self.raw.totals(sums, sumsqs, mins, maxs)
            self._totals = quantize.Totals(sums, sumsqs, mins, maxs, count)
        return self._totals

    def whole(self) -> np.ndarray:
        """The map's values as one float32 (C, H, W) array (a copy; for tracing)."""
        out = np.empty((self.height, self.width, self.channels), np.float32)
        self.raw.read(out)
        return np.ascontiguousarray(out.transpose(2, 0, 1))


def compile_step(step: schedule.Step, sd: Mapping[str, np.ndarray], plan: quantize.Plan) -> tuple[Conv, ...]:
    """The native convs of one step, each in its mode (a residual step has none)."""

    def conv(spec: network.Conv, *, f32_out: bool = False) -> Conv:
        return make_conv(sd, spec, plan.mode(spec), f32_out=f32_out)

    if isinstance(step, schedule.Head):
        return conv(step.first), conv(step.second)
    if isinstance(step, schedule.BandConv | schedule.UpsampleConv):
        return (conv(step.conv),)
    if isinstance(step, schedule.Output):
        return (conv(step.conv, f32_out=True),)
    return ()


def _flat(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(pair[0].reshape(-1)), np.ascontiguousarray(pair[1].reshape(-1))


class NativeBanded:
    """Runs schedule steps on the native runner, a layer per call; maps stored as the precision says."""

    def __init__(
        self,
        runner: Runner,
        norms: Mapping[str, np.ndarray],
        *,
        plan: quantize.Plan,
        align_corners: bool,
        rows: Callable[[int, int], int],
    ) -> None:
        self._runner = runner
        self._sd = norms
        self.align_corners = align_corners
        self._rows = rows
        self._plan = plan
        self.store = plan.store

    def start_job(self, band_values: int) -> None:
        """Sizes every band buffer of the job (the largest band, in values)."""
        self._runner.set_unit(band_values * quantize.STORE_BYTES[self.store])

    def end_job(self) -> None:
        self._runner.clear()

    def end_step(self) -> None:
        """Nothing to release between steps: a layer's call gives back its input bands itself."""

    def close(self) -> None:
        """The runner's threads stop with it."""

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The padded (H, W, 3) uint8 image, as the head reads it."""
        return rgb

    def affine(self, src: NativeMap) -> tuple[np.ndarray, np.ndarray]:
        """The pending GroupNorm as a per-channel scale and shift, shaped (1, C, 1, 1)."""
        totals = src.totals()
        moments = Moments().merge_band(totals.sums, totals.sumsqs, totals.count)
        return moments.affine(self._sd[f"{src.norm}.weight"], self._sd[f"{src.norm}.bias"])

    def whole(self, src: NativeMap) -> np.ndarray:
        return src.whole()

    def _quant(self, conv: Conv, totals: quantize.Totals, act: tuple[np.ndarray, np.ndarray] | None) -> quantize.Quant:
        """An int8 conv's input quantization from the range of what it reads (exact, or clipped)."""
        if conv.mode != "int8":
            return quantize.NONE
        scale, shift = act if act is not None else (None, None)
        if self._plan.clip is not None:
            return quantize.quant_for(
                *quantize.clipped_range(totals, scale, shift, lrelu=act is not None, k=self._plan.clip)
            )
        return quantize.quant_for(*quantize.input_range(totals, scale, shift, lrelu=act is not None))

    def head(self, step: schedule.Head, compiled: tuple[Conv, ...], image: np.ndarray, rows: int) -> NativeMap:
        """block_a.0 then block_a.1 (stride 2) on the (h, w, 3) uint8 image; the latter's pre-norm map."""
        first_conv, second_conv = compiled
        first, second = step.first, step.second
        width = image.shape[1]
        stats = NativeMap(
            self._runner.head_stats(image, first_conv, self._rows(first.level, width)), first.norm_key or ""
        )
        act = _flat(self.affine(stats))
        quant = self._quant(second_conv, stats.totals(), act)
        raw = self._runner.head(image, first_conv, second_conv, *act, quant.scale, quant.zero, rows, self.store)
        return NativeMap(raw, second.norm_key or "")

    def conv(self, step: schedule.BandConv, compiled: Conv, src: NativeMap, rows: int) -> NativeMap:
        """One conv layer over `src`; `src`'s bands are released as they are used up (unless kept)."""
        act = _flat(self.affine(src)) if step.transform != "none" else None
        quant = self._quant(compiled, src.totals(), act)
        scale, shift = act if act is not None else (None, None)
        raw = self._runner.conv(
            src.raw,
            compiled,
            scale,
            shift,
            act is not None,
            quant.scale,
            quant.zero,
            step.conv.pads,
            rows,
            self.store,
            step.keep_source,
        )
        return NativeMap(raw, step.conv.norm_key or "")

    def residual(
        self, step: schedule.Residual, compiled: object, project: NativeMap, block_input: NativeMap | None
    ) -> NativeMap:
        """An InvertedResBlock's last GroupNorm + the block's input when shapes match, in place in `project`."""
        scale, shift = _flat(self.affine(project))
        self._runner.residual(project.raw, None if block_input is None else block_input.raw, scale, shift)
        return NativeMap(project.raw)

    def upsample_conv(
        self, step: schedule.UpsampleConv, compiled: Conv, src: NativeMap, out_h: int, out_w: int, rows: int
    ) -> NativeMap:
        """Bilinear upsample of lrelu(GroupNorm(src)) to out_h x out_w, reflection pad and 3x3 conv, by bands."""
        act = _flat(self.affine(src))
        quant = self._quant(compiled, src.totals(), act)
        reach = (step.conv.kernel - 1) // 2
        row_table = bilinear_table(src.height, out_h, reach, align_corners=self.align_corners)
        col_table = bilinear_table(src.width, out_w, reach, align_corners=self.align_corners)
        raw = self._runner.upsample_conv(
            src.raw, compiled, *act, quant.scale, quant.zero, *row_table, *col_table, rows, self.store
        )
        return NativeMap(raw, step.conv.norm_key or "")

    def final(self, compiled: Conv, src: NativeMap) -> np.ndarray:
        """The last norm + LeakyReLU, the output conv, tanh and the 8-bit conversion."""
        act = _flat(self.affine(src))
        quant = self._quant(compiled, src.totals(), act)
        out = np.empty((src.height, src.width, 3), dtype=np.uint8)
        self._runner.output(src.raw, compiled, *act, quant.scale, quant.zero, out)
        return out


def make_runner(threads: int) -> Runner:
    runner: Runner = native().Runner(threads)
    return runner
