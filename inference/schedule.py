"""The engine's schedule: the ordered steps that run the generator band by band, derived from
`inference.network`'s table. No runtime here: plain dataclasses an executor walks in order.

- `Head`: the first conv (block_a.0) and the stride-2 conv after it, fused: the first conv runs
  twice per band (statistics, then normalised into the next conv), so its map never exists.
- `BandConv`: any other conv over row bands. `transform` is what its band graph still applies to
  the input: "affine" (the previous norm + LeakyReLU, for 1x1 convs that read their input band in
  place), "shift" (the same, the scale being multiplied in while the band is assembled), "none"
  (the input is a value: an InvertedResBlock's output, the un-normalised input of the next one).
- `UpsampleConv`: a bilinear upsample folded into the 3x3 conv that follows it.
- `Residual`: an InvertedResBlock's last norm, applied in place, plus its input when residual.
- `Output`: the last norm + LeakyReLU, the output conv, tanh and the 8-bit conversion.

Every step names its `level` (0 full, 1 half, 2 quarter): bands of all maps at one level have
the same rows, so a released input band's array fits the next output band. `WIDEST` (channels of
the widest map stored at each level) sizes those bands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from inference import network

InputTransform = Literal["affine", "shift", "none"]


@dataclass(frozen=True)
class Head:
    first: network.Conv
    second: network.Conv

    @property
    def level(self) -> int:
        return self.second.level


@dataclass(frozen=True)
class BandConv:
    conv: network.Conv
    transform: InputTransform
    keep_source: bool = False  # the input is still needed afterwards (a residual block's input)

    @property
    def level(self) -> int:
        return self.conv.level

    @property
    def in_place(self) -> bool:
        """1x1 convs read their input band where it lies; the others get an assembled copy."""
        return self.conv.kernel == 1 and self.conv.stride == 1


@dataclass(frozen=True)
class UpsampleConv:
    upsample: network.Upsample
    conv: network.Conv

    @property
    def level(self) -> int:
        return self.conv.level


@dataclass(frozen=True)
class Residual:
    block: network.InvertedResBlock

    @property
    def level(self) -> int:
        return self.block.level


@dataclass(frozen=True)
class Output:
    conv: network.Conv

    @property
    def level(self) -> int:
        return self.conv.level


Step = Head | BandConv | UpsampleConv | Residual | Output


def _band_conv(conv: network.Conv, *, keep_source: bool = False) -> BandConv:
    in_place = conv.kernel == 1 and conv.stride == 1
    transform: InputTransform = ("affine" if in_place else "shift") if conv.source == "activated" else "none"
    return BandConv(conv, transform, keep_source)


def build(entries: tuple[network.Entry, ...] = network.LAYERS) -> tuple[Step, ...]:
    """The steps of `entries`: head, band convs, blocks, upsampled convs, output."""
    first, second, *rest = entries
    assert isinstance(first, network.Conv)
    assert isinstance(second, network.Conv)
    assert second.stride == 2, "the head fuses the first conv with a stride-2 conv"
    assert isinstance(rest[-1], network.Tanh), "the network ends in tanh"
    out = rest[-2]
    assert isinstance(out, network.Conv)
    assert out.role == "out"
    assert out.kernel == 1
    steps: list[Step] = [Head(first, second)]
    upsample: network.Upsample | None = None
    for entry in rest[:-2]:
        if isinstance(entry, network.Upsample):
            upsample = entry
        elif isinstance(entry, network.InvertedResBlock):
            expand, depthwise, project = entry.convs
            steps += (_band_conv(expand, keep_source=entry.residual), _band_conv(depthwise), _band_conv(project))
            steps.append(Residual(entry))
        elif isinstance(entry, network.Conv) and upsample is not None:
            assert entry.kernel == 3, "the upsampled conv pads by 1"
            assert entry.stride == 1
            assert entry.source == "activated"
            steps.append(UpsampleConv(upsample, entry))
            upsample = None
        elif isinstance(entry, network.Conv):
            steps.append(_band_conv(entry))
        else:
            raise ValueError(f"no band step for {entry!r}")
    steps.append(Output(out))
    return tuple(steps)


STEPS: Final = build()
WIDEST: Final = network.widest()  # (64, 128, 512): full, half and quarter resolution
