"""Tests for coalign.stages.reproject: padding for the search window and resampling onto the target grid."""

import itertools

import astropy.units as u
import numpy as np
import pytest
import sunpy.data.test
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.time import Time
from reproject import reproject_interp
from sunpy.coordinates import frames

from coalign.exceptions import AllNaNError, NoOverlapError, ShapeError
from coalign.stages import reproject as reproject_module
from coalign.stages.reproject import (
    observation_time,
    pad_for_search,
    padded_wcs,
    reproject_frames,
    reproject_image,
    stacked_frame,
    wcs_at_time,
)
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
# reproject_frames: control grid, vectorised transform, exact fallback
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aia():
    """sunpy's real AIA 171 test image (SDO near Earth), with the solar limb in its field."""
    return sunpy.map.Map(sunpy.data.test.get_test_filepath("aia_171_level1.fits"))


def _aia_later(aia, minutes, lon_deg):
    """The AIA image relabelled as taken ``minutes`` later from ``lon_deg`` further west (data untouched)."""
    meta = dict(aia.meta)
    meta["date-obs"] = (aia.date + minutes * u.min).isot
    meta["t_obs"] = (aia.reference_date + minutes * u.min).isot  # sunpy's DATE-AVG
    observer = aia.observer_coordinate
    for key in ("haex_obs", "haey_obs", "haez_obs"):  # sunpy prefers these to HGLN/HGLT/DSUN
        meta.pop(key, None)
    meta["hgln_obs"] = observer.lon.to_value(u.deg) + lon_deg
    meta["hglt_obs"] = observer.lat.to_value(u.deg)
    meta["dsun_obs"] = observer.radius.to_value(u.m)
    return sunpy.map.Map(aia.data, meta)


def _far_grid(aia, centre_arcsec, shape, pixel_arcsec):
    """A grid seen from (30 deg west, 0.5 au), ``shape`` pixels around ``centre_arcsec``."""
    observer = SkyCoord(
        30 * u.deg, 0 * u.deg, 0.5 * u.au, frame=frames.HeliographicStonyhurst, obstime=aia.date
    )
    centre = SkyCoord(
        *centre_arcsec * u.arcsec,
        frame=frames.Helioprojective(observer=observer, obstime=aia.date, rsun=aia.rsun_meters),
    )
    header = sunpy.map.make_fitswcs_header(shape, centre, scale=[pixel_arcsec] * 2 * u.arcsec / u.pix)
    return sunpy.map.Map(np.zeros(shape), header).wcs


def _exact(reference, grid, shape):
    """The frame through reproject itself, with the grid at the reference's time (reproject_image's rule)."""
    band, footprint = reproject_interp(
        (reference.data, reference.wcs),
        wcs_at_time(grid, observation_time(reference.wcs)),
        shape_out=shape,
        roundtrip_coords=False,
    )
    band[footprint <= 0] = np.nan
    return band


def test_reproject_frames_matches_reproject_across_observers_and_times(aia):
    # Three frames taken 0, 40 and 80 minutes apart from three observers, resampled onto the grid of a
    # fourth observer: one vectorised transform through the control points. Each frame must equal
    # reproject's own per-pixel result to the value change of a 1e-3 pixel move.
    references = [aia, _aia_later(aia, 40, 2.0), _aia_later(aia, 80, 4.0)]
    grid, shape = _far_grid(aia, (-300, 200), (70, 90), 6.0), (70, 90)
    fast = reproject_frames([(m.data, m.wcs) for m in references], grid, shape)
    data = aia.data.astype(float)
    step = max(np.abs(np.diff(data, axis=0)).max(), np.abs(np.diff(data, axis=1)).max())
    for frame, reference in zip(fast, references, strict=True):
        exact = _exact(reference, grid, shape)
        np.testing.assert_array_equal(np.isfinite(frame), np.isfinite(exact))
        assert np.isfinite(exact).all()
        assert np.abs(frame - exact).max() <= 1e-3 * step
    # The frames differ well beyond that bound, so a frame given another's transform would fail above.
    assert np.abs(fast[0] - fast[2]).max() > 10 * 1e-3 * step


def test_reproject_frames_over_the_limb_is_exact(aia):
    # Across observers the corona above the limb has no surface point: the control points there are NaN, so
    # the frame is transformed at every pixel and reproduces reproject's NaN pattern exactly.
    grid, shape = _far_grid(aia, (-1900, 0), (40, 60), 8.0), (40, 60)
    (frame,) = reproject_frames([(aia.data, aia.wcs)], grid, shape)
    exact = _exact(aia, grid, shape)
    np.testing.assert_array_equal(np.isfinite(frame), np.isfinite(exact))
    assert 0.1 < np.isnan(exact).mean() < 0.9
    np.testing.assert_allclose(frame[np.isfinite(frame)], exact[np.isfinite(exact)], rtol=1e-12)


