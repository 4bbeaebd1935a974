"""The AnimeGANv2 generator described once: a table of its layers, in network order.

Everything else reads this table: the torch reference (`inference.model`) builds its modules
from it, the weights check (`inference.weights.EXPECTED_SHAPES`) derives the state-dict layout,
the ONNX builders (`inference.graphs`) take shapes and parameters from it, and the engine's
schedule (`inference.schedule`) derives its ordered steps from it. A new layer changes this file.

`LAYERS` holds four kinds of entries:

- `Conv`: one conv and what follows it. `role` "cnl" is a ConvNormLReLU module (reflection pad,
  conv, GroupNorm(1), LeakyReLU(0.2); keys `<name>.1.*` conv, `<name>.2.*` norm); "expand" and
  "depthwise" are the ConvNormLReLU modules inside an InvertedResBlock; "project" is its bare
  1x1 conv (`<block>.layers.2`, norm `<block>.layers.3`, no LeakyReLU); "out" is the final 1x1
  conv (no norm). `source` says what its input is: "activated" when the previous conv's norm and
  LeakyReLU are still to be applied to it (an executor may fold them into this layer), "value"
  when the input is used as it is (the image, or an InvertedResBlock's output: the un-normalised
  input of the next block).
- `InvertedResBlock`: expand, depthwise, project; residual add when in == out channels.
- `Upsample`: bilinear resize to the size of the map at `level` (align_corners) or by 2.
- `Tanh`: the output activation.

Resolution levels: 0 full, 1 half, 2 quarter (a map's side at level l is the input's >> l).
Plain dataclasses only: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final, Literal

LRELU_SLOPE: Final = 0.2
GN_EPS: Final = 1e-5
EXPANSION: Final = 2  # InvertedResBlock bottleneck = 2 x in
LEVELS: Final = ("full", "half", "quarter")
# Stride-2 layers pad right and bottom only (left, right, top, bottom), like the TF original's "SAME".
STRIDE2_PADS: Final = (0, 1, 0, 1)

Pads = tuple[int, int, int, int]  # left, right, top, bottom
Role = Literal["cnl", "expand", "depthwise", "project", "out"]
Source = Literal["activated", "value"]


@dataclass(frozen=True)
class Conv:
    """One conv layer, the GroupNorm (and LeakyReLU) after it, and where it runs."""

    name: str  # the reference's module path: "block_a.0", "block_c.1.layers.2", "out_layer.0"
    role: Role
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    pads: Pads
    groups: int
    bias: bool
    level: int  # resolution of its output
    source: Source = "activated"
    block: str = ""  # the InvertedResBlock it belongs to ("block_c.1"), if any

    @property
    def conv_key(self) -> str:
        """State-dict prefix of the conv (`<conv_key>.weight`, `<conv_key>.bias`)."""
        return self.name if self.role in ("project", "out") else f"{self.name}.1"

    @property
    def norm_key(self) -> str | None:
        """State-dict prefix of the GroupNorm after the conv, if any."""
        if self.role == "out":
            return None
        if self.role == "project":
            return f"{self.block}.layers.3"
        return f"{self.name}.2"

    @property
    def activated(self) -> bool:
        """A LeakyReLU follows the norm (a ConvNormLReLU module)."""
        return self.role in ("cnl", "expand", "depthwise")

    @property
    def halo(self) -> int:
        """Input rows a band needs above and below its own (stride 1)."""
        return self.kernel // 2


@dataclass(frozen=True)
class InvertedResBlock:
    """MobileNetV2-style block: expand 1x1, depthwise 3x3, project 1x1 + GroupNorm; residual if in == out."""

    name: str
    in_ch: int
    out_ch: int
    level: int
    convs: tuple[Conv, Conv, Conv]

    @property
    def residual(self) -> bool:
        return self.in_ch == self.out_ch


@dataclass(frozen=True)
class Upsample:
    """Bilinear resize to the size of the first map at `level` (align_corners), else by a factor 2."""

    name: str
    level: int


@dataclass(frozen=True)
class Tanh:
    name: str


Entry = Conv | InvertedResBlock | Upsample | Tanh


def _cnl(name: str, cin: int, cout: int, level: int, *, kernel: int = 3, stride: int = 1) -> Conv:
    half = kernel // 2
    pads: Pads = STRIDE2_PADS if stride == 2 else (half, half, half, half)
    return Conv(name, "cnl", cin, cout, kernel, stride, pads, 1, False, level)


def _irb(name: str, cin: int, cout: int, level: int) -> InvertedResBlock:
    mid = EXPANSION * cin
    return InvertedResBlock(
        name,
        cin,
        cout,
        level,
        (
            Conv(f"{name}.layers.0", "expand", cin, mid, 1, 1, (0, 0, 0, 0), 1, False, level, block=name),
            Conv(f"{name}.layers.1", "depthwise", mid, mid, 3, 1, (1, 1, 1, 1), mid, True, level, block=name),
            Conv(f"{name}.layers.2", "project", mid, cout, 1, 1, (0, 0, 0, 0), 1, False, level, block=name),
        ),
    )


def _linked(entries: tuple[Entry, ...]) -> tuple[Entry, ...]:
    """Sets every conv's `source` from what precedes it: a ConvNormLReLU's output is "activated"
    (its norm and LeakyReLU still to apply), the image and a block's output are values."""
    linked: list[Entry] = []
    source: Source = "value"
    for entry in entries:
        if isinstance(entry, Conv):
            linked.append(replace(entry, source=source))
            source = "activated"
        elif isinstance(entry, InvertedResBlock):
            expand, depthwise, project = entry.convs
            convs = (replace(expand, source=source), depthwise, project)
            linked.append(replace(entry, convs=convs))
            source = "value"
        else:
            linked.append(entry)
    return tuple(linked)


