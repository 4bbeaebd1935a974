"""The reference torch Generator: exact checkpoint layout and the shapes both upsample modes produce."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.model import Generator

STATE_DICT_TSV = Path(__file__).resolve().parents[3].parent / "shared" / "generator-state-dict.tsv"


def published_layout() -> list[tuple[str, tuple[int, ...]]]:
    rows = [line.split("\t") for line in STATE_DICT_TSV.read_text().splitlines() if line.strip()]
    return [(key, tuple(int(n) for n in shape.strip("()").split(",") if n.strip())) for key, shape in rows]


def test_state_dict_keys_and_shapes_match_the_published_checkpoints_in_order() -> None:
    layout = [(key, tuple(value.shape)) for key, value in Generator().state_dict().items()]
    assert layout == published_layout()


def test_parameter_count_is_that_of_animeganv2() -> None:
    assert sum(p.numel() for p in Generator().parameters()) == 2_143_552


def test_real_hayao_checkpoint_loads_strictly(hayao_weights: Path) -> None:
    state = torch.load(hayao_weights, map_location="cpu", weights_only=True)
    result = Generator().load_state_dict(state, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys


@pytest.mark.parametrize(
    ("size", "align_corners", "expected"),
    [
        ((64, 96), True, (64, 96)),
        ((61, 97), True, (61, 97)),  # align_corners resizes to the exact input size
        ((64, 96), False, (64, 96)),
        ((61, 97), False, (60, 96)),  # scale-2 upsampling shrinks sides that are not multiples of 4
    ],
)
def test_output_size_per_upsample_mode(size: tuple[int, int], align_corners: bool, expected: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = Generator().eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, *size) * 2 - 1, align_corners=align_corners)
    assert tuple(out.shape) == (1, 3, *expected)
    assert float(out.abs().max()) <= 1.0  # tanh output


@pytest.mark.parametrize(("size", "align_corners"), [((96, 64), True), ((97, 61), True), ((96, 64), False)])
def test_bench_conv_flop_count_matches_a_hook_count_on_the_model(size: tuple[int, int], align_corners: bool) -> None:
    from animegan.bench import conv_flops

    counted = 0

    def count(module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal counted
        assert isinstance(module, torch.nn.Conv2d)
        kh, kw = module.kernel_size
        counted += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    net = Generator().eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    width, height = size
    with torch.no_grad():
        net(torch.zeros(1, 3, height, width), align_corners=align_corners)
    assert conv_flops(width, height, align_corners) == counted


def test_bench_flop_count_is_about_802_gflop_per_megapixel() -> None:
    from animegan.bench import conv_flops

    assert round(conv_flops(1024, 576, False) / 1e9, 1) == 473.1
    assert 800 < conv_flops(1920, 1080, True) / (1920 * 1080) / 1e3 < 805
