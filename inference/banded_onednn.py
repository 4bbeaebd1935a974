"""The schedule's steps over channels-last bf16 bands, on the native kernels (`inference.runtime_onednn`).

The same band logic as `inference.banded` (row bands with halos, exact whole-map GroupNorm
statistics merged in float64, input bands released as soon as no later band needs them, bands
merged in order so results do not depend on the thread count), with maps stored as
(rows, cols, C) bf16 bands, the layout the convolutions run in:

- A layer's input band is assembled with its norm and LeakyReLU applied on the way (one pass),
  reflected rows and columns copied from the activated values; a 1x1 layer activates its band
  into a scratch buffer, or reads it where it lies when its input is a block's value.
- Statistics are per-row sums added in map order (`inference.bands.RowTotals`): a band split
  changes no addition, so any band height gives bit-identical results.
- The head runs block_a.0 twice per band (statistics, then normalised into block_a.1's stride-2
  conv), so no 32-channel full-resolution map exists.
- An upsample is folded into the next conv: each band activates the few source rows it needs,
  resamples them (torch's bilinear coordinates, with the conv's reflection padding in the index
  tables) and convolves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from inference import runtime_onednn as native, schedule
from inference.banded import BandSteps
from inference.bands import BandResult, Map, bands, reflect


@dataclass
class RowsMap(Map):
    """A `Map` whose bands are channels-last: bands[k] is (rows, W, C)."""

    def pieces(self, lo: int, hi: int) -> list[tuple[int, np.ndarray]]:
        """(first row, rows) of the pieces of bands that hold rows lo..hi (inside the map)."""
        found = []
        while lo < hi:
            k = lo // self.rows
            band = self.bands[k]
            assert band is not None, "band released too early"
            stop = min(hi, (k + 1) * self.rows)
            found.append((lo, band[lo - k * self.rows : stop - k * self.rows]))
            lo = stop
        return found

    def whole(self) -> np.ndarray:
        present = [band for band in self.bands if band is not None]
        assert len(present) == len(self.bands), "bands already released"
        return np.ascontiguousarray(np.concatenate(present, axis=0).transpose(2, 0, 1))


def compile_step(step: schedule.Step, sd: Mapping[str, np.ndarray]) -> tuple[native.Conv, ...]:
    """The oneDNN convolutions of one step (a residual step has none)."""
    if isinstance(step, schedule.Head):
        return native.Conv(sd, step.first), native.Conv(sd, step.second)
    if isinstance(step, schedule.BandConv | schedule.UpsampleConv):
        return (native.Conv(sd, step.conv),)
    if isinstance(step, schedule.Output):
        return (native.Conv(sd, step.conv, f32_out=True),)
    return ()


def _flat(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(pair[0].reshape(-1)), np.ascontiguousarray(pair[1].reshape(-1))


class NativeBanded(BandSteps):
    """Runs schedule steps band by band on channels-last bf16 maps; the same steps as `Banded`."""

    def _activation(self, src: Map) -> tuple[np.ndarray, np.ndarray]:
        return _flat(self.affine(src))

    def head(self, step: schedule.Head, compiled: tuple[native.Conv, ...], x: np.ndarray, rows: int) -> Map:
        """block_a.0 then block_a.1 (stride 2); returns the latter's pre-norm half-res map."""
        first_conv, second_conv = compiled
        first, second = step.first, step.second
        height, width = x.shape[1:]
        left, right, top, bottom = first.pads
        padded = np.pad(x, ((0, 0), (top, bottom), (left, right)), mode="reflect")
        image = np.empty((*padded.shape[1:], first.in_ch), dtype=np.uint16)
        native.to_bf16(np.ascontiguousarray(padded.transpose(1, 2, 0)), image)
        del padded
        halo = top + bottom

        def stats_band(r0: int, r1: int) -> BandResult:
            y = self._pool.scratch("a0", (r1 - r0, width, first.out_ch))
            first_conv.run(image[r0 : r1 + halo], y)
            sums, sumsqs = native.stats(y)
            return BandResult(None, sums, sumsqs, (r1 - r0) * width, 0)

        moments = self._loop.run(list(bands(height, self._rows(first.level, width))), stats_band, by_rows=True)
        assert first.norm_key is not None
        assert second.norm_key is not None
        scale, shift = _flat(moments.affine(self._sd[f"{first.norm_key}.weight"], self._sd[f"{first.norm_key}.bias"]))
        half_h, half_w = height // 2, width // 2
        out = RowsMap(second.out_ch, half_h, half_w, rows, second.norm_key)

        def head_band(i0: int, i1: int) -> BandResult:
            # Output rows i0..i1 of the stride-2 conv read block_a.0 rows 2*i0 .. 2*i1 + 1; row
            # `height` (reached when the height is even) and column `width` are block_a.1's
            # bottom and right reflection pads.
            f0, f1 = 2 * i0, min(2 * i1 + 1, height)
            raw = self._pool.scratch("a0", (f1 - f0, width, first.out_ch))
            first_conv.run(image[f0 : f1 + halo], raw)
            band = self._pool.scratch("pad", (2 * (i1 - i0) + 1, width + 1, first.out_ch))
            native.affine_lrelu(raw, band[: f1 - f0, :width], scale, shift)
            if f1 - f0 < len(band):
                band[f1 - f0 :, :width] = band[f1 - f0 - 2 : f1 - f0 - 1, :width]
            band[:, width] = band[:, width - 2]
            y = self._pool.take((i1 - i0, half_w, second.out_ch))
            second_conv.run(band, y)
            sums, sumsqs = native.stats(y)
            return BandResult(y, sums, sumsqs, (i1 - i0) * half_w, 0)

        out.moments = self._loop.run(list(bands(half_h, out.rows)), head_band, out, by_rows=True)
        return out

    def _activate_rows(
        self, src: Map, lo: int, hi: int, out: np.ndarray, act: tuple[np.ndarray, np.ndarray] | None
    ) -> None:
        """Rows lo..hi of `src` (reflected past its edges) into out's rows, activated when `act` is given."""
        assert isinstance(src, RowsMap)

        def put(rows: np.ndarray, target_row: int) -> None:
            target = out[target_row : target_row + len(rows)]
            if act is None:
                target[...] = rows
            else:
                native.affine_lrelu(rows, target, *act)

        first, last = max(lo, 0), min(hi, src.height)
        for start, rows in src.pieces(first, last):
            put(rows, start - lo)
        for row in (*range(lo, first), *range(last, hi)):
            source = reflect(row, src.height)
            put(src.pieces(source, source + 1)[0][1], row - lo)

    def conv(self, step: schedule.BandConv, compiled: native.Conv, src: Map, rows: int) -> Map:
        """One conv layer over `src`, band by band; `src`'s bands are released as they are used up."""
        conv = step.conv
        assert conv.norm_key is not None
        out = RowsMap(conv.out_ch, src.height // conv.stride, src.width // conv.stride, rows, conv.norm_key)
        act = self._activation(src) if step.transform != "none" else None
        left, right, top, _ = conv.pads
        keep = step.keep_source
        width = src.width

        def band(r0: int, r1: int) -> BandResult:
            if step.in_place:
                source = src.bands[r0 // src.rows]
                assert source is not None
                x, next_row = source, r1
                if act is not None:
                    x = self._pool.scratch("in", source.shape)
                    native.affine_lrelu(source, x, *act)
            else:
                # Input rows of output rows r0..r1 (reflected past the edges); the next band starts at next_row.
                lo, hi = conv.stride * r0 - top, conv.stride * (r1 - 1) + conv.kernel - top
                x = self._pool.scratch("in", (hi - lo, width + left + right, src.channels))
                self._activate_rows(src, lo, hi, x[:, left : left + width], act)
                for k in range(1, left + 1):
                    x[:, left - k] = x[:, left + k]
                for k in range(1, right + 1):
                    x[:, left + width - 1 + k] = x[:, left + width - 1 - k]
                next_row = conv.stride * r1 - top
            y = self._pool.take((r1 - r0, out.width, out.channels))
            compiled.run(x, y)
            sums, sumsqs = native.stats(y)
            return BandResult(y, sums, sumsqs, (r1 - r0) * out.width, 0 if keep else next_row)

        out.moments = self._loop.run(list(bands(out.height, out.rows)), band, out, src, by_rows=True)
        if not keep:
            src.release_before(src.height + src.rows, self._pool)
        return out

    def residual(self, step: schedule.Residual, compiled: object, project: Map, block_input: Map | None) -> Map:
        """An InvertedResBlock's last GroupNorm + the block's input when shapes match, in place in `project`."""
        scale, shift = self._activation(project)

        def finish(k: int) -> None:
            band = project.bands[k]
            assert band is not None
            source = None if block_input is None else block_input.bands[k]
            native.affine_add(band, source, band, scale, shift)

        self._loop.each(finish, len(project.bands))
        if block_input is not None:
            block_input.release_before(block_input.height + block_input.rows, self._pool)
        return RowsMap(project.channels, project.height, project.width, project.rows, bands=project.bands)

    def upsample_conv(
        self, step: schedule.UpsampleConv, compiled: native.Conv, src: Map, out_h: int, out_w: int, rows: int
    ) -> Map:
        """Bilinear upsample of lrelu(GroupNorm(src)) to out_h x out_w, reflection pad and 3x3 conv, by bands."""
        assert step.conv.norm_key is not None
        act = self._activation(src)
        reach = (step.conv.kernel - 1) // 2
        row_pair = self._pairs(src.height, out_h)
        col_pair = self._pairs(src.width, out_w)
        col_tables = self._tables([col_pair(reflect(j, out_w)) for j in range(-reach, out_w + reach)])
        out = RowsMap(step.conv.out_ch, out_h, out_w, rows, step.conv.norm_key)

        def band(j0: int, j1: int) -> BandResult:
            pairs = [row_pair(reflect(j, out_h)) for j in range(j0 - reach, j1 + reach)]
            top, end = min(p[0] for p in pairs), max(p[1] for p in pairs) + 1
            x = self._pool.scratch("in", (end - top, src.width, src.channels))
            self._activate_rows(src, top, end, x, act)
            row_tables = self._tables([(p[0] - top, p[1] - top, p[2]) for p in pairs])
            up = self._pool.scratch("up", (len(pairs), out_w + 2 * reach, src.channels))
            native.resample(x, row_tables, col_tables, up)
            y = self._pool.take((j1 - j0, out_w, out.channels))
            compiled.run(up, y)
            sums, sumsqs = native.stats(y)
            # The next band's first upsampled row is j1 - reach; source rows above its pair are done.
            next_row = row_pair(j1 - reach)[0] if j1 < out_h else src.height
            return BandResult(y, sums, sumsqs, (j1 - j0) * out_w, next_row)

        out.moments = self._loop.run(list(bands(out_h, rows)), band, out, src, by_rows=True)
        src.release_before(src.height + src.rows, self._pool)
        return out

    @staticmethod
    def _tables(pairs: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.array([p[0] for p in pairs], dtype=np.int32),
            np.array([p[1] for p in pairs], dtype=np.int32),
            np.array([p[2] for p in pairs], dtype=np.float32),
        )

    def final(self, compiled: native.Conv, src: Map) -> np.ndarray:
        """The last norm + LeakyReLU, the output conv, tanh and the 8-bit conversion."""
        act = self._activation(src)
        out = np.empty((src.height, src.width, 3), dtype=np.uint8)
        no_stats = np.zeros(1, dtype=np.float32)

        def band(r0: int, r1: int) -> BandResult:
            source = src.bands[r0 // src.rows]
            assert source is not None
            x = self._pool.scratch("in", source.shape)
            native.affine_lrelu(source, x, *act)
            y = np.empty((r1 - r0, src.width, 3), dtype=np.float32)
            compiled.run(x, y)
            # The reference maps clip(tanh(y), -1, 1) * 0.5 + 0.5 to 0..255 and rounds (half to even).
            np.tanh(y, out=y)
            np.clip(y, -1.0, 1.0, out=y)
            y *= 127.5
            y += 127.5
            np.rint(y, out=y)
            out[r0:r1] = y.astype(np.uint8)
            return BandResult(None, no_stats, no_stats, 1, r1)

        self._loop.run(list(bands(src.height, src.rows)), band, None, src)
        src.release_before(src.height + src.rows, self._pool)
        return out
