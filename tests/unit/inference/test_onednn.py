"""The native engine (inference/_onednn.cpp, inference/native/) against numpy, value by value.

The dev install builds it (scripts/setup.sh installs oneDNN first), so on Linux x86-64 it must
load: a missing build fails here instead of the engine quietly running on graph runtimes. Maps
of 16 channels and more take the AVX-512 loops, 3 the portable ones. bf16 and int8 convs are
checked where the CPU has their units (and their refusal elsewhere, in test_engine).
"""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from inference import quantize, runtime_onednn
from inference.precision import cpu_flags, has_int8_units, has_native_bf16

pytestmark = pytest.mark.unit
NATIVE_BF16 = has_native_bf16(cpu_flags())
INT8_UNITS = has_int8_units(cpu_flags())
# Every test below needs the module: where it is missing they fail (no skip), and the test above says why.
native: Any = runtime_onednn.native() if runtime_onednn.available() else None


def bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits, rounded to nearest even (numpy's own, to check the kernels')."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def conv_ref(x: np.ndarray, w: np.ndarray, stride: int = 1, groups: int = 1) -> np.ndarray:
    """float64 convolution of an (h, w, in) array by OIHW weights, no padding."""
    k = w.shape[2]
    oh, ow = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = np.zeros((oh, ow, w.shape[0]))
    per_in, per_out = x.shape[2] // groups, w.shape[0] // groups
    for g in range(groups):
        xs = x[..., g * per_in : (g + 1) * per_in].astype(np.float64)
        ws = w[g * per_out : (g + 1) * per_out].astype(np.float64)
        for i in range(k):
            for j in range(k):
                window = xs[i : i + stride * oh : stride, j : j + stride * ow : stride]
                out[..., g * per_out : (g + 1) * per_out] += window @ ws[:, :, i, j].T
    return out


def read(map_: object) -> np.ndarray:
    out = np.empty((map_.height, map_.width, map_.channels), np.float32)  # type: ignore[attr-defined]
    map_.read(out)  # type: ignore[attr-defined]
    return out


def totals(map_: object) -> quantize.Totals:
    c = map_.channels  # type: ignore[attr-defined]
    sums, sumsqs, mins, maxs = np.empty(c), np.empty(c), np.empty(c, np.float32), np.empty(c, np.float32)
    count = map_.totals(sums, sumsqs, mins, maxs)  # type: ignore[attr-defined]
    return quantize.Totals(sums, sumsqs, mins, maxs, count)


def test_the_native_kernels_are_built_in_this_install() -> None:
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert runtime_onednn.available(), f"inference._onednn is not built (found: {runtime_onednn.library_path()})"
    else:
        assert runtime_onednn.available() == (runtime_onednn.library_path() is not None)


