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
DEFAULT_BAND_ROWS = 32

ARENA = True
SHRINK = True

# Spare rows above the tail buffer: block_e.1 writes 1 row and block_e.2 3 rows above its input.
_TAIL_SPARE = 4


@dataclass(frozen=True)
class _Moments:
    """Count, mean and sum of squared deviations of a set of values (float64)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

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


@dataclass(frozen=True)
class _Interp:
    """Bilinear source indices and weights for each reflection-padded output position."""

    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray

    @classmethod
    def build(cls, out_size: int, in_size: int, pad: int, align_corners: bool) -> _Interp:
        pos = _reflect(np.arange(-pad, out_size + pad), out_size).astype(np.float64)
        if align_corners:
            src = pos * ((in_size - 1) / (out_size - 1))
        else:
            src = np.maximum((pos + 0.5) * (in_size / out_size) - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        hi = np.minimum(lo + 1, in_size - 1)
        return cls(lo, hi, (src - lo).astype(np.float32))


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Without the arena ORT returns every buffer to malloc when a run ends: the worker's RSS
    # goes back down between jobs and its peak is what the job really needed.
    options.enable_cpu_mem_arena = ARENA
    options.enable_mem_pattern = False
    # Idle pool threads must not spin between the many short band runs (or between jobs).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _release_freed_memory() -> Callable[[], object]:
    """glibc keeps freed heap pages; malloc_trim hands them back so an idle worker shrinks."""
    path = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(path), "malloc_trim", None) if path else None
    if trim is None:  # not glibc (musl, macOS): nothing to trim
        return lambda: None
    return lambda: trim(0)


class Engine:
    """Runs the generator on HxWx3 uint8 images; output has the input's size."""

    def __init__(
        self,
        state_dict: Mapping[str, np.ndarray],
        *,
        align_corners: bool,
        threads: int = 1,
        band_rows: int = DEFAULT_BAND_ROWS,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if band_rows < 4:
            raise ValueError("band_rows must be at least 4")
        self.align_corners = align_corners
        self.threads = threads
        self.band_rows = band_rows
        sd = {key: np.asarray(value, dtype=np.float32) for key, value in state_dict.items()}
        self._norm = {
            prefix: (sd[f"{prefix}.2.weight"], sd[f"{prefix}.2.bias"])
            for prefix in ("block_a.0", "block_a.1", "block_e.0", "block_e.1", "block_e.2")
        }
        options = _session_options(threads)

        def session(model: bytes) -> ort.InferenceSession:
            return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

        self._head_stats = session(graphs.head_stats_model(sd))
        self._head = session(graphs.head_model(sd))
        self._trunk = session(graphs.trunk_model(sd, align_corners=align_corners))
        self._e0 = session(graphs.upsample_conv_model(sd, "block_e.0"))
        self._e1 = session(graphs.band_conv_model(sd, "block_e.1", cols_pad=1))
        self._e2 = session(graphs.band_conv_model(sd, "block_e.2", cols_pad=3))
        self._final = session(graphs.final_model(sd))
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
            self._trim()
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
        half, moments = self._run_head(x)
        scale, shift = moments.affine(*self._norm["block_a.1"])
        run_options = ort.RunOptions()
        if SHRINK:
            run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        trunk = self._trunk.run(["y"], {"x": half, "scale": scale, "shift": shift}, run_options)[0]
        del half
        return self._run_tail(trunk, x.shape[1], x.shape[2])

    def _run_head(self, x: np.ndarray) -> tuple[np.ndarray, _Moments]:
        height, width = x.shape[1:]
        padded = np.pad(x, ((0, 0), (3, 3), (3, 3)), mode="reflect")[None]
        rows = self.band_rows
        moments = _Moments()
        for r0, r1 in _bands(height, rows):
            mean, m2 = self._head_stats.run(["mean", "m2"], {"xpad": np.ascontiguousarray(padded[:, :, r0 : r1 + 6])})
            moments = moments.merge(32 * (r1 - r0) * width, float(mean), float(m2))
        scale, shift = moments.affine(*self._norm["block_a.0"])

        half_h, half_w = height // 2, width // 2
        half = np.empty((1, 64, half_h, half_w), dtype=np.float32)
        half_moments = _Moments()
        for i0, i1 in _bands(half_h, max(rows // 2, 2)):
            # Output rows i0..i1 of the stride-2 conv read block_a.0 rows 2*i0 .. 2*i1; row `height`
            # (only reached when the height is even) is block_a.1's bottom reflection pad.
            f0, f1 = 2 * i0, min(2 * i1 + 1, height)
            bottom = 2 * i1 + 1 - f1
            pads = np.array([0, 0, 0, 0, 0, 0, bottom, 1], dtype=np.int64)
            feeds = {"xpad": np.ascontiguousarray(padded[:, :, f0 : f1 + 6]), "scale": scale, "shift": shift}
            y, mean, m2 = self._head.run(["y", "mean", "m2"], {**feeds, "pads": pads})
            half[:, :, i0:i1] = y
            half_moments = half_moments.merge(y.size, float(mean), float(m2))
        return half, half_moments

    def _run_tail(self, trunk: np.ndarray, height: int, width: int) -> np.ndarray:
        rows = self.band_rows
        src_h, src_w = trunk.shape[2:]
        row_map = _Interp.build(height, src_h, 1, self.align_corners)
        col_map = _Interp.build(width, src_w, 1, self.align_corners)
        col_feeds = {"col0": col_map.lo, "col1": col_map.hi, "colw": col_map.weight.reshape(1, 1, 1, -1)}

        buffer = np.empty((64, height + _TAIL_SPARE, width), dtype=np.float32)
        moments = _Moments()
        for r0, r1 in _bands(height, rows):
            # Padded rows r0-1 .. r1 are entries r0 .. r1+1 of the maps.
            lo, hi = row_map.lo[r0 : r1 + 2], row_map.hi[r0 : r1 + 2]
            first, last = int(lo.min()), int(hi.max())
            feeds = {
                "src": np.ascontiguousarray(trunk[:, :, first : last + 1]),
                "row0": lo - first,
                "row1": hi - first,
                "roww": row_map.weight[r0 : r1 + 2].reshape(1, 1, -1, 1),
                **col_feeds,
            }
            y, mean, m2 = self._e0.run(["y", "mean", "m2"], feeds)
            buffer[:, _TAIL_SPARE + r0 : _TAIL_SPARE + r1] = y[0]
            moments = moments.merge(y.size, float(mean), float(m2))
        del trunk

        moments = self._band_layer(self._e1, buffer, moments, "block_e.0", halo=1, read_at=4, write_at=3)
        moments = self._band_layer(self._e2, buffer, moments, "block_e.1", halo=3, read_at=3, write_at=0)

        scale, shift = moments.affine(*self._norm["block_e.2"])
        out = np.empty((height, width, 3), dtype=np.uint8)
        for r0, r1 in _bands(height, rows):
            band = np.ascontiguousarray(buffer[None, :32, r0:r1])
            out[r0:r1] = self._final.run(["rgb"], {"x": band, "scale": scale, "shift": shift})[0]
        return out

    def _band_layer(
        self,
        session: ort.InferenceSession,
        buffer: np.ndarray,
        moments: _Moments,
        norm: str,
        *,
        halo: int,
        read_at: int,
        write_at: int,
    ) -> _Moments:
        """One conv layer over the tail buffer, band by band, writing `read_at - write_at` rows higher.

        A band reads input rows r0-halo .. r1+halo and writes output rows r0 .. r1 shifted up by
        read_at - write_at = halo rows, so input rows >= r1 - halo (what later bands read) survive.
        """
        height = buffer.shape[1] - _TAIL_SPARE
        rows = self.band_rows
        scale, shift = moments.affine(*self._norm[norm])
        out_moments = _Moments()
        for r0, r1 in _bands(height, rows):
            index = _reflect(np.arange(r0 - halo, r1 + halo), height) + read_at
            band = np.take(buffer, index, axis=1)[None]
            y, mean, m2 = session.run(["y", "mean", "m2"], {"x": band, "scale": scale, "shift": shift})
            buffer[: y.shape[1], write_at + r0 : write_at + r1] = y[0]
            out_moments = out_moments.merge(y.size, float(mean), float(m2))
        return out_moments
