"""One `animegan bench` variant in its own process: load it, warm it up, answer commands on stdin.

The parent (`animegan.bench`) starts one such process per variant (latency mode) or several
pinned single-thread ones (throughput mode) and speaks a line protocol: `run` (one image, answers
its seconds), `matmul` (the BLAS peak, in the eager process), `report` (peak RSS, precision),
anything else ends the process. Variants:

- `engine`: the banded engine in the precision asked for (`--precision`, auto by default);
  `engine-fp32`, `engine-bf16`: the same with the precision fixed (bf16 on the native kernels
  when built); `engine-bf16-openvino`: bf16 on OpenVINO's band graphs (the engine without them).
- `openvino`: the peer a user gets by exporting the model and running it with OpenVINO's defaults
  (whole graph, static shape, no property set: bf16 where the CPU has it); `openvino-f32`: the
  same with INFERENCE_PRECISION_HINT=f32.
- `ort-whole`: the whole graph on ONNX Runtime; `eager`: plain eager torch (NCHW, no_grad).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

MATMUL_N = 4096
VARIANTS = (
    "engine",
    "engine-fp32",
    "engine-bf16",
    "engine-bf16-openvino",
    "openvino",
    "openvino-f32",
    "ort-whole",
    "eager",
)
Runner = Callable[[np.ndarray], object]


def random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded weights with torch's default init ranges (what an untrained Generator holds)."""
    from inference.weights import EXPECTED_SHAPES

    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}
    for key, shape in EXPECTED_SHAPES.items():
        if len(shape) == 4:
            bound = 1 / math.sqrt(shape[1] * shape[2] * shape[3])
            state[key] = rng.uniform(-bound, bound, shape).astype(np.float32)
        elif key.endswith(".2.weight") or key.endswith(".3.weight"):
            state[key] = np.ones(shape, np.float32)
        elif key.endswith(".1.bias"):
            fan_in = 9  # the depthwise convs' bias: one input channel, 3x3
            state[key] = rng.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), shape).astype(np.float32)
        else:
            state[key] = np.zeros(shape, np.float32)
    return state


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def peak_rss() -> int:
    """VmHWM, the peak RSS since the last reset (psutil does not offer it): from /proc/self/status."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peak_rss() -> None:
    """Resets VmHWM to the current RSS (Linux: writing 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass  # then the peak includes loading too


def test_image(width: int, height: int) -> np.ndarray:
    """A photo-like uint8 image (gradients plus noise), made without large temporaries."""
    rng = np.random.default_rng(1)
    red = np.linspace(0, 200, width, dtype=np.float32)[None, :]
    green = np.linspace(0, 200, height, dtype=np.float32)[:, None]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    for channel, plane in enumerate((red + 0 * green, green + 0 * red, (red + green) / 2)):
        noise = rng.integers(-40, 40, (height, width), dtype=np.int16)
        rgb[..., channel] = np.clip(plane + noise, 0, 255)
    return rgb


def serve(
    variant: str, width: int, height: int, threads: int, weights: str, align_corners: bool, precision: str
) -> int:
    """Loads one variant, warms it up, then answers `run`, `matmul` and `report` lines on stdin."""
    rgb = test_image(width, height)
    rss_start = rss()
    if weights == "random":
        state = random_state_dict()
    else:
        from inference.weights import load_state_dict

        state = load_state_dict(Path(weights))
    run, used_precision = load(variant, state, threads, align_corners, precision, (height, width))
    del state
    rss_loaded, peak_loading = rss(), peak_rss()
    reset_peak_rss()  # the peak reported is that of a loaded process running jobs
    run(rgb)  # warm-up: first-call allocations and lazy initialisation are not latency
    ready = {"ready": True, "rss_start": rss_start, "rss_loaded": rss_loaded, "peak_loading": peak_loading}
    _say(json.dumps({**ready, "precision": used_precision, "cpus": sorted(os.sched_getaffinity(0))}))
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            cpu, started = time.process_time(), time.perf_counter()
            run(rgb)
            result = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}
        elif command == "matmul":
            result = {"gflops": _matmul_gflops(threads)}
        elif command == "report":
            result = {"peak_rss": peak_rss(), "rss_idle": rss(), "torch": "torch" in sys.modules}
        else:
            return 0
        _say(json.dumps(result))
    return 0