@pytest.mark.parametrize("channels", [3, 32])
def test_maps_store_their_values_as_f32_bf16_or_u8_per_row_and_channel(channels: int) -> None:
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((9, 13, channels)) * rng.uniform(0.1, 10, channels)).astype(np.float32)
    runner = native.Runner(1)
    assert np.array_equal(read(runner.load_map(values, 4, "f32")), values)
    assert np.array_equal(read(runner.load_map(values, 4, "bf16")), f32(bf16(values)))
    stored = read(runner.load_map(values, 4, "u8"))
    step = (values.max(axis=1, keepdims=True) - values.min(axis=1, keepdims=True)) / 255
    assert np.all(np.abs(stored - values) <= step * 0.5001 + 1e-6)
    # Each row and channel keeps its own extremes: the range is reproduced.
    np.testing.assert_allclose(stored.min(axis=1), values.min(axis=1), atol=1e-6)
    np.testing.assert_allclose(stored.max(axis=1), values.max(axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("store", ["f32", "bf16", "u8"])
def test_totals_are_row_ordered_float64_sums_and_exact_extremes_for_any_band_split(store: str) -> None:
    rng = np.random.default_rng(1)
    values = (rng.standard_normal((23, 17, 16)) * 3 + 1).astype(np.float32)
    runner = native.Runner(2)
    splits = [totals(runner.load_map(values, rows, store)) for rows in (1, 3, 7, 100)]
    for other in splits[1:]:
        assert np.array_equal(other.sums, splits[0].sums)
        assert np.array_equal(other.sumsqs, splits[0].sumsqs)
    first = splits[0]
    assert first.count == 23 * 17
    np.testing.assert_allclose(first.sums, values.astype(np.float64).sum(axis=(0, 1)), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(first.sumsqs, (values.astype(np.float64) ** 2).sum(axis=(0, 1)), rtol=1e-5)
    assert np.array_equal(first.mins, values.min(axis=(0, 1)))
    assert np.array_equal(first.maxs, values.max(axis=(0, 1)))


CONVS = [(3, 32, 7, 1, 1), (32, 64, 3, 2, 1), (64, 64, 3, 1, 1), (32, 64, 1, 1, 1), (64, 64, 3, 1, 64)]


def conv_case(in_ch: int, out_ch: int, kernel: int, groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((out_ch, in_ch // groups, kernel, kernel)) * 0.1).astype(np.float32)
    return weights, rng.standard_normal(out_ch).astype(np.float32)


@pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "groups"), CONVS)
def test_f32_conv_matches_a_float64_convolution(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int) -> None:
    weights, bias = conv_case(in_ch, out_ch, kernel, groups, 5)
    conv = native.Conv(weights, bias, stride, groups, "f32")
    x = np.random.default_rng(6).standard_normal((9 + kernel, 11 + kernel, in_ch)).astype(np.float32)
    expected = conv_ref(x, weights, stride, groups) + bias
    out = np.empty(expected.shape, np.float32)
    conv.run(x, out)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


if NATIVE_BF16:

    @pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "groups"), CONVS)
    def test_bf16_conv_matches_a_float64_convolution_of_the_bf16_values(
        in_ch: int, out_ch: int, kernel: int, stride: int, groups: int
    ) -> None:
        weights, bias = conv_case(in_ch, out_ch, kernel, groups, 5)
        weights = f32(bf16(weights))
        conv = native.Conv(weights, bias, stride, groups, "bf16")
        x = bf16(np.random.default_rng(6).standard_normal((9 + kernel, 11 + kernel, in_ch)))
        expected = conv_ref(f32(x), weights, stride, groups) + bias
        out = np.empty(expected.shape, np.uint16)
        conv.run(x, out)
        # f32 accumulation, then one bf16 rounding of the output (2**-8 relative).
        np.testing.assert_allclose(f32(out), expected, rtol=2**-7, atol=1e-3 * np.abs(expected).max())
        conv.trim()
        again = np.empty_like(out)
        conv.run(x, again)
        assert np.array_equal(out, again)


if INT8_UNITS:

    @pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "groups"), CONVS)
    def test_int8_conv_is_exact_on_its_quantized_values_and_within_the_weights_bound(
        in_ch: int, out_ch: int, kernel: int, stride: int, groups: int
    ) -> None:
        weights, bias = conv_case(in_ch, out_ch, kernel, groups, 7)
        conv = native.Conv(weights, bias, stride, groups, "int8")
        scales = np.array(conv.weight_scales())
        np.testing.assert_allclose(scales, np.abs(weights).reshape(out_ch, -1).max(axis=1) / 127, rtol=1e-6)
        quantized = np.clip(np.rint(weights / scales[:, None, None, None].astype(np.float32)), -127, 127)
        q = np.random.default_rng(8).integers(0, 256, (9 + kernel, 11 + kernel, in_ch), dtype=np.uint8)
        qscale, qzero = 0.02, 100.25  # a zero point need not be whole: it folds into the bias
        x = (q.astype(np.float64) - qzero) * qscale
        out = np.empty(conv_ref(x[..., :1].repeat(in_ch, 2), weights, stride, groups).shape, np.float32)
        conv.run(q, out, qscale, qzero)
        # s32 sums of u8 x s8 are exact: only the float rescaling rounds.
        exact = conv_ref(x, quantized * scales[:, None, None, None], stride, groups) + bias
        np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())
        # Against the float weights: within half a weight step times the inputs' magnitudes.
        bound = conv_ref(np.abs(x), np.ones_like(weights), stride, groups) * scales / 2
        error = np.abs(out - (conv_ref(x, weights, stride, groups) + bias))
        assert np.all(error <= bound * 1.0001 + 1e-5)
        assert error.max() > 0  # the weights really are 8-bit


