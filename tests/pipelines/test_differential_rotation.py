"""Differential-rotation compensation (``SyntheticParams(differential_rotation=True)``) on the EIT series.

What is real:

* The SOHO/EIT 195 images of 2004-03-01 00:00 and 01:00 shipped with sunpy, and the headers of the hourly
  series 00:00 to 12:00 (times, pointing, SOHO's position), read by `tests.sample.eit_map` and
  `tests.sample.eit_header`, which repair the geometry of the 8x-resampled files (CDELT 21.04", SOLAR_R
  46.5 pixels, the 180-degree roll of SOHO); telemetry gaps are NaN.

What is synthesised:

* The scene: the real 00:00 image seen through a Gaussian PSF of ``PSF_SIGMA`` EIT pixels (well sampled,
  so that the sub-pixel truth does not depend on the interpolator).
* Reference frames at the real header times of 04:00, 08:00 and 12:00: the scene carried by solar
  differential rotation to each header's time (sunpy's ``propagate_with_solar_surface``) and sampled on the
  header's grid by scipy cubic interpolation. The 00:00 frame is the scene itself. The sequence is sparse:
  one frame every 4 hours.
* Target rasters of 48 columns x 64 rows, 16" x 12", centred on the disc at (80", -30") (the raster spans
  0.6 R_sun across, away from the limb), seen by SOHO from where the header of the first column's hour
  puts it.
  Column ``i`` samples the scene carried to the column's own time ``t_i`` at the column's sky positions
  (astropy/sunpy coordinates and scipy cubic interpolation; coalign and ``reproject`` are not used), plus
  noise. ``RASTER_1H`` takes a column every 75 s from 05:00 to 06:00, ``RASTER_6H`` every 7.5 min from
  01:00 to 07:00. Near the disc centre features move west by ~9"/h: the 04:00 frame, 1-2 h before the
  columns of ``RASTER_1H``, shows them 9-19" (0.6-1.2 raster pixel) east of where the raster sees them.
* A known header error ``ERROR`` is injected; the correction to recover is ``ERROR.inverse()``. The
  nearest-frame cases search shift only; the blending cases at the end fit the scale too (compensation
  gives each 10-minute chunk of columns its own carried copies of its frames, so the drift of the
  features during the scan is kept).
"""

from dataclasses import replace
from functools import cache

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.time import Time
from scipy import ndimage
from sunpy.coordinates import Helioprojective, propagate_with_solar_surface
from sunpy.map.maputils import all_coordinates_from_map

from coalign import (
    ONE_MAP,
    SYNTHETIC_RASTER,
    Coaligner,
    SyntheticParams,
    Transform,
    apply_transform,
    grid_from_wcs,
    one_map_phase,
    reproject_image,
    synthetic_raster_phase,
)
from coalign.stages.sampling import FramePlan
from coalign.stages.synthetic import carried_frames
from tests.sample import cubic_sample, eit_header, eit_map, nan_smooth

PSF_SIGMA = 1.0  # EIT pixels (21")
NOISE = 0.03  # of the raster's standard deviation
RASTER_SHAPE = (64, 48)  # rows along the slit, columns (slit positions)
RASTER_STEP = (16.0, 12.0)  # arcsec: x (between columns), y (along the slit)
RASTER_CENTRE = (80.0, -30.0)  # arcsec
DAY = Time("2004-03-01T00:00:00")
RASTER_1H = (5.0, 6.0)  # hours of the first and last column
RASTER_6H = (1.0, 7.0)
ERROR = Transform(17.3, -11.6)  # arcsec, about one raster pixel on each axis
SHIFT_ONLY = replace(SYNTHETIC_RASTER, shift_range_arcsec=(60.0, 40.0), fit_scale=False)
MAX_GAP_S = 3 * 3600.0
# Measured: compensated errors <= 0.06 pixel (both axes; y is as good without compensation), uncompensated
# x errors 0.82-0.83 pixel (13"), i.e. >= 14x the compensated ones.
BOUND_PIX = 0.15
UNCOMPENSATED_MIN_PIX = 0.5
RATIO = 5.0


