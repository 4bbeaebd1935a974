"""Feature maps as row bands, the array pool they live in, GroupNorm moments, bilinear source pairs.

No runtime here: plain numpy. The graph fallback (`inference.banded`) keeps its band graphs'
outputs as `Map`s; every band array comes from (and returns to) a `Pool`; each band's
per-channel sums are merged into `Moments`, exact whole-map statistics for the GroupNorm that
follows. Both executors turn `Moments` into the norm's scale and shift, and take torch's
bilinear source coordinates from `bilinear_pairs`.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from inference import network


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of a set of values (float64)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def merge_band(self, sums: np.ndarray, sumsqs: np.ndarray, per_channel: int) -> Moments:
        """Adds a band given per-channel sums and sums of squares (float32 from the graph)."""
        sums64, sumsqs64 = sums.astype(np.float64), sumsqs.astype(np.float64)
        means = sums64 / per_channel
        m2 = float(np.maximum(sumsqs64 - sums64 * means, 0.0).sum())
        mean = float(means.mean())
        m2 += per_channel * float(np.square(means - mean).sum())
        return self.merge(per_channel * sums.size, mean, m2)

    def merge(self, count: int, mean: float, m2: float) -> Moments:
        # Chan et al.'s pairwise update: exact for any split of the map into bands.
        total = self.count + count
        delta = mean - self.mean
        return Moments(
            total, self.mean + delta * count / total, self.m2 + m2 + delta * delta * self.count * count / total
        )

    def affine(self, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GroupNorm as a per-channel scale and shift, shaped (1, C, 1, 1) for the band graphs."""
        inv_std = 1.0 / math.sqrt(self.m2 / self.count + network.GN_EPS)
        scale = gamma.astype(np.float64) * inv_std
        shift = beta.astype(np.float64) - self.mean * scale
        return scale.astype(np.float32).reshape(1, -1, 1, 1), shift.astype(np.float32).reshape(1, -1, 1, 1)


