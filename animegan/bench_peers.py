"""The peers `animegan bench` measures the engine against, each what a user would set up.

- `openvino`: the exported generator (whole graph, static shape) compiled with OpenVINO's
  defaults (no property set: bf16 where the CPU has it); `openvino-f32` pins f32.
- `openvino-int8`: the same after NNCF's post-training quantization with its default settings,
  calibrated on the photos given (`--photos`), each resized to the image's size.
- `ort-whole`: the whole graph on ONNX Runtime; `eager`: plain eager torch (NCHW, no_grad).

Each returns a function from an (H, W, 3) uint8 image to its stylized (H, W, 3) uint8 image.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

MATMUL_N = 4096
Runner = Callable[[np.ndarray], np.ndarray]


def to_input(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255) * 2 - 1)


def to_rgb(y: np.ndarray) -> np.ndarray:
    return np.asarray(np.round((np.clip(y, -1, 1) * 0.5 + 0.5) * 255).astype(np.uint8).transpose(1, 2, 0))


def openvino_whole(
    state: dict[str, np.ndarray],
    threads: int,
    align_corners: bool,
    shape: tuple[int, int],
    *,
    f32: bool = False,
    calibration: Sequence[np.ndarray] = (),
) -> tuple[Runner, str]:
    """The whole graph, reshaped to the image's static shape, compiled with OpenVINO's defaults
    (int8 when `calibration` images are given: NNCF's default post-training quantization)."""
    import openvino as ov

    from inference.graphs import whole_model

    core = ov.Core()
    model = core.read_model(io.BytesIO(whole_model(state, align_corners=align_corners)))
    model.reshape([1, 3, *shape])
    if calibration:
        import nncf

        model = nncf.quantize(model, nncf.Dataset([to_input(rgb) for rgb in calibration]))
    from inference.precision import cpu_flags, has_native_bf16

    # Only the thread count is set (as every variant gets it); f32 also pins the precision. Under
    # an ISA cap without bf16 (an older CPU, `--max-isa`) f32 is what OpenVINO's defaults pick there
    # (it reads the real CPU's flags, and its kernels stop on the cap).
    config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads}
    if f32 or not has_native_bf16(cpu_flags()):
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = {ov.Type.bf16: "bf16", ov.Type.f32: "fp32", ov.Type.f16: "fp16"}.get(hint, str(hint))

    def run(rgb: np.ndarray) -> np.ndarray:
        request.infer({0: to_input(rgb)})
        return to_rgb(request.get_output_tensor(0).data[0])

    return run, f"int8 + {precision}" if calibration else precision


def ort_whole(state: dict[str, np.ndarray], threads: int, align_corners: bool) -> Runner:
    import onnxruntime as ort

    from inference.graphs import whole_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(whole_model(state, align_corners=align_corners), options)
    return lambda rgb: to_rgb(session.run(None, {"x": to_input(rgb)})[0][0])


def eager(state: dict[str, np.ndarray], threads: int, align_corners: bool) -> Runner:
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


def matmul_gflops(threads: int) -> float:
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