# --- construction --------------------------------------------------------------------------------------


@cache
def _scene():
    real = eit_map(0)
    return sunpy.map.Map(nan_smooth(real.data, PSF_SIGMA), real.meta)


def _carried_scene(coords: SkyCoord) -> np.ndarray:
    """The scene carried by differential rotation to the time of ``coords``, sampled there (NaN off-disc)."""
    scene = _scene()
    with propagate_with_solar_surface():
        px, py = scene.world_to_pixel(coords.transform_to(scene.coordinate_frame))
    px, py = np.asarray(px.value, dtype=float), np.asarray(py.value, dtype=float)
    out = np.full(px.shape, np.nan)
    on_disc = np.isfinite(px) & np.isfinite(py)
    out[on_disc] = cubic_sample(scene.data, py[on_disc], px[on_disc])
    return out


def _empty_map(header, shape=(128, 128)):
    return sunpy.map.Map(np.zeros(shape), header)


@cache
def _frame(hour: int):
    """Reference frame on the real header of ``hour``: the scene carried to that header's time."""
    if hour == 0:
        return _scene()
    grid = _empty_map(eit_header(hour))
    yy, xx = np.mgrid[0 : grid.data.shape[0], 0 : grid.data.shape[1]]
    return sunpy.map.Map(_carried_scene(grid.pixel_to_world(xx * u.pix, yy * u.pix)), grid.meta)


def _frames(hours):
    return [_frame(h) for h in hours]


def _column_times(span) -> Time:
    first, last = span
    return DAY + np.linspace(first, last, RASTER_SHAPE[1]) * u.h


def _raster_meta(times: Time) -> dict:
    ny, nx = RASTER_SHAPE
    mid = times.min() + (times.max() - times.min()) / 2
    observer = _empty_map(eit_header(int(times.min().datetime.hour))).observer_coordinate
    return {
        "ctype1": "HPLN-TAN",
        "ctype2": "HPLT-TAN",
        "cunit1": "arcsec",
        "cunit2": "arcsec",
        "crpix1": (nx + 1) / 2,
        "crpix2": (ny + 1) / 2,
        "crval1": RASTER_CENTRE[0],
        "crval2": RASTER_CENTRE[1],
        "cdelt1": RASTER_STEP[0],
        "cdelt2": RASTER_STEP[1],
        "naxis1": nx,
        "naxis2": ny,
        "date-obs": mid.isot,
        "hgln_obs": observer.lon.to_value(u.deg),
        "hglt_obs": observer.lat.to_value(u.deg),
        "dsun_obs": observer.radius.to_value(u.m),
        "rsun_ref": _scene().coordinate_frame.rsun.to_value(u.m),
    }


@cache
def _raster(span, seed=0):
    """(true raster map, column times): column i sees the scene carried to its own time."""
    times = _column_times(span)
    truth = _empty_map(_raster_meta(times), RASTER_SHAPE)
    ny, nx = RASTER_SHAPE
    rows = np.arange(ny)
    data = np.empty((ny, nx))
    for i, t in enumerate(times):
        sky = truth.pixel_to_world(np.full(ny, i) * u.pix, rows * u.pix)
        frame = Helioprojective(
            obstime=t, observer=truth.observer_coordinate.frame.replicate(obstime=t), rsun=truth.rsun_meters
        )
        data[:, i] = _carried_scene(SkyCoord(sky.Tx, sky.Ty, frame=frame))
    rng = np.random.default_rng(seed)
    data += NOISE * np.nanstd(data) * rng.normal(size=data.shape)
    return sunpy.map.Map(data, truth.meta), times


def _shift_error(found: Transform, truth: Transform, wcs) -> np.ndarray:
    """Shift error (x, y) in raster pixels."""
    return np.array(grid_from_wcs(wcs).shift_in_pixels(Transform(found.dx - truth.dx, found.dy - truth.dy)))


