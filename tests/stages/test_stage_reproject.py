"""Tests for coalign.stages.reproject: padding for the search window and resampling onto the target grid."""

import itertools

import numpy as np
import pytest

from coalign.exceptions import AllNaNError, NoOverlapError, ShapeError
from coalign.stages.reproject import pad_for_search, padded_wcs, reproject_image
from coalign.transform import Transform, grid_from_wcs, pixel_mapping

# --------------------------------------------------------------------------------------------------
# reproject_image
# --------------------------------------------------------------------------------------------------


def test_reproject_onto_own_wcs_with_pad(make_wcs, image_yx):
    wcs = make_wcs(shape=image_yx.shape)
    before = image_yx.copy()
    out = reproject_image(image_yx, wcs, wcs, image_yx.shape, pad=(3, 5))
    assert out.shape == (60 + 6, 60 + 10)
    np.testing.assert_allclose(out[3:-3, 5:-5], image_yx, atol=1e-8)
    assert np.isnan(out[:3]).all() and np.isnan(out[-3:]).all()
    assert np.isnan(out[:, :5]).all() and np.isnan(out[:, -5:]).all()
    np.testing.assert_array_equal(image_yx, before)


def test_reproject_known_offset(make_wcs, image_yx):
    # The reference points 4 arcsec (2 pixels) further west: reference pixel X sees the world of target
    # pixel x = X + 2, so resampled[:, x] = reference[:, x - 2].
    target_wcs = make_wcs(shape=(60, 60))
    reference_wcs = make_wcs(crval=(4.0, 0.0), shape=(60, 60))
    out = reproject_image(image_yx, reference_wcs, target_wcs, (60, 60))
    np.testing.assert_allclose(out[5:-5, 7:-5], image_yx[5:-5, 5:-7], atol=1e-6)
    assert np.isnan(out[:, :2]).all()


def test_reproject_adaptive_constant(make_wcs):
    wcs = make_wcs(shape=(30, 30))
    out = reproject_image(np.full((30, 30), 7.0), wcs, wcs, (30, 30), method="adaptive")
    finite = np.isfinite(out)
    assert finite[5:-5, 5:-5].all()
    np.testing.assert_allclose(out[finite], 7.0, rtol=1e-9)


def test_reproject_no_overlap(make_wcs, image_yx):
    far = make_wcs(crval=(5000.0, 0.0), shape=image_yx.shape)
    with pytest.raises(NoOverlapError, match=r"does not overlap the target grid.*lon 4941\.\.5059 arcsec"):
        reproject_image(image_yx, make_wcs(shape=image_yx.shape), far, image_yx.shape, pad=(0, 0))


def test_reproject_all_nan_reference(make_wcs):
    wcs = make_wcs()
    with pytest.raises(AllNaNError, match="reference holds no finite pixel"):
        reproject_image(np.full((60, 60), np.nan), wcs, wcs, (60, 60))


def test_reproject_rejects_3d_reference(make_wcs):
    with pytest.raises(ShapeError, match=r"reference must be a 2-D image, got shape \(2, 60, 60\)"):
        reproject_image(np.zeros((2, 60, 60)), make_wcs(), make_wcs(), (60, 60))


def test_reproject_rejects_unknown_method(make_wcs, image_yx):
    wcs = make_wcs()
    with pytest.raises(ValueError, match=r"method must be 'interp' or 'adaptive', got method='cubic'"):
        reproject_image(image_yx, wcs, wcs, (60, 60), method="cubic")


def test_padded_wcs(make_wcs):
    wcs = make_wcs(shape=(40, 50))
    out, shape = padded_wcs(wcs, (40, 50), (3, 7))
    assert shape == (46, 64)
    assert out.array_shape == (46, 64)
    # Target pixel (x, y) is padded pixel (x + 7, y + 3).
    np.testing.assert_allclose(out.pixel_to_world_values(7, 3), wcs.pixel_to_world_values(0, 0), atol=1e-12)
    assert wcs.array_shape == (40, 50)


# --------------------------------------------------------------------------------------------------
# pad_for_search
# --------------------------------------------------------------------------------------------------


def test_pad_for_search_values(make_wcs):
    grid = grid_from_wcs(make_wcs(cdelt=(2.0, 2.0)))
    # Scaling acts about CRPIX (0-based 39.5, 29.5), so the farthest pixel is 39.5 (x) / 29.5 (y) away:
    # x: 10 / 2 + 0.03 * 39.5 = 6.185 -> 7 (+2); y: 20 / 2 + 0.03 * 29.5 = 10.885 -> 11 (+2).
    assert pad_for_search(grid, (60, 80), (10.0, 20.0), (0.98, 1.03)) == (13, 9)
    assert pad_for_search(grid, (60, 80), (10.0, 20.0)) == (12, 7)
    assert pad_for_search(grid, (60, 80), (0.0, 0.0), margin_pix=0) == (0, 0)


def test_pad_for_search_non_square_pixels(make_wcs):
    grid = grid_from_wcs(make_wcs(cdelt=(4.0, 1.1)))
    assert pad_for_search(grid, (60, 60), (20.0, 11.0), margin_pix=0) == (10, 5)
    assert all(type(v) is int for v in pad_for_search(grid, (60, 60), (20.0, 11.0)))


def _window_stays_inside(grid, shape, shift_range, scale_range, margin_pix=0):
    pad = pad_for_search(grid, shape, shift_range, scale_range, margin_pix=margin_pix)
    padded = grid.with_pad(pad)
    ny, nx = shape
    corners = np.array([[0, 0], [0, nx - 1], [ny - 1, 0], [ny - 1, nx - 1]], dtype=float).T
    for sdx, sdy, sx, sy in itertools.product((-1, 1), (-1, 1), scale_range, scale_range):
        t = Transform(sdx * shift_range[0], sdy * shift_range[1], sx, sy)
        matrix, offset = pixel_mapping(t, padded)
        q = matrix @ corners + offset[:, None]
        assert q.min() >= -1e-9, (t, q)
        assert (q[0] <= ny + 2 * pad[0] - 1 + 1e-9).all(), (t, q)
        assert (q[1] <= nx + 2 * pad[1] - 1 + 1e-9).all(), (t, q)


@pytest.mark.parametrize("cdelt", [(2.0, 2.0), (4.0, 1.1)])
def test_pad_for_search_keeps_window_inside_unrotated(make_wcs, cdelt):
    grid = grid_from_wcs(make_wcs(cdelt=cdelt, shape=(50, 70)))
    _window_stays_inside(grid, (50, 70), (20.0, 12.0), (0.97, 1.04))


def test_pad_for_search_keeps_window_inside_rotated(make_wcs):
    grid = grid_from_wcs(make_wcs(cdelt=(2.0, 2.0), shape=(60, 60), rot_deg=30.0))
    _window_stays_inside(grid, (60, 60), (20.0, 20.0), (1.0, 1.0), margin_pix=2)
