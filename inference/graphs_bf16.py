"""The band graphs the bf16 path needs in another form than `inference.graphs`' fp32 ones.

Maps are stored as bf16 between layers, so the engine can copy their rows but not compute on
them: every norm, LeakyReLU and residual add runs inside a graph. OpenVINO's ONNX reader also
has no `tf_crop_and_resize` Resize, which the fp32 upsample band uses. So:

- `upsample_rows_conv_band_model`: scale/shift + LeakyReLU of the source rows, the bilinear
  upsample as two parts (rows: a weighted pair of gathered rows per output row, with indices and
  weights from the engine, which also folds the conv's top/bottom reflection into them; columns:
  a linear Resize of the whole width in torch's own mode), the conv's left/right reflection pad
  and the 3x3 conv.
- `residual_model`: an InvertedResBlock's last norm (scale/shift) plus, when residual, its input.

The other band graphs (head, convs, output) are `inference.graphs`' own, fed bf16 maps.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from onnx import TensorProto

from inference import network
from inference.graphs import _Graph


def upsample_rows_conv_band_model(
    state_dict: Mapping[str, np.ndarray], conv: network.Conv, *, align_corners: bool
) -> bytes:
    """Inputs: `x` (1, C, m, w) pre-norm source rows; `scale`/`shift`; `i0`/`i1` (int64[n]) the
    two source rows (within x) of each of the n upsampled rows the band's conv reads, `w1`
    (float[1, 1, n, 1]) the weight of the second; `sizes` (int64[4]) = (1, C, n, output width).
    """
    g = _Graph(state_dict)
    in_ch = conv.in_ch
    x = g.input("x", TensorProto.FLOAT, [1, in_ch, "rows", "cols"])
    scale = g.input("scale", TensorProto.FLOAT, [1, in_ch, 1, 1])
    shift = g.input("shift", TensorProto.FLOAT, [1, in_ch, 1, 1])
    i0 = g.input("i0", TensorProto.INT64, ["n"])
    i1 = g.input("i1", TensorProto.INT64, ["n"])
    w1 = g.input("w1", TensorProto.FLOAT, [1, 1, "n", 1])
    sizes = g.input("sizes", TensorProto.INT64, [4])
    activated = g.lrelu(g.affine(x, scale, shift))
    upper = g.node("Gather", [activated, i0], axis=2)
    lower = g.node("Gather", [activated, i1], axis=2)
    rows = g.node("Add", [upper, g.node("Mul", [g.node("Sub", [lower, upper]), w1])])
    mode = "align_corners" if align_corners else "half_pixel"
    up = g.node("Resize", [rows, "", "", sizes], mode="linear", coordinate_transformation_mode=mode)
    left, right, _, _ = conv.pads
    y = g.conv(g.pad(up, left, right, 0, 0), conv)
    g.band_stats(y)
    g.output(y, "y", TensorProto.FLOAT, [1, conv.out_ch, "out_rows", "out_cols"])
    return g.model()


def residual_model(channels: int, *, residual: bool) -> bytes:
    """`y` = `p` * scale + shift (+ `r`): a block's last GroupNorm, and its residual add."""
    g = _Graph({})
    p = g.input("p", TensorProto.FLOAT, [1, channels, "rows", "cols"])
    scale = g.input("scale", TensorProto.FLOAT, [1, channels, 1, 1])
    shift = g.input("shift", TensorProto.FLOAT, [1, channels, 1, 1])
    y = g.affine(p, scale, shift)
    if residual:
        y = g.node("Add", [g.input("r", TensorProto.FLOAT, [1, channels, "rows", "cols"]), y])
    g.output(y, "y", TensorProto.FLOAT, [1, channels, "rows", "cols"])
    return g.model()