def reflect_pad(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    left, right, top, bottom = pads
    return np.pad(x, ((top, bottom), (left, right), (0, 0)), mode="reflect")


def activate(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64) * scale + shift
    return np.where(y > 0, y, 0.2 * y)


LAYERS = [
    (16, 32, 3, 1, (1, 1, 1, 1)),
    (32, 64, 3, 2, (0, 1, 0, 1)),
    (16, 32, 7, 1, (3, 3, 3, 3)),
    (64, 32, 1, 1, (0, 0, 0, 0)),
]
MODES = ["f32", *(["int8"] if INT8_UNITS else [])]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("in_ch", "out_ch", "kernel", "stride", "pads"), LAYERS)
def test_a_conv_layer_applies_the_pending_norm_reflects_and_convolves(
    mode: str, in_ch: int, out_ch: int, kernel: int, stride: int, pads: tuple[int, int, int, int]
) -> None:
    rng = np.random.default_rng(9)
    values = (rng.standard_normal((21, 19, in_ch)) * 2 + 0.5).astype(np.float32)
    weights, bias = conv_case(in_ch, out_ch, kernel, 1, 10)
    scale = rng.uniform(0.5, 2, in_ch).astype(np.float32)
    shift = rng.standard_normal(in_ch).astype(np.float32)
    runner = native.Runner(2)
    src = runner.load_map(values, 5, "f32")
    conv = native.Conv(weights, bias, stride, 1, mode)
    quant = quantize.NONE
    if mode == "int8":
        quant = quantize.quant_for(*quantize.input_range(totals(src), scale, shift, lrelu=True))
    out = runner.conv(src, conv, scale, shift, True, quant.scale, quant.zero, pads, 4, "f32", False)
    x = reflect_pad(activate(values, scale, shift), pads)
    expected = conv_ref(x, weights, stride) + bias
    got = read(out)
    assert got.shape == expected.shape
    if mode == "f32":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        return
    # Half a step of the input (exact range, so nothing is clipped) and of each weight.
    wscales = np.array(conv.weight_scales())
    half_step = np.full_like(x, quant.scale / 2)
    bound = conv_ref(half_step, np.abs(weights), stride)
    bound += conv_ref(np.abs(x) + half_step, np.ones_like(weights), stride) * wscales / 2
    assert np.all(np.abs(got - expected) <= bound * 1.001 + 1e-5)


@pytest.mark.parametrize("mode", ["f32", *(["bf16"] if NATIVE_BF16 else []), *(["int8"] if INT8_UNITS else [])])
def test_a_layer_is_bit_identical_for_any_band_height_and_thread_count(mode: str) -> None:
    rng = np.random.default_rng(11)
    values = rng.standard_normal((30, 23, 32)).astype(np.float32)
    weights, bias = conv_case(32, 16, 3, 1, 12)
    store = {"f32": "f32", "bf16": "bf16", "int8": "u8"}[mode]
    scale, shift = np.ones(32, np.float32), np.zeros(32, np.float32)
    results = []
    for threads, rows in ((1, 30), (2, 4), (2, 7), (1, 3)):
        runner = native.Runner(threads)
        src = runner.load_map(values, rows, store)
        conv = native.Conv(weights, bias, 1, 1, mode)
        out = runner.conv(src, conv, scale, shift, True, 0.05, 80.0, (1, 1, 1, 1), rows, store, False)
        results.append((read(out), totals(out)))
    for got, stats in results[1:]:
        assert np.array_equal(got, results[0][0])
        assert np.array_equal(stats.sums, results[0][1].sums)


