"""Memory-lean CPU executor of the AnimeGANv2 generator on ONNX Runtime (no torch).

The generator's GroupNorm(1 group) normalises each layer over its whole C x H x W map, so the
network cannot simply be tiled. The engine runs every conv layer band by band (row bands with
halos) as a small ONNX graph (`inference.graphs`), and applies each norm from statistics merged
over all bands (per-channel sums from the graph, merged in float64):

- Every feature map is a list of row bands, each its own contiguous (C, rows, W) array. A
  layer's graph writes each output band straight into such an array (no copy), and a 1x1 layer
  reads its input band in place. Layers with a halo copy their input rows (with reflection at
  the image edges) into a scratch buffer, multiplying by the GroupNorm scale on the way.
  Input bands are released as soon as no later band needs them, and their arrays are reused
  for output bands: a layer holds about one map, not two.
- head: block_a.0 (7x7, 3->32) runs twice per band, first for its statistics only, then
  normalised and fed straight into block_a.1's stride-2 conv, so no 32-channel full-res map
  ever exists.
- The two bilinear upsamples are folded into the following conv's bands: each band gathers the
  few source rows it needs and resizes them channels-last (ONNX Runtime's fast Resize layout),
  so no 128-channel full-res map ever exists either.
- With several threads, bands of a layer run concurrently (one single-threaded graph run per
  thread) and are merged in band order, so results do not depend on the thread count.

The peak is then about one 64-channel full-resolution map (block_e's) plus the runtime and
one band's working set per thread in ONNX Runtime's arena.

Sides are padded to what the network needs (at least 8 pixels, tiny images are edge-padded
first; multiples of 4 when align_corners is False, where the reference shrinks other sizes)
and the result is cropped back, so the output always has the input's size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from inference import graphs

# block_a.0 pads 3, block_a.1 and block_b.0 halve twice, and every 3x3 reflection pad needs a
# side of at least 2 at quarter resolution: 8 pixels is the smallest side the network accepts.
MIN_SIDE = 8

# Band height: rows such that a band of the widest map at that resolution (64 channels at full,
# 128 at half, 512 at quarter resolution) is about this many bytes. Every band array then has
# about the same size, so a released input band's array is reused for an output band. Larger
# bands run faster (fewer runs, less halo work) and cost memory in ONNX Runtime's arena.
BAND_BYTES = 3 << 20

_WIDEST = (64, 128, 512)  # widest map (channels) at full, half and quarter resolution


@dataclass(frozen=True)
class _Moments:
    """Count, mean and sum of squared deviations of a set of values (float64)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def merge_band(self, sums: np.ndarray, sumsqs: np.ndarray, per_channel: int) -> _Moments:
        """Adds a band given per-channel sums and sums of squares (float32 from the graph)."""
        sums64, sumsqs64 = sums.astype(np.float64), sumsqs.astype(np.float64)
        means = sums64 / per_channel
        m2 = float(np.maximum(sumsqs64 - sums64 * means, 0.0).sum())
        mean = float(means.mean())
        m2 += per_channel * float(np.square(means - mean).sum())
        return self.merge(per_channel * sums.size, mean, m2)

    def merge(self, count: int, mean: float, m2: float) -> _Moments:
        # Chan et al.'s pairwise update: exact for any split of the map into bands.
        total = self.count + count
        delta = mean - self.mean
        return _Moments(
            total, self.mean + delta * count / total, self.m2 + m2 + delta * delta * self.count * count / total
        )

    def affine(self, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GroupNorm as a per-channel scale and shift, shaped (1, C, 1, 1) for the band graphs."""
        inv_std = 1.0 / math.sqrt(self.m2 / self.count + graphs.GN_EPS)
        scale = gamma.astype(np.float64) * inv_std
        shift = beta.astype(np.float64) - self.mean * scale
        return scale.astype(np.float32).reshape(1, -1, 1, 1), shift.astype(np.float32).reshape(1, -1, 1, 1)


def _bands(total: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, step):
        yield start, min(start + step, total)


def _reflect(row: int, size: int) -> int:
    """Reflection (no edge repeat, like torch's ReflectionPad2d) of an index at most size-1 outside."""
    row = abs(row)
    return 2 * (size - 1) - row if row >= size else row


_shared_arena = threading.Lock()
_shared_arena_ready = False


def _session_options() -> ort.SessionOptions:
    global _shared_arena_ready
    with _shared_arena:
        if not _shared_arena_ready:
            # One arena for every band graph of every engine in the process, grown only as far as
            # requested: the band graphs run one after another, so their working sets share it.
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            config = {"arena_extend_strategy": 1, "max_mem": 0, "initial_chunk_size_bytes": 1 << 20}
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(config))
            _shared_arena_ready = True
    options = ort.SessionOptions()
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.intra_op_num_threads = 1  # the engine runs bands in parallel instead
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False  # band shapes vary
    options.log_severity_level = 3
    return options


def _release_freed_memory() -> Callable[[], object]:
    """glibc keeps freed heap pages; malloc_trim hands them back so an idle worker shrinks."""
    path = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(path), "malloc_trim", None) if path else None
    if trim is None:  # not glibc (musl, macOS): nothing to trim
        return lambda: None
    return lambda: trim(0)


