"""The banded ONNX Runtime engine against the plain fp32 torch forward, with the real Hayao weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.engine import Engine
from inference.model import Generator

MIN_PSNR_DB = 45.0


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
    assert diff.max() <= 1  # float summation order differs; nothing more
    assert diff.mean() < 0.01
    assert psnr(single, banded) >= 60


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

    from inference import bench

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
