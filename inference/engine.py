"""Memory-lean CPU executor of the AnimeGANv2 generator on ONNX Runtime (no torch).

The generator's GroupNorm(1 group) normalises each layer over its whole C x H x W map, so the
network cannot simply be tiled. The engine splits every full-resolution layer into row bands with
halos and applies each norm from statistics merged over all bands (Chan's formula, float64):

- head: block_a.0 (7x7, 3->32) runs twice per band, first for its statistics only, then
  normalised and fed straight into block_a.1's stride-2 conv. Only the 64-channel half-res
  pre-norm output is stored; no 32-channel full-res map ever exists.
- trunk: block_a.1's norm through block_d, at half resolution and below, as one ONNX graph.
- tail: block_e.0 per band gathers (upsamples) the half-res rows it needs, so no 128-channel
  full-res map exists; its pre-norm output goes into one 64-channel full-res buffer. block_e.1
  and block_e.2 then run band by band in place in that buffer, each writing its output a few
  rows above where it reads (the buffer has 4 spare rows on top), so a band never overwrites
  rows the next band still needs. The final pass maps block_e.2 to 8-bit RGB rows.

Sides are reflection-padded to what the network needs (at least 8 pixels, tiny images are
edge-padded first; multiples of 4 when align_corners is False, where the reference shrinks other
sizes) and the result is cropped back, so the output always has the input's size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from inference import graphs

# block_a.0 pads 3, block_a.1 and block_b.0 halve twice, and every 3x3 reflection pad needs a
# side of at least 2 at quarter resolution: 8 pixels is the smallest side the network accepts.
MIN_SIDE = 8

# Default band heights (rows of the full-resolution image); measured on a 2-core AVX2/AVX-512 VM
# at 1024x576 and 1920x1080 (see the README's engine section).
BAND_BYTES = 4 << 20

ARENA: bool | str = "env"
SHRINK = True
PROFILE = ""

# Spare rows above the tail buffer: block_e.1 writes 1 row and block_e.2 3 rows above its input.
_TAIL_SPARE = 4


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


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Reflection (no edge repeat, like torch's ReflectionPad2d) of indices at most size-1 outside."""
    index = np.abs(index)
    return np.where(index >= size, 2 * (size - 1) - index, index)


_ENV_ARENA = False


def _session_options(threads: int) -> ort.SessionOptions:
    global _ENV_ARENA
    options = ort.SessionOptions()
    if ARENA == "env":
        if not _ENV_ARENA:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            cfg = ort.OrtArenaCfg({"arena_extend_strategy": 1, "max_mem": 0, "initial_chunk_size_bytes": 1 << 20, "max_dead_bytes_per_chunk": -1})
            ort.create_and_register_allocator(info, cfg)
            _ENV_ARENA = True
        options.add_session_config_entry("session.use_env_allocators", "1")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Without the arena ORT returns every buffer to malloc when a run ends: the worker's RSS
    # goes back down between jobs and its peak is what the job really needed.
    options.enable_cpu_mem_arena = bool(ARENA)
    options.enable_mem_pattern = False
    # Idle pool threads must not spin between the many short band runs (or between jobs).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if PROFILE:
        options.enable_profiling = True
        options.profile_file_prefix = PROFILE
    return options


def _release_freed_memory() -> Callable[[], object]:
    """glibc keeps freed heap pages; malloc_trim hands them back so an idle worker shrinks."""
    path = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(path), "malloc_trim", None) if path else None
    if trim is None:  # not glibc (musl, macOS): nothing to trim
        return lambda: None
    return lambda: trim(0)


@dataclass(frozen=True)
class _Map:
    """A feature map stored in rows offset..offset+height of a (C, rows, W) buffer.

    `norm` names the GroupNorm still to apply (the map is a conv's pre-norm output), or is
    empty when the map is already a layer's final value (an InvertedResBlock output).
    """

    data: np.ndarray
    channels: int
    offset: int
    height: int
    norm: str = ""
    moments: _Moments = _Moments()

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    def view(self) -> np.ndarray:
        return self.data[: self.channels, self.offset : self.offset + self.height]


def _gather_band(src: _Map, lo: int, hi: int, left: int, right: int) -> np.ndarray:
    """Rows lo..hi of `src` (reflected at its edges) with `left`/`right` reflected columns, contiguous."""
    width, height = src.width, src.height
    band = np.empty((1, src.channels, hi - lo, width + left + right), dtype=np.float32)
    inner = band[0, :, :, left : left + width]
    # Plain slice copies (np.take into a strided view is several times slower).
    first, last = max(lo, 0), min(hi, height)
    inner[:, first - lo : last - lo] = src.data[: src.channels, src.offset + first : src.offset + last]
    for row in (*range(lo, first), *range(last, hi)):
        source = int(_reflect(np.array(row), height))
        inner[:, row - lo] = src.data[: src.channels, src.offset + source]
    for k in range(1, left + 1):
        band[..., left - k] = band[..., left + k]
    for k in range(1, right + 1):
        band[..., left + width - 1 + k] = band[..., left + width - 1 - k]
    return band


