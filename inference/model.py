"""The AnimeGANv2 generator as a torch module: the reference architecture, built from `inference.network`.

Its state dict has exactly the keys and shapes of the public PyTorch checkpoints
(`Generator().load_state_dict(torch.load(path), strict=True)` works). The service does not run
this module: `inference.engine` runs the same network on ONNX Runtime without torch. This module
is the reference that the engine is tested against, and what `animegan bench` compares with.
`Generator.trace` yields every module's output by name, for layer-by-layer comparisons.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from inference import network


def _conv2d(spec: network.Conv) -> nn.Conv2d:
    return nn.Conv2d(
        spec.in_ch, spec.out_ch, spec.kernel, stride=spec.stride, padding=0, groups=spec.groups, bias=spec.bias
    )


class ConvNormLReLU(nn.Sequential):
    """Reflection pad, Conv2d (no padding), GroupNorm(1 group), LeakyReLU(0.2)."""

    def __init__(self, spec: network.Conv) -> None:
        pads = spec.pads if len(set(spec.pads)) > 1 else spec.pads[0]
        super().__init__(
            nn.ReflectionPad2d(pads),
            _conv2d(spec),
            nn.GroupNorm(num_groups=1, num_channels=spec.out_ch, affine=True, eps=network.GN_EPS),
            nn.LeakyReLU(network.LRELU_SLOPE, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: 1x1 expand (x2), depthwise 3x3, 1x1 project, GroupNorm; residual if shapes match."""

    def __init__(self, spec: network.InvertedResBlock) -> None:
        super().__init__()
        self.use_res_connect = spec.residual
        expand, depthwise, project = spec.convs
        self.layers = nn.Sequential(
            ConvNormLReLU(expand),
            ConvNormLReLU(depthwise),
            _conv2d(project),
            nn.GroupNorm(num_groups=1, num_channels=project.out_ch, affine=True, eps=network.GN_EPS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ((_, out),) = deque(self.trace(x), maxlen=1)  # only the last output is kept
        return out

    def trace(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """The expand and depthwise outputs (by their index in `layers`), then the block's output ("")."""
        expand, depthwise, project, norm = self.layers
        out = expand(x)
        yield "layers.0", out
        out = depthwise(out)
        yield "layers.1", out
        out = norm(project(out))
        yield "", x + out if self.use_res_connect else out


def _module(entry: network.Entry) -> nn.Module:
    if isinstance(entry, network.InvertedResBlock):
        return InvertedResBlock(entry)
    if isinstance(entry, network.Tanh):
        return nn.Tanh()
    assert isinstance(entry, network.Conv)
    return _conv2d(entry) if entry.role == "out" else ConvNormLReLU(entry)


class Generator(nn.Module):
    """AnimeGANv2 generator: RGB in [-1, 1] (N, 3, H, W) float32 -> RGB in [-1, 1].

    Top-level blocks (`block_a` .. `block_e`, `out_layer`) are Sequentials of the table's entries,
    named by their module paths, so the state dict is that of the public checkpoints.
    """

    def __init__(self) -> None:
        super().__init__()
        blocks: dict[str, list[nn.Module]] = {}
        for entry in network.LAYERS:
            if isinstance(entry, network.Upsample):
                continue
            block, index = entry.name.split(".")
            modules = blocks.setdefault(block, [])
            assert int(index) == len(modules), f"{entry.name} is out of order"
            modules.append(_module(entry))
        for block, modules in blocks.items():
            self.add_module(block, nn.Sequential(*modules))

    def forward(self, x: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
        ((_, out),) = deque(self.trace(x, align_corners), maxlen=1)  # only the last output is kept
        return out

    def trace(self, x: torch.Tensor, align_corners: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """Every table entry's output in network order, by name (the last one is the network's output)."""
        sizes: dict[int, tuple[int, int]] = {0: (int(x.shape[-2]), int(x.shape[-1]))}
        out = x
        for entry in network.LAYERS:
            if isinstance(entry, network.Upsample):
                out = _upsample(out, sizes[entry.level], align_corners)
                yield entry.name, out
                continue
            module = self.get_submodule(entry.name)
            if isinstance(module, InvertedResBlock):
                for part, value in module.trace(out):
                    yield f"{entry.name}.{part}" if part else entry.name, value
                out = value
            else:
                out = module(out)
                yield entry.name, out
            if isinstance(entry, network.Conv | network.InvertedResBlock):
                sizes.setdefault(entry.level, (int(out.shape[-2]), int(out.shape[-1])))


def _upsample(x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    # align_corners=True resizes to the exact target size (the hub entry point); False doubles the
    # size (the reference test script), so odd sides shrink on the way through the network.
    if align_corners:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
