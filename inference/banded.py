"""The graph fallback: schedule steps run band by band as ONNX band graphs through a graph runtime.

Where the native kernels (`inference.banded_onednn`) are not built, fp32 runs on ONNX Runtime and
bf16 on OpenVINO's CPU plugin through the `inference.runtime.BandRuntime` seam. `Banded` holds
what one engine's jobs share (the runtime, the array pool, the band loop, the GroupNorm
parameters, the compiled band graphs) and runs one step at a time on `inference.bands.Map`s:
the fused head, a band conv (in place, or on an assembled band with its halo), an
InvertedResBlock's residual norm, an upsample folded into its conv, and the final 8-bit output.
The native engine never imports this module (nor ONNX, ONNX Runtime or OpenVINO).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from inference import graphs, graphs_bf16, network, schedule
from inference.bands import (
    BandLoop,
    BandResult,
    Map,
    Pool,
    as_float32,
    bands,
    bilinear_pairs,
    reflect,
    source_coordinates,
)
from inference.precision import Precision
from inference.runtime import BandRuntime


def runtime_for(precision: Precision, threads: int) -> BandRuntime:
    """The graph runtime of a precision; only its module is imported (OpenVINO for bf16, else ONNX Runtime)."""
    if precision is Precision.BF16:
        from inference.runtime_openvino import OpenVinoRuntime

        return OpenVinoRuntime(threads)
    from inference.runtime_ort import OrtRuntime

    return OrtRuntime()


class Banded:
    """Runs schedule steps band by band through a graph runtime, on (C, rows, W) band maps."""

    def __init__(
        self,
        runtime: BandRuntime,
        threads: int,
        norms: Mapping[str, np.ndarray],
        *,
        align_corners: bool,
        rows: Callable[[int, int], int],
    ) -> None:
        self._runtime = runtime
        self._pool = Pool(runtime.map_dtype)
        # Bands run concurrently, one per thread, each graph single-threaded: every op and every
        # band copy then keeps all cores busy, where ONNX Runtime's intra-op threads would split
        # each small op and wait for each other at every op boundary.
        self._loop = BandLoop(threads, self._pool)
        self._sd = norms
        self.align_corners = align_corners
        self._rows = rows
        self._first: tuple[Any, network.Conv] | None = None  # the head's statistics graph and conv

    @property
    def runtime_name(self) -> str:
        return self._runtime.name

    def compile(self, step: schedule.Step, sd: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
        """The band graph(s) of one step, loaded into the runtime (bf16 maps need some in other forms)."""
        runtime, in_graph = self._runtime, self._runtime.scales_in_graph
        if isinstance(step, schedule.Head):
            stats = runtime.load(graphs.head_stats_model(sd, step.first))
            self._first = stats, step.first
            return stats, runtime.load(graphs.head_model(sd, step.first, step.second))
        if isinstance(step, schedule.BandConv):
            return (runtime.load(graphs.conv_band_model(sd, step.conv, transform=self.transform(step))),)
        if isinstance(step, schedule.UpsampleConv) and in_graph:
            model = graphs_bf16.upsample_rows_conv_band_model(sd, step.conv, align_corners=self.align_corners)
            return (runtime.load(model),)
        if isinstance(step, schedule.UpsampleConv):
            return (runtime.load(graphs.upsample_conv_band_model(sd, step.conv)),)
        if isinstance(step, schedule.Residual) and in_graph:
            channels = step.block.convs[-1].out_ch
            return (runtime.load(graphs_bf16.residual_model(channels, residual=step.block.residual)),)
        if isinstance(step, schedule.Output):
            return (runtime.load(graphs.final_model(sd, step.conv)),)
        return ()

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """The padded (H, W, 3) uint8 image as the head reads it: (3, H, W) float32 in [-1, 1]."""
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        x *= 2.0 / 255.0
        x -= 1.0
        return x

    def start_job(self, band_values: int) -> None:
        """Sizes every band array of the job (the largest band, in values)."""
        self._pool.unit = band_values

    def end_step(self) -> None:
        self._runtime.end_step()

    def end_job(self) -> None:
        """Frees the job's arrays and hands every free arena chunk back (a tiny run with the shrink option)."""
        self._pool.clear()
        if self._first is not None:
            graph, conv = self._first
            feeds = {"xpad": np.zeros((1, conv.in_ch, conv.kernel, conv.kernel), dtype=np.float32)}
            self._runtime.run(graph, feeds, None, conv.out_ch, last=True)
        self._runtime.end_step()

    def close(self) -> None:
        self._loop.close()

    def affine(self, src: Map) -> tuple[np.ndarray, np.ndarray]:
        return src.moments.affine(self._sd[f"{src.norm}.weight"], self._sd[f"{src.norm}.bias"])

    def whole(self, src: Map) -> np.ndarray:
        return as_float32(src.whole())

    def _source_coordinates(self, in_size: int, out_size: int) -> tuple[float, float]:
        return source_coordinates(in_size, out_size, align_corners=self.align_corners)

    def _pairs(self, in_size: int, out_size: int) -> Callable[[int], tuple[int, int, float]]:
        return bilinear_pairs(in_size, out_size, align_corners=self.align_corners)

    def transform(self, step: schedule.BandConv) -> schedule.InputTransform:
        """The input transform a step's graph applies: maps that numpy cannot scale (bf16) get the whole norm."""
        if step.transform == "shift" and self._runtime.scales_in_graph:
            return "affine"
        return step.transform

    def head(self, step: schedule.Head, compiled: tuple[Any, ...], x: np.ndarray, rows: int) -> Map:
        """The first conv and the stride-2 conv after it; returns the latter's pre-norm half-res map."""
        stats_graph, head_graph = compiled
        first, second = step.first, step.second
        height, width = x.shape[1:]
        left, right, top, bottom = first.pads
        padded = np.pad(x, ((0, 0), (top, bottom), (left, right)), mode="reflect")[None]
        halo = top + bottom

        def stats_band(r0: int, r1: int) -> BandResult:
            feeds = {"xpad": np.ascontiguousarray(padded[:, :, r0 : r1 + halo])}
            sums, sumsqs = self._runtime.run(stats_graph, feeds, None, first.out_ch, last=r1 == height)
            return BandResult(None, sums, sumsqs, (r1 - r0) * width, 0)

        moments = self._loop.run(list(bands(height, self._rows(first.level, width))), stats_band)
        assert first.norm_key is not None
        assert second.norm_key is not None
        scale, shift = moments.affine(self._sd[f"{first.norm_key}.weight"], self._sd[f"{first.norm_key}.bias"])

        half_h, half_w = height // 2, width // 2
        out = Map(second.out_ch, half_h, half_w, rows, second.norm_key)

        def head_band(i0: int, i1: int) -> BandResult:
            # Output rows i0..i1 of the stride-2 conv read block_a.0 rows 2*i0 .. 2*i1; row `height`
            # (only reached when the height is even) is block_a.1's bottom reflection pad.
            f0, f1 = 2 * i0, min(2 * i1 + 1, height)
            pads = np.array([0, 0, 0, 0, 0, 0, 2 * i1 + 1 - f1, second.pads[1]], dtype=np.int64)
            feeds = {"xpad": np.ascontiguousarray(padded[:, :, f0 : f1 + halo]), "pads": pads}
            y = self._pool.take((1, out.channels, i1 - i0, half_w))
            feeds.update(scale=scale, shift=shift)
            sums, sumsqs = self._runtime.run(head_graph, feeds, y, out.channels, last=i1 == half_h)
            return BandResult(y[0], sums, sumsqs, (i1 - i0) * half_w, 0)

        out.moments = self._loop.run(list(bands(half_h, out.rows)), head_band, out)
        return out

    def conv(self, step: schedule.BandConv, graph: Any, src: Map, rows: int) -> Map:
        """One conv layer over `src`, band by band; `src`'s bands are released as they are used up."""
        conv = step.conv
        assert conv.norm_key is not None
        out = Map(conv.out_ch, src.height // conv.stride, src.width // conv.stride, rows, conv.norm_key)
        feeds: dict[str, np.ndarray] = {}
        copy_scale = None  # multiplied in while assembling a band ("shift" graphs)
        transform = self.transform(step)
        if transform != "none":
            scale, feeds["shift"] = self.affine(src)
            if transform == "affine":
                feeds["scale"] = scale
            else:
                copy_scale = scale
        left, right, top, _ = conv.pads
        keep = step.keep_source

        def band(r0: int, r1: int) -> BandResult:
            if step.in_place:
                assert r0 % src.rows == 0
                assert out.rows == src.rows
                source = src.bands[r0 // src.rows]
                assert source is not None
                x, next_row = source[None], r1
            else:
                # Input rows of output rows r0..r1 (reflected past the edges); the next band starts at next_row.
                lo, hi = conv.stride * r0 - top, conv.stride * (r1 - 1) + conv.kernel - top
                x, next_row = src.assemble(lo, hi, left, right, copy_scale, self._pool), conv.stride * r1 - top
            y = self._pool.take((1, out.channels, r1 - r0, out.width))
            sums, sumsqs = self._runtime.run(graph, {"x": x, **feeds}, y, out.channels, last=r1 == out.height)
            return BandResult(y[0], sums, sumsqs, (r1 - r0) * out.width, 0 if keep else next_row)

        out.moments = self._loop.run(list(bands(out.height, out.rows)), band, out, src)
        if not keep:
            src.release_before(src.height + src.rows, self._pool)
        return out

    def residual(self, step: schedule.Residual, graph: Any, project: Map, block_input: Map | None) -> Map:
        """An InvertedResBlock's last GroupNorm, in place, + the block's input when shapes match."""
        scale, shift = self.affine(project)
        if self._runtime.scales_in_graph:
            return self._residual_in_graph(graph, project, block_input, scale, shift)

        def finish(k: int) -> None:
            band = project.bands[k]
            assert band is not None
            band *= scale[0]
            band += shift[0]
            if block_input is not None:
                target = block_input.bands[k]
                assert target is not None
                target += band
                self._pool.give(band)

        self._loop.each(finish, len(project.bands))
        if block_input is not None:
            return block_input
        return Map(project.channels, project.height, project.width, project.rows, bands=project.bands)

    def _residual_in_graph(
        self, graph: Any, project: Map, block_input: Map | None, scale: np.ndarray, shift: np.ndarray
    ) -> Map:
        """The same, as a graph per band (maps numpy cannot compute on), into fresh band arrays."""
        out: list[np.ndarray | None] = [None] * len(project.bands)

        def finish(k: int) -> None:
            band = project.bands[k]
            assert band is not None
            y = self._pool.take(band.shape)
            feeds = {"p": band[None], "scale": scale, "shift": shift}
            if block_input is not None:
                source = block_input.bands[k]
                assert source is not None
                feeds["r"] = source[None]
            self._runtime.run(graph, feeds, y[None], project.channels, last=k == len(project.bands) - 1)
            out[k] = y

        self._loop.each(finish, len(project.bands))
        for done in (project, block_input):
            if done is not None:
                done.release_before(done.height + done.rows, self._pool)
        return Map(project.channels, project.height, project.width, project.rows, bands=out)

    def upsample_conv(
        self, step: schedule.UpsampleConv, graph: Any, src: Map, out_h: int, out_w: int, rows: int
    ) -> Map:
        if self._runtime.scales_in_graph:
            return self._upsample_rows_conv(step, graph, src, out_h, out_w, rows)
        return self._upsample_crop_conv(step, graph, src, out_h, out_w, rows)

    def _upsample_rows_conv(
        self, step: schedule.UpsampleConv, graph: Any, src: Map, out_h: int, out_w: int, rows: int
    ) -> Map:
        """The upsample + conv of `inference.graphs_bf16`: rows interpolated from gathered pairs.

        Each upsampled row is a weighted pair of source rows (torch's bilinear coordinates); the
        rows the band's conv reads past the map's top and bottom are reflections, so their pairs
        are those of the reflected rows. Columns are resized whole inside the graph.
        """
        assert step.conv.norm_key is not None
        scale, shift = self.affine(src)
        pair = self._pairs(src.height, out_h)

        out = Map(step.conv.out_ch, out_h, out_w, rows, step.conv.norm_key)
        reach = (step.conv.kernel - 1) // 2

        def band(j0: int, j1: int) -> BandResult:
            pairs = [pair(reflect(j, out_h)) for j in range(j0 - reach, j1 + reach)]
            top, end = min(p[0] for p in pairs), max(p[1] for p in pairs) + 1
            x = self._pool.scratch("band", (1, src.channels, end - top, src.width))
            src.copy_rows(top, end, x[0], None)
            feeds = {
                "x": x,
                "scale": scale,
                "shift": shift,
                "i0": np.array([p[0] - top for p in pairs], dtype=np.int64),
                "i1": np.array([p[1] - top for p in pairs], dtype=np.int64),
                "w1": np.array([p[2] for p in pairs], dtype=np.float32).reshape(1, 1, -1, 1),
                "sizes": np.array([1, src.channels, len(pairs), out_w], dtype=np.int64),
            }
            y = self._pool.take((1, out.channels, j1 - j0, out_w))
            sums, sumsqs = self._runtime.run(graph, feeds, y, out.channels, last=j1 == out_h)
            # The next band's first upsampled row is j1 - reach; source rows above its pair are done.
            next_row = pair(j1 - reach)[0] if j1 < out_h else src.height
            return BandResult(y[0], sums, sumsqs, (j1 - j0) * out_w, next_row)

        out.moments = self._loop.run(list(bands(out_h, rows)), band, out, src)
        src.release_before(src.height + src.rows, self._pool)
        return out

    def _upsample_crop_conv(
        self, step: schedule.UpsampleConv, graph: Any, src: Map, out_h: int, out_w: int, rows: int
    ) -> Map:
        """Bilinear upsample of lrelu(GroupNorm(src)) to out_h x out_w, then reflection pad + 3x3 conv, by bands.

        Each band gathers only the source rows it needs, edge-padded by one row and column (which
        is how torch clamps at the borders), and lets a tf_crop_and_resize Resize map output rows
        and columns to source coordinates.
        """
        assert step.conv.norm_key is not None
        scale, shift = self.affine(src)
        row_scale, row_bias = self._source_coordinates(src.height, out_h)
        col_scale, col_bias = self._source_coordinates(src.width, out_w)
        # ONNX Runtime's Resize ignores the roi of an axis whose size does not change: keep the
        # source one column (row) larger or smaller than the output (extra entries are edge copies).
        cols = src.width + 2 + int(src.width + 2 == out_w)
        col_roi = ((col_bias + 1) / (cols - 1), (col_scale * (out_w - 1) + col_bias + 1) / (cols - 1))
        out = Map(step.conv.out_ch, out_h, out_w, rows, step.conv.norm_key)

        def band(j0: int, j1: int) -> BandResult:
            lo, hi = max(j0 - 1, 0), min(j1 + 1, out_h)
            first, last = row_scale * lo + row_bias, row_scale * (hi - 1) + row_bias
            top, end = math.floor(first) - 1, math.floor(last) + 3
            end += int(end - top == hi - lo)
            span = end - top - 1
            roi = np.array([0, (first - top) / span, col_roi[0], 0, 1, (last - top) / span, col_roi[1], 1], np.float32)
            feeds = {
                "x": src.gather_edge_padded(top, end, cols, self._pool),
                "roi": roi,
                "sizes": np.array([1, hi - lo, out_w, src.channels], dtype=np.int64),
                "pads": np.array([0, int(j0 == 0), 1, 0, 0, int(j1 == out_h), 1, 0], dtype=np.int64),
                "scale": scale,
                "shift": shift,
            }
            y = self._pool.take((1, out.channels, j1 - j0, out_w))
            sums, sumsqs = self._runtime.run(graph, feeds, y, out.channels, last=j1 == out_h)
            # The next band starts at a source row >= this band's last - 1.
            next_row = math.floor(row_scale * max(j1 - 1, 0) + row_bias) - 1
            return BandResult(y[0], sums, sumsqs, (j1 - j0) * out_w, next_row)

        out.moments = self._loop.run(list(bands(out_h, rows)), band, out, src)
        src.release_before(src.height + src.rows, self._pool)
        return out

    def final(self, graph: Any, src: Map) -> np.ndarray:
        scale, shift = self.affine(src)
        out = np.empty((src.height, src.width, 3), dtype=np.uint8)
        no_stats = np.zeros(1, dtype=np.float32)

        def band(r0: int, r1: int) -> BandResult:
            source = src.bands[r0 // src.rows]
            assert source is not None
            feeds = {"x": source[None], "scale": scale, "shift": shift}
            self._runtime.run_rgb(graph, feeds, out[r0:r1], last=r1 == src.height)
            return BandResult(None, no_stats, no_stats, 1, r1)

        self._loop.run(list(bands(src.height, src.rows)), band, None, src)
        src.release_before(src.height + src.rows, self._pool)
        return out
