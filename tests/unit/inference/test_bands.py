"""GroupNorm moments merged over bands against numpy on the concatenated data; band maps and pool; bilinear tables."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from inference.bands import Map, Moments, Pool, bands, bilinear_pairs, bilinear_table, reflect


def random_splits(rng: np.random.Generator, total: int, count: int) -> list[int]:
    """Band boundaries of `count` bands over `total` values, some of them very uneven."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=count - 1, replace=False))
    return [0, *cuts.tolist(), total]


def uneven_splits(total: int) -> list[int]:
    """One value, then almost everything, then two values: the shape that breaks naive merges."""
    return [0, 1, total - 2, total - 1, total]


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6, 1e8])
@pytest.mark.parametrize("seed", range(4))
def test_merge_of_band_moments_equals_numpy_on_the_whole(offset: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = offset + rng.normal(0.0, 0.01, 20_000)
    for splits in (random_splits(rng, data.size, 1 + seed * 7), uneven_splits(data.size)):
        moments = Moments()
        for lo, hi in itertools.pairwise(splits):
            band = data[lo:hi]
            moments = moments.merge(band.size, float(band.mean()), float(np.square(band - band.mean()).sum()))
        assert moments.count == data.size
        assert moments.mean == pytest.approx(data.mean(), rel=1e-12, abs=1e-12)
        assert moments.m2 / moments.count == pytest.approx(data.var(), rel=1e-6)


@pytest.mark.parametrize("offset", [0.0, 3.0, 100.0])
@pytest.mark.parametrize("seed", range(4))
def test_merge_band_of_per_channel_sums_equals_numpy_on_the_whole(offset: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    channels, width, height = 8, 13, 57
    # Channels with different means and spreads, like a conv's output.
    scale = rng.uniform(0.1, 3.0, (channels, 1, 1))
    data = offset + rng.normal(0, 1, (channels, 1, 1)) + scale * rng.normal(0, 1, (channels, height, width))
    for splits in (random_splits(rng, height, 2 + seed), [0, 1, height - 1, height]):
        moments = Moments()
        for lo, hi in itertools.pairwise(splits):
            band = data[:, lo:hi]
            moments = moments.merge_band(band.sum(axis=(1, 2)), np.square(band).sum(axis=(1, 2)), band[0].size)
        assert moments.count == data.size
        assert moments.mean == pytest.approx(data.mean(), rel=1e-12, abs=1e-12)
        assert moments.m2 / moments.count == pytest.approx(data.var(), rel=1e-9)


def test_merge_band_of_float32_sums_as_the_graphs_return_them() -> None:
    rng = np.random.default_rng(7)
    data = (0.5 + rng.normal(0, 1, (16, 40, 31))).astype(np.float32)
    moments = Moments()
    for lo, hi in bands(40, 3):
        band = data[:, lo:hi]
        sums = band.sum(axis=(1, 2), dtype=np.float32)
        sumsqs = np.square(band).sum(axis=(1, 2), dtype=np.float32)
        moments = moments.merge_band(sums, sumsqs, band[0].size)
    whole = data.astype(np.float64)
    assert moments.mean == pytest.approx(whole.mean(), rel=1e-5)
    assert moments.m2 / moments.count == pytest.approx(whole.var(), rel=1e-5)


def test_affine_is_groupnorm_with_one_group() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(2, 3, (4, 6, 5))
    gamma, beta = rng.normal(1, 0.1, 4).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32)
    moments = Moments().merge_band(data.sum(axis=(1, 2)), np.square(data).sum(axis=(1, 2)), 30)
    scale, shift = moments.affine(gamma, beta)
    expected = (data - data.mean()) / np.sqrt(data.var() + 1e-5) * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(data * scale[0] + shift[0], expected, rtol=1e-5, atol=1e-5)


def test_assembled_band_reflects_rows_and_columns_like_numpy_pad() -> None:
    pool = Pool()
    data = np.arange(2 * 7 * 5, dtype=np.float32).reshape(2, 7, 5)
    band_map = Map(2, 7, 5, rows=3, bands=[data[:, lo:hi].copy() for lo, hi in bands(7, 3)])
    padded = np.pad(data, ((0, 0), (2, 2), (1, 2)), mode="reflect")
    np.testing.assert_array_equal(band_map.assemble(-2, 9, 1, 2, None, pool)[0], padded)
    np.testing.assert_array_equal(band_map.whole(), data)
    assert [reflect(row, 7) for row in (-2, -1, 0, 6, 7, 8)] == [2, 1, 0, 6, 5, 4]


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(("in_size", "out_size"), [(144, 288), (288, 576), (7, 14), (5, 9), (3, 8)])
def test_bilinear_tables_are_the_reflected_pairs_vectorised(in_size: int, out_size: int, align_corners: bool) -> None:
    pair = bilinear_pairs(in_size, out_size, align_corners=align_corners)
    expected = [pair(reflect(j, out_size)) for j in range(-1, out_size + 1)]
    first, second, weight = bilinear_table(in_size, out_size, 1, align_corners=align_corners)
    assert first.tolist() == [p[0] for p in expected]
    assert second.tolist() == [p[1] for p in expected]
    assert np.array_equal(weight, np.array([p[2] for p in expected], np.float32))