@cache
def _phase(span, hours, interpolate, rotation, fit_scale=False):
    """(result, shift error in raster pixels, shift error in arcsec, scale error) of the synthetic phase."""
    truth_map, times = _raster(span)
    target = apply_transform(truth_map, ERROR)
    params = replace(SHIFT_ONLY, fit_scale=fit_scale)
    synthetic = SyntheticParams(
        max_time_gap_s=MAX_GAP_S, interpolate=interpolate, differential_rotation=rotation
    )
    result = synthetic_raster_phase(target, _frames(hours), params, column_times=times, synthetic=synthetic)
    truth, found = ERROR.inverse(), result.transform
    arcsec = np.array([found.dx - truth.dx, found.dy - truth.dy])
    scale = np.array([found.sx / truth.sx - 1, found.sy / truth.sy - 1])
    return result, _shift_error(found, truth, target.wcs), arcsec, scale


def _disc_radius(smap) -> np.ndarray:
    coords = all_coordinates_from_map(smap)
    return np.hypot(coords.Tx, coords.Ty).to_value(u.arcsec) / smap.rsun_obs.to_value(u.arcsec)


def _ncc(a, b, mask):
    valid = mask & np.isfinite(a) & np.isfinite(b)
    a, b = a[valid] - a[valid].mean(), b[valid] - b[valid].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


# --- the EIT geometry the cases rest on ---------------------------------------------------------------


def test_repaired_eit_geometry():
    """The repaired headers put the limb where the image shows it and the Sun at its true size."""
    real = eit_map(0)
    assert real.rsun_obs.to_value(u.arcsec) == pytest.approx(979.1, abs=1.0)
    assert real.scale[0].to_value(u.arcsec / u.pix) == pytest.approx(21.04)
    radius = _disc_radius(real)
    # EUV limb brightening: the brightest ring lies just above the photosphere.
    rings = np.arange(0.80, 1.20, 0.02)
    profile = [np.nanmedian(real.data[(radius >= r) & (radius < r + 0.02)]) for r in rings]
    assert 1.0 <= rings[int(np.argmax(profile))] <= 1.06
    assert [Time(eit_header(h)["DATE-OBS"]).datetime.hour for h in (0, 4, 8, 12)] == [0, 4, 8, 12]


# --- reproject_image(..., rotate_to=) ------------------------------------------------------------------


def test_rotate_to_matches_a_direct_propagation():
    """The 00:00 scene resampled on the raster grid at a time 5.5 h later, with rotate_to, equals bilinear
    samples of the scene at the grid's sky positions carried by propagate_with_solar_surface (computed
    here without reproject); without rotate_to it is several pixels off."""
    scene = _scene()
    raster, _ = _raster(RASTER_1H)
    when = DAY + 5.5 * u.h
    carried = reproject_image(scene.data, scene.wcs, raster.wcs, raster.data.shape, rotate_to=when)
    fixed = reproject_image(scene.data, scene.wcs, raster.wcs, raster.data.shape)

    ny, nx = raster.data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = raster.pixel_to_world(xx * u.pix, yy * u.pix)
    observer = raster.observer_coordinate.frame.replicate(obstime=when)
    frame = Helioprojective(obstime=when, observer=observer, rsun=raster.rsun_meters)
    with propagate_with_solar_surface():
        carried_sky = SkyCoord(sky.Tx, sky.Ty, frame=frame).transform_to(scene.coordinate_frame)
    px, py = scene.world_to_pixel(carried_sky)
    expected = ndimage.map_coordinates(scene.data, [py.value, px.value], order=1, cval=np.nan)

    assert np.isfinite(carried).all() and np.isfinite(expected).all()
    np.testing.assert_allclose(carried, expected, rtol=1e-6)
    contrast = np.std(expected)
    assert np.abs(carried - expected).max() < 1e-3 * contrast
    assert np.abs(fixed - expected).mean() > 0.1 * contrast
    # The carried scene is the fixed one moved west by ~5.5 h x 9"/h (about 3 raster pixels).
    best = max(
        (_ncc(np.roll(fixed, k, axis=1)[:, 8:-8], expected[:, 8:-8], np.ones((ny, nx - 16), bool)), k)
        for k in range(-8, 9)
    )
    assert 2 <= best[1] <= 4, best


