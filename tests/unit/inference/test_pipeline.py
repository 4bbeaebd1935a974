"""Stylizer: loads a style once, maps PIL images to same-size images, and never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.errors import WeightsError
from inference.pipeline import Stylizer

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def hayao(hayao_weights: Path) -> Stylizer:
    return Stylizer.load("hayao", weights_path=hayao_weights, threads=2)


def gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB").convert(mode)


def test_load_reports_style_mode_and_threads(hayao: Stylizer) -> None:
    assert hayao.style == "hayao"
    assert hayao.align_corners is False  # the registry's default for hayao (the reference test script's mode)
    assert hayao.threads == 2


def test_align_corners_can_be_overridden(hayao_weights: Path) -> None:
    stylizer = Stylizer.load("hayao", weights_path=hayao_weights, align_corners=True)
    assert stylizer.align_corners is True
    assert stylizer.threads == 1


@pytest.mark.parametrize("size", [(64, 64), (97, 61), (1, 1), (3, 1000)])
def test_stylize_returns_an_rgb_image_of_the_same_size(hayao: Stylizer, size: tuple[int, int]) -> None:
    out = hayao.stylize(gradient(*size))
    assert out.size == size
    assert out.mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "CMYK"])
def test_any_pil_mode_is_converted_to_rgb_first(hayao: Stylizer, mode: str) -> None:
    image = gradient(40, 30, mode)
    out = hayao.stylize(image)
    assert out.size == (40, 30)
    assert out.mode == "RGB"
    expected = hayao.stylize(image.convert("RGB"))
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_the_result_is_stylised_not_the_input(hayao: Stylizer) -> None:
    image = gradient(80, 60)
    out = np.asarray(hayao.stylize(image)).astype(int)
    assert np.abs(out - np.asarray(image).astype(int)).mean() > 5


def test_missing_weights_raise_a_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError):
        Stylizer.load("hayao", weights_path=tmp_path / "missing.pt")
    with pytest.raises(WeightsError):
        Stylizer.load("hayao", weights_dir=tmp_path, cache_dir=tmp_path)


def test_the_pipeline_path_never_imports_torch(hayao_weights: Path) -> None:
    script = f"""
import json, sys
from PIL import Image
from inference.pipeline import Stylizer
stylizer = Stylizer.load("hayao", weights_path={str(hayao_weights)!r})
out = stylizer.stylize(Image.new("RGB", (64, 64), (120, 90, 60)))
print(json.dumps({{"size": list(out.size), "torch": "torch" in sys.modules}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"size": [64, 64], "torch": False}
