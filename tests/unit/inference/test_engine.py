"""The banded engine against the plain fp32 torch forward, with the real Hayao weights.

fp32 (the native oneDNN kernels, and ONNX Runtime's band graphs, the fallback) must match the
reference to within 1 LSB; bf16 (on the native kernels and on OpenVINO's band graphs) and int8
(native only) are tested on the CPU at hand: where it has the units, the path must be faithful,
bit-identical for any band height and thread count; where it has not, asking for it must be
refused and auto must fall back. Both branches assert: a machine never silently skips them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from inference.engine import Engine
from inference.errors import PrecisionError
from inference.model import Generator
from inference.precision import Precision, bf16_runtime_installed, cpu_flags, has_int8_units, has_native_bf16
from inference.runtime_ort import OrtRuntime

MIN_PSNR_DB = 45.0
MIN_INT8_PSNR_DB = 40.0
NATIVE_BF16 = has_native_bf16(cpu_flags()) and bf16_runtime_installed()
INT8_UNITS = has_int8_units(cpu_flags())


@pytest.fixture(scope="module")
def state_dict(hayao_weights: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(hayao_weights, map_location="cpu", weights_only=True)
    return state


@pytest.fixture(scope="module")
def numpy_state(state_dict: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in state_dict.items()}


@pytest.fixture(scope="module")
def reference(state_dict: dict[str, torch.Tensor]) -> Generator:
    net = Generator().eval()
    net.load_state_dict(state_dict, strict=True)
    return net


@pytest.fixture(scope="module")
def engines(numpy_state: dict[str, np.ndarray]) -> dict[bool, Engine]:
    return {mode: Engine(numpy_state, align_corners=mode, threads=2) for mode in (True, False)}


def reference_forward(net: Generator, rgb: np.ndarray, align_corners: bool) -> np.ndarray:
    """The reference pipeline: to_tensor * 2 - 1, forward, clip(-1, 1) * 0.5 + 0.5, to 8 bits."""
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        y = net(x, align_corners=align_corners)
    out = ((y.clip(-1, 1) * 0.5 + 0.5) * 255).round()[0].permute(1, 2, 0)
    return np.asarray(out.numpy(), dtype=np.uint8)


def reference_same_size(net: Generator, rgb: np.ndarray, align_corners: bool) -> np.ndarray:
    """The engine's contract: reflect-pad to multiples of 4 (align_corners=False), run, crop back."""
    if align_corners:
        return reference_forward(net, rgb, True)
    height, width = rgb.shape[:2]
    padded = np.pad(rgb, ((0, -height % 4), (0, -width % 4), (0, 0)), mode="reflect")
    return reference_forward(net, padded, False)[:height, :width]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def sample_photos(samples_dir: Path, max_side: int = 256) -> list[tuple[str, np.ndarray]]:
    photos = []
    for path in sorted(samples_dir.glob("*.jpg")):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            photos.append((path.name, np.asarray(rgb)))
    return photos


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus noise: enough structure for every layer to carry signal."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / max(width, 1), y / max(height, 1), (x + y) / max(height + width, 1)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("align_corners", [True, False])
def test_every_sample_photo_matches_the_torch_reference(
    samples_dir: Path, reference: Generator, engines: dict[bool, Engine], align_corners: bool
) -> None:
    photos = sample_photos(samples_dir)
    assert len(photos) >= 6
    for name, rgb in photos:
        out = engines[align_corners].run(rgb)
        expected = reference_same_size(reference, rgb, align_corners)
        assert out.shape == rgb.shape, name
        assert out.dtype == np.uint8
        assert psnr(out, expected) >= MIN_PSNR_DB, name


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("size", [(61, 97), (97, 61), (64, 96), (9, 13)])
def test_odd_sizes_come_back_the_same_size_and_match_the_reference(
    reference: Generator, engines: dict[bool, Engine], align_corners: bool, size: tuple[int, int]
) -> None:
    rgb = photo_like(*size)
    out = engines[align_corners].run(rgb)
    assert out.shape == rgb.shape
    assert psnr(out, reference_same_size(reference, rgb, align_corners)) >= MIN_PSNR_DB


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 1000), (1000, 3), (5, 7)])
def test_images_below_the_network_minimum_are_padded_and_cropped_back(
    engines: dict[bool, Engine], align_corners: bool, size: tuple[int, int]
) -> None:
    rgb = photo_like(*size)
    out = engines[align_corners].run(rgb)
    assert out.shape == rgb.shape
    assert out.dtype == np.uint8


