"""Memory-lean CPU executor of the AnimeGANv2 generator (no torch): runs `inference.schedule`'s steps.

The generator's GroupNorm(1 group) normalises each layer over its whole C x H x W map, so the
network cannot simply be tiled. The engine runs every conv layer band by band (row bands with
halos) as a small graph (`inference.graphs`, run by `inference.banded` through the `inference.runtime` seam), and
applies each norm from statistics merged over all bands (`inference.bands.Moments`, float64).
bf16 runs the same schedule on the native oneDNN kernels over channels-last bands
(`inference.banded_onednn`) when they are built, else on OpenVINO's band graphs. The fp32 path:

- Every feature map is a list of row bands (`inference.bands.Map`), each its own contiguous
  (C, rows, W) array. A layer's graph writes each output band straight into such an array (no
  copy), and a 1x1 layer reads its input band in place. Layers with a halo copy their input rows
  (with reflection at the image edges) into a scratch buffer, multiplying by the GroupNorm scale
  on the way. Input bands are released as soon as no later band needs them, and their arrays are
  reused for output bands: a layer holds about one map, not two.
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

`run(rgb, trace=fn)` calls `fn(name, map)` with each layer's whole (C, H, W) float32 map, as the
torch reference's module of that name outputs it (`Generator.trace`), for layer-by-layer
comparisons. The maps are those of the padded input; without `trace` nothing is assembled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from inference import graphs, graphs_bf16, network, schedule
from inference.banded import Banded
from inference.banded_onednn import NativeBanded, compile_step
from inference.bands import BandLoop, Map, Pool, as_float32
from inference.precision import Precision, resolve_precision
from inference.runtime import BandRuntime, release_freed_memory

# block_a.0 pads 3, block_a.1 and block_b.0 halve twice, and every 3x3 reflection pad needs a
# side of at least 2 at quarter resolution: 8 pixels is the smallest side the network accepts.
MIN_SIDE = 8

# Band height: rows such that a band of the widest map at that resolution (64 channels at full,
# 128 at half, 512 at quarter resolution) is about this many bytes. Every band array then has
# about the same size, so a released input band's array is reused for an output band. Larger
# bands run faster (fewer runs, less halo work) and cost memory in ONNX Runtime's arena.
BAND_BYTES = 3 << 20

Trace = Callable[[str, np.ndarray], object]


def _compile(
    step: schedule.Step, sd: Mapping[str, np.ndarray], banded: Banded, runtime: BandRuntime
) -> tuple[Any, ...]:
    """The band graph(s) of one step, loaded into the runtime (bf16 maps need some in other forms)."""
    in_graph = runtime.scales_in_graph
    if isinstance(step, schedule.Head):
        return runtime.load(graphs.head_stats_model(sd, step.first)), runtime.load(
            graphs.head_model(sd, step.first, step.second)
        )
    if isinstance(step, schedule.BandConv):
        return (runtime.load(graphs.conv_band_model(sd, step.conv, transform=banded.transform(step))),)
    if isinstance(step, schedule.UpsampleConv) and in_graph:
        model = graphs_bf16.upsample_rows_conv_band_model(sd, step.conv, align_corners=banded.align_corners)
        return (runtime.load(model),)
    if isinstance(step, schedule.UpsampleConv):
        return (runtime.load(graphs.upsample_conv_band_model(sd, step.conv)),)
    if isinstance(step, schedule.Residual) and in_graph:
        channels = step.block.convs[-1].out_ch
        return (runtime.load(graphs_bf16.residual_model(channels, residual=step.block.residual)),)
    if isinstance(step, schedule.Output):
        return (runtime.load(graphs.final_model(sd, step.conv)),)
    return ()


def _runtime_for(precision: Precision, threads: int) -> BandRuntime:
    """The graph runtime of a precision; only its module is imported (a bf16 worker never loads ONNX Runtime)."""
    if precision is Precision.BF16:
        from inference.runtime_openvino import OpenVinoRuntime

        return OpenVinoRuntime(threads)
    from inference.runtime_ort import OrtRuntime

    return OrtRuntime()


class Engine:
    """Runs the generator on HxWx3 uint8 images; the output has the input's size."""

    def __init__(
        self,
        state_dict: Mapping[str, np.ndarray],
        *,
        align_corners: bool,
        threads: int = 1,
        band_rows: int | None = None,
        precision: Precision | str = Precision.FP32,
        runtime: BandRuntime | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if band_rows is not None and band_rows < 1:
            raise ValueError("band_rows must be at least 1")
        self.align_corners = align_corners
        self.threads = threads
        self.band_rows = band_rows
        # "auto" resolves here; bf16 on a CPU without native bf16 raises PrecisionError.
        self.precision = resolve_precision(str(precision))
        # bf16: the native kernels when built (no layout reorders: about 1.7x OpenVINO's band
        # graphs), else OpenVINO's band graphs; an injected runtime always runs graphs.
        self._native = runtime is None and self.precision.runtime == "onednn"
        sd = {key: np.asarray(value, dtype=np.float32) for key, value in state_dict.items()}
        # The graphs hold the conv weights; only the GroupNorm parameters are needed afterwards.
        self._sd = {key: value for key, value in sd.items() if value.ndim == 1}
        self._steps = schedule.STEPS
        # Bands run concurrently, one per thread, each graph single-threaded: every op and every
        # band copy then keeps all cores busy, where ONNX Runtime's intra-op threads would split
        # each small op and wait for each other at every op boundary.
        self._banded: Banded | NativeBanded
        if self._native:
            self._runtime: BandRuntime | None = None
            self._pool = Pool(np.uint16)
            self._loop = BandLoop(threads, self._pool)
            self._banded = NativeBanded(self._pool, self._loop, self._sd, align_corners=align_corners, rows=self._rows)
            self._graphs: list[tuple[Any, ...]] = [compile_step(step, sd) for step in self._steps]
        else:
            graph_runtime = runtime or _runtime_for(self.precision, threads)
            self._runtime = graph_runtime
            self._pool = Pool(graph_runtime.map_dtype)
            self._loop = BandLoop(threads, self._pool)
            banded = Banded(
                graph_runtime, self._pool, self._loop, self._sd, align_corners=align_corners, rows=self._rows
            )
            self._banded = banded
            self._graphs = [_compile(step, sd, banded, graph_runtime) for step in self._steps]
        self._trim = release_freed_memory()
        self._trim()  # what compiling the graphs used and freed
        self._busy = threading.Lock()  # one job at a time: the pool and scratch buffers are per job

    def _shrink_arena(self) -> None:
        """Hands every free arena chunk back: a tiny run with the shrink option, after the job."""
        if self._runtime is None:
            return
        head = self._steps[0]
        assert isinstance(head, schedule.Head)
        feeds = {"xpad": np.zeros((1, head.first.in_ch, head.first.kernel, head.first.kernel), dtype=np.float32)}
        self._runtime.run(self._graphs[0][0], feeds, None, head.first.out_ch, last=True)

    @property
    def runtime_name(self) -> str:
        """The inference runtime the engine's layers run on (onnxruntime, openvino, onednn)."""
        return "onednn" if self._runtime is None else self._runtime.name

    def close(self) -> None:
        """Stops the band threads (they also stop with the process)."""
        self._loop.close()

    def run(self, rgb: np.ndarray, *, trace: Trace | None = None) -> np.ndarray:
        """Stylize one RGB image (H, W, 3) uint8 -> (H, W, 3) uint8; `trace` sees every layer's map."""
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
                out = self._forward(padded_h, padded_w, holder, trace)
            finally:
                self._pool.clear()
                self._shrink_arena()
                self._end_step()
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
        return max(4, BAND_BYTES // (4 * schedule.WIDEST[level] * width))

    def _forward(self, height: int, width: int, x: list[np.ndarray], trace: Trace | None) -> np.ndarray:
        """The schedule on the padded input x[0], which is dropped once the head has read it."""
        self._pool.unit = max(
            channels * min(self._rows(level, width >> level), height >> level) * (width >> level)
            for level, channels in enumerate(schedule.WIDEST)
        )
        out: Map | None = None
        block_input: Map | None = None  # kept for a residual add
        for step, compiled in zip(self._steps, self._graphs, strict=True):
            level = step.level
            size = (height >> level, width >> level, self._rows(level, width >> level))
            if isinstance(step, schedule.Head):
                out = self._banded.head(step, compiled, x.pop(), size[2])
            elif isinstance(step, schedule.Output):
                assert out is not None
                return self._banded.final(compiled[0], out)
            else:
                assert out is not None
                if isinstance(step, schedule.BandConv) and step.keep_source:
                    block_input = out
                out = self._step(step, compiled, out, block_input, size)
            self._end_step()
            if trace is not None:
                self._trace(step, out, trace)
        raise AssertionError("the schedule ends with a Output step")

    def _end_step(self) -> None:
        if self._runtime is not None:
            self._runtime.end_step()

    def _step(
        self,
        step: schedule.Step,
        compiled: tuple[Any, ...],
        src: Map,
        block_input: Map | None,
        size: tuple[int, int, int],
    ) -> Map:
        if isinstance(step, schedule.BandConv):
            return self._banded.conv(step, compiled[0], src, size[2])
        if isinstance(step, schedule.UpsampleConv):
            return self._banded.upsample_conv(step, compiled[0], src, *size)
        assert isinstance(step, schedule.Residual)
        graph = compiled[0] if compiled else None
        return self._banded.residual(step, graph, src, block_input if step.block.residual else None)

    def _trace(self, step: schedule.Step, out: Map, trace: Trace) -> None:
        """Hands `trace` the step's map as the reference's module of that name outputs it."""
        if isinstance(step, schedule.Head):
            name = step.second.name
        elif isinstance(step, schedule.BandConv | schedule.UpsampleConv):
            if step.conv.role == "project":  # the reference's block output comes with the Residual step
                return
            name = step.conv.name
        else:
            assert isinstance(step, schedule.Residual)
            name = step.block.name
        whole = as_float32(out.whole())
        if out.norm:
            scale, shift = self._banded.affine(out)
            whole = whole * scale[0] + shift[0]
            whole = np.where(whole > 0, whole, np.float32(network.LRELU_SLOPE) * whole)
        trace(name, whole)
