"""The bf16 runtime: OpenVINO's CPU plugin behind `inference.runtime.BandRuntime`.

Maps travel between layers as bf16 (uint16 arrays holding the bits, half the bytes of fp32),
wrapped without copies as OpenVINO tensors of element type bf16. With the bf16 inference
precision OpenVINO runs the convolutions on AVX512_BF16 or AMX units and keeps float32 where
it matters: the per-channel band sums it returns are float32, merged by the engine in float64.

- Inputs named `x`, `p`, `r` and the output `y` are maps (bf16); everything else (the image
  band `xpad`, norms, indices, the 8-bit output) keeps its own type.
- One compiled model per band graph, with one stream (one thread) per engine thread: bands run
  concurrently, one per thread, as with ONNX Runtime, and each band's result does not depend
  on how many run beside it. Each running band holds one infer request of the graph's pool.
- A compiled model keeps the working memory of the largest band it has seen; `end_step`
  hands it back after every step (and trims the heap), so the process holds about one layer's
  working set at a time.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor

from inference.runtime import release_freed_memory

MAP_INPUTS = frozenset({"x", "p", "r"})
MAP_OUTPUTS = frozenset({"y"})
_TYPES = {np.dtype(np.float32): ov.Type.f32, np.dtype(np.uint8): ov.Type.u8, np.dtype(np.int64): ov.Type.i64}


def bf16_supported(core: ov.Core | None = None) -> bool:
    """OpenVINO's own report: does its CPU plugin run bf16 natively here?"""
    core = core or ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class _Graph:
    """A compiled band graph and a pool of infer requests, one per engine thread."""

    def __init__(self, model: ov.CompiledModel, *, slots: int) -> None:
        self.model = model
        self._concurrent = slots > 1
        self._slots = slots
        self._inputs = {name: i for i, port in enumerate(model.inputs) for name in port.names}
        self._input_types = {name: model.inputs[i].get_element_type() for name, i in self._inputs.items()}
        self._outputs = {name: i for i, port in enumerate(model.outputs) for name in port.names}
        # Creating an infer request while another request of the same compiled model runs can abort
        # the process (seen in CI with 2 threads: create_infer_request beside a running start_async).
        # So the pool is made whole, by the step's first band, while none of the model's requests runs.
        self._free: list[ov.InferRequest] = []
        self._made = False
        self._running = 0
        self._idle = threading.Condition()

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        with self._idle:
            if not self._made:
                self._idle.wait_for(lambda: self._running == 0)
                self._free = [self.model.create_infer_request() for _ in range(self._slots)]
                self._made = True
            self._idle.wait_for(lambda: bool(self._free))
            request = self._free.pop()
            self._running += 1
        try:
            self._infer(request, feeds, outputs)
        finally:
            with self._idle:
                self._running -= 1
                self._free.append(request)
                self._idle.notify_all()

    def _infer(
        self, request: ov.InferRequest, feeds: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
    ) -> None:
        for name, value in feeds.items():
            request.set_input_tensor(self._inputs[name], _tensor(value, self._input_types[name]))
        for name, array in outputs.items():
            if name in self._outputs:
                # Written in place: a copy (of a non-contiguous view) would lose the result.
                assert array.flags.c_contiguous, f"output {name} must be a contiguous array"
                kind = ov.Type.bf16 if name in MAP_OUTPUTS else _TYPES[array.dtype]
                request.set_output_tensor(self._outputs[name], _tensor(array, kind))
        if not self._concurrent:
            # One thread: run in the caller's thread (6% faster at 1024x576 than a hand-off to the stream).
            request.infer(share_outputs=True)
            return
        # Asynchronous start: the run goes to this model's streams, so bands of several threads
        # run at once (a synchronous call from any thread would share one stream).
        request.start_async()
        request.wait()

    def release(self) -> None:
        """Drop the requests and the model's working memory (between steps: no request runs then)."""
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0)
            self._free, self._made = [], False
            self.model.release_memory()


def _tensor(array: np.ndarray, kind: ov.Type) -> ov.Tensor:
    """The array's memory as an OpenVINO tensor (no copy); uint16 arrays are bf16 maps."""
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return ov.Tensor(array, list(array.shape), kind)


class OpenVinoRuntime:
    """bf16 band graphs on OpenVINO's CPU plugin; maps are uint16 arrays of bf16 bits."""

    map_dtype: type[np.generic] = np.uint16
    name = "openvino"
    scales_in_graph = True

    def __init__(self, threads: int = 1) -> None:
        self._core = ov.Core()
        self._config = {
            "INFERENCE_PRECISION_HINT": "bf16",
            "NUM_STREAMS": threads,
            "INFERENCE_NUM_THREADS": threads,
        }
        self._threads = threads
        self._used: set[_Graph] = set()
        self._used_lock = threading.Lock()
        self._trim = release_freed_memory()

    def load(self, model: bytes) -> _Graph:
        network = self._core.read_model(io.BytesIO(model))
        steps = PrePostProcessor(network)
        for port in network.inputs:
            if port.get_names() & MAP_INPUTS:
                steps.input(port.get_any_name()).tensor().set_element_type(ov.Type.bf16)
        for port in network.outputs:
            if port.get_names() & MAP_OUTPUTS:
                steps.output(port.get_any_name()).tensor().set_element_type(ov.Type.bf16)
        compiled = self._core.compile_model(steps.build(), "CPU", self._config)
        return _Graph(compiled, slots=self._threads)

    def run(
        self, graph: _Graph, feeds: Mapping[str, np.ndarray], out: np.ndarray | None, channels: int, *, last: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        # Graphs without statistics (a residual block's norm and add) leave `stats` unwritten.
        stats = np.empty((2, channels), dtype=np.float32)
        outputs: dict[str, np.ndarray] = {"sum": stats[0], "sumsq": stats[1]}
        if out is not None:
            outputs["y"] = out
        self._note(graph)
        graph.run(feeds, outputs)
        return stats[0], stats[1]

    def run_rgb(self, graph: _Graph, feeds: Mapping[str, np.ndarray], out: np.ndarray, *, last: bool) -> None:
        self._note(graph)
        graph.run(feeds, {"rgb": out})

    def end_step(self) -> None:
        with self._used_lock:
            used, self._used = self._used, set()
        for graph in used:
            graph.release()
        # What OpenVINO freed stays in glibc's heap unless handed back: without this the peak
        # holds every step's working memory at once (measured: 400 vs 330 MB at 1024x576).
        self._trim()

    def _note(self, graph: _Graph) -> None:
        if graph not in self._used:
            with self._used_lock:
                self._used.add(graph)