FULL, HALF, QUARTER = 0, 1, 2

LAYERS: Final[tuple[Entry, ...]] = _linked(
    (
        _cnl("block_a.0", 3, 32, FULL, kernel=7),
        _cnl("block_a.1", 32, 64, HALF, stride=2),
        _cnl("block_a.2", 64, 64, HALF),
        _cnl("block_b.0", 64, 128, QUARTER, stride=2),
        _cnl("block_b.1", 128, 128, QUARTER),
        _cnl("block_c.0", 128, 128, QUARTER),
        _irb("block_c.1", 128, 256, QUARTER),
        _irb("block_c.2", 256, 256, QUARTER),
        _irb("block_c.3", 256, 256, QUARTER),
        _irb("block_c.4", 256, 256, QUARTER),
        _cnl("block_c.5", 256, 128, QUARTER),
        Upsample("upsample_half", HALF),
        _cnl("block_d.0", 128, 128, HALF),
        _cnl("block_d.1", 128, 128, HALF),
        Upsample("upsample_full", FULL),
        _cnl("block_e.0", 128, 64, FULL),
        _cnl("block_e.1", 64, 64, FULL),
        _cnl("block_e.2", 64, 32, FULL, kernel=7),
        Conv("out_layer.0", "out", 32, 3, 1, 1, (0, 0, 0, 0), 1, False, FULL),
        Tanh("out_layer.1"),
    )
)


def convs(entries: tuple[Entry, ...] = LAYERS) -> Iterator[Conv]:
    """Every conv in network order, the InvertedResBlocks' three included."""
    for entry in entries:
        if isinstance(entry, Conv):
            yield entry
        elif isinstance(entry, InvertedResBlock):
            yield from entry.convs


def state_dict_layout(entries: tuple[Entry, ...] = LAYERS) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the generator's state dict, in the public checkpoints' order."""
    layout: dict[str, tuple[int, ...]] = {}
    for conv in convs(entries):
        layout[f"{conv.conv_key}.weight"] = (conv.out_ch, conv.in_ch // conv.groups, conv.kernel, conv.kernel)
        if conv.bias:
            layout[f"{conv.conv_key}.bias"] = (conv.out_ch,)
        if conv.norm_key is not None:
            layout[f"{conv.norm_key}.weight"] = (conv.out_ch,)
            layout[f"{conv.norm_key}.bias"] = (conv.out_ch,)
    return layout


def widest(entries: tuple[Entry, ...] = LAYERS) -> tuple[int, ...]:
    """Widest conv output (channels) at each resolution level: full, half, quarter."""
    return tuple(max(c.out_ch for c in convs(entries) if c.level == level) for level in range(len(LEVELS)))
