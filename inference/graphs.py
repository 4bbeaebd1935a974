"""ONNX graphs of the AnimeGANv2 generator, built directly from a numpy state dict.

No torch export is involved: each graph is written with `onnx.helper` from the layer table of
`inference.network` (which the torch reference is built from too), so the worker never needs torch. The banded
executor in `inference.engine` runs these pieces, one row band per run:

- `head_stats_model`: block_a.0's 7x7 conv, returning only its per-channel statistics.
- `head_model`: block_a.0 again, normalised (scale/shift inputs) + LeakyReLU, straight into
  block_a.1's stride-2 conv.
- `conv_band_model`: [scale/shift + LeakyReLU +] any other conv on an already padded band
  (the 3x3 and 7x7 convs, the stride-2 one, the InvertedResBlocks' 1x1 and depthwise convs).
- `upsample_conv_band_model`: scale/shift + LeakyReLU, the bilinear upsample, reflection pad
  and 3x3 conv of block_d.0 / block_e.0, so no upsampled map is ever stored.
- `final_model`: block_e.2's norm + LeakyReLU, the 1x1 output conv, tanh and the 8-bit
  conversion, returning rows x cols x 3 uint8.
- `whole_model`: the whole network as one graph (the plain ONNX Runtime baseline of the bench).

Every band graph but the last returns per-channel `sum` and `sumsq` of its output, from which
the engine merges exact whole-map GroupNorm statistics over bands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from inference import network
from inference.schedule import InputTransform

OPSET = 17
GN_EPS = network.GN_EPS
LRELU_SLOPE = network.LRELU_SLOPE

GroupNormForm = Literal["instance", "reduce"]


class _Graph:
    """Accumulates nodes and initializers; names are generated so call sites stay short."""

    def __init__(self, state_dict: Mapping[str, np.ndarray]) -> None:
        self._sd = state_dict
        self._nodes: list[onnx.NodeProto] = []
        self._inits: list[onnx.TensorProto] = []
        self._inputs: list[onnx.ValueInfoProto] = []
        self._outputs: list[onnx.ValueInfoProto] = []
        self._count = 0
        self._consts: dict[tuple[str, bytes], str] = {}

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def input(self, name: str, elem_type: int, shape: Sequence[int | str]) -> str:
        self._inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: Sequence[int | str]) -> None:
        # Rename the producing node's output rather than adding an Identity (which copies).
        for node in self._nodes:
            node.output[:] = [name if out == value else out for out in node.output]
            node.input[:] = [name if inp == value else inp for inp in node.input]
        self._outputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def const(self, array: np.ndarray, prefix: str = "c") -> str:
        key = (f"{array.dtype}{array.shape}", array.tobytes())
        if key not in self._consts:
            name = self.fresh(prefix)
            self._inits.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def weight(self, key: str, shape: Sequence[int] | None = None) -> str:
        array = np.asarray(self._sd[key], dtype=np.float32)
        if shape is not None:
            array = array.reshape(shape)
        return self.const(np.ascontiguousarray(array), key.replace(".", "_"))

    def has(self, key: str) -> bool:
        return key in self._sd

    def node(self, op: str, inputs: Sequence[str], *, name: str | None = None, **attrs: object) -> str:
        out = name or self.fresh(op.lower())
        node = helper.make_node(op, list(inputs), [out])
        node.attribute.extend(helper.make_attribute(key, value) for key, value in attrs.items())
        self._nodes.append(node)
        return out

    def model(self) -> bytes:
        graph = helper.make_graph(self._nodes, "animegan", self._inputs, self._outputs, self._inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return bytes(model.SerializeToString())

    # ---- layers ----

    def conv(self, x: str, spec: network.Conv) -> str:
        inputs = [x, self.weight(f"{spec.conv_key}.weight")]
        if spec.bias:
            inputs.append(self.weight(f"{spec.conv_key}.bias"))
        return self.node("Conv", inputs, strides=[spec.stride, spec.stride], group=spec.groups)

    def pad(self, x: str, left: int, right: int, top: int, bottom: int) -> str:
        pads = self.const(np.array([0, 0, top, left, 0, 0, bottom, right], dtype=np.int64), "pads")
        return self.node("Pad", [x, pads], mode="reflect")

    def barrier(self, x: str) -> str:
        """A no-op Reshape: ONNX Runtime's transpose optimizer cannot move a Transpose across it."""
        return self.node("Reshape", [x, self.node("Shape", [x])])

    def lrelu(self, x: str) -> str:
        return self.node("LeakyRelu", [x], alpha=LRELU_SLOPE)

    def affine(self, x: str, scale: str, shift: str) -> str:
        return self.node("Add", [self.node("Mul", [x, scale]), shift])

    def group_norm(self, x: str, prefix: str, form: GroupNormForm) -> str:
        """GroupNorm with one group: statistics over the whole C x H x W map, per-channel affine."""
        channels = int(np.asarray(self._sd[f"{prefix}.weight"]).shape[0])
        gamma = self.weight(f"{prefix}.weight", (1, channels, 1, 1))
        beta = self.weight(f"{prefix}.bias", (1, channels, 1, 1))
        if form == "instance":
            flat = self.node("Reshape", [x, self.const(np.array([1, 1, -1], dtype=np.int64), "shape")])
            one = self.const(np.ones(1, dtype=np.float32), "one")
            zero = self.const(np.zeros(1, dtype=np.float32), "zero")
            normed = self.node("InstanceNormalization", [flat, one, zero], epsilon=GN_EPS)
            x_normed = self.node("Reshape", [normed, self.node("Shape", [x])])
        else:
            mean = self.node("ReduceMean", [x], axes=[1, 2, 3], keepdims=1)
            centered = self.node("Sub", [x, mean])
            var = self.node("ReduceMean", [self.node("Mul", [centered, centered])], axes=[1, 2, 3], keepdims=1)
            eps = self.const(np.array(GN_EPS, dtype=np.float32), "eps")
            x_normed = self.node("Div", [centered, self.node("Sqrt", [self.node("Add", [var, eps])])])
        return self.affine(x_normed, gamma, beta)

    def cnl(self, x: str, spec: network.Conv, form: GroupNormForm) -> str:
        """A ConvNormLReLU (or an InvertedResBlock's project conv + norm, without the LeakyReLU)."""
        padded = self.pad(x, *spec.pads) if any(spec.pads) else x
        assert spec.norm_key is not None
        y = self.group_norm(self.conv(padded, spec), spec.norm_key, form)
        return self.lrelu(y) if spec.activated else y

    def irb(self, x: str, block: network.InvertedResBlock, form: GroupNormForm) -> str:
        y = x
        for spec in block.convs:
            y = self.cnl(y, spec, form)
        return self.node("Add", [x, y]) if block.residual else y

    def upsample(self, x: str, like: str, align_corners: bool) -> str:
        """Bilinear resize: to `like`'s H x W (align_corners) or by 2 (half_pixel), as torch does."""
        empty_roi = ""
        if align_corners:
            n_c = self.node("Slice", [self.node("Shape", [x]), *self._range(0, 2)])
            h_w = self.node("Slice", [self.node("Shape", [like]), *self._range(2, 4)])
            sizes = self.node("Concat", [n_c, h_w], axis=0)
            return self.node(
                "Resize", [x, empty_roi, "", sizes], mode="linear", coordinate_transformation_mode="align_corners"
            )
        scales = self.const(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
        return self.node("Resize", [x, empty_roi, scales], mode="linear", coordinate_transformation_mode="half_pixel")

    def _range(self, start: int, end: int) -> tuple[str, str]:
        return self.const(np.array([start], dtype=np.int64), "i"), self.const(np.array([end], dtype=np.int64), "i")

    def band_stats(self, y: str) -> None:
        """Outputs per-channel `sum` and `sumsq` of a band, for a whole-map GroupNorm merged over bands."""
        axes = self.const(np.array([0, 2, 3], dtype=np.int64), "axes")
        self.node("ReduceSum", [y, axes], keepdims=0, name="sum")
        # Mul + ReduceSum is about 30% faster than ORT's ReduceSumSquare here.
        self.node("ReduceSum", [self.node("Mul", [y, y]), axes], keepdims=0, name="sumsq")
        self._outputs.append(helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["channels"]))
        self._outputs.append(helper.make_tensor_value_info("sumsq", TensorProto.FLOAT, ["channels"]))


