"""The bf16 engine (OpenVINO, bf16 maps) against the fp32 torch reference, on the CPU at hand.

Where the CPU has native bf16 the bf16 path must be faithful, seamless and thread-count
independent; where it has not, asking for bf16 must be refused and auto must fall back to fp32.
Both branches assert: a machine never silently skips this file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.engine import Engine
from inference.errors import PrecisionError
from inference.model import Generator
from inference.precision import Precision, cpu_flags, has_native_bf16, openvino_installed

MIN_PSNR_DB = 45.0
NATIVE = has_native_bf16(cpu_flags()) and openvino_installed()


@pytest.fixture(scope="module")
def numpy_state(hayao_weights: Path) -> dict[str, np.ndarray]:
    state = torch.load(hayao_weights, map_location="cpu", weights_only=True)
    return {key: value.numpy() for key, value in state.items()}


@pytest.fixture(scope="module")
def reference(numpy_state: dict[str, np.ndarray]) -> Generator:
    net = Generator().eval()
    net.load_state_dict({key: torch.from_numpy(value) for key, value in numpy_state.items()}, strict=True)
    return net


def reference_same_size(net: Generator, rgb: np.ndarray, align_corners: bool) -> np.ndarray:
    height, width = rgb.shape[:2]
    if not align_corners:
        rgb = np.pad(rgb, ((0, -height % 4), (0, -width % 4), (0, 0)), mode="reflect")
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        y = net(x, align_corners=align_corners)
    out = ((y.clip(-1, 1) * 0.5 + 0.5) * 255).round()[0].permute(1, 2, 0)
    return np.asarray(out.numpy(), dtype=np.uint8)[:height, :width]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def photos(samples_dir: Path, max_side: int = 256) -> list[tuple[str, np.ndarray]]:
    out = []
    for path in sorted(samples_dir.glob("*.jpg")):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            out.append((path.name, np.asarray(rgb)))
    return out


if NATIVE:

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_bf16_matches_the_fp32_torch_reference_on_every_sample(
        samples_dir: Path, numpy_state: dict[str, np.ndarray], reference: Generator, align_corners: bool
    ) -> None:
        engine = Engine(numpy_state, align_corners=align_corners, threads=2, precision="bf16")
        assert engine.precision is Precision.BF16
        assert engine.runtime_name == "openvino"
        samples = photos(samples_dir)
        assert len(samples) >= 6
        for name, rgb in samples:
            out = engine.run(rgb)
            assert out.shape == rgb.shape, name
            assert psnr(out, reference_same_size(reference, rgb, align_corners)) >= MIN_PSNR_DB, name

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_bf16_band_seams_are_invisible(
        samples_dir: Path, numpy_state: dict[str, np.ndarray], align_corners: bool
    ) -> None:
        with Image.open(sorted(samples_dir.glob("*.jpg"))[0]) as image:
            rgb = np.asarray(image.convert("RGB").resize((96, 160)))
        single = Engine(numpy_state, align_corners=align_corners, band_rows=10_000, precision="bf16").run(rgb)
        rows = 6
        banded = Engine(numpy_state, align_corners=align_corners, band_rows=rows, precision="bf16").run(rgb)
        # Band shapes change OpenVINO's kernel blocking, and bf16 rounding turns the last-bit differences
        # into noise of a fraction of an 8-bit step spread over the whole image (measured 56-57 dB on AMX,
        # fp32: 95 dB); seams would show as rows with larger errors at the band edges.
        assert psnr(single, banded) >= 52
        assert np.abs(single.astype(int) - banded.astype(int)).max() <= 8
        # No periodic row error: rows next to a band boundary (at any level) are no worse than the rest.
        row_error = np.abs(single.astype(float) - banded.astype(float)).mean(axis=(1, 2))
        seams = np.zeros(len(row_error), dtype=bool)
        for scale in (1, 2, 4):
            for edge in range(rows * scale, len(row_error), rows * scale):
                seams[edge - 1 : edge + 1] = True
        assert row_error[seams].mean() <= 3 * row_error[~seams].mean() + 0.02

    def test_bf16_results_do_not_depend_on_the_thread_count(numpy_state: dict[str, np.ndarray]) -> None:
        rgb = np.asarray(Image.new("RGB", (80, 120), (90, 140, 200)).effect_spread(6))
        one = Engine(numpy_state, align_corners=True, threads=1, band_rows=8, precision="bf16").run(rgb)
        two = Engine(numpy_state, align_corners=True, threads=2, band_rows=8, precision="bf16").run(rgb)
        assert np.array_equal(one, two)

    def test_auto_runs_bf16_here_with_maps_stored_as_bf16(numpy_state: dict[str, np.ndarray]) -> None:
        engine = Engine(numpy_state, align_corners=False, precision="auto")
        assert engine.precision is Precision.BF16
        assert engine._pool.dtype == np.uint16  # two bytes per value between layers
        out = engine.run(np.full((40, 40, 3), 128, dtype=np.uint8))
        assert out.shape == (40, 40, 3)

    def test_a_bf16_engine_never_loads_onnx_runtime(hayao_weights: Path) -> None:
        code = (
            "import sys, numpy as np\n"
            "from inference.pipeline import Stylizer\n"
            f"s = Stylizer.load('hayao', weights_path={str(hayao_weights)!r}, precision='bf16')\n"
            "s.engine.run(np.zeros((16, 16, 3), np.uint8))\n"
            "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
            "print(s.engine.precision, s.engine.runtime_name)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["bf16", "openvino"]

else:

    def test_bf16_is_refused_on_this_cpu_and_auto_falls_back_to_fp32(numpy_state: dict[str, np.ndarray]) -> None:
        with pytest.raises(PrecisionError, match="native bf16"):
            Engine(numpy_state, align_corners=True, precision="bf16")
        engine = Engine(numpy_state, align_corners=True, precision="auto")
        assert engine.precision is Precision.FP32
        assert engine.runtime_name == "onnxruntime"