def test_rotate_to_on_a_target_wcs_without_a_date():
    """The grid takes the time ``rotate_to`` even when the target WCS has no date of its own."""
    scene = _scene()
    raster, _ = _raster(RASTER_1H)
    undated = raster.wcs.deepcopy()
    undated.wcs.dateobs = undated.wcs.dateavg = ""
    undated.wcs.mjdobs = undated.wcs.mjdavg = np.nan
    undated.wcs.set()
    when = DAY + 5.5 * u.h
    dated = reproject_image(scene.data, scene.wcs, raster.wcs, raster.data.shape, rotate_to=when)
    np.testing.assert_array_equal(
        reproject_image(scene.data, scene.wcs, undated, raster.data.shape, rotate_to=when), dated
    )


def test_rotate_to_brings_the_real_00h_image_closer_to_the_real_01h_image():
    """Real data: carried to 01:00, the 00:00 image correlates better with the real 01:00 image, and the
    features' apparent westward motion over the hour is mostly removed. Off the disc the carried image is
    NaN (the corona cannot be carried by the surface rotation)."""
    before, after = eit_map(0), eit_map(1)
    shape = after.data.shape
    fixed = reproject_image(before.data, before.wcs, after.wcs, shape)
    carried = reproject_image(before.data, before.wcs, after.wcs, shape, rotate_to=after.date)
    radius = _disc_radius(after)
    assert np.isfinite(carried[radius < 0.95]).mean() > 0.99  # (the 00:00 telemetry gap is on the disc)
    assert np.isnan(carried[radius > 1.0]).all()
    # On its own grid and time the 00:00 image keeps its corona; carried to 01:00 it does not.
    own_radius = _disc_radius(before)
    own = reproject_image(before.data, before.wcs, before.wcs, shape)
    own_carried = reproject_image(before.data, before.wcs, before.wcs, shape, rotate_to=after.date)
    assert np.isfinite(own[own_radius > 1.0]).mean() > 0.99
    assert np.isnan(own_carried[own_radius > 1.0]).all()

    on_disc = radius < 0.9
    # Measured: 0.8748 without, 0.8838 with.
    assert _ncc(carried, after.data, on_disc) > _ncc(fixed, after.data, on_disc) + 0.005

    # Shift of an on-disc cut-out of the real 01:00 image onto each version of 00:00.
    cutout = after.submap([34, 36] * u.pix, top_right=[93, 91] * u.pix)
    params = replace(ONE_MAP, shift_range_arcsec=(30.0, 30.0))
    moved = one_map_phase(cutout, before, params).transform
    residual = one_map_phase(cutout, sunpy.map.Map(carried, after.meta), params).transform
    # Measured: features moved 6.0" west (the correction onto 00:00 is negative, sigma ~2"); carrying
    # moves them 8.6" west, leaving 2.6" (the other way).
    assert -10.0 < moved.dx < -3.0, moved
    assert 6.0 < residual.dx - moved.dx < 11.0, (moved, residual)
    assert abs(residual.dx) < 0.7 * abs(moved.dx), (moved, residual)
    assert abs(moved.dy) < 2.0 and abs(residual.dy) < 2.0, (moved, residual)


# --- the frame a sparse sequence serves columns with, hours away ---------------------------------------


