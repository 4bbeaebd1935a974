"""Layer by layer: every map the engine traces against the torch reference's module of the same name.

A fidelity failure at the output says that something drifts; this test says where: it names the
first layer whose map falls below its bound (relative error and PSNR over the reference map's range).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference import bands, network
from inference.engine import Engine
from inference.model import Generator

MAX_RELATIVE_ERROR = 2e-5  # fp32 engine: about 1e-6 measured
MIN_LAYER_PSNR_DB = 115.0  # fp32 engine: 134-153 dB measured


@pytest.fixture(scope="module")
def torch_state(hayao_weights: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(hayao_weights, map_location="cpu", weights_only=True)
    return state


@pytest.fixture(scope="module")
def photo(samples_dir: Path) -> np.ndarray:
    path = sorted(samples_dir.glob("*.jpg"))[0]
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        rgb.thumbnail((256, 256), Image.Resampling.LANCZOS)
        array = np.asarray(rgb)
    # Sides that are multiples of 8: the engine pads nothing, so its maps are the reference's.
    return np.ascontiguousarray(array[: array.shape[0] // 8 * 8, : array.shape[1] // 8 * 8])


def reference_maps(state: dict[str, torch.Tensor], rgb: np.ndarray, align_corners: bool) -> dict[str, np.ndarray]:
    net = Generator().eval()
    net.load_state_dict(state, strict=True)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    with torch.no_grad():
        return {name: out[0].numpy().copy() for name, out in net.trace(x, align_corners=align_corners)}


def engine_maps(state: dict[str, torch.Tensor], rgb: np.ndarray, align_corners: bool) -> list[tuple[str, np.ndarray]]:
    engine = Engine({k: v.numpy() for k, v in state.items()}, align_corners=align_corners, threads=2)
    maps: list[tuple[str, np.ndarray]] = []
    engine.run(rgb, trace=lambda name, value: maps.append((name, value)))
    engine.close()
    return maps


def layer_errors(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(relative L2 error, PSNR in dB over the expected map's value range)."""
    diff = got.astype(np.float64) - expected.astype(np.float64)
    relative = float(np.linalg.norm(diff) / max(float(np.linalg.norm(expected)), 1e-30))
    mse = float(np.mean(diff**2))
    peak = float(expected.max() - expected.min())
    return relative, float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


@pytest.mark.parametrize("align_corners", [True, False])
def test_every_traced_layer_matches_the_reference_module_output(
    torch_state: dict[str, torch.Tensor], photo: np.ndarray, align_corners: bool
) -> None:
    expected = reference_maps(torch_state, photo, align_corners)
    traced = engine_maps(torch_state, photo, align_corners)
    names = [name for name, _ in traced]
    # Every conv but the head's first and the output conv, every block output, in network order.
    assert names == [name for name in expected if name in names]
    assert len(names) >= 20
    assert "block_c.1" in names
    assert "block_e.2" in names
    report = []
    first_bad = None
    for name, got in traced:
        assert got.shape == expected[name].shape, name
        relative, psnr = layer_errors(got, expected[name])
        report.append(f"{name}: relative error {relative:.2e}, {psnr:.1f} dB")
        if first_bad is None and (relative > MAX_RELATIVE_ERROR or psnr < MIN_LAYER_PSNR_DB):
            first_bad = name
    assert first_bad is None, f"first layer that drifts: {first_bad}\n" + "\n".join(report)


def test_tracing_off_assembles_no_map(
    torch_state: dict[str, torch.Tensor], photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: bands.Map) -> np.ndarray:
        raise AssertionError("a whole map was assembled without a trace")

    monkeypatch.setattr(bands.Map, "whole", refuse)
    engine = Engine({k: v.numpy() for k, v in torch_state.items()}, align_corners=True)
    assert engine.run(photo[:32, :40]).shape == (32, 40, 3)


def test_the_reference_traces_every_module_of_the_table() -> None:
    net = Generator().eval()
    with torch.no_grad():
        names = [name for name, _ in net.trace(torch.zeros(1, 3, 16, 16))]
    top_level = [entry.name for entry in network.LAYERS]
    assert [name for name in names if name in top_level] == top_level
    assert "block_c.2.layers.1" in names