class _Scratch:
    """Reusable band buffers: fresh allocations per band would page-fault on every band."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = np.empty(size, dtype=dtype)
            self._buffers[name] = buffer
        return buffer[:size].reshape(shape)

    def clear(self) -> None:
        self._buffers.clear()


@dataclass(frozen=True)
class _Conv:
    """A banded conv layer: its ONNX session and how its bands read the input."""

    session: ort.InferenceSession
    out_channels: int
    norm: str  # state-dict prefix of the GroupNorm after this conv
    halo: int = 0  # input rows (and columns) needed on each side; stride-2 layers read their own way
    stride: int = 1
    act: bool = True  # input is lrelu(GroupNorm(previous)) rather than the previous map itself


# (name, conv prefix, norm prefix, halo, stride, act) of every banded conv after the head.
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
        self._sd = sd
        options = _session_options(threads)

        def session(model: bytes) -> ort.InferenceSession:
            return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

        def out_channels(conv: str) -> int:
            return int(sd[f"{conv}.weight"].shape[0])

        self._head_stats = session(graphs.head_stats_model(sd))
        self._head = session(graphs.head_model(sd))
        self._layers = {
            name: _Conv(
                session(graphs.conv_band_model(sd, conv, act=act, stride=stride)),
                out_channels(conv),
                norm,
                halo,
                stride,
                act,
            )
            for name, conv, norm, halo, stride, act in _LAYERS
        }
        self._up = {
            name: _Conv(session(graphs.upsample_conv_band_model(sd, conv)), out_channels(conv), norm)
            for name, conv, norm in _UPSAMPLE_LAYERS
        }
        self._final = session(graphs.final_model(sd))
        self._scratch = _Scratch()
        # Hand the arena's free chunks back after each layer's last band: the arena then only
        # ever holds one band's working set, not the largest of every layer's.
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._trim = _release_freed_memory()

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
        try:
            out = self._forward(x)
        finally:
            self._scratch.clear()
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

    def _forward(self, x: np.ndarray) -> np.ndarray:
        height, width = x.shape[1:]
        half_h, half_w, quarter_h, quarter_w = height // 2, width // 2, height // 4, width // 4
        a1 = self._run_head(x)
        a2 = self._conv("a2", a1, a1.data, 0)
        del a1
        b0 = self._conv("b0", a2, np.empty((128, quarter_h + 2, quarter_w), np.float32), 2)
        del a2
        b1 = self._conv("b1", b0, b0.data, 1)
        c0 = self._conv("c0", b1, b1.data, 0)
        del b0, b1
        x_map = self._inverted_residual(1, c0, np.empty((256, quarter_h + 1, quarter_w), np.float32), None)
        del c0
        expanded = np.empty((512, quarter_h + 1, quarter_w), np.float32)
        for block in (2, 3, 4):
            x_map = self._inverted_residual(block, x_map, expanded, x_map)
        del expanded
        c5 = self._conv("c5", x_map, np.empty((128, quarter_h, quarter_w), np.float32), 0)
        del x_map
        d0 = self._upsample_conv("d0", c5, half_h, half_w, np.empty((128, half_h + 1, half_w), np.float32), 1)
        del c5
        d1 = self._conv("d1", d0, d0.data, 0)
        del d0
        e0 = self._upsample_conv("e0", d1, height, width, np.empty((64, height + _TAIL_SPARE, width), np.float32), 4)
        del d1
        e1 = self._conv("e1", e0, e0.data, 3)
        del e0
        e2 = self._conv("e2", e1, e1.data, 0)
        del e1
        return self._run_final(e2)

    def _rows(self, channels: int, width: int) -> int:
        """Rows per band: a fixed count if one was given, else about BAND_BYTES of float32 input."""
        if self.band_rows is not None:
            return self.band_rows
        return max(2, BAND_BYTES // (4 * channels * width))

    def _affine(self, src: _Map) -> dict[str, np.ndarray]:
        scale, shift = src.moments.affine(self._sd[f"{src.norm}.weight"], self._sd[f"{src.norm}.bias"])
        return {"scale": scale, "shift": shift}

    def _run_band(
        self,
        session: ort.InferenceSession,
        feeds: Mapping[str, np.ndarray],
        shape: tuple[int, int, int, int],
        *,
        with_output: bool = True,
        last: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs a band graph with its outputs written straight into scratch memory (no copies)."""
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        y = self._scratch.take("y", shape)
        sums, sumsqs = np.empty(shape[1], np.float32), np.empty(shape[1], np.float32)
        outputs = (("y", y), ("sum", sums), ("sumsq", sumsqs)) if with_output else (("sum", sums), ("sumsq", sumsqs))
        for name, array in outputs:
            binding.bind_output(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)
        session.run_with_iobinding(binding, self._shrink if (last and SHRINK) else None)
        return y, sums, sumsqs

    def _run_head(self, x: np.ndarray) -> _Map:
        """block_a.0 and block_a.1's conv; returns block_a.1's pre-norm half-res map (one spare row)."""
        height, width = x.shape[1:]
        padded = np.pad(x, ((0, 0), (3, 3), (3, 3)), mode="reflect")[None]
        moments = _Moments()
        for r0, r1 in _bands(height, self._rows(32, width)):
            feeds = {"xpad": np.ascontiguousarray(padded[:, :, r0 : r1 + 6])}
            _, sums, sumsqs = self._run_band(self._head_stats, feeds, (1, 32, 0, 0), with_output=False)
            moments = moments.merge_band(sums, sumsqs, (r1 - r0) * width)
        affine = self._affine(_Map(padded, 32, 0, height, "block_a.0.2", moments))

        half_h, half_w = height // 2, width // 2
        half = np.empty((64, half_h + 1, half_w), dtype=np.float32)
        half_moments = _Moments()
        for i0, i1 in _bands(half_h, self._rows(64, half_w)):
            # Output rows i0..i1 of the stride-2 conv read block_a.0 rows 2*i0 .. 2*i1; row `height`
            # (only reached when the height is even) is block_a.1's bottom reflection pad.
            f0, f1 = 2 * i0, min(2 * i1 + 1, height)
            bottom = 2 * i1 + 1 - f1
            pads = np.array([0, 0, 0, 0, 0, 0, bottom, 1], dtype=np.int64)
            feeds = {"xpad": np.ascontiguousarray(padded[:, :, f0 : f1 + 6]), "pads": pads, **affine}
            y, sums, sumsqs = self._run_band(self._head, feeds, (1, 64, i1 - i0, half_w), last=i1 == half_h)
            half[:, 1 + i0 : 1 + i1] = y[0]
            half_moments = half_moments.merge_band(sums, sumsqs, (i1 - i0) * half_w)
        return _Map(half, 64, 1, half_h, "block_a.1.2", half_moments)

    def _band_input(self, src: _Map, lo: int, hi: int, left: int, right: int) -> np.ndarray:
        """Rows lo..hi of `src` (reflected at its edges) with `left`/`right` reflected columns, contiguous."""
        width, height = src.width, src.height
        band = self._scratch.take("x", (1, src.channels, hi - lo, width + left + right))
        inner = band[0, :, :, left : left + width]
        first, last = max(lo, 0), min(hi, height)
        inner[:, first - lo : last - lo] = src.data[: src.channels, src.offset + first : src.offset + last]
        for row in (*range(lo, first), *range(last, hi)):
            source = abs(row) if row < 0 else 2 * (height - 1) - row
            inner[:, row - lo] = src.data[: src.channels, src.offset + source]
        for k in range(1, left + 1):
            band[..., left - k] = band[..., left + k]
        for k in range(1, right + 1):
            band[..., left + width - 1 + k] = band[..., left + width - 1 - k]
        return band

    def _conv(self, name: str, src: _Map, dst: np.ndarray, dst_offset: int) -> _Map:
        """One banded conv from `src` into rows dst_offset.. of `dst` (which may be src's own buffer).

        In place, a band reads input rows r0-halo .. r1+halo and writes output rows r0 .. r1 at
        dst_offset = src.offset - halo, so it only overwrites input rows that no later band reads.
        """
        layer = self._layers[name]
        out_h, out_w = src.height // layer.stride, src.width // layer.stride
        feeds = self._affine(src) if layer.act else {}
        moments = _Moments()
        for r0, r1 in _bands(out_h, self._rows(max(src.channels, layer.out_channels), src.width)):
            if layer.stride == 2:  # reflection pad right/bottom by 1
                band = self._band_input(src, 2 * r0, 2 * r1 + 1, 0, 1)
            else:
                band = self._band_input(src, r0 - layer.halo, r1 + layer.halo, layer.halo, layer.halo)
            shape = (1, layer.out_channels, r1 - r0, out_w)
            y, sums, sumsqs = self._run_band(layer.session, {"x": band, **feeds}, shape, last=r1 == out_h)
            dst[: layer.out_channels, dst_offset + r0 : dst_offset + r1] = y[0]
            moments = moments.merge_band(sums, sumsqs, (r1 - r0) * out_w)
        return _Map(dst, layer.out_channels, dst_offset, out_h, layer.norm, moments)

    def _inverted_residual(self, block: int, src: _Map, buffer: np.ndarray, residual: _Map | None) -> _Map:
        """block_c.N: expand (1x1), depthwise 3x3, project (1x1), GroupNorm, + input when shapes match."""
        expand = self._conv(f"c{block}.0", src, buffer, 1)
        depthwise = self._conv(f"c{block}.1", expand, buffer, 0)
        project = self._conv(f"c{block}.2", depthwise, buffer, 0)
        affine = self._affine(project)
        out = project.view()
        out *= affine["scale"][0]
        out += affine["shift"][0]
        if residual is None:
            return _Map(buffer, project.channels, 0, project.height)
        target = residual.view()
        target += out
        return residual

    def _upsample_conv(self, name: str, src: _Map, out_h: int, out_w: int, dst: np.ndarray, dst_offset: int) -> _Map:
        """Bilinear upsample of lrelu(GroupNorm(src)) to out_h x out_w, then reflection pad + 3x3 conv, by bands.

        Each band gathers only the source rows it needs, edge-padded by one row and column (which
        is how torch clamps at the borders), and lets a tf_crop_and_resize Resize map output rows
        and columns to source coordinates.
        """
        layer = self._up[name]
        feeds = self._affine(src)
        row_scale, row_bias = self._source_coordinates(src.height, out_h)
        col_scale, col_bias = self._source_coordinates(src.width, out_w)
        # ONNX Runtime's Resize ignores the roi of an axis whose size does not change: keep the
        # source one column (row) larger or smaller than the output (extra entries are edge copies).
        cols = src.width + 2 + int(src.width + 2 == out_w)
        col_roi = ((col_bias + 1) / (cols - 1), (col_scale * (out_w - 1) + col_bias + 1) / (cols - 1))
        moments = _Moments()
        for j0, j1 in _bands(out_h, self._rows(src.channels, out_w)):
            lo, hi = max(j0 - 1, 0), min(j1 + 1, out_h)
            first, last = row_scale * lo + row_bias, row_scale * (hi - 1) + row_bias
            top, end = math.floor(first) - 1, math.floor(last) + 3
            end += int(end - top == hi - lo)
            band = self._scratch.take("x", (1, src.channels, end - top, cols))
            inner = band[0, :, :, 1 : src.width + 1]
            first_row, last_row = max(top, 0), min(end, src.height)
            inner[:, first_row - top : last_row - top] = src.data[
                : src.channels, src.offset + first_row : src.offset + last_row
            ]
            inner[:, : first_row - top] = inner[:, first_row - top : first_row - top + 1]
            inner[:, last_row - top :] = inner[:, last_row - top - 1 : last_row - top]
            band[..., 0] = band[..., 1]
            band[..., src.width + 1 :] = band[..., src.width : src.width + 1]
            span = end - top - 1
            roi = np.array([0, (first - top) / span, col_roi[0], 0, 1, (last - top) / span, col_roi[1], 1], np.float32)
            feeds_band = {
                "x": band,
                "roi": roi,
                "sizes": np.array([1, hi - lo, out_w, src.channels], dtype=np.int64),
                "pads": np.array([0, int(j0 == 0), 1, 0, 0, int(j1 == out_h), 1, 0], dtype=np.int64),
                **feeds,
            }
            shape = (1, layer.out_channels, j1 - j0, out_w)
            y, sums, sumsqs = self._run_band(layer.session, feeds_band, shape, last=j1 == out_h)
            dst[: layer.out_channels, dst_offset + j0 : dst_offset + j1] = y[0]
            moments = moments.merge_band(sums, sumsqs, (j1 - j0) * out_w)
        return _Map(dst, layer.out_channels, dst_offset, out_h, layer.norm, moments)

    def _source_coordinates(self, in_size: int, out_size: int) -> tuple[float, float]:
        """Source coordinate = scale * output index + bias, as torch's bilinear interpolate maps them."""
        if self.align_corners:
            return (in_size - 1) / (out_size - 1), 0.0
        scale = in_size / out_size
        return scale, 0.5 * scale - 0.5

    def _run_final(self, src: _Map) -> np.ndarray:
        feeds = self._affine(src)
        out = np.empty((src.height, src.width, 3), dtype=np.uint8)
        for r0, r1 in _bands(src.height, self._rows(src.channels, src.width)):
            band = self._scratch.take("x", (1, src.channels, r1 - r0, src.width))
            band[...] = src.data[None, : src.channels, src.offset + r0 : src.offset + r1]
            binding = self._final.io_binding()
            binding.bind_cpu_input("x", band)
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output("rgb", "cpu", 0, np.uint8, [r1 - r0, src.width, 3], out[r0:r1].ctypes.data)
            self._final.run_with_iobinding(binding)
        return out