def whole_model(
    state_dict: Mapping[str, np.ndarray], *, align_corners: bool, form: GroupNormForm = "instance"
) -> bytes:
    """The whole generator: `x` (1, 3, H, W) in [-1, 1] -> `y` (1, 3, H', W') in [-1, 1]."""
    g = _Graph(state_dict)
    x = g.input("x", TensorProto.FLOAT, [1, 3, "h", "w"])
    first_at: dict[int, str] = {0: x}  # the first map at each resolution level: the upsamples' targets
    out = x
    for entry in network.LAYERS:
        if isinstance(entry, network.Upsample):
            out = g.upsample(out, first_at[entry.level], align_corners)
            continue
        if isinstance(entry, network.Tanh):
            out = g.node("Tanh", [out])
        elif isinstance(entry, network.InvertedResBlock):
            out = g.irb(out, entry, form)
        elif entry.role == "out":
            out = g.conv(out, entry)
        else:
            out = g.cnl(out, entry, form)
        if not isinstance(entry, network.Tanh):
            first_at.setdefault(entry.level, out)
    g.output(out, "y", TensorProto.FLOAT, [1, 3, "oh", "ow"])
    return g.model()


def head_stats_model(state_dict: Mapping[str, np.ndarray], first: network.Conv) -> bytes:
    """The first conv (block_a.0) over a band of the reflection-padded input; outputs only the band statistics."""
    g = _Graph(state_dict)
    x = g.input("xpad", TensorProto.FLOAT, [1, first.in_ch, "rows", "cols"])
    g.band_stats(g.conv(x, first))
    return g.model()