def _assert_compensation_pays_off(with_rotation, without):
    """``(result, shift error in pixels, ...)`` of a case with and without compensation."""
    assert np.all(np.abs(with_rotation[1]) <= BOUND_PIX), with_rotation
    assert with_rotation[0].flags == ()
    assert abs(without[1][0]) >= UNCOMPENSATED_MIN_PIX, without
    assert abs(without[1][0]) >= RATIO * np.abs(with_rotation[1]).max(), (without, with_rotation)


def test_carried_copies_follow_the_column_times():
    """Columns after the last frame blend ``(1 - 1) x previous + 1 x last``; with chunks of 10 minutes each
    column half an hour apart gets its own copies, carried to its own time, and keeps its blend."""
    times = DAY + np.array([5.0, 5.5, 6.0]) * u.h
    plan = FramePlan(np.zeros(3, int), np.ones(3, int), np.ones(3))
    carried = carried_frames(plan, times, 600.0)
    assert carried.source.tolist() == [0, 1, 0, 1, 0, 1]
    np.testing.assert_allclose((carried.times - times[0]).to_value(u.s), [0, 0, 1800, 1800, 3600, 3600])
    assert carried.plan.lower.tolist() == [0, 2, 4] and carried.plan.upper.tolist() == [1, 3, 5]
    np.testing.assert_array_equal(carried.plan.weight, plan.weight)


def test_nearest_frame_hours_away_is_compensated():
    """Frames every 4 h, nearest frame per column (no blending): every column of the 05:00-06:00 raster
    takes the 04:00 frame, whose features lie 0.6-1.2 raster pixel east of where the raster saw them."""
    hours = (0, 4, 8, 12)
    with_rotation = _phase(RASTER_1H, hours, False, True)
    without = _phase(RASTER_1H, hours, False, False)
    _assert_compensation_pays_off(with_rotation, without)


def test_columns_after_the_last_frame_are_compensated_through_the_facade():
    """The sequence ends at 04:00 (frames every 4 h), the raster runs 05:00-06:00, columns blended as by
    default: every column falls back on the 04:00 frame. ``Coaligner.synthetic_kwargs`` carries the
    switch."""

    def run(rotation):
        truth_map, times = _raster(RASTER_1H)
        target = apply_transform(truth_map, ERROR)
        aligner = Coaligner(target, _frame(4), _frames((0, 4)), column_times=times)
        aligner.synthetic_kwargs.update(shift_range=(60.0, 40.0), fit_scale=False, max_time_gap_s=MAX_GAP_S)
        aligner.synthetic_kwargs["differential_rotation"] = rotation
        result = aligner.run_synthetic_raster_xcorr()
        return result, _shift_error(result.transform, ERROR.inverse(), target.wcs)

    with_rotation, without = run(True), run(False)
    _assert_compensation_pays_off(with_rotation, without)


# --- blending between bracketing frames ----------------------------------------------------------------


def test_blending_keeps_the_drift_across_the_raster():
    """Without compensation, blending the 4-hourly frames that bracket each column of the 01:00-07:00
    raster places features at the column's time on average: shift and scale are recovered."""
    result, pixels, _, scale = _phase(RASTER_6H, (0, 4, 8, 12), True, False, fit_scale=True)
    # Measured: 0.002 and 0.045 pixel, scale errors 0.1 % and 0.26 %.
    assert np.all(np.abs(pixels) <= BOUND_PIX), result
    assert np.all(np.abs(scale) <= 0.006), result


def test_blending_with_compensation_keeps_the_drift_across_the_raster():
    """With compensation, each chunk of columns gets its own copies of the two bracketing frames carried to
    its own time, so the drift across the 6-hour scan is kept. (When each frame was carried to a single
    time, the mean of all the columns it serves, sx came out 3.4 % off here.)"""
    result, pixels, _, scale = _phase(RASTER_6H, (0, 4, 8, 12), True, True, fit_scale=True)
    # Measured: (0.025, -0.011) pixel, scale errors -0.17 % and +0.46 %.
    assert np.all(np.abs(pixels) <= BOUND_PIX), result
    assert np.all(np.abs(scale) <= 0.006), result
