"""The native bf16 kernels (inference/_onednn.cpp) against numpy, value by value.

The dev install builds them (scripts/setup.sh installs oneDNN first), so on Linux x86-64 they
must load: a missing build fails here instead of the bf16 engine quietly running on OpenVINO.
Channel counts of 16 and more take the AVX-512 loops, 3 the portable ones.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

from inference import network, runtime_onednn as native
from inference.bands import RowTotals
from inference.precision import cpu_flags, has_native_bf16

pytestmark = pytest.mark.unit
NATIVE_BF16 = has_native_bf16(cpu_flags())


def bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits, rounded to nearest even (numpy's own, to check the kernel's)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def test_the_native_kernels_are_built_in_this_install() -> None:
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        assert native.available(), f"inference._onednn is not built (found: {native.library_path()})"
    else:
        assert native.available() == (native.library_path() is not None)


def test_to_bf16_rounds_to_nearest_even() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(10_000).astype(np.float32) * 100
    out = np.empty(values.shape, np.uint16)
    native.to_bf16(values, out)
    assert np.array_equal(out, bf16(values))


@pytest.mark.parametrize("channels", [3, 32])
def test_affine_lrelu_writes_into_a_padded_buffer(channels: int) -> None:
    rng = np.random.default_rng(1)
    src = bf16(rng.standard_normal((5, 7, channels)))
    scale = rng.standard_normal(channels).astype(np.float32)
    shift = rng.standard_normal(channels).astype(np.float32)
    padded = np.zeros((7, 9, channels), np.uint16)
    native.affine_lrelu(src, padded[1:6, 1:8], scale, shift)
    y = f32(src) * scale + shift
    expected = bf16(np.where(y > 0, y, np.float32(network.LRELU_SLOPE) * y))
    assert np.array_equal(padded[1:6, 1:8], expected)
    assert not padded[0].any()
    assert not padded[:, 0].any()
    assert not padded[:, 8].any()


@pytest.mark.parametrize("residual", [True, False])
def test_affine_add_in_place(residual: bool) -> None:
    rng = np.random.default_rng(2)
    p = bf16(rng.standard_normal((4, 6, 32)))
    r = bf16(rng.standard_normal((4, 6, 32))) if residual else None
    scale, shift = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    y = f32(p) * scale + shift
    if r is not None:
        y = y + f32(r)
    expected = bf16(y)
    native.affine_add(p, r, p, scale, shift)
    assert np.array_equal(p, expected)


@pytest.mark.parametrize("channels", [3, 64])
def test_stats_are_per_row_sums_and_split_independent(channels: int) -> None:
    rng = np.random.default_rng(3)
    y = bf16(rng.standard_normal((10, 33, channels)) * 3 + 1)
    sums, sumsqs = native.stats(y)
    values = f32(y).astype(np.float64)
    assert sums.shape == (10, channels)
    np.testing.assert_allclose(sums, values.sum(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sumsqs, (values**2).sum(axis=1), rtol=1e-5)
    # Totals over bands of any split are the same additions: bit-identical moments.
    splits = []
    for cut in ([10], [3, 10], [1, 2, 7, 10]):
        totals, start = RowTotals(), 0
        for end in cut:
            band_sums, band_sumsqs = native.stats(np.ascontiguousarray(y[start:end]))
            totals.add(band_sums, band_sumsqs, (end - start) * 33)
            start = end
        splits.append(totals.moments())
    assert splits[0] == splits[1] == splits[2]
    assert splits[0].mean == pytest.approx(values.mean(), rel=1e-6)
    assert splits[0].m2 / splits[0].count == pytest.approx(values.var(), rel=1e-5)


def test_resample_interpolates_rows_then_columns() -> None:
    rng = np.random.default_rng(4)
    src = bf16(rng.standard_normal((3, 4, 16)))
    rows = (
        np.array([0, 0, 1, 2], np.int32),
        np.array([1, 1, 2, 2], np.int32),
        np.array([0.25, 0.75, 0.5, 0.0], np.float32),
    )
    cols = (np.array([0, 1, 3], np.int32), np.array([1, 2, 3], np.int32), np.array([0.5, 0.1, 0.0], np.float32))
    out = np.empty((4, 3, 16), np.uint16)
    native.resample(src, rows, cols, out)
    x = f32(src)
    line = x[rows[0]] + (x[rows[1]] - x[rows[0]]) * rows[2][:, None, None]
    expected = line[:, cols[0]] + (line[:, cols[1]] - line[:, cols[0]]) * cols[2][None, :, None]
    assert np.abs(f32(out) - expected).max() <= np.abs(expected).max() * 2**-8


if NATIVE_BF16:

    @pytest.mark.parametrize(
        ("in_ch", "out_ch", "kernel", "stride", "groups"),
        [(3, 32, 7, 1, 1), (32, 64, 3, 2, 1), (64, 64, 3, 1, 1), (32, 64, 1, 1, 1), (64, 64, 3, 1, 64)],
    )
    def test_conv_matches_a_float64_convolution_of_the_bf16_values(
        in_ch: int, out_ch: int, kernel: int, stride: int, groups: int
    ) -> None:
        rng = np.random.default_rng(5)
        spec = network.Conv("t", "cnl", in_ch, out_ch, kernel, stride, (0, 0, 0, 0), groups, True, 0)
        weights = bf16(rng.standard_normal((out_ch, in_ch // groups, kernel, kernel)) * 0.1)
        state = {"t.1.weight": f32(weights), "t.1.bias": rng.standard_normal(out_ch).astype(np.float32)}
        conv = native.Conv(state, spec)
        x = bf16(rng.standard_normal((9 + kernel, 11 + kernel, in_ch)))
        out = np.empty(conv.out_shape(*x.shape[:2]), np.uint16)
        conv.run(x, out)
        xs, ws = f32(x).astype(np.float64), f32(weights).astype(np.float64)
        oh, ow, _ = out.shape
        expected = np.zeros(out.shape)
        per_group = in_ch // groups
        for o in range(out_ch):
            g = o // (out_ch // groups)
            for i in range(kernel):
                for j in range(kernel):
                    window = xs[
                        i : i + stride * oh : stride, j : j + stride * ow : stride, g * per_group : (g + 1) * per_group
                    ]
                    expected[..., o] += window @ ws[o, :, i, j]
        expected += state["t.1.bias"]
        # f32 accumulation, then one bf16 rounding of the output (2**-8 relative).
        np.testing.assert_allclose(f32(out), expected, rtol=2**-7, atol=1e-3 * np.abs(expected).max())
        conv.trim()
        again = np.empty_like(out)
        conv.run(x, again)
        assert np.array_equal(out, again)