def test_a_flat_image_gives_a_flat_result(engines: dict[bool, Engine]) -> None:
    # Edge padding of a constant image is constant: the tiny path must not invent structure.
    out = engines[True].run(np.full((1, 1, 3), 120, dtype=np.uint8))
    bigger = engines[True].run(np.full((8, 8, 3), 120, dtype=np.uint8))
    assert np.abs(out[0, 0].astype(int) - bigger.astype(int)).max() <= 1


@pytest.mark.parametrize("align_corners", [True, False])
def test_band_boundaries_are_invisible(numpy_state: dict[str, np.ndarray], align_corners: bool) -> None:
    rgb = photo_like(150, 92, seed=1)
    single = Engine(numpy_state, align_corners=align_corners, band_rows=10_000).run(rgb)
    # 3-row bands: dozens of bands per layer, halos of every width, stride-2 and upsample seams.
    banded = Engine(numpy_state, align_corners=align_corners, band_rows=3).run(rgb)
    diff = np.abs(single.astype(int) - banded.astype(int))
    # oneDNN's f32 kernels order their sums by band shape (last bits; bf16 and int8 do not): nothing more.
    assert diff.max() <= 1
    assert diff.mean() < 0.01
    assert psnr(single, banded) >= 60


@pytest.mark.parametrize("align_corners", [True, False])
def test_fp32_on_onnx_runtime_band_graphs_the_fallback_matches_the_reference(
    samples_dir: Path, numpy_state: dict[str, np.ndarray], reference: Generator, align_corners: bool
) -> None:
    engine = Engine(numpy_state, align_corners=align_corners, threads=2, runtime=OrtRuntime())
    assert engine.runtime_name == "onnxruntime"
    for name, rgb in sample_photos(samples_dir, max_side=128)[:3]:
        assert psnr(engine.run(rgb), reference_same_size(reference, rgb, align_corners)) >= MIN_PSNR_DB, name


def test_band_threads_give_bit_identical_results(numpy_state: dict[str, np.ndarray]) -> None:
    rgb = photo_like(120, 80, seed=2)
    one = Engine(numpy_state, align_corners=True, threads=1, band_rows=8).run(rgb)
    two = Engine(numpy_state, align_corners=True, threads=2, band_rows=8).run(rgb)
    assert np.array_equal(one, two)


def test_repeated_runs_are_deterministic(engines: dict[bool, Engine]) -> None:
    rgb = photo_like(70, 50, seed=3)
    assert np.array_equal(engines[False].run(rgb), engines[False].run(rgb))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), dtype=np.uint8),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((8, 8, 3), dtype=np.float32),
        np.zeros((0, 8, 3), dtype=np.uint8),
    ],
)
def test_rejects_arrays_that_are_not_rgb8_images(engines: dict[bool, Engine], bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"uint8|empty"):
        engines[True].run(bad)


def test_rejects_bad_settings(numpy_state: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="threads"):
        Engine(numpy_state, align_corners=True, threads=0)
    with pytest.raises(ValueError, match="band_rows"):
        Engine(numpy_state, align_corners=True, band_rows=0)