def head_model(state_dict: Mapping[str, np.ndarray], first: network.Conv, second: network.Conv) -> bytes:
    """The first conv (block_a.0: conv, scale/shift, LeakyReLU) then the stride-2 conv after it on a band.

    `pads` (int64[8], ONNX Pad layout) is the reflection padding of block_a.1 for this band: always
    one column on the right, one row at the bottom only for the band that reaches the bottom edge.
    """
    g = _Graph(state_dict)
    x = g.input("xpad", TensorProto.FLOAT, [1, first.in_ch, "rows", "cols"])
    scale = g.input("scale", TensorProto.FLOAT, [1, first.out_ch, 1, 1])
    shift = g.input("shift", TensorProto.FLOAT, [1, first.out_ch, 1, 1])
    pads = g.input("pads", TensorProto.INT64, [8])
    a0 = g.lrelu(g.affine(g.conv(x, first), scale, shift))
    y = g.conv(g.node("Pad", [a0, pads], mode="reflect"), second)
    g.band_stats(y)
    g.output(y, "y", TensorProto.FLOAT, [1, second.out_ch, "out_rows", "out_cols"])
    return g.model()


def conv_band_model(state_dict: Mapping[str, np.ndarray], conv: network.Conv, *, transform: InputTransform) -> bytes:
    """Input transform + conv of a band the caller has already padded (row halo and columns).

    `transform` says what the band still needs before the conv: "affine" = lrelu(x * scale +
    shift), the previous layer's GroupNorm and LeakyReLU; "shift" = lrelu(x + shift), when the
    caller already multiplied by the scale while assembling the band; "none" = the input is
    used as it is (an InvertedResBlock's input).
    """
    g = _Graph(state_dict)
    in_ch = conv.in_ch
    x = g.input("x", TensorProto.FLOAT, [1, in_ch, "rows", "cols"])
    if transform == "affine":
        x = g.node("Mul", [x, g.input("scale", TensorProto.FLOAT, [1, in_ch, 1, 1])])
    if transform != "none":
        x = g.lrelu(g.node("Add", [x, g.input("shift", TensorProto.FLOAT, [1, in_ch, 1, 1])]))
    y = g.conv(x, conv)
    g.band_stats(y)
    g.output(y, "y", TensorProto.FLOAT, [1, conv.out_ch, "out_rows", "out_cols"])
    return g.model()


