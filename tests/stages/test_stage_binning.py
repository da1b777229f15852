"""Tests for coalign.stages.binning: NaN-aware block means and the matching WCS."""

import astropy.units as u
import numpy as np
import pytest
from astropy.wcs import WCS
from hypothesis import given
from hypothesis import strategies as st

from coalign.exceptions import ShapeError
from coalign.stages.binning import (
    auto_kernel_arcsec,
    bin_factors,
    bin_image,
    bin_to_kernel,
    bin_wcs,
    clip_percentiles,
    square_bin_factor,
)

# --------------------------------------------------------------------------------------------------
# bin_image
# --------------------------------------------------------------------------------------------------


def test_bin_image_known_values():
    image = np.arange(24.0).reshape(4, 6)
    expected = np.array(
        [
            [(0 + 1 + 6 + 7) / 4, (2 + 3 + 8 + 9) / 4, (4 + 5 + 10 + 11) / 4],
            [(12 + 13 + 18 + 19) / 4, (14 + 15 + 20 + 21) / 4, (16 + 17 + 22 + 23) / 4],
        ]
    )
    np.testing.assert_array_equal(bin_image(image, 2), expected)


def test_bin_image_factor_one_is_copy():
    image = np.arange(12.0).reshape(3, 4)
    out = bin_image(image, 1)
    np.testing.assert_array_equal(out, image)
    out[0, 0] = 99.0
    assert image[0, 0] == 0.0


def test_bin_image_unequal_factors():
    image = np.arange(36.0).reshape(6, 6)
    out = bin_image(image, (3, 2))  # (fy, fx)
    assert out.shape == (2, 3)
    # Block (0, 0): rows 0..2, columns 0..1.
    assert out[0, 0] == pytest.approx(np.mean(image[0:3, 0:2]))
    assert out[1, 2] == pytest.approx(np.mean(image[3:6, 4:6]))
    np.testing.assert_allclose(bin_image(image, (1, 3)), image.reshape(6, 2, 3).mean(axis=2))


def test_bin_image_drops_incomplete_blocks():
    image = np.arange(35.0).reshape(5, 7)
    out = bin_image(image, 2)
    assert out.shape == (2, 3)
    assert out[1, 2] == pytest.approx(np.mean(image[2:4, 4:6]))


def test_bin_image_nan_aware():
    image = np.array([[np.nan, np.nan, 1.0, np.nan], [np.nan, np.nan, 3.0, 8.0]])
    out = bin_image(image, 2)
    assert np.isnan(out[0, 0])  # all-NaN block
    assert out[0, 1] == pytest.approx(4.0)  # mean of the finite values 1, 3, 8


def test_bin_image_inf_counts_as_invalid():
    out = bin_image([[np.inf, 2.0], [4.0, -np.inf]], 2)
    assert out[0, 0] == pytest.approx(3.0)


def test_bin_image_does_not_mutate_input():
    image = np.array([[1.0, np.nan, 3.0, 4.0], [5.0, 6.0, np.nan, 8.0]])
    before = image.copy()
    bin_image(image, (2, 2))
    np.testing.assert_array_equal(image, before)


def test_bin_image_accepts_lists_and_ints():
    np.testing.assert_array_equal(bin_image([[1, 2], [3, 4]], 2), [[2.5]])


def test_bin_image_rejects_3d():
    with pytest.raises(ShapeError, match=r"image must be 2-D, got shape \(2, 4, 4\)"):
        bin_image(np.zeros((2, 4, 4)), 2)


def test_bin_image_rejects_too_small_image():
    with pytest.raises(ShapeError, match=r"smaller than one block \(4, 4\)"):
        bin_image(np.zeros((3, 8)), 4)


@pytest.mark.parametrize("factor", [0, -2, (2, 0), 1.5, (2, 2.5)])
def test_bin_image_rejects_bad_factor(factor):
    with pytest.raises(ValueError, match=r"factor must be a positive integer or a pair of them"):
        bin_image(np.zeros((4, 4)), factor)


