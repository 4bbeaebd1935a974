"""The AnimeGANv2 generator as a torch module: the reference architecture, nothing else.

Its state dict has exactly the keys and shapes of the public PyTorch checkpoints
(`Generator().load_state_dict(torch.load(path), strict=True)` works). The service does not run
this module: `inference.engine` runs the same network on ONNX Runtime without torch. This module
is the reference that the engine is tested against, and what `animegan bench` compares with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormLReLU(nn.Sequential):
    """Reflection pad, Conv2d (no padding), GroupNorm(1 group), LeakyReLU(0.2)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | tuple[int, int, int, int] = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


# Stride-2 layers pad only right and bottom (left, right, top, bottom), like the TF original's "SAME".
_STRIDE2_PAD = (0, 1, 0, 1)


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: 1x1 expand (x2), depthwise 3x3, 1x1 project, GroupNorm; residual if shapes match."""

    def __init__(self, in_ch: int, out_ch: int, expansion_ratio: int = 2) -> None:
        super().__init__()
        self.use_res_connect = in_ch == out_ch
        bottleneck = round(in_ch * expansion_ratio)
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, bottleneck, kernel_size=1, padding=0),
            ConvNormLReLU(bottleneck, bottleneck, groups=bottleneck, bias=True),
            nn.Conv2d(bottleneck, out_ch, kernel_size=1, bias=False),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        if self.use_res_connect:
            out = x + out
        return out


class Generator(nn.Module):
    """AnimeGANv2 generator: RGB in [-1, 1] (N, 3, H, W) float32 -> RGB in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, 32, kernel_size=7, padding=3),
            ConvNormLReLU(32, 64, stride=2, padding=_STRIDE2_PAD),
            ConvNormLReLU(64, 64),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(64, 128, stride=2, padding=_STRIDE2_PAD),
            ConvNormLReLU(128, 128),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(128, 128),
            InvertedResBlock(128, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            ConvNormLReLU(256, 128),
        )
        self.block_d = nn.Sequential(
            ConvNormLReLU(128, 128),
            ConvNormLReLU(128, 128),
        )
        self.block_e = nn.Sequential(
            ConvNormLReLU(128, 64),
            ConvNormLReLU(64, 64),
            ConvNormLReLU(64, 32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(
            nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0, bias=False),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_b(out)
        out = self.block_c(out)
        out = _upsample(out, half_size, align_corners)
        out = self.block_d(out)
        out = _upsample(out, x.shape[-2:], align_corners)
        out = self.block_e(out)
        result: torch.Tensor = self.out_layer(out)
        return result


def _upsample(x: torch.Tensor, size: torch.Size, align_corners: bool) -> torch.Tensor:
    # align_corners=True resizes to the exact target size (the hub entry point); False doubles the
    # size (the reference test script), so odd sides shrink on the way through the network.
    if align_corners:
        return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=True)
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