class _Pool:
    """Float32 arrays for bands, reused within a job: fresh pages would page-fault on every band.

    Every band array is allocated with the same capacity (`unit`, the largest band of the job),
    so any released band fits any later one: narrower maps leave the tail of their arrays
    untouched (not resident), and no array is ever stranded for being too small.
    Thread-safe; `scratch` buffers are per thread (each worker assembles its own band inputs).
    """

    def __init__(self) -> None:
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
        return np.empty(max(size, self.unit), dtype=np.float32)[:size].reshape(shape)

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
                array = np.empty(size, dtype=np.float32)
                self._named[key] = array
        return array[:size].reshape(shape)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._named.clear()


@dataclass(frozen=True)
class _BandResult:
    """What one band run hands back to the (in-order) merge: its output, stats, and the
    first input row that later bands still need."""

    output: np.ndarray | None
    sums: np.ndarray
    sumsqs: np.ndarray
    count: int
    next_row: int


@dataclass
class _Map:
    """A feature map as row bands: bands[k] holds rows k*rows .. (k+1)*rows as (C, n, W).

    `norm` names the GroupNorm still to apply (the map is a conv's pre-norm output), or is
    empty when the map is already a layer's final value (an InvertedResBlock output).
    """

    channels: int
    height: int
    width: int
    rows: int
    norm: str = ""
    moments: _Moments = _Moments()
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

    def release_before(self, row: int, pool: _Pool) -> None:
        """Give back every band that ends at or before `row`."""
        for k in range(min(row // self.rows, len(self.bands))):
            band = self.bands[k]
            if band is not None:
                pool.give(band)
                self.bands[k] = None


@dataclass(frozen=True)
class _Conv:
    """A banded conv layer: its ONNX session and how its bands read the input."""

    session: ort.InferenceSession
    transform: graphs.InputTransform  # what the graph still applies to its input band
    out_channels: int
    norm: str  # state-dict prefix of the GroupNorm after this conv
    halo: int = 0
    stride: int = 1

    @property
    def in_place(self) -> bool:
        """1x1 convs read their input band where it lies; the others get an assembled copy."""
        return self.halo == 0 and self.stride == 1


# (name, conv prefix, norm prefix, halo, stride, input is lrelu(GroupNorm(previous))) of every
# banded conv after the head.
_LAYERS: tuple[tuple[str, str, str, int, int, bool], ...] = (
    ("a2", "block_a.2.1", "block_a.2.2", 1, 1, True),
    ("b0", "block_b.0.1", "block_b.0.2", 0, 2, True),
    ("b1", "block_b.1.1", "block_b.1.2", 1, 1, True),
    ("c0", "block_c.0.1", "block_c.0.2", 1, 1, True),
    *(
        (f"c{i}.{j}", f"block_c.{i}.layers.{conv}", f"block_c.{i}.layers.{norm}", halo, 1, act)
        for i in range(1, 5)
        for j, (conv, norm, halo, act) in enumerate(
            (("0.1", "0.2", 0, i == 1), ("1.1", "1.2", 1, True), ("2", "3", 0, True))
        )
    ),
    ("c5", "block_c.5.1", "block_c.5.2", 1, 1, False),
    ("d1", "block_d.1.1", "block_d.1.2", 1, 1, True),
    ("e1", "block_e.1.1", "block_e.1.2", 1, 1, True),
    ("e2", "block_e.2.1", "block_e.2.2", 3, 1, True),
)
_UPSAMPLE_LAYERS = (("d0", "block_d.0.1", "block_d.0.2"), ("e0", "block_e.0.1", "block_e.0.2"))


class Engine:
    """Runs the generator on HxWx3 uint8 images; the output has the input's size."""

    def __init__(
        self,
        state_dict: Mapping[str, np.ndarray],
        *,
        align_corners: bool,
        threads: int = 1,
        band_rows: int | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if band_rows is not None and band_rows < 1:
            raise ValueError("band_rows must be at least 1")
        self.align_corners = align_corners
        self.threads = threads
        self.band_rows = band_rows
        sd = {key: np.asarray(value, dtype=np.float32) for key, value in state_dict.items()}
        # The graphs hold the conv weights; only the GroupNorm parameters are needed afterwards.
        self._sd = {key: value for key, value in sd.items() if value.ndim == 1}
        options = _session_options()

        def session(model: bytes) -> ort.InferenceSession:
            return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

        self._head_stats = session(graphs.head_stats_model(sd))
        self._head = session(graphs.head_model(sd))
        self._layers: dict[str, _Conv] = {}
        for name, conv, norm, halo, stride, act in _LAYERS:
            # Assembled bands are scaled while they are copied; in-place ones scale in the graph.
            transform: graphs.InputTransform = ("affine" if halo == 0 and stride == 1 else "shift") if act else "none"
            model = graphs.conv_band_model(sd, conv, transform=transform, stride=stride)
            out_channels = int(sd[f"{conv}.weight"].shape[0])
            self._layers[name] = _Conv(session(model), transform, out_channels, norm, halo, stride)
        self._up = {
            name: _Conv(
                session(graphs.upsample_conv_band_model(sd, conv)), "affine", int(sd[f"{conv}.weight"].shape[0]), norm
            )
            for name, conv, norm in _UPSAMPLE_LAYERS
        }
        self._final = session(graphs.final_model(sd))
        self._pool = _Pool()
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        # Bands run concurrently, one per thread, each graph single-threaded: every op and every
        # band copy then keeps all cores busy, where ONNX Runtime's intra-op threads would split
        # each small op and wait for each other at every op boundary.
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="animegan-band") if threads > 1 else None
        self._trim = _release_freed_memory()
        self._busy = threading.Lock()  # one job at a time: the pool and scratch buffers are per job

    def _shrink_arena(self) -> None:
        """Hands every free arena chunk back: a tiny run with the shrink option, after the job."""
        feeds = {"xpad": np.zeros((1, 3, 7, 7), dtype=np.float32)}
        self._run(self._head_stats, feeds, None, 32, last=True)

    def close(self) -> None:
        """Stops the band threads (they also stop with the process)."""
        if self._executor is not None:
            self._executor.shutdown()

    def run(self, rgb: np.ndarray) -> np.ndarray:
        """Stylize one RGB image (H, W, 3) uint8 -> (H, W, 3) uint8."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            raise ValueError("image is empty")
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        x *= 2.0 / 255.0
        x -= 1.0
        x = self._pad_to_workable(x)
        padded_h, padded_w = x.shape[1:]
        holder = [x]  # the only reference once `x` is deleted: the head drops it after reading
        del x
        with self._busy:
            try:
                out = self._forward(padded_h, padded_w, holder)
            finally:
                self._pool.clear()
                self._shrink_arena()
                self._trim()
        if out.shape[:2] == (height, width):
            return out
        return np.ascontiguousarray(out[:height, :width])

    def _pad_to_workable(self, x: np.ndarray) -> np.ndarray:
        height, width = x.shape[1:]
        # Edge padding first: reflection cannot pad a side of 1 or 2 pixels up to 8.
        edge_h, edge_w = max(MIN_SIDE - height, 0), max(MIN_SIDE - width, 0)
        if edge_h or edge_w:
            x = np.pad(x, ((0, 0), (0, edge_h), (0, edge_w)), mode="edge")
            height, width = x.shape[1:]
        if not self.align_corners:
            # The reference halves and doubles sizes: only multiples of 4 come back unchanged.
            pad_h, pad_w = -height % 4, -width % 4
            if pad_h or pad_w:
                x = np.pad(x, ((0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
        return x

    def _rows(self, level: int, width: int) -> int:
        """Rows per band at a resolution level (0 full, 1 half, 2 quarter); all maps of a level
        share them, so a released input band's array fits the next output band."""
        if self.band_rows is not None:
            return self.band_rows
        return max(4, BAND_BYTES // (4 * _WIDEST[level] * width))

    def _forward(self, height: int, width: int, x: list[np.ndarray]) -> np.ndarray:
        """The network on the padded input x[0], which is dropped once the head has read it."""
        half_h, half_w = height // 2, width // 2
        self._pool.unit = max(
            channels * min(self._rows(level, width >> level), height >> level) * (width >> level)
            for level, channels in enumerate(_WIDEST)
        )
        out = self._run_head(x.pop())
        out = self._conv("a2", out)
        out = self._conv("b0", out, rows=self._rows(2, half_w // 2))
        out = self._conv("b1", out)
        out = self._conv("c0", out)
        out = self._inverted_residual(1, out)
        for block in (2, 3, 4):
            out = self._inverted_residual(block, out)
        out = self._conv("c5", out)
        out = self._upsample_conv("d0", out, half_h, half_w, self._rows(1, half_w))
        out = self._conv("d1", out)
        out = self._upsample_conv("e0", out, height, width, self._rows(0, width))
        out = self._conv("e1", out)
        out = self._conv("e2", out)
        return self._run_final(out)

    def _each_band(
        self,
        spans: Sequence[tuple[int, int]],
        work: Callable[[int, int], _BandResult],
        out: _Map | None = None,
        src: _Map | None = None,
    ) -> _Moments:
        """Runs `work` on every band (concurrently on the band threads) and merges in band order.

        Bands complete in order: each one's output is appended to `out`, its statistics merged,
        and `src`'s bands that no later band needs are released.
        """
        moments = _Moments()

        def done(result: _BandResult) -> None:
            nonlocal moments
            if out is not None and result.output is not None:
                out.bands.append(result.output)
            moments = moments.merge_band(result.sums, result.sumsqs, result.count)
            if src is not None:
                src.release_before(result.next_row, self._pool)

        if self._executor is None:
            for r0, r1 in spans:
                done(work(r0, r1))
            return moments
        pending: deque[Future[_BandResult]] = deque()
        try:
            for r0, r1 in spans:
                pending.append(self._executor.submit(work, r0, r1))
                if len(pending) > self.threads:
                    done(pending.popleft().result())
            while pending:
                done(pending.popleft().result())
        finally:
            for future in pending:  # after an error: let in-flight bands finish before memory is reused
                future.exception()
        return moments

    def _affine(self, src: _Map) -> tuple[np.ndarray, np.ndarray]:
        return src.moments.affine(self._sd[f"{src.norm}.weight"], self._sd[f"{src.norm}.bias"])

    def _run(
        self,
        session: ort.InferenceSession,
        feeds: Mapping[str, np.ndarray],
        out: np.ndarray | None,
        channels: int,
        *,
        last: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Runs a band graph writing `y` into `out` (no copies); returns its per-channel sums."""
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        stats = np.empty((2, channels), dtype=np.float32)
        outputs = [("sum", stats[0]), ("sumsq", stats[1])]
        if out is not None:
            outputs.append(("y", out))
        for name, array in outputs:
            binding.bind_output(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)
        # After a layer's last band the arena hands its free chunks back: it then holds one
        # layer's band working set at a time, and nothing between jobs.
        session.run_with_iobinding(binding, self._shrink if last else None)
        return stats[0], stats[1]

    def _run_head(self, x: np.ndarray) -> _Map:
        """block_a.0 and block_a.1's conv; returns block_a.1's pre-norm half-res map."""
        height, width = x.shape[1:]
        padded = np.pad(x, ((0, 0), (3, 3), (3, 3)), mode="reflect")[None]

        def stats_band(r0: int, r1: int) -> _BandResult:
            feeds = {"xpad": np.ascontiguousarray(padded[:, :, r0 : r1 + 6])}
            sums, sumsqs = self._run(self._head_stats, feeds, None, 32, last=r1 == height)
            return _BandResult(None, sums, sumsqs, (r1 - r0) * width, 0)

        moments = self._each_band(list(_bands(height, self._rows(0, width))), stats_band)
        scale, shift = moments.affine(self._sd["block_a.0.2.weight"], self._sd["block_a.0.2.bias"])

        half_h, half_w = height // 2, width // 2
        out = _Map(64, half_h, half_w, self._rows(1, half_w), "block_a.1.2")

        def head_band(i0: int, i1: int) -> _BandResult:
            # Output rows i0..i1 of the stride-2 conv read block_a.0 rows 2*i0 .. 2*i1; row `height`
            # (only reached when the height is even) is block_a.1's bottom reflection pad.
            f0, f1 = 2 * i0, min(2 * i1 + 1, height)
            pads = np.array([0, 0, 0, 0, 0, 0, 2 * i1 + 1 - f1, 1], dtype=np.int64)
            feeds = {"xpad": np.ascontiguousarray(padded[:, :, f0 : f1 + 6]), "pads": pads}
            y = self._pool.take((1, 64, i1 - i0, half_w))
            sums, sumsqs = self._run(self._head, {**feeds, "scale": scale, "shift": shift}, y, 64, last=i1 == half_h)
            return _BandResult(y[0], sums, sumsqs, (i1 - i0) * half_w, 0)

        out.moments = self._each_band(list(_bands(half_h, out.rows)), head_band, out)
        return out

    def _assemble(self, src: _Map, lo: int, hi: int, left: int, right: int, scale: np.ndarray | None) -> np.ndarray:
        """Rows lo..hi of `src` (reflected at its edges) with reflected columns, as one contiguous band."""
        width, height = src.width, src.height
        band = self._pool.scratch("band", (1, src.channels, hi - lo, width + left + right))
        inner = band[0, :, :, left : left + width]
        channel_scale = None if scale is None else scale[0]
        first, last = max(lo, 0), min(hi, height)
        src.copy_rows(first, last, inner[:, first - lo : last - lo], channel_scale)
        for row in (*range(lo, first), *range(last, hi)):
            source = _reflect(row, height)
            src.copy_rows(source, source + 1, inner[:, row - lo : row - lo + 1], channel_scale)
        for k in range(1, left + 1):
            band[..., left - k] = band[..., left + k]
        for k in range(1, right + 1):
            band[..., left + width - 1 + k] = band[..., left + width - 1 - k]
        return band

    def _conv(self, name: str, src: _Map, *, rows: int | None = None, keep_source: bool = False) -> _Map:
        """One conv layer over `src`, band by band; `src`'s bands are released as they are used up."""
        layer = self._layers[name]
        out = _Map(
            layer.out_channels, src.height // layer.stride, src.width // layer.stride, rows or src.rows, layer.norm
        )
        feeds: dict[str, np.ndarray] = {}
        copy_scale = None  # multiplied in while assembling a band ("shift" graphs)
        if layer.transform != "none":
            scale, feeds["shift"] = self._affine(src)
            if layer.transform == "affine":
                feeds["scale"] = scale
            else:
                copy_scale = scale

        def band(r0: int, r1: int) -> _BandResult:
            if layer.in_place:
                assert r0 % src.rows == 0
                assert out.rows == src.rows
                source = src.bands[r0 // src.rows]
                assert source is not None
                x, next_row = source[None], r1
            elif layer.stride == 2:  # reflection pad right/bottom by 1
                x, next_row = self._assemble(src, 2 * r0, 2 * r1 + 1, 0, 1, copy_scale), 2 * r1
            else:
                halo = layer.halo
                x, next_row = self._assemble(src, r0 - halo, r1 + halo, halo, halo, copy_scale), r1 - halo
            y = self._pool.take((1, out.channels, r1 - r0, out.width))
            sums, sumsqs = self._run(layer.session, {"x": x, **feeds}, y, out.channels, last=r1 == out.height)
            return _BandResult(y[0], sums, sumsqs, (r1 - r0) * out.width, 0 if keep_source else next_row)

        out.moments = self._each_band(list(_bands(out.height, out.rows)), band, out, src)
        if not keep_source:
            src.release_before(src.height + src.rows, self._pool)
        return out

    def _inverted_residual(self, block: int, src: _Map) -> _Map:
        """block_c.N: expand (1x1), depthwise 3x3, project (1x1), GroupNorm, + input when shapes match."""
        residual = block > 1
        expand = self._conv(f"c{block}.0", src, keep_source=residual)
        depthwise = self._conv(f"c{block}.1", expand)
        project = self._conv(f"c{block}.2", depthwise)
        scale, shift = self._affine(project)

        def finish(k: int) -> None:
            band = project.bands[k]
            assert band is not None
            band *= scale[0]
            band += shift[0]
            if residual:
                target = src.bands[k]
                assert target is not None
                target += band
                self._pool.give(band)

        indices = range(len(project.bands))
        list(self._executor.map(finish, indices) if self._executor is not None else map(finish, indices))
        if residual:
            return src
        return _Map(project.channels, project.height, project.width, project.rows, bands=project.bands)

    def _upsample_conv(self, name: str, src: _Map, out_h: int, out_w: int, rows: int) -> _Map:
        """Bilinear upsample of lrelu(GroupNorm(src)) to out_h x out_w, then reflection pad + 3x3 conv, by bands.

        Each band gathers only the source rows it needs, edge-padded by one row and column (which
        is how torch clamps at the borders), and lets a tf_crop_and_resize Resize map output rows
        and columns to source coordinates.
        """
        layer = self._up[name]
        scale, shift = self._affine(src)
        row_scale, row_bias = self._source_coordinates(src.height, out_h)
        col_scale, col_bias = self._source_coordinates(src.width, out_w)
        # ONNX Runtime's Resize ignores the roi of an axis whose size does not change: keep the
        # source one column (row) larger or smaller than the output (extra entries are edge copies).
        cols = src.width + 2 + int(src.width + 2 == out_w)
        col_roi = ((col_bias + 1) / (cols - 1), (col_scale * (out_w - 1) + col_bias + 1) / (cols - 1))
        out = _Map(layer.out_channels, out_h, out_w, rows, layer.norm)

        def band(j0: int, j1: int) -> _BandResult:
            lo, hi = max(j0 - 1, 0), min(j1 + 1, out_h)
            first, last = row_scale * lo + row_bias, row_scale * (hi - 1) + row_bias
            top, end = math.floor(first) - 1, math.floor(last) + 3
            end += int(end - top == hi - lo)
            x = self._pool.scratch("band", (1, src.channels, end - top, cols))
            inner = x[0, :, :, 1 : src.width + 1]
            first_row, last_row = max(top, 0), min(end, src.height)
            src.copy_rows(first_row, last_row, inner[:, first_row - top : last_row - top], None)
            inner[:, : first_row - top] = inner[:, first_row - top : first_row - top + 1]
            inner[:, last_row - top :] = inner[:, last_row - top - 1 : last_row - top]
            x[..., 0] = x[..., 1]
            x[..., src.width + 1 :] = x[..., src.width : src.width + 1]
            span = end - top - 1
            roi = np.array([0, (first - top) / span, col_roi[0], 0, 1, (last - top) / span, col_roi[1], 1], np.float32)
            feeds = {
                "x": x,
                "roi": roi,
                "sizes": np.array([1, hi - lo, out_w, src.channels], dtype=np.int64),
                "pads": np.array([0, int(j0 == 0), 1, 0, 0, int(j1 == out_h), 1, 0], dtype=np.int64),
                "scale": scale,
                "shift": shift,
            }
            y = self._pool.take((1, out.channels, j1 - j0, out_w))
            sums, sumsqs = self._run(layer.session, feeds, y, out.channels, last=j1 == out_h)
            # The next band starts at a source row >= this band's last - 1.
            next_row = math.floor(row_scale * max(j1 - 1, 0) + row_bias) - 1
            return _BandResult(y[0], sums, sumsqs, (j1 - j0) * out_w, next_row)

        out.moments = self._each_band(list(_bands(out_h, rows)), band, out, src)
        src.release_before(src.height + src.rows, self._pool)
        return out

    def _source_coordinates(self, in_size: int, out_size: int) -> tuple[float, float]:
        """Source coordinate = scale * output index + bias, as torch's bilinear interpolate maps them."""
        if self.align_corners:
            return (in_size - 1) / (out_size - 1), 0.0
        scale = in_size / out_size
        return scale, 0.5 * scale - 0.5

    def _run_final(self, src: _Map) -> np.ndarray:
        scale, shift = self._affine(src)
        out = np.empty((src.height, src.width, 3), dtype=np.uint8)
        no_stats = np.zeros(1, dtype=np.float32)

        def band(r0: int, r1: int) -> _BandResult:
            source = src.bands[r0 // src.rows]
            assert source is not None
            binding = self._final.io_binding()
            for name, value in (("x", source[None]), ("scale", scale), ("shift", shift)):
                binding.bind_cpu_input(name, value)
            binding.bind_output("rgb", "cpu", 0, np.uint8, [r1 - r0, src.width, 3], out[r0:r1].ctypes.data)
            self._final.run_with_iobinding(binding, self._shrink if r1 == src.height else None)
            return _BandResult(None, no_stats, no_stats, 1, r1)

        self._each_band(list(_bands(src.height, src.rows)), band, None, src)
        src.release_before(src.height + src.rows, self._pool)
        return out