def as_float32(array: np.ndarray) -> np.ndarray:
    """A map's values as float32: bf16 maps (uint16 bits) are the high halves of float32s."""
    if array.dtype == np.uint16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def bands(total: int, step: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive bands of `step` rows (the last one shorter)."""
    for start in range(0, total, step):
        yield start, min(start + step, total)


def source_coordinates(in_size: int, out_size: int, *, align_corners: bool) -> tuple[float, float]:
    """Source coordinate = scale * output index + bias, as torch's bilinear interpolate maps them."""
    if align_corners:
        return (in_size - 1) / (out_size - 1), 0.0
    scale = in_size / out_size
    return scale, 0.5 * scale - 0.5


def bilinear_pairs(in_size: int, out_size: int, *, align_corners: bool) -> Callable[[int], tuple[int, int, float]]:
    """Output index -> (first source index, second, weight of the second), as torch's bilinear maps them."""
    scale, bias = source_coordinates(in_size, out_size, align_corners=align_corners)
    last = in_size - 1

    def pair(j: int) -> tuple[int, int, float]:
        # torch clamps negative source coordinates to 0 (half-pixel mode) and the second index at the edge.
        source = max(scale * j + bias, 0.0)
        first = min(math.floor(source), last)
        return first, min(first + 1, last), source - first

    return pair


def bilinear_table(
    in_size: int, out_size: int, reach: int, *, align_corners: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`bilinear_pairs` of output indices -reach .. out_size + reach - 1, reflected into the output
    (a conv's reflection padding), as arrays: first and second source index (int32), weight of the
    second (float32). The same float64 arithmetic as `bilinear_pairs`, vectorised."""
    scale, bias = source_coordinates(in_size, out_size, align_corners=align_corners)
    j = np.abs(np.arange(-reach, out_size + reach))
    j = np.where(j >= out_size, 2 * (out_size - 1) - j, j)
    source = np.maximum(scale * j + bias, 0.0)
    first = np.minimum(np.floor(source), in_size - 1)
    second = np.minimum(first + 1, in_size - 1)
    return first.astype(np.int32), second.astype(np.int32), (source - first).astype(np.float32)


def reflect(row: int, size: int) -> int:
    """Reflection (no edge repeat, like torch's ReflectionPad2d) of an index at most size-1 outside."""
    row = abs(row)
    return 2 * (size - 1) - row if row >= size else row


class Pool:
    """Arrays for bands, reused within a job: fresh pages would page-fault on every band.

    float32 unless the runtime stores its maps otherwise (`dtype`).

    Every band array is allocated with the same capacity (`unit`, the largest band of the job),
    so any released band fits any later one: narrower maps leave the tail of their arrays
    untouched (not resident), and no array is ever stranded for being too small.
    Thread-safe; `scratch` buffers are per thread (each worker assembles its own band inputs).
    """

    def __init__(self, dtype: type[np.generic] = np.float32) -> None:
        self.dtype = dtype  # what maps are stored as between layers (the runtime's choice)
        self._lock = threading.Lock()
        self._free: list[np.ndarray] = []
        self._named: dict[tuple[str, int], np.ndarray] = {}
        self.unit = 0

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        with self._lock:
            for i, array in enumerate(self._free):
                if array.size >= size:
                    return self._free.pop(i)[:size].reshape(shape)
        return np.empty(max(size, self.unit), dtype=self.dtype)[:size].reshape(shape)

    def give(self, array: np.ndarray) -> None:
        base = array
        while isinstance(base.base, np.ndarray):
            base = base.base
        with self._lock:
            self._free.append(base.reshape(-1))

    def scratch(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """This thread's buffer `name`, kept for the whole job (band inputs being assembled, stats)."""
        size = math.prod(shape)
        key = (name, threading.get_ident())
        with self._lock:
            array = self._named.get(key)
            if array is None or array.size < size:
                array = np.empty(size, dtype=self.dtype)
                self._named[key] = array
        return array[:size].reshape(shape)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._named.clear()


@dataclass(frozen=True)
class BandResult:
    """What one band run hands back to the (in-order) merge: its output, stats, and the
    first input row that later bands still need."""

    output: np.ndarray | None
    sums: np.ndarray
    sumsqs: np.ndarray
    count: int
    next_row: int


@dataclass
class Map:
    """A feature map as row bands: bands[k] holds rows k*rows .. (k+1)*rows as (C, n, W).

    `norm` names the GroupNorm still to apply (the map is a conv's pre-norm output), or is
    empty when the map is already a layer's final value (an InvertedResBlock output).
    """

    channels: int
    height: int
    width: int
    rows: int
    norm: str = ""
    moments: Moments = Moments()
    bands: list[np.ndarray | None] = field(default_factory=list)

    def copy_rows(self, lo: int, hi: int, out: np.ndarray, scale: np.ndarray | None) -> None:
        """Rows lo..hi (inside the map) into out (C, hi-lo, W), times a per-channel scale if given."""
        while lo < hi:
            k = lo // self.rows
            band = self.bands[k]
            assert band is not None, "band released too early"
            stop = min(hi, (k + 1) * self.rows)
            source = band[:, lo - k * self.rows : stop - k * self.rows]
            target = out[:, : stop - lo]
            if scale is None:
                target[...] = source
            else:
                np.multiply(source, scale, out=target)
            out = out[:, stop - lo :]
            lo = stop

    def assemble(self, lo: int, hi: int, left: int, right: int, scale: np.ndarray | None, pool: Pool) -> np.ndarray:
        """Rows lo..hi (reflected at the map's edges) with reflected columns, as one contiguous band."""
        width, height = self.width, self.height
        band = pool.scratch("band", (1, self.channels, hi - lo, width + left + right))
        inner = band[0, :, :, left : left + width]
        channel_scale = None if scale is None else scale[0]
        first, last = max(lo, 0), min(hi, height)
        self.copy_rows(first, last, inner[:, first - lo : last - lo], channel_scale)
        for row in (*range(lo, first), *range(last, hi)):
            source = reflect(row, height)
            self.copy_rows(source, source + 1, inner[:, row - lo : row - lo + 1], channel_scale)
        for k in range(1, left + 1):
            band[..., left - k] = band[..., left + k]
        for k in range(1, right + 1):
            band[..., left + width - 1 + k] = band[..., left + width - 1 - k]
        return band

    def gather_edge_padded(self, top: int, end: int, cols: int, pool: Pool) -> np.ndarray:
        """Rows top..end and one column each side (then `cols` in all), clamped at the edges like torch's bilinear."""
        x = pool.scratch("band", (1, self.channels, end - top, cols))
        inner = x[0, :, :, 1 : self.width + 1]
        first_row, last_row = max(top, 0), min(end, self.height)
        self.copy_rows(first_row, last_row, inner[:, first_row - top : last_row - top], None)
        inner[:, : first_row - top] = inner[:, first_row - top : first_row - top + 1]
        inner[:, last_row - top :] = inner[:, last_row - top - 1 : last_row - top]
        x[..., 0] = x[..., 1]
        x[..., self.width + 1 :] = x[..., self.width : self.width + 1]
        return x

    def whole(self) -> np.ndarray:
        """The map as one (C, H, W) array (a copy; for tracing)."""
        present = [band for band in self.bands if band is not None]
        assert len(present) == len(self.bands), "bands already released"
        return np.concatenate(present, axis=1)

    def release_before(self, row: int, pool: Pool) -> None:
        """Give back every band that ends at or before `row`."""
        for k in range(min(row // self.rows, len(self.bands))):
            band = self.bands[k]
            if band is not None:
                pool.give(band)
                self.bands[k] = None


class BandLoop:
    """Runs work on every band of a layer (concurrently on the band threads) and merges in band order.

    Bands complete in order: each one's output is appended to `out`, its statistics merged, and
    `src`'s bands that no later band needs are released. Results do not depend on the thread count.
    """

    def __init__(self, threads: int, pool: Pool) -> None:
        self.threads = threads
        self.pool = pool
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="animegan-band") if threads > 1 else None

    def run(
        self,
        spans: Sequence[tuple[int, int]],
        work: Callable[[int, int], BandResult],
        out: Map | None = None,
        src: Map | None = None,
    ) -> Moments:
        moments = Moments()

        def done(result: BandResult) -> None:
            nonlocal moments
            if out is not None and result.output is not None:
                out.bands.append(result.output)
            moments = moments.merge_band(result.sums, result.sumsqs, result.count)
            if src is not None:
                src.release_before(result.next_row, self.pool)

        if self.executor is None:
            for r0, r1 in spans:
                done(work(r0, r1))
            return moments
        pending: deque[Future[BandResult]] = deque()
        try:
            for r0, r1 in spans:
                pending.append(self.executor.submit(work, r0, r1))
                if len(pending) > self.threads:
                    done(pending.popleft().result())
            while pending:
                done(pending.popleft().result())
        finally:
            for future in pending:  # after an error: let in-flight bands finish before memory is reused
                future.exception()
        return moments

    def each(self, work: Callable[[int], None], count: int) -> None:
        """`work(k)` for k in 0..count-1, concurrently, in no particular order (independent bands)."""
        indices = range(count)
        list(self.executor.map(work, indices) if self.executor is not None else map(work, indices))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()
