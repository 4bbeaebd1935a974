"""One `animegan bench` variant in its own process: load it, warm it up, answer commands on stdin.

The parent (`animegan.bench`) starts one such process per variant (latency mode) or several
pinned single-thread ones (throughput mode) and speaks a line protocol: `run` (one image, answers
its seconds), `output` (the last result, for its PSNR), `matmul` (the BLAS peak, in the eager
process), `report` (peak RSS, precision), anything else ends the process. Variants:

- `engine`: the banded engine in the precision asked for (`--precision`, auto by default);
  `engine-fp32`, `engine-bf16`, `engine-int8`: the same with the precision fixed (on the native
  kernels when built); `engine-fp32-onnxruntime`, `engine-bf16-openvino`: fp32 on ONNX Runtime's
  and bf16 on OpenVINO's band graphs (the engine's fallbacks without the native kernels).
- the peers of `animegan.bench_peers`: `openvino` (whole graph, OpenVINO's defaults),
  `openvino-f32`, `openvino-int8` (NNCF's default post-training quantization, calibrated on the
  photos), `ort-whole`, `eager`.

The image is the first of `--photos` (resized and cropped to the size), else a synthetic one.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import psutil

from animegan import bench_peers
from animegan.bench_peers import Runner

VARIANTS = (
    "engine",
    "engine-fp32",
    "engine-bf16",
    "engine-int8",
    "engine-fp32-onnxruntime",
    "engine-bf16-openvino",
    "openvino",
    "openvino-f32",
    "openvino-int8",
    "ort-whole",
    "eager",
)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


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


def photo_files(folder: Path) -> list[Path]:
    """The photos of a folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())


def fitted(path: Path, width: int, height: int) -> np.ndarray:
    """A photo scaled to cover width x height, then cropped to it (centre)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    scale = max(width / rgb.width, height / rgb.height)
    size = (max(width, round(rgb.width * scale)), max(height, round(rgb.height * scale)))
    rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(rgb.crop((left, top, left + width, top + height)))


def encode_output(rgb: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(rgb).tobytes(), 1)).decode()


def decode_output(text: str, width: int, height: int) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), np.uint8).reshape(height, width, 3)


def serve(
    variant: str,
    width: int,
    height: int,
    threads: int,
    weights: str,
    align_corners: bool,
    precision: str,
    photos: Path | None = None,
) -> int:
    """Loads one variant, warms it up, then answers `run`, `output`, `matmul` and `report` lines on stdin."""
    _keep_stdout_for_answers()
    files = photo_files(photos) if photos is not None else []
    rgb = fitted(files[0], width, height) if files else test_image(width, height)
    calibration = [fitted(path, width, height) for path in files] if variant == "openvino-int8" else []
    if variant == "openvino-int8" and not calibration:
        raise SystemExit("openvino-int8 needs --photos DIR: NNCF calibrates on them")
    rss_start = rss()
    if weights == "random":
        state = random_state_dict()
    else:
        from inference.weights import load_state_dict

        state = load_state_dict(Path(weights))
    run, used_precision = load(variant, state, threads, align_corners, precision, (height, width), calibration)
    del state, calibration
    rss_loaded, peak_loading = rss(), peak_rss()
    reset_peak_rss()  # the peak reported is that of a loaded process running jobs
    out = run(rgb)  # warm-up: first-call allocations and lazy initialisation are not latency
    ready = {"ready": True, "rss_start": rss_start, "rss_loaded": rss_loaded, "peak_loading": peak_loading}
    _say(json.dumps({**ready, "precision": used_precision, "cpus": sorted(os.sched_getaffinity(0))}))
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            cpu, started = time.process_time(), time.perf_counter()
            out = run(rgb)
            result: dict[str, object] = {
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
            }
        elif command == "output":
            result = {"output": encode_output(out)}
        elif command == "matmul":
            result = {"gflops": bench_peers.matmul_gflops(threads)}
        elif command == "report":
            peak = peak_rss()
            _release_memory(run)  # what a worker settles to between jobs, not the last job's kept bands
            result = {"peak_rss": peak, "rss_idle": rss(), "torch": "torch" in sys.modules}
        else:
            return 0
        _say(json.dumps(result))
    return 0


def _release_memory(run: Runner) -> None:
    """An engine keeps its band memory for a moment after a job (the next one reuses it): hand it back now."""
    engine = getattr(run, "__self__", None)
    release = getattr(engine, "release_memory", None)
    if callable(release):
        release()


ENGINE_PRECISIONS = {
    "engine-fp32": "fp32",
    "engine-bf16": "bf16",
    "engine-int8": "int8",
    "engine-fp32-onnxruntime": "fp32",
    "engine-bf16-openvino": "bf16",
}


def load(
    variant: str,
    state: dict[str, np.ndarray],
    threads: int,
    align_corners: bool,
    precision: str,
    shape: tuple[int, int],
    calibration: list[np.ndarray] | None = None,
) -> tuple[Runner, str]:
    """The variant's run function and the precision it computes in."""
    if variant.startswith("engine"):
        from inference.engine import Engine
        from inference.runtime import BandRuntime

        graphs: BandRuntime | None = None
        if variant == "engine-bf16-openvino":
            from inference.runtime_openvino import OpenVinoRuntime

            graphs = OpenVinoRuntime(threads)
        elif variant == "engine-fp32-onnxruntime":
            from inference.runtime_ort import OrtRuntime

            graphs = OrtRuntime()
        wanted = ENGINE_PRECISIONS.get(variant, precision)
        engine = Engine(state, align_corners=align_corners, threads=threads, precision=wanted, runtime=graphs)
        return engine.run, f"{engine.precision} ({engine.runtime_name})"
    if variant.startswith("openvino"):
        return bench_peers.openvino_whole(
            state, threads, align_corners, shape, f32=variant == "openvino-f32", calibration=calibration or ()
        )
    if variant == "ort-whole":
        return bench_peers.ort_whole(state, threads, align_corners), "fp32"
    return bench_peers.eager(state, threads, align_corners), "fp32"


_protocol = sys.stdout


def _keep_stdout_for_answers() -> None:
    """Answers go to the original stdout; anything a library prints (NNCF's progress bars, C code
    writing to fd 1) goes to stderr instead of into the parent's line protocol."""
    global _protocol
    _protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _say(line: str = "") -> None:
    _protocol.write(line + "\n")
    _protocol.flush()