def upsample_conv_band_model(state_dict: Mapping[str, np.ndarray], conv: network.Conv) -> bytes:
    """Scale/shift + LeakyReLU, bilinear upsample, reflection pad and 3x3 conv of one output band.

    Inputs: `x` (1, C, m, w) the edge-padded pre-norm source rows/columns the band needs;
    `scale`/`shift` its GroupNorm; `roi` (float[8]) and `sizes` (int64[4]) for a Resize in
    tf_crop_and_resize mode, which maps output rows/columns to any affine source coordinates
    (both torch modes, align_corners or half-pixel, are affine once the source is edge-padded);
    `pads` (int64[8]) the conv's reflection padding. `roi`, `sizes` and `pads` are in NHWC order:
    the upsample runs channels-last, where ONNX Runtime's bilinear Resize is about 4x faster, and
    the transpose back folds into the conv's input reorder.
    """
    g = _Graph(state_dict)
    in_ch = conv.in_ch
    x = g.input("x", TensorProto.FLOAT, [1, in_ch, "rows", "cols"])
    scale = g.input("scale", TensorProto.FLOAT, [1, in_ch, 1, 1])
    shift = g.input("shift", TensorProto.FLOAT, [1, in_ch, 1, 1])
    roi = g.input("roi", TensorProto.FLOAT, [8])
    sizes = g.input("sizes", TensorProto.INT64, [4])
    pads = g.input("pads", TensorProto.INT64, [8])
    nhwc = g.node("Transpose", [g.lrelu(g.affine(x, scale, shift))], perm=[0, 2, 3, 1])
    up = g.node(
        "Resize", [g.barrier(nhwc), roi, "", sizes], mode="linear", coordinate_transformation_mode="tf_crop_and_resize"
    )
    padded = g.barrier(g.node("Pad", [up, pads], mode="reflect"))
    y = g.conv(g.node("Transpose", [padded], perm=[0, 3, 1, 2]), conv)
    g.band_stats(y)
    g.output(y, "y", TensorProto.FLOAT, [1, "out_ch", "out_rows", "out_cols"])
    return g.model()


def final_model(state_dict: Mapping[str, np.ndarray], conv: network.Conv) -> bytes:
    """The last norm's scale/shift + LeakyReLU, the output conv, tanh, then [-1, 1] -> uint8 rows x cols x 3."""
    g = _Graph(state_dict)
    x = g.input("x", TensorProto.FLOAT, [1, conv.in_ch, "rows", "cols"])
    scale = g.input("scale", TensorProto.FLOAT, [1, conv.in_ch, 1, 1])
    shift = g.input("shift", TensorProto.FLOAT, [1, conv.in_ch, 1, 1])
    out = g.node("Tanh", [g.conv(g.lrelu(g.affine(x, scale, shift)), conv)])
    # The reference maps clip(y, -1, 1) * 0.5 + 0.5 to 0..255 and rounds.
    lo = g.const(np.array(-1.0, dtype=np.float32), "lo")
    hi = g.const(np.array(1.0, dtype=np.float32), "hi")
    half_range = g.const(np.array(127.5, dtype=np.float32), "half_range")
    pixels = g.node("Round", [g.node("Add", [g.node("Mul", [g.node("Clip", [out, lo, hi]), half_range]), half_range])])
    rgb = g.node("Cast", [pixels], to=TensorProto.UINT8)
    hwc = g.node(
        "Transpose", [g.node("Squeeze", [rgb, g.const(np.array([0], dtype=np.int64), "axes")])], perm=[1, 2, 0]
    )
    g.output(hwc, "rgb", TensorProto.UINT8, ["rows", "cols", 3])
    return g.model()