def load(
    variant: str,
    state: dict[str, np.ndarray],
    threads: int,
    align_corners: bool,
    precision: str,
    shape: tuple[int, int],
) -> tuple[Runner, str]:
    """The variant's run function and the precision it computes in."""
    if variant.startswith("engine"):
        from inference.engine import Engine

        wanted = {"engine-fp32": "fp32", "engine-bf16": "bf16", "engine-bf16-openvino": "bf16"}.get(variant, precision)
        graphs = None
        if variant == "engine-bf16-openvino":
            from inference.runtime_openvino import OpenVinoRuntime

            graphs = OpenVinoRuntime(threads)
        engine = Engine(state, align_corners=align_corners, threads=threads, precision=wanted, runtime=graphs)
        return engine.run, f"{engine.precision} ({engine.runtime_name})"
    if variant.startswith("openvino"):
        return _openvino_whole(state, threads, align_corners, shape, f32=variant == "openvino-f32")
    if variant == "ort-whole":
        return _ort_whole(state, threads, align_corners), "fp32"
    return _eager(state, threads, align_corners), "fp32"


def _to_input(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255) * 2 - 1)


def _to_rgb(y: np.ndarray) -> np.ndarray:
    return np.asarray(np.round((np.clip(y, -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8).transpose(1, 2, 0))


def _openvino_whole(
    state: dict[str, np.ndarray], threads: int, align_corners: bool, shape: tuple[int, int], *, f32: bool
) -> tuple[Runner, str]:
    """The whole graph, reshaped to the image's static shape, compiled with OpenVINO's defaults."""
    import io

    import openvino as ov

    from inference.graphs import whole_model

    core = ov.Core()
    model = core.read_model(io.BytesIO(whole_model(state, align_corners=align_corners)))
    model.reshape([1, 3, *shape])
    # Only the thread count is set (as every variant gets it); f32 also pins the precision.
    config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = {ov.Type.bf16: "bf16", ov.Type.f32: "fp32", ov.Type.f16: "fp16"}.get(hint, str(hint))

    def run(rgb: np.ndarray) -> np.ndarray:
        request.infer({0: _to_input(rgb)})
        return _to_rgb(request.get_output_tensor(0).data[0])

    return run, precision


def _ort_whole(state: dict[str, np.ndarray], threads: int, align_corners: bool) -> Runner:
    import onnxruntime as ort

    from inference.graphs import whole_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(whole_model(state, align_corners=align_corners), options)
    return lambda rgb: _to_rgb(session.run(None, {"x": _to_input(rgb)})[0][0])


def _eager(state: dict[str, np.ndarray], threads: int, align_corners: bool) -> Runner:
    import torch

    from inference.model import Generator

    torch.set_num_threads(threads)
    net = Generator().eval()
    net.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()}, strict=True)

    def run_eager(rgb: np.ndarray) -> np.ndarray:
        # The reference test script: to_tensor * 2 - 1, NCHW forward under no_grad, back to 8 bits.
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 * 2 - 1
        with torch.no_grad():
            out = net(x, align_corners=align_corners)
        return np.asarray(((out.clip(-1, 1) * 0.5 + 0.5) * 255).round()[0].permute(1, 2, 0).byte().numpy())

    return run_eager


def _matmul_gflops(threads: int) -> float:
    """Median of three 4096x4096 float32 matmuls (torch's BLAS), after one warm-up."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.rand(MATMUL_N, MATMUL_N), torch.rand(MATMUL_N, MATMUL_N)
    torch.mm(a, b)
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * MATMUL_N**3 / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates)


def _say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
