"""Known-truth accuracy, uncertainty calibration and sanity flags of the phases on the bundled real data.

Construction (independent of coalign's interpolation path):

* The reference is a real IRIS SJI 1400 frame seen through a Gaussian PSF of sigma = 0.7 pixel, so that
  it is well sampled: the bundled frames are 10x-binned and aliased, and for aliased content the sub-pixel
  "truth" of a resampled target depends on the interpolator used to make it (the raw frame is tested with
  a looser bound, see `test_one_map_raw_undersampled_frame`).
* A target is the reference resampled by scipy cubic `map_coordinates` onto a grid offset by a known
  fractional number of pixels (single map), or built column by column from the frames bracketing each
  column's time, at the sky positions of a 2" x 1.68" raster grid, mapped through the WCS with wcslib and
  blended linearly in time (synthetic raster; `coalign.build_synthetic_raster` is not used). Its WCS is
  the truth; Gaussian noise (a fraction of the robust std) and NaN holes are added to the target only.
* A known header error ``E`` is injected with `apply_transform`; the correction to recover is
  ``E.inverse()``.
"""

from dataclasses import replace
from functools import cache

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.time import Time

from coalign import (
    ONE_MAP,
    SYNTHETIC_RASTER,
    ImageWithWCS,
    Transform,
    apply_transform,
    grid_from_wcs,
    one_map_phase,
    synthetic_raster_phase,
)
from tests.sample import cubic_sample, nan_smooth, sample

PSF_SIGMA = 0.7  # pixels
NOISE = 0.05  # of the target's robust standard deviation
ONE_MAP_PARAMS = replace(ONE_MAP, shift_range_arcsec=(8.0, 8.0))


# --- construction helpers ----------------------------------------------------------------------------


def _robust_std(values):
    values = values[np.isfinite(values)]
    return 1.4826 * np.median(np.abs(values - np.median(values)))


@cache
def _well_sampled(k: int):
    """Reference frame ``k`` of the bundled sequence seen through the Gaussian PSF (NaN holes kept)."""
    frame = sample()[2][k]
    return sunpy.map.Map(nan_smooth(frame.data.astype(float), PSF_SIGMA), frame.meta)