def test_bench_reports_the_engine_from_a_fresh_torch_free_process(
    hayao_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from animegan import bench

    args = ["--sizes", "64x48", "--repeats", "1", "--threads", "1", "--variants", "engine"]
    report = tmp_path / "bench.json"
    assert bench.main([*args, "--weights", str(hayao_weights), "--style", "hayao", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "64x48" in out
    assert "| engine |" in out
    assert "align_corners=False" in out
    engine = json.loads(report.read_text())["results"][0]["variants"]["engine"]
    assert engine["torch"] is False
    assert engine["peak_rss"] > engine["rss_loaded"] > 0


def bf16_engine(state: dict[str, np.ndarray], runtime: str, threads: int = 1, **options: Any) -> Engine:
    """A bf16 engine on the native kernels (the default here) or on OpenVINO's band graphs."""
    graphs = None
    if runtime == "openvino":
        from inference.runtime_openvino import OpenVinoRuntime

        graphs = OpenVinoRuntime(threads)
    engine = Engine(state, threads=threads, precision="bf16", runtime=graphs, **options)
    assert engine.runtime_name == runtime
    return engine


BF16_RUNTIMES = ["onednn", "openvino"]


def resized_sample(samples_dir: Path, index: int, size: tuple[int, int]) -> np.ndarray:
    """Sample photo `index` (in name order) resized to `size` (width, height)."""
    with Image.open(sorted(samples_dir.glob("*.jpg"))[index]) as image:
        return np.asarray(image.convert("RGB").resize(size))


if NATIVE_BF16:

    @pytest.mark.parametrize("runtime", BF16_RUNTIMES)
    @pytest.mark.parametrize("align_corners", [True, False])
    def test_bf16_matches_the_fp32_torch_reference_on_every_sample(
        samples_dir: Path, numpy_state: dict[str, np.ndarray], reference: Generator, align_corners: bool, runtime: str
    ) -> None:
        engine = bf16_engine(numpy_state, runtime, threads=2, align_corners=align_corners)
        assert engine.precision is Precision.BF16
        samples = sample_photos(samples_dir)
        assert len(samples) >= 6
        for name, rgb in samples:
            out = engine.run(rgb)
            assert out.shape == rgb.shape, name
            assert psnr(out, reference_same_size(reference, rgb, align_corners)) >= MIN_PSNR_DB, name

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_native_bf16_bands_are_bit_identical_to_one_band(
        samples_dir: Path, numpy_state: dict[str, np.ndarray], align_corners: bool
    ) -> None:
        # Row-ordered statistics and shape-independent conv kernels: the band split changes nothing.
        rgb = resized_sample(samples_dir, 1, (100, 172))
        single = bf16_engine(numpy_state, "onednn", align_corners=align_corners, band_rows=10_000).run(rgb)
        for rows in (4, 7, 13):
            banded = bf16_engine(numpy_state, "onednn", align_corners=align_corners, band_rows=rows).run(rgb)
            assert np.array_equal(single, banded), rows

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_openvino_bf16_band_seams_are_invisible(
        samples_dir: Path, numpy_state: dict[str, np.ndarray], align_corners: bool
    ) -> None:
        rgb = resized_sample(samples_dir, 0, (96, 160))
        single = bf16_engine(numpy_state, "openvino", align_corners=align_corners, band_rows=10_000).run(rgb)
        rows = 6
        banded = bf16_engine(numpy_state, "openvino", align_corners=align_corners, band_rows=rows).run(rgb)
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

    @pytest.mark.parametrize("runtime", BF16_RUNTIMES)
    def test_bf16_results_do_not_depend_on_the_thread_count(numpy_state: dict[str, np.ndarray], runtime: str) -> None:
        rgb = np.asarray(Image.new("RGB", (80, 120), (90, 140, 200)).effect_spread(6))
        one = bf16_engine(numpy_state, runtime, threads=1, align_corners=True, band_rows=8).run(rgb)
        two = bf16_engine(numpy_state, runtime, threads=2, align_corners=True, band_rows=8).run(rgb)
        assert np.array_equal(one, two)

    def test_auto_runs_bf16_here_with_maps_stored_as_bf16(numpy_state: dict[str, np.ndarray]) -> None:
        engine = Engine(numpy_state, align_corners=False, precision="auto")
        assert engine.precision is Precision.BF16
        assert engine._executor.store == "bf16"  # type: ignore[union-attr]  # two bytes per value between layers
        out = engine.run(np.full((40, 40, 3), 128, dtype=np.uint8))
        assert out.shape == (40, 40, 3)

else:

    def test_bf16_is_refused_on_this_cpu_and_auto_falls_back(numpy_state: dict[str, np.ndarray]) -> None:
        with pytest.raises(PrecisionError, match="native bf16"):
            Engine(numpy_state, align_corners=True, precision="bf16")
        engine = Engine(numpy_state, align_corners=True, precision="auto")
        assert engine.precision is (Precision.INT8 if INT8_UNITS else Precision.FP32)
        assert engine.runtime_name == "onednn"


NATIVE_PRECISIONS = ["fp32", *(["bf16"] if NATIVE_BF16 else []), *(["int8"] if INT8_UNITS else [])]


@pytest.mark.parametrize("precision", NATIVE_PRECISIONS)
def test_a_native_engine_loads_no_graph_runtime(hayao_weights: Path, precision: str) -> None:
    # The native kernels need neither ONNX (Runtime) nor OpenVINO (nor torch): a lean worker.
    code = (
        "import sys, numpy as np\n"
        "from inference.pipeline import Stylizer\n"
        f"s = Stylizer.load('hayao', weights_path={str(hayao_weights)!r}, precision={precision!r})\n"
        "s.engine.run(np.zeros((16, 16, 3), np.uint8))\n"
        "loaded = {'onnx', 'onnxruntime', 'openvino', 'torch'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
        "print(s.engine.precision, s.engine.runtime_name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [precision, "onednn"]


if INT8_UNITS:

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_int8_is_within_40_db_of_the_fp32_reference_on_every_sample(
        samples_dir: Path, numpy_state: dict[str, np.ndarray], reference: Generator, align_corners: bool
    ) -> None:
        engine = Engine(numpy_state, align_corners=align_corners, threads=2, precision="int8")
        assert (engine.precision, engine.runtime_name) == (Precision.INT8, "onednn")
        samples = sample_photos(samples_dir)
        assert len(samples) >= 6
        for name, rgb in samples:
            out = engine.run(rgb)
            expected = reference_same_size(reference, rgb, align_corners)
            assert out.shape == rgb.shape, name
            # Measured 45.4-47.0 dB at this size, largest difference 18-20 levels (README: fidelity).
            assert psnr(out, expected) >= MIN_INT8_PSNR_DB, name
            assert np.abs(out.astype(int) - expected).max() <= 40, name

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_int8_bands_are_bit_identical_to_one_band(
        samples_dir: Path, numpy_state: dict[str, np.ndarray], align_corners: bool
    ) -> None:
        # s32 sums are exact, the quantization comes from per-row figures: the split changes nothing.
        rgb = resized_sample(samples_dir, 1, (100, 172))
        single = Engine(numpy_state, align_corners=align_corners, precision="int8", band_rows=10_000).run(rgb)
        for rows in (4, 7, 13):
            banded = Engine(numpy_state, align_corners=align_corners, precision="int8", band_rows=rows).run(rgb)
            assert np.array_equal(single, banded), rows

    def test_int8_results_do_not_depend_on_the_thread_count(numpy_state: dict[str, np.ndarray]) -> None:
        rgb = np.asarray(Image.new("RGB", (80, 120), (90, 140, 200)).effect_spread(6))
        one = Engine(numpy_state, align_corners=True, threads=1, precision="int8", band_rows=8).run(rgb)
        two = Engine(numpy_state, align_corners=True, threads=2, precision="int8", band_rows=8).run(rgb)
        assert np.array_equal(one, two)

else:

    def test_int8_is_refused_on_this_cpu(numpy_state: dict[str, np.ndarray]) -> None:
        with pytest.raises(PrecisionError, match="int8 dot-product units"):
            Engine(numpy_state, align_corners=True, precision="int8")


def test_band_memory_is_kept_for_the_next_job_and_handed_back_when_idle(
    numpy_state: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from inference import engine as engine_module

    monkeypatch.setattr(engine_module, "RELEASE_AFTER_S", 0.3)
    engine = Engine(numpy_state, align_corners=True)
    released: list[float] = []
    end_job = engine._executor.end_job

    def spy() -> None:
        released.append(time.monotonic())
        end_job()

    monkeypatch.setattr(engine._executor, "end_job", spy)
    rgb = photo_like(40, 56)
    first = engine.run(rgb)
    assert np.array_equal(engine.run(rgb), first)  # back to back: the second job reused the first's memory
    assert released == []
    deadline = time.monotonic() + 10
    while not released and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(released) == 1  # idle: handed back once
    engine.release_memory()
    assert len(released) == 2
    assert np.array_equal(engine.run(rgb), first)
    engine.close()
