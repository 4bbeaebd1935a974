"""The fp32 runtime: ONNX Runtime's CPU provider behind `inference.runtime.BandRuntime`.

ONNX Runtime specifics live here: one process-wide arena shared by every band graph of every
engine, single-threaded sessions (the engine runs bands in parallel instead), I/O binding into
preallocated arrays, and shrinking the arena after each layer's last band.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

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


class OrtRuntime:
    """ONNX Runtime on CPU: I/O binding into preallocated float32 arrays."""

    map_dtype: type[np.generic] = np.float32
    name = "onnxruntime"
    # The engine may multiply a band by its norm's scale while assembling it (float32 maps).
    scales_in_graph = False

    def __init__(self) -> None:
        self._options = _session_options()
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def load(self, model: bytes) -> ort.InferenceSession:
        return ort.InferenceSession(model, sess_options=self._options, providers=["CPUExecutionProvider"])

    def run(
        self,
        graph: ort.InferenceSession,
        feeds: Mapping[str, np.ndarray],
        out: np.ndarray | None,
        channels: int,
        *,
        last: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        binding = graph.io_binding()
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
        graph.run_with_iobinding(binding, self._shrink if last else None)
        return stats[0], stats[1]

    def end_step(self) -> None:
        """Nothing to do: the arena shrinks after each layer's last band (`last`)."""

    def run_rgb(
        self, graph: ort.InferenceSession, feeds: Mapping[str, np.ndarray], out: np.ndarray, *, last: bool
    ) -> None:
        binding = graph.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        binding.bind_output("rgb", "cpu", 0, np.uint8, list(out.shape), out.ctypes.data)
        graph.run_with_iobinding(binding, self._shrink if last else None)