def _degrade(data, noise, seed):
    """Add Gaussian noise (``noise`` x robust std) and NaN holes (three discs and one column)."""
    rng = np.random.default_rng(seed)
    data = data + noise * _robust_std(data) * rng.normal(size=data.shape)
    ny, nx = data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    for _ in range(3):
        cy, cx = rng.uniform(5, ny - 5), rng.uniform(5, nx - 5)
        data[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = np.nan
    data[:, rng.integers(2, nx - 2)] = np.nan
    return data


def _cutout(reference, x0, y0, shape, noise=NOISE, seed=0, row_step=1.0):
    """The reference resampled on a grid whose pixel (0, 0) is reference pixel (x0, y0) (fractional), with
    rows ``row_step`` reference pixels apart."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    data = _degrade(cubic_sample(reference.data, yy * row_step + y0, xx + x0), noise, seed)
    meta = reference.meta.copy()
    meta["crpix1"] = reference.meta["crpix1"] - x0
    meta["crpix2"] = (reference.meta["crpix2"] - y0 - 1) / row_step + 1
    if row_step != 1.0:  # pixel -> world matrix times diag(1, row_step): the PC matrix's second column
        for (i, j), value in np.ndenumerate(reference.rotation_matrix):
            meta[f"pc{i + 1}_{j + 1}"] = value * (row_step if j == 1 else 1.0)
        meta.pop("crota2", None)
    meta["naxis1"], meta["naxis2"] = nx, ny
    return sunpy.map.Map(data, meta)


def _shift_error_pixels(found: Transform, truth: Transform, wcs) -> np.ndarray:
    """Shift error (x, y) in target pixels."""
    return np.array(grid_from_wcs(wcs).shift_in_pixels(Transform(found.dx - truth.dx, found.dy - truth.dy)))


def _pixel_arcsec(reference):
    return np.array([reference.meta["cdelt1"], reference.meta["cdelt2"]], dtype=float)


# --- 1. single reference map, shift only ---------------------------------------------------------------

# (injected header error in reference pixels (x, y), fractional grid offset of the target (x, y))
SHIFT_CASES = [
    ((1.37, -2.62), (20.3, 25.7)),
    ((-2.81, 1.14), (22.6, 18.2)),
    ((0.46, 3.29), (17.45, 21.85)),
]


@cache
def _one_map_case(i: int, strategy: str = "fft", frame: int = 12, psf: bool = True):
    injected_pix, offset = SHIFT_CASES[i]
    reference = _well_sampled(frame) if psf else sample()[2][frame]
    error = Transform(*(np.array(injected_pix) * _pixel_arcsec(reference)))
    target = apply_transform(_cutout(reference, *offset, (64, 64), seed=10 + i), error)
    result = one_map_phase(target, reference, replace(ONE_MAP_PARAMS, strategy=strategy))
    return result, _shift_error_pixels(result.transform, error.inverse(), target.wcs)


@pytest.mark.parametrize("i", range(len(SHIFT_CASES)))
def test_one_map_shift_within_five_hundredths_of_a_pixel(i):
    result, error = _one_map_case(i)
    assert np.all(np.abs(error) <= 0.05), (result.transform, error)
    assert result.flags == ()
    assert result.transform.sx == 1.0 and result.transform.sy == 1.0
    assert np.all(np.isfinite(result.sigma[:2])) and np.all(np.isnan(result.sigma[2:]))


@pytest.mark.parametrize("i", range(len(SHIFT_CASES)))
def test_one_map_fft_not_worse_than_population(i):
    _, fft_error = _one_map_case(i)
    _, population_error = _one_map_case(i, "population")
    assert np.max(np.abs(fft_error)) <= np.max(np.abs(population_error)) + 0.02, (fft_error, population_error)


@pytest.mark.parametrize("i", range(len(SHIFT_CASES)))
def test_one_map_raw_undersampled_frame(i):
    """Without the PSF the frame is aliased and cubic resampling itself moves fine structure by a few
    hundredths of a pixel: the recovered shift is still well within 0.15 pixel."""
    result, error = _one_map_case(i, psf=False)
    assert np.all(np.abs(error) <= 0.15), (result.transform, error)


# --- 2. synthetic raster, shift and scale --------------------------------------------------------------

RASTER_FRAMES = slice(8, 16)
RASTER_SHAPE = (90, 64)  # rows of ~1.68", columns of 2"

RASTER_CASES = [
    Transform(4.3, -3.1, 1.02, 0.985),
    Transform(-5.2, 2.7, 0.975, 1.03),
    Transform(2.2, 6.4, 1.012, 1.021),
]


@cache
def _raster_frames():
    return [_well_sampled(k) for k in range(26)[RASTER_FRAMES]]


def _raster_target(seed, shape=RASTER_SHAPE, row_arcsec=None):
    """A raster whose column i is the frames bracketing its time, blended linearly, at its sky positions.

    Rows have the frames' pixel size (~1.68") unless ``row_arcsec`` is given."""
    frames = _raster_frames()
    frame_times = Time([f.date for f in frames])
    # Columns from one minute after the 2nd frame to one minute before the last but one (~49 min).
    first, last = frame_times[1] + 60 * u.s, frame_times[-2] - 60 * u.s
    ny, nx = shape
    column_times = first + np.linspace(0.0, 1.0, nx) * (last - first)
    meta = frames[0].meta.copy()
    meta["cdelt1"] = 2.0
    if row_arcsec is not None:
        meta["cdelt2"] = row_arcsec
    meta["naxis1"], meta["naxis2"] = nx, ny
    meta["crpix1"], meta["crpix2"] = (nx + 1) / 2, (ny + 1) / 2
    meta["crval1"] = frames[0].meta["crval1"] + 3.1
    meta["crval2"] = frames[0].meta["crval2"] - 2.3
    meta["date-obs"] = column_times[nx // 2].isot
    wcs = sunpy.map.Map(np.zeros((ny, nx)), meta).wcs
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    world = wcs.wcs.p2s(np.column_stack([xx.ravel(), yy.ravel()]), 0)["world"]
    seen = []
    for frame in frames:
        px, py = frame.wcs.wcs.s2p(world, 0)["pixcrd"].T
        seen.append(cubic_sample(frame.data, py, px).reshape(ny, nx))
    frame_s = (frame_times - frame_times[0]).to_value("s")
    column_s = (column_times - frame_times[0]).to_value("s")
    upper = np.searchsorted(frame_s, column_s)
    weight = (column_s - frame_s[upper - 1]) / (frame_s[upper] - frame_s[upper - 1])
    seen, columns = np.array(seen), np.arange(nx)
    data = (1 - weight) * seen[upper - 1, :, columns].T + weight * seen[upper, :, columns].T
    return sunpy.map.Map(_degrade(data, NOISE, seed), meta), column_times


@cache
def _raster_case(i: int, strategy: str = "fft"):
    error = RASTER_CASES[i]
    truth_map, column_times = _raster_target(seed=20 + i)
    target = apply_transform(truth_map, error)
    result = synthetic_raster_phase(
        target, _raster_frames(), replace(SYNTHETIC_RASTER, strategy=strategy), column_times=column_times
    )
    truth = error.inverse()
    found = result.transform
    scale_error = np.array([found.sx / truth.sx - 1, found.sy / truth.sy - 1])
    return result, _shift_error_pixels(found, truth, target.wcs), scale_error


def test_raster_target_is_built_from_several_frames():
    truth_map, column_times = _raster_target(seed=0)
    frame_times = Time([f.date for f in _raster_frames()])
    spanned = (frame_times > column_times[0]) & (frame_times < column_times[-1])
    assert spanned.sum() >= 4
    assert 0.02 < np.isnan(truth_map.data).mean() < 0.1


@pytest.mark.parametrize("i", range(len(RASTER_CASES)))
def test_raster_shift_and_scale_recovered(i):
    result, shift_error, scale_error = _raster_case(i)
    assert np.all(np.abs(shift_error) <= 0.1), (result.transform, shift_error)
    assert np.all(np.abs(scale_error) <= 0.002), (result.transform, scale_error)
    assert result.flags == ()
    assert np.all(np.isfinite(result.sigma[:4])) and np.isnan(result.sigma[4])


@pytest.mark.parametrize("i", range(len(RASTER_CASES)))
def test_raster_fft_not_worse_than_population(i):
    _, fft_shift, fft_scale = _raster_case(i)
    _, population_shift, population_scale = _raster_case(i, "population")
    assert np.max(np.abs(fft_shift)) <= np.max(np.abs(population_shift)) + 0.02
    assert np.max(np.abs(fft_scale)) <= np.max(np.abs(population_scale)) + 5e-4


# Rows three times finer than the 2" columns (and ~3x finer than the frames), as in a SPICE raster against
# EUI/FSI: the search then runs on rows binned by 3.
FINE_ROWS = (270, 64), 0.56


@cache
def _fine_row_case(i: int, square_bins: bool = True):
    error = RASTER_CASES[i]
    truth_map, column_times = _raster_target(seed=30 + i, shape=FINE_ROWS[0], row_arcsec=FINE_ROWS[1])
    target = apply_transform(truth_map, error)
    params = replace(SYNTHETIC_RASTER, square_bins=square_bins)
    result = synthetic_raster_phase(target, _raster_frames(), params, column_times=column_times)
    truth, found = error.inverse(), result.transform
    scale_error = np.array([found.sx / truth.sx - 1, found.sy / truth.sy - 1])
    return result, _shift_error_pixels(found, truth, target.wcs), scale_error


@pytest.mark.parametrize("i", range(2))
def test_raster_with_fine_rows_recovered_on_square_bins(i):
    result, shift_error, scale_error = _fine_row_case(i)
    assert np.all(np.abs(shift_error) <= 0.1), (result.transform, shift_error)
    assert np.all(np.abs(scale_error) <= 0.002), (result.transform, scale_error)
    assert result.flags == ()


@pytest.mark.parametrize("i", range(2))
def test_square_bins_agree_with_full_resolution(i):
    """Binning rows 3x finer than the frames' pixels moves the answer by less than its own 1-sigma error on
    each of dx, dy, sx, sy; the errors grow (a third of the samples: the search did run on the bins), but
    stay within 2x."""
    binned, _, _ = _fine_row_case(i)
    full, _, _ = _fine_row_case(i, square_bins=False)
    b, f = binned.transform, full.transform
    difference = np.subtract((b.dx, b.dy, b.sx, b.sy), (f.dx, f.dy, f.sx, f.sy))
    assert np.all(np.abs(difference) <= np.asarray(binned.sigma[:4])), (difference, binned.sigma)
    ratio = np.asarray(binned.sigma[:4]) / np.asarray(full.sigma[:4])
    assert np.all((ratio > 1.1) & (ratio < 2.0)), (binned.sigma, full.sigma)


# --- 4. uncertainty calibration ------------------------------------------------------------------------

CALIBRATION_NOISES = (0.05, 0.2, 0.5, 1.0)
CALIBRATION_FRAMES = tuple(range(0, 26, 3))


def _calibration_case(i, rng, noise, frame, size=64, row_step=1.0, params=ONE_MAP):
    reference = _well_sampled(frame)
    pixel = _pixel_arcsec(reference)
    offset = rng.uniform(14, 86 - size, size=2)
    error = Transform(*(rng.uniform(-2.5, 2.5, size=2) * pixel))
    shape = (round(size / row_step), size)
    target = _cutout(reference, *offset, shape, noise=noise, seed=1000 + i, row_step=row_step)
    target = apply_transform(target, error)
    result = one_map_phase(target, reference, replace(params, shift_range_arcsec=(6.0, 6.0)))
    truth, found = error.inverse(), result.transform
    return np.array([found.dx - truth.dx, found.dy - truth.dy]), np.array(result.sigma[:2])


def _assert_calibrated(errors, sigmas):
    """Within 3 sigma on each axis in >= 95 % of the cases, and sigma not inflated (for a calibrated
    Gaussian error the median sigma is 1.48 x the median |error|)."""
    errors, sigmas = np.abs(np.array(errors)), np.array(sigmas)  # arcsec
    assert np.all(np.isfinite(sigmas)) and np.all(sigmas > 0)
    within = (errors <= 3 * sigmas).mean(axis=0)
    assert np.all(within >= 0.95), within
    assert np.all(np.median(sigmas, axis=0) <= 4 * np.median(errors, axis=0)), (sigmas, errors)


def test_sigma_is_calibrated():
    """48 cases (9 frames, random cut-outs, sub-pixel shifts, noise 5-100 % of the robust std)."""
    rng = np.random.default_rng(3)
    cases = [
        _calibration_case(i, rng, CALIBRATION_NOISES[i % 4], CALIBRATION_FRAMES[i % 9]) for i in range(48)
    ]
    _assert_calibrated(*zip(*cases, strict=True))


def test_sigma_is_calibrated_on_square_bins():
    """As above, on targets whose rows are 3x finer than their columns and than the reference's pixels,
    searched on rows binned by 3 (``square_bins``): the binned search's sigma is calibrated too."""
    rng = np.random.default_rng(4)
    params = replace(ONE_MAP, square_bins=True)
    cases = [
        _calibration_case(i, rng, CALIBRATION_NOISES[i % 4], CALIBRATION_FRAMES[i % 9], 48, 1 / 3, params)
        for i in range(48)
    ]
    _assert_calibrated(*zip(*cases, strict=True))


@pytest.mark.parametrize("frame", [9, 18])
def test_sigma_grows_with_noise(frame):
    """Same scene and noise pattern at growing amplitude: sigma grows, and once the noise dominates the
    model mismatch (of resampling and percentile clipping) it doubles with the noise."""
    reference = _well_sampled(frame)
    error = Transform(*(np.array([1.3, -0.6]) * _pixel_arcsec(reference)))
    sigmas = []
    for noise in (0.5, 1.0, 2.0, 4.0):
        target = apply_transform(_cutout(reference, 22.4, 19.7, (64, 64), noise=noise, seed=77), error)
        result = one_map_phase(target, reference, replace(ONE_MAP, shift_range_arcsec=(6.0, 6.0)))
        sigmas.append(result.sigma[:2])
    sigmas = np.array(sigmas)
    ratios = sigmas[1:] / sigmas[:-1]
    assert np.all(ratios > 1.1), sigmas
    assert np.all(ratios[-1] > 1.6) and np.all(ratios[-1] < 2.2), sigmas


# --- 5. flags ------------------------------------------------------------------------------------------


def test_edge_flag_when_truth_is_outside_the_window():
    reference = _well_sampled(12)
    error = Transform(*(np.array([5.3, -0.4]) * _pixel_arcsec(reference)))
    target = apply_transform(_cutout(reference, 20.3, 25.7, (64, 64)), error)
    result = one_map_phase(target, reference, replace(ONE_MAP, shift_range_arcsec=(3.0, 3.0)))
    assert "edge" in result.flags
    assert abs(result.transform.dx) <= 3.0 + 1e-9


def test_weak_flag_on_pure_noise():
    reference = _well_sampled(12)
    grid_map = _cutout(reference, 20.3, 25.7, (64, 64))
    noise = np.random.default_rng(5).normal(size=grid_map.data.shape)
    result = one_map_phase(sunpy.map.Map(noise, grid_map.meta), reference, ONE_MAP_PARAMS)
    assert "weak" in result.flags
    assert result.score < 0.3


def test_ambiguous_flag_on_a_duplicated_scene(make_wcs):
    """The reference holds the target's scene three times side by side: three equal peaks."""
    tile = _well_sampled(12).data[50:90, 40:80]
    assert np.isfinite(tile).all()
    cdelt = (1.67, 1.67)
    reference = ImageWithWCS(np.tile(tile, (1, 3)), make_wcs(cdelt=cdelt, shape=(40, 120)))
    target_data = _degrade(tile.copy(), NOISE, seed=6)
    target = ImageWithWCS(target_data, make_wcs(cdelt=cdelt, shape=(40, 40)))
    params = replace(ONE_MAP, shift_range_arcsec=(80.0, 6.0))
    result = one_map_phase(target, reference, params)
    assert "ambiguous" in result.flags
    # Any of the three copies is a valid answer: 0 or +-40 pixels.
    assert min(abs(result.transform.dx - k * 40 * 1.67) for k in (-1, 0, 1)) < 0.1


def test_scale_edge_flag_when_scale_is_outside_the_range():
    reference = _well_sampled(12)
    truth_map = _cutout(reference, 20.3, 25.7, (64, 64))
    target = apply_transform(truth_map, Transform(1.1, -0.7, 1.04, 1.0))
    params = replace(SYNTHETIC_RASTER, scale_range=(0.99, 1.01), scale_step=0.005)
    result = synthetic_raster_phase(target, [reference], params)
    assert "scale_edge" in result.flags


def test_no_flags_on_a_clean_case():
    reference = _well_sampled(12)
    error = Transform(*(np.array([0.73, -1.41]) * _pixel_arcsec(reference)))
    target = apply_transform(_cutout(reference, 20.3, 25.7, (64, 64)), error)
    result = one_map_phase(target, reference, ONE_MAP_PARAMS)
    assert result.flags == ()
    assert result.score > 0.9


# --- 5. roll -------------------------------------------------------------------------------------------

ROLL_CASES = [Transform(4.3, -3.1, 1.02, 0.985, 0.6), Transform(-2.2, 3.4, 0.99, 1.01, -0.45)]


def _wcs_error_pixels(corrected, truth_map) -> float:
    """Largest distance (truth pixels) between where the corrected and the true WCS put each pixel."""
    ny, nx = truth_map.data.shape
    y, x = np.mgrid[0:ny:4, 0:nx:4]
    seen = corrected.pixel_to_world(x * u.pix, y * u.pix)
    px, py = truth_map.world_to_pixel(seen)
    return float(np.max(np.hypot(px.to_value(u.pix) - x, py.to_value(u.pix) - y)))


@pytest.mark.parametrize("i", range(len(ROLL_CASES)))
def test_raster_shift_scale_and_roll_recovered(i):
    """Roll injected with shift and scale: the corrected WCS matches the true one within 0.1 pixel over
    the whole raster, and the roll within 0.03 degree and 3 sigma."""
    error = ROLL_CASES[i]
    truth_map, column_times = _raster_target(seed=40 + i)
    target = apply_transform(truth_map, error)
    params = replace(SYNTHETIC_RASTER, fit_roll=True)
    result = synthetic_raster_phase(target, _raster_frames(), params, column_times=column_times)
    found = result.transform
    assert _wcs_error_pixels(apply_transform(target, found), truth_map) <= 0.1, found
    assert abs(found.roll + error.roll) <= 0.03, found
    assert abs(found.roll + error.roll) <= 3 * result.sigma[4], (found, result.sigma)
    assert result.flags == ()


def test_roll_is_not_fitted_by_default_and_refused_by_the_population_search():
    truth_map, column_times = _raster_target(seed=40)
    result = synthetic_raster_phase(
        apply_transform(truth_map, ROLL_CASES[0]),
        _raster_frames(),
        SYNTHETIC_RASTER,
        column_times=column_times,
    )
    assert result.transform.roll == 0.0 and np.isnan(result.sigma[4])
    with pytest.raises(ValueError, match="fit_roll needs strategy='fft'"):
        replace(SYNTHETIC_RASTER, fit_roll=True, strategy="population")