@given(
    value=st.floats(-1e6, 1e6, allow_nan=False),
    ny=st.integers(1, 12),
    nx=st.integers(1, 12),
    fy=st.integers(1, 4),
    fx=st.integers(1, 4),
    nan_seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_bin_constant_image_returns_constant(value, ny, nx, fy, fx, nan_seed):
    ny, nx = max(ny, fy), max(nx, fx)
    image = np.full((ny, nx), value)
    if nan_seed is not None:
        image[np.random.default_rng(nan_seed).random((ny, nx)) < 0.3] = np.nan
    out = bin_image(image, (fy, fx))
    assert out.shape == (ny // fy, nx // fx)
    blocks = image[: ny // fy * fy, : nx // fx * fx].reshape(ny // fy, fy, nx // fx, fx)
    empty = ~np.isfinite(blocks).any(axis=(1, 3))
    assert np.all(np.isnan(out[empty]))
    np.testing.assert_allclose(out[~empty], value, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# bin_wcs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, (3, 2), (2, 5)])
@pytest.mark.parametrize("rot_deg", [0.0, 2.0, 25.0])
def test_bin_wcs_block_centres(make_wcs, factor, rot_deg):
    wcs = make_wcs(cdelt=(4.0, 1.1), crval=(300.0, -200.0), shape=(40, 30), rot_deg=rot_deg)
    fy, fx = (factor, factor) if np.isscalar(factor) else factor
    binned = bin_wcs(wcs, factor)
    iy, ix = np.mgrid[0 : 40 // fy, 0 : 30 // fx]
    lon_b, lat_b = binned.pixel_to_world_values(ix.ravel(), iy.ravel())
    # Mean position of the block's unbinned pixels, 0-based: i * f + (f - 1) / 2.
    lon, lat = wcs.pixel_to_world_values(ix.ravel() * fx + (fx - 1) / 2, iy.ravel() * fy + (fy - 1) / 2)
    np.testing.assert_allclose(lon_b, lon, rtol=0, atol=1e-10)  # degrees
    np.testing.assert_allclose(lat_b, lat, rtol=0, atol=1e-10)
    assert binned.array_shape == (40 // fy, 30 // fx)


def test_bin_wcs_does_not_modify_input(make_wcs):
    wcs = make_wcs(cdelt=(4.0, 1.1), rot_deg=2.0)
    before = (wcs.wcs.crpix.copy(), wcs.wcs.cdelt.copy(), wcs.wcs.get_pc().copy(), wcs.array_shape)
    out = bin_wcs(wcs, (2, 3))
    assert out is not wcs
    np.testing.assert_array_equal(wcs.wcs.crpix, before[0])
    np.testing.assert_array_equal(wcs.wcs.cdelt, before[1])
    np.testing.assert_array_equal(wcs.wcs.get_pc(), before[2])
    assert wcs.array_shape == before[3]


def test_bin_wcs_rejects_bad_factor(make_wcs):
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        bin_wcs(make_wcs(), 0)


# --------------------------------------------------------------------------------------------------
# bin_factors, bin_to_kernel, auto_kernel_arcsec
# --------------------------------------------------------------------------------------------------


def test_bin_factors_non_square(make_wcs):
    wcs = make_wcs(cdelt=(4.0, 1.1))
    assert bin_factors(wcs, 20) == (18, 5)  # (round(20 / 1.1), round(20 / 4))
    assert bin_factors(wcs, 20 * u.arcsec) == (18, 5)
    assert bin_factors(wcs, 1 * u.arcmin) == (55, 15)


def test_bin_factors_rotation_keeps_pixel_sizes(make_wcs):
    assert bin_factors(make_wcs(cdelt=(4.0, 1.1), rot_deg=2.0), 20) == (18, 5)


def test_bin_factors_at_least_one(make_wcs):
    assert bin_factors(make_wcs(cdelt=(4.0, 2.0)), 0.5) == (1, 1)


@pytest.mark.parametrize("kernel", [0, -5, -5 * u.arcsec, float("nan")])
def test_bin_to_kernel_rejects_non_positive_kernel(make_wcs, kernel):
    with pytest.raises(ValueError, match=r"kernel_arcsec must be a positive angle.*20 \* u\.arcsec"):
        bin_to_kernel(np.zeros((60, 60)), make_wcs(), kernel)


def test_bin_to_kernel_bins_image_and_wcs(make_wcs, image_yx):
    wcs = make_wcs(cdelt=(2.0, 1.0), shape=(60, 60))
    binned, binned_wcs = bin_to_kernel(image_yx, wcs, 6 * u.arcsec)  # factors (6, 3)
    assert binned.shape == (10, 20)
    assert binned[2, 5] == pytest.approx(image_yx[12:18, 15:18].mean())
    np.testing.assert_allclose(binned_wcs.wcs.cdelt * 3600, [6.0, 6.0])


def test_auto_kernel(make_wcs):
    wcs = make_wcs(cdelt=(2.0, 2.0))
    assert auto_kernel_arcsec(wcs, (100, 96)) == pytest.approx(8.0)  # 96 * 2 / 24
    assert auto_kernel_arcsec(wcs, (1000, 1000)) == pytest.approx(20.0)
    assert auto_kernel_arcsec(wcs, (10, 10)) == pytest.approx(2.0)  # never below one pixel


# --------------------------------------------------------------------------------------------------
# clip_percentiles
# --------------------------------------------------------------------------------------------------


def test_clip_percentiles_keeps_nan_and_does_not_mutate():
    image = np.array([0.0, 1.0, 2.0, np.nan, 1000.0])
    before = image.copy()
    out = clip_percentiles(image, (0, 75))
    np.testing.assert_array_equal(image, before)
    assert np.isnan(out[3])
    # The 75th percentile of [0, 1, 2, 1000] with linear interpolation is 2 + 0.25 * 998 = 251.5.
    np.testing.assert_allclose(out[[0, 1, 2, 4]], [0.0, 1.0, 2.0, 251.5])


def test_clip_percentiles_clips_both_ends():
    image = np.arange(101.0)
    out = clip_percentiles(image, (10, 90))
    assert out.min() == 10.0 and out.max() == 90.0
    np.testing.assert_array_equal(out[10:91], image[10:91])


def test_clip_percentiles_all_nan_returns_copy():
    image = np.full((3, 3), np.nan)
    out = clip_percentiles(image)
    assert out is not image
    assert np.isnan(out).all()


# A CD-matrix WCS (no warning allowed: filterwarnings = error) is re-expressed as PC + CDELT.
@pytest.mark.parametrize("factor", [2, (3, 2)])
def test_bin_wcs_cd_matrix(factor):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]
    wcs.wcs.cunit = ["arcsec", "arcsec"]
    wcs.wcs.cd = [[2.0, 0.3], [-0.2, 1.5]]
    wcs.wcs.crpix = [15.5, 12.5]
    wcs.wcs.set()
    fy, fx = (factor, factor) if np.isscalar(factor) else factor
    binned = bin_wcs(wcs, factor)
    iy, ix = np.mgrid[0:5, 0:6]
    np.testing.assert_allclose(
        binned.pixel_to_world_values(ix.ravel(), iy.ravel()),
        wcs.pixel_to_world_values(ix.ravel() * fx + (fx - 1) / 2, iy.ravel() * fy + (fy - 1) / 2),
        rtol=0,
        atol=1e-10,
    )


def test_clip_percentiles_in_place_clips_the_given_array():
    """``out=image`` clips a float stack in place, with the levels of the whole stack."""
    stack = np.stack([np.arange(101.0), np.full(101, np.nan)])
    expected = clip_percentiles(stack, (10, 90))
    out = clip_percentiles(stack, (10, 90), out=stack)
    assert out is stack
    np.testing.assert_array_equal(stack, expected)
    empty = np.full((2, 2), np.nan)
    assert clip_percentiles(empty, out=empty) is empty and np.isnan(empty).all()


# --------------------------------------------------------------------------------------------------
# square_bin_factor
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cdelt", "pc", "rows", "factor"),
    [
        ((4.0, 1.1), ((1, 0), (0, 1)), 800, 3),  # SPICE raster: 4" steps, 1.1" rows
        ((2.0, 1.67), ((1, 0), (0, 1)), 800, 1),  # nearly square
        ((4.0, 1.1), ((1, 0), (0, 1)), 60, 1),  # too few rows left after binning
        ((1.1, 4.0), ((0, -1), (1, 0)), 800, 3),  # rotated by 90 degrees: pixel sizes along the grid's axes
        ((0.35, 0.1663), ((1, 0), (0, 1)), 548, 2),  # IRIS raster: 0.35" steps, 0.166" rows
    ],
)
def test_square_bin_factor(cdelt, pc, rows, factor):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]
    wcs.wcs.cunit = ["arcsec", "arcsec"]
    wcs.wcs.cdelt = cdelt
    wcs.wcs.pc = pc
    assert square_bin_factor(wcs, rows) == factor


def test_square_bins_are_square_and_in_register():
    """Rows binned by the factor give ~square pixels, and every binned pixel sits (in intermediate world
    coordinates, linear in pixels) at the mean of the rows it holds."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]
    wcs.wcs.cunit = ["arcsec", "arcsec"]
    wcs.wcs.cdelt = [4.0, 1.1]
    wcs.wcs.crpix = [96.5, 400.5]
    wcs.wcs.set()
    factor = square_bin_factor(wcs, 800)
    binned = bin_wcs(wcs, (factor, 1))
    assert np.abs(binned.pixel_scale_matrix * 3600).max(axis=0) == pytest.approx([4.0, 3.3])
    x, y = np.meshgrid(np.arange(0, 192, 17.0), np.arange(0, 266, 13.0))
    rows = y[..., None] * factor + np.arange(factor)  # the full-resolution rows of each binned row

    def intermediate(w, px, py):
        return w.wcs.p2s(np.column_stack([px.ravel(), py.ravel()]), 0)["imgcrd"]

    full = intermediate(wcs, np.repeat(x[..., None], factor, -1), rows).reshape(*rows.shape, 2)
    np.testing.assert_allclose(intermediate(binned, x, y), full.mean(axis=-2).reshape(-1, 2), atol=1e-12)