def test_reproject_frames_rejects_an_inaccurate_control_grid(aia, monkeypatch):
    # With a zero tolerance no interpolated mapping is good enough: every frame takes the exact path.
    grid, shape = _far_grid(aia, (-300, 200), (30, 40), 6.0), (30, 40)
    monkeypatch.setattr(reproject_module, "CONTROL_TOLERANCE", 0.0)
    (frame,) = reproject_frames([(aia.data, aia.wcs)], grid, shape)
    np.testing.assert_allclose(frame, _exact(aia, grid, shape), rtol=1e-12)


@pytest.mark.parametrize(("n_rows", "n_cols"), [(9, 6), (2, 5), (3, 3)])
def test_spline_on_grid_is_the_splines_own_grid_evaluation(n_rows, n_cols):
    """The mapping's splines evaluated on a band, one axis at a time, equal fitpack's evaluation (cubic,
    or of lower degree where a band has fewer than four control points)."""
    from scipy.interpolate import RectBivariateSpline

    y_nodes, x_nodes = np.linspace(3.0, 131.0, n_rows), np.linspace(10.0, 90.0, n_cols)
    values = (
        np.sin(y_nodes / 40)[:, None] * 7
        + np.cos(x_nodes / 25)[None, :] * 3
        + 0.01 * np.outer(y_nodes, x_nodes)
    )
    spline = RectBivariateSpline(y_nodes, x_nodes, values, kx=min(3, n_rows - 1), ky=min(3, n_cols - 1))
    rows, cols = np.arange(3.0, 132.0), np.arange(10.0, 91.0)
    on_grid = reproject_module._spline_on_grid(spline, rows, cols)
    assert on_grid.shape == (rows.size, cols.size)
    np.testing.assert_allclose(on_grid, spline(rows, cols), rtol=0, atol=1e-10)


def test_reproject_frames_bands_rows_and_empty_band(make_wcs, image_yx):
    wcs = make_wcs(shape=image_yx.shape)
    out = reproject_frames(
        [(image_yx, wcs), (image_yx, wcs)], wcs, image_yx.shape, columns=[(10, 30), (5, 5)], rows=(20, 40)
    )
    np.testing.assert_allclose(out[0, 20:40, 10:30], image_yx[20:40, 10:30], atol=1e-12)
    assert np.isnan(out[0, :20]).all() and np.isnan(out[0, :, 30:]).all()
    assert np.isnan(out[1]).all()


def test_reproject_frames_reads_big_endian_data_without_changing_it(make_wcs, image_yx):
    wcs = make_wcs(shape=image_yx.shape)
    big_endian = image_yx.astype(">f4")
    before = big_endian.copy()
    (out,) = reproject_frames([(big_endian, wcs)], wcs, image_yx.shape)
    np.testing.assert_allclose(out, image_yx.astype(np.float32), atol=1e-6)
    np.testing.assert_array_equal(big_endian, before)
    assert big_endian.dtype == np.dtype(">f4")


def test_reproject_frames_needs_one_band_per_frame(make_wcs, image_yx):
    wcs = make_wcs(shape=image_yx.shape)
    with pytest.raises(ValueError, match=r"one entry per frame \(1\), got 2 and 1"):
        reproject_frames([(image_yx, wcs)], wcs, image_yx.shape, columns=[(0, 5), (5, 9)])


def test_stacked_frame(aia):
    first = aia.coordinate_frame
    assert stacked_frame([first, aia.coordinate_frame]) is first
    later = _aia_later(aia, 40, 0.5).coordinate_frame
    stacked = stacked_frame([first, later, first])
    assert stacked.obstime.shape == (3, 1) and stacked.observer.lon.shape == (3, 1)
    assert stacked.obstime[1, 0] == later.obstime
    assert u.allclose(
        stacked.observer.lon[:, 0], [first.observer.lon, later.observer.lon, first.observer.lon]
    )
    assert stacked_frame([first, frames.HeliographicStonyhurst(obstime=Time("2020-01-01"))]) is None


def test_frame_at_time_is_the_frame_of_the_wcs_at_that_time(aia, make_wcs):
    """Referring a frame to other times gives the frame of the WCS referred to each of them (observer
    position as written, observer time moved too), for one time or stacked times; a frame without
    obstime (ICRS) is left alone."""
    from astropy.coordinates import ICRS
    from astropy.wcs.utils import wcs_to_celestial_frame

    times = Time(["2011-06-07T06:40:00", "2011-06-07T09:10:30.5"])
    base = wcs_to_celestial_frame(aia.wcs)
    for when in times:
        expected = wcs_to_celestial_frame(wcs_at_time(aia.wcs, when))
        moved = reproject_module.frame_at_time(base, when)
        assert moved.is_equivalent_frame(expected)
        assert moved.observer.obstime == expected.observer.obstime
        assert u.allclose(moved.observer.cartesian.xyz, expected.observer.cartesian.xyz)
    stacked = reproject_module.frame_at_time(base, times.reshape(-1, 1))
    assert stacked.obstime.shape == (2, 1) and (stacked.observer.obstime[:, 0] == times).all()
    assert reproject_module.frame_at_time(ICRS(), times[0]) == ICRS()


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