@pytest.mark.parametrize("store", ["f32", "u8"])
@pytest.mark.parametrize("residual", [True, False])
def test_residual_applies_the_block_norm_and_adds_its_input_in_place(store: str, residual: bool) -> None:
    rng = np.random.default_rng(13)
    p, r = rng.standard_normal((2, 10, 9, 32)).astype(np.float32)
    scale, shift = rng.uniform(0.5, 2, 32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    runner = native.Runner(2)
    project, block_input = runner.load_map(p, 4, store), runner.load_map(r, 4, store)
    stored_p, stored_r = read(project), read(block_input)
    runner.residual(project, block_input if residual else None, scale, shift)
    expected = stored_p.astype(np.float64) * scale + shift + (stored_r if residual else 0)
    got = read(project)
    if store == "f32":
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    else:
        step = (expected.max(axis=1, keepdims=True) - expected.min(axis=1, keepdims=True)) / 255
        assert np.all(np.abs(got - expected) <= step * 0.5001 + 1e-5)
    assert np.allclose(totals(project).maxs, expected.max(axis=(0, 1)), rtol=1e-5)


def test_wrong_sizes_and_types_raise_instead_of_writing() -> None:
    runner = native.Runner(1)
    conv = native.Conv(np.ones((4, 8, 3, 3), np.float32), None, 1, 1, "f32")
    src = runner.load_map(np.ones((6, 6, 8), np.float32), 3, "f32")
    good = (np.ones(8, np.float32), np.zeros(8, np.float32))
    with pytest.raises(ValueError, match=r"scale: expected shape \(8,\)"):
        runner.conv(src, conv, np.ones(7, np.float32), good[1], True, 1.0, 0.0, (1, 1, 1, 1), 3, "f32", False)
    with pytest.raises(ValueError, match="float32"):
        runner.conv(src, conv, np.ones(8), good[1], True, 1.0, 0.0, (1, 1, 1, 1), 3, "f32", False)
    with pytest.raises(ValueError, match="C-contiguous"):
        runner.conv(src, conv, np.ones(16, np.float32)[::2], good[1], True, 1.0, 0.0, (1, 1, 1, 1), 3, "f32", False)
    with pytest.raises(ValueError, match="input channels"):
        runner.conv(
            src,
            native.Conv(np.ones((4, 5, 3, 3), np.float32), None, 1, 1),
            *good,
            True,
            1.0,
            0.0,
            (1, 1, 1, 1),
            3,
            "f32",
            False,
        )
    with pytest.raises(ValueError, match="unknown storage"):
        runner.conv(src, conv, *good, True, 1.0, 0.0, (1, 1, 1, 1), 3, "f16", False)
    with pytest.raises(ValueError, match="dst: expected shape"):
        conv.run(np.ones((6, 6, 8), np.float32), np.empty((3, 4, 4), np.float32))
    bad, cols, weights = np.array([0, 1, 9, 2, 3, 4, 5, 5], np.int32), np.zeros(8, np.int32), np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="table points outside"):
        runner.upsample_conv(src, conv, *good, 1.0, 0.0, bad, bad, weights, cols, cols, weights, 3, "f32")
    rgb_conv = native.Conv(np.ones((3, 8, 1, 1), np.float32), None, 1, 1, "f32")
    with pytest.raises(ValueError, match=r"rgb: expected shape \(6, 6, 3\)"):
        runner.output(src, rgb_conv, *good, 1.0, 0.0, np.empty((6, 5, 3), np.uint8))
    src.release()
    with pytest.raises(ValueError, match="no bands"):
        runner.conv(src, conv, *good, True, 1.0, 0.0, (1, 1, 1, 1), 3, "f32", False)


def test_wrong_sizes_raise_under_python_O_too() -> None:
    # The checks are C++, not Python asserts: -O (which strips asserts) must not turn them into writes.
    code = "import numpy as np\nfrom inference import _onednn as n\nassert False, 'asserts are on'\n"
    stripped = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=False)
    assert stripped.returncode == 0, stripped.stderr  # -O really strips asserts here
    code = (
        "import numpy as np\n"
        "from inference import _onednn as n\n"
        "conv = n.Conv(np.ones((4, 8, 3, 3), np.float32), None, 1, 1, 'f32')\n"
        "small = np.zeros(10, np.float32)\n"
        "for dst in (np.empty((3, 4, 4), np.float32), small[:4].reshape(1, 1, 4)):\n"
        "    try:\n"
        "        conv.run(np.ones((6, 6, 8), np.float32), dst)\n"
        "    except ValueError as exc:\n"
        "        print('raised', exc)\n"
        "runner = n.Runner(1)\n"
        "src = runner.load_map(np.ones((6, 6, 8), np.float32), 3, 'f32')\n"
        "rgb = n.Conv(np.ones((3, 8, 1, 1), np.float32), None, 1, 1, 'f32')\n"
        "try:\n"
        "    act = (np.ones(8, np.float32), np.zeros(8, np.float32))\n"
        "    runner.output(src, rgb, *act, 1.0, 0.0, np.empty((2, 2, 3), np.uint8))\n"
        "except ValueError as exc:\n"
        "    print('raised', exc)\n"
        "assert not small.any()\n"
    )
    result = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("raised") == 3, result.stdout
