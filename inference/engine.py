"""Memory-lean CPU executor of the AnimeGANv2 generator (no torch): runs `inference.schedule`'s steps.

The generator's GroupNorm(1 group) normalises each layer over its whole C x H x W map, so the
network cannot simply be tiled. The engine runs every conv layer band by band (row bands with
halos) and applies each norm from exact whole-map statistics gathered over all bands. On the
native oneDNN kernels (`inference.banded_onednn`, whenever they are built) one call runs a whole
layer in C++ in fp32, bf16 or int8; where they are not built, fp32 runs on ONNX Runtime's band
graphs and bf16 on OpenVINO's (`inference.banded`), and int8 is refused. Either way:

- Every feature map is a list of row bands. Input bands are released as soon as no later band
  needs them and their memory is reused for output bands: a layer holds about one map, not two.
- head: block_a.0 (7x7, 3->32) runs twice per band, first for its statistics only, then
  normalised and fed straight into block_a.1's stride-2 conv, so no 32-channel full-res map
  ever exists.
- The two bilinear upsamples are folded into the following conv's bands: each band gathers the
  few source rows it needs and resizes them, so no 128-channel full-res map ever exists either.
- With several threads, bands of a layer run concurrently (each conv single-threaded) and are
  merged in band order, so results do not depend on the thread count.

The peak is then about one 64-channel full-resolution map (block_e's: 4, 2 or 1 bytes per value
in fp32, bf16, int8) plus one band's working set per thread.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from inference import network, schedule
from inference.precision import Precision, resolve_precision
from inference.quantize import Plan
from inference.runtime import BandRuntime, release_freed_memory

if TYPE_CHECKING:
    from inference.banded import Banded
    from inference.banded_onednn import NativeBanded

# block_a.0 pads 3, block_a.1 and block_b.0 halve twice, and every 3x3 reflection pad needs a
# side of at least 2 at quarter resolution: 8 pixels is the smallest side the network accepts.
MIN_SIDE = 8

# Band height: rows such that a band of the widest map at that resolution (64 channels at full,
# 128 at half, 512 at quarter resolution) holds about this many float32s' bytes. Every band then
# has about the same size, so a released input band's memory is reused for an output band.
# Larger bands run faster (fewer calls, less halo work) and cost memory.
BAND_BYTES = 3 << 20

# Band memory is kept this long after a job: a busy worker's next job reuses it instead of
# faulting in fresh pages (3-4% of an image's CPU), an idle one hands it back.
RELEASE_AFTER_S = 2.0

Trace = Callable[[str, np.ndarray], object]


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
        plan: Plan | None = None,
    ) -> None:
        """`plan` overrides how the native kernels compute (per-layer modes, storage): for measurements."""
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if band_rows is not None and band_rows < 1:
            raise ValueError("band_rows must be at least 1")
        self.align_corners = align_corners
        self.threads = threads
        self.band_rows = band_rows
        # "auto" resolves here; bf16 or int8 on a CPU without its units raises PrecisionError.
        self.precision = resolve_precision(str(precision))
        # The native kernels whenever they are built; an injected runtime always runs graphs.
        native = runtime is None and self.precision.runtime == "onednn"
        sd = {key: np.asarray(value, dtype=np.float32) for key, value in state_dict.items()}
        # The convs hold their weights; only the GroupNorm parameters are needed afterwards.
        norms = {key: value for key, value in sd.items() if value.ndim == 1}
        self._steps = schedule.STEPS
        self._executor: Banded | NativeBanded
        if native:
            from inference.banded_onednn import NativeBanded, compile_step, make_runner

            plan = plan or Plan.for_precision(self.precision)
            self._executor = NativeBanded(
                make_runner(threads), norms, plan=plan, align_corners=align_corners, rows=self._rows
            )
            self._compiled: list[tuple[Any, ...]] = [compile_step(step, sd, plan) for step in self._steps]
            self.runtime_name = "onednn"
        else:
            from inference.banded import Banded, runtime_for

            graphs = Banded(
                runtime or runtime_for(self.precision, threads),
                threads,
                norms,
                align_corners=align_corners,
                rows=self._rows,
            )
            self._executor = graphs
            self._compiled = [graphs.compile(step, sd) for step in self._steps]
            self.runtime_name = graphs.runtime_name
        self._trim = release_freed_memory()
        self._trim()  # what compiling used and freed
        self._busy = threading.Lock()  # one job at a time: band memory and scratch are per job
        self._release_timer: threading.Timer | None = None

    def close(self) -> None:
        """Frees the band memory and stops the band threads (they also stop with the process)."""
        self.release_memory()
        self._executor.close()

    def release_memory(self) -> None:
        """Hands the band memory of the last job back now (it goes by itself RELEASE_AFTER_S after a job)."""
        with self._busy:
            self._cancel_release()
            self._executor.end_job()
            self._trim()

    def _release_when_idle(self) -> None:
        if not self._busy.acquire(blocking=False):
            return  # a job is running: it schedules the release again when it ends
        try:
            self._executor.end_job()
            self._trim()
        finally:
            self._busy.release()

    def _cancel_release(self) -> None:
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None

    def run(self, rgb: np.ndarray, *, trace: Trace | None = None) -> np.ndarray:
        """Stylize one RGB image (H, W, 3) uint8 -> (H, W, 3) uint8; `trace` sees every layer's map."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        if height == 0 or width == 0:
            raise ValueError("image is empty")
        padded = self._pad_to_workable(rgb)
        padded_h, padded_w = padded.shape[:2]
        holder = [self._executor.prepare(padded)]  # the only reference: the head drops it after reading
        del padded
        with self._busy:
            self._cancel_release()
            try:
                out = self._forward(padded_h, padded_w, holder, trace)
            finally:
                self._release_timer = threading.Timer(RELEASE_AFTER_S, self._release_when_idle)
                self._release_timer.daemon = True
                self._release_timer.start()
        if out.shape[:2] == (height, width):
            return out
        return np.ascontiguousarray(out[:height, :width])

    def _pad_to_workable(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        # Edge padding first: reflection cannot pad a side of 1 or 2 pixels up to 8.
        edge_h, edge_w = max(MIN_SIDE - height, 0), max(MIN_SIDE - width, 0)
        if edge_h or edge_w:
            rgb = np.pad(rgb, ((0, edge_h), (0, edge_w), (0, 0)), mode="edge")
            height, width = rgb.shape[:2]
        if not self.align_corners:
            # The reference halves and doubles sizes: only multiples of 4 come back unchanged.
            pad_h, pad_w = -height % 4, -width % 4
            if pad_h or pad_w:
                rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        return np.ascontiguousarray(rgb)

    def _rows(self, level: int, width: int) -> int:
        """Rows per band at a resolution level (0 full, 1 half, 2 quarter); all maps of a level
        share them, so a released input band's memory fits the next output band."""
        if self.band_rows is not None:
            return self.band_rows
        return max(4, BAND_BYTES // (4 * schedule.WIDEST[level] * width))

    def _forward(self, height: int, width: int, x: list[Any], trace: Trace | None) -> np.ndarray:
        """The schedule on the prepared input x[0], which is dropped once the head has read it."""
        self._executor.start_job(
            max(
                channels * min(self._rows(level, width >> level), height >> level) * (width >> level)
                for level, channels in enumerate(schedule.WIDEST)
            )
        )
        executor: Any = self._executor  # its maps and compiled steps are its own types
        out: Any = None
        block_input: Any = None  # kept for a residual add
        for step, compiled in zip(self._steps, self._compiled, strict=True):
            level = step.level
            size = (height >> level, width >> level, self._rows(level, width >> level))
            if isinstance(step, schedule.Head):
                out = executor.head(step, compiled, x.pop(), size[2])
            elif isinstance(step, schedule.Output):
                result: np.ndarray = executor.final(compiled[0], out)
                return result
            elif isinstance(step, schedule.BandConv):
                if step.keep_source:
                    block_input = out
                out = executor.conv(step, compiled[0], out, size[2])
            elif isinstance(step, schedule.UpsampleConv):
                out = executor.upsample_conv(step, compiled[0], out, *size)
            else:
                assert isinstance(step, schedule.Residual)
                graph = compiled[0] if compiled else None
                out = executor.residual(step, graph, out, block_input if step.block.residual else None)
            self._executor.end_step()
            if trace is not None:
                self._trace(step, out, trace)
        raise AssertionError("the schedule ends with an Output step")

    def _trace(self, step: schedule.Step, out: Any, trace: Trace) -> None:
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
        executor: Any = self._executor
        whole: np.ndarray = executor.whole(out)
        if out.norm:
            scale, shift = executor.affine(out)
            whole = whole * scale[0] + shift[0]
            whole = np.where(whole > 0, whole, np.float32(network.LRELU_SLOPE) * whole)
        trace(name, whole)
