"""Gauss-Newton refinement and its 1-sigma errors, on a real (smoothed) IRIS slit-jaw frame.

The reference is a sub-region of a bundled SJI 1400 frame (with its own NaN holes), lightly smoothed so
that it is well sampled, and used directly as the padded reference on a target grid. Targets are built
independently of coalign's sampling: scipy cubic interpolation at the positions the correction convention
prescribes (``q = c + M^-1 (d + diag(s) M (p - c))``, see `coalign.transform`), plus white noise and NaN
holes.
"""

from dataclasses import replace
from functools import cache

import numpy as np
import pytest
from scipy import ndimage

from coalign import Transform
from coalign.stages.refine import _derivatives, correlation_inflation, refine, uncertainty
from coalign.stages.sampling import prepare_frames, sample_reference
from coalign.transform import TargetGrid
from tests.sample import cubic_sample, nan_smooth, sample

PAD = (8, 8)
SHAPE = (70, 72)  # target (ny, nx)
# A rotated grid with non-square pixels (arcsec per pixel), reference pixel near the centre.
GRID = TargetGrid((35.5, 34.0), ((2.0, 0.05), (-0.06, 1.5)), PAD)
M = np.asarray(GRID.matrix)


@cache
def _frame():
    """A real SJI frame region (its NaN holes kept), smoothed by 1 px, as the padded reference."""
    sequence = sample()[2]
    ny, nx = SHAPE[0] + 2 * PAD[0], SHAPE[1] + 2 * PAD[1]
    region = sequence[12].data[12 : 12 + ny, 10 : 10 + nx].astype(float)
    frame = nan_smooth(region, 1.0)
    frame /= np.nanstd(frame)
    return frame


def _target(truth: Transform, noise=0.0, seed=0, holes=True):
    """What the target grid records of the frame when its pointing needs correction ``truth``."""
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    c = np.array(GRID.crpix)[:, None]
    p = np.stack([xx.ravel(), yy.ravel()])
    d = np.array([[truth.dx], [truth.dy]])
    q = c + np.linalg.solve(M, d + truth.linear @ M @ (p - c))
    coords = np.stack([q[1] + PAD[0], q[0] + PAD[1]])
    target = cubic_sample(_frame(), *coords).reshape(SHAPE)
    rng = np.random.default_rng(seed)
    target = target + noise * rng.normal(size=SHAPE)
    if holes:
        target[(yy - 20) ** 2 + (xx - 50) ** 2 <= 9] = np.nan
        target[:, 30] = np.nan
    return target


def _pixels(transform_error: Transform):
    """A shift (arcsec) in target pixels (x, y)."""
    return np.linalg.solve(M, [transform_error.dx, transform_error.dy])


def _offset(transform: Transform, pixels, scale=(1.0, 1.0)):
    """``transform`` moved by ``pixels`` (x, y) target pixels and multiplied by ``scale``."""
    dx, dy = M @ np.asarray(pixels, dtype=float)
    return Transform(transform.dx + dx, transform.dy + dy, transform.sx * scale[0], transform.sy * scale[1])


# --- correlation_inflation ---------------------------------------------------------------------------


def test_inflation_is_one_on_white_noise_with_holes():
    residual = np.random.default_rng(1).normal(size=(120, 130))
    residual[40:50, 60:75] = np.nan
    residual[:, 7] = np.nan
    assert 1.0 <= correlation_inflation(residual) < 1.1


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_inflation_grows_on_smoothed_noise(sigma):
    """Gaussian-smoothed noise has autocorrelation exp(-r^2 / 4 sigma^2): summed over |lag| <= 2 on each
    axis that is 10.8 for sigma = 1 and 19.7 for sigma = 2 (at most 25 = the 5 x 5 window)."""
    white = np.random.default_rng(2).normal(size=(200, 200))
    residual = ndimage.gaussian_filter(white, sigma)
    residual[90:100, 20:40] = np.nan
    lag = np.arange(-2, 3)
    expected = np.sum(np.exp(-(lag**2) / (4 * sigma**2))) ** 2
    value = correlation_inflation(residual)
    assert value > 5
    assert value == pytest.approx(expected, rel=0.15)
    assert value <= 25 + 1e-9


def test_inflation_defaults_to_one_without_data():
    assert correlation_inflation(np.full((10, 10), np.nan)) == 1.0


# --- refine ------------------------------------------------------------------------------------------

TRUTH = Transform(1.37, -0.81)


def test_refine_recovers_shift_from_one_pixel_off():
    target = _target(TRUTH, noise=0.02, seed=3)
    start = _offset(TRUTH, (1.0, -1.0))
    result = refine(target, prepare_frames(_frame()), GRID, start)
    error = _pixels(Transform(result.transform.dx - TRUTH.dx, result.transform.dy - TRUTH.dy))
    assert np.all(np.abs(error) < 0.01), (result, error)
    assert result.converged
    assert result.score > 0.99
    assert result.transform.sx == 1.0 and result.transform.sy == 1.0  # not fitted: untouched
    assert np.all(np.isfinite(result.sigma[:2])) and np.all(np.asarray(result.sigma[:2]) > 0)
    assert np.all(np.isnan(result.sigma[2:]))


def test_refine_recovers_shift_and_scale():
    truth = Transform(-0.93, 1.22, 1.012, 0.991)
    target = _target(truth, noise=0.02, seed=4)
    start = _offset(truth, (0.8, 0.6), scale=(0.996, 1.004))
    result = refine(target, prepare_frames(_frame()), GRID, start, fit_scale=True)
    found = result.transform
    error = _pixels(Transform(found.dx - truth.dx, found.dy - truth.dy))
    assert np.all(np.abs(error) < 0.02), (result, error)
    assert abs(found.sx / truth.sx - 1) < 5e-4 and abs(found.sy / truth.sy - 1) < 5e-4, result
    assert np.all(np.isfinite(result.sigma[:4])) and np.all(np.asarray(result.sigma[:4]) > 0)
    assert np.isnan(result.sigma[4])  # roll not fitted


def test_refine_recovers_shift_scale_and_roll():
    """A 0.4 degree roll (with scale, on the rotated non-square grid) from a start 0.3 degree off."""
    truth = Transform(-0.93, 1.22, 1.012, 0.991, 0.4)
    target = _target(truth, noise=0.02, seed=4)
    start = replace(_offset(truth, (0.6, -0.5), scale=(0.997, 1.003)), roll=0.1)
    result = refine(target, prepare_frames(_frame()), GRID, start, fit_scale=True, fit_roll=True)
    found = result.transform
    error = _pixels(Transform(found.dx - truth.dx, found.dy - truth.dy))
    assert np.all(np.abs(error) < 0.02), (result, error)
    assert abs(found.sx / truth.sx - 1) < 5e-4 and abs(found.sy / truth.sy - 1) < 5e-4, result
    assert abs(found.roll - truth.roll) < 0.01, result
    assert np.all(np.isfinite(result.sigma)) and result.sigma[4] < 0.01
    # the roll error is within 3 sigma, and the roll is well determined on a 70 x 72 target
    assert abs(found.roll - truth.roll) <= 3 * result.sigma[4] + 1e-4, result


def test_refine_does_not_move_from_the_optimum_of_a_noiseless_target():
    target = _target(TRUTH, holes=False)
    result = refine(target, prepare_frames(_frame()), GRID, TRUTH)
    error = _pixels(Transform(result.transform.dx - TRUTH.dx, result.transform.dy - TRUTH.dy))
    assert np.all(np.abs(error) < 2e-3), error
    assert result.score > 0.9999


def test_uncertainty_matches_refine_sigma_at_the_same_point():
    target = _target(TRUTH, noise=0.05, seed=5)
    frames = prepare_frames(_frame())
    result = refine(target, frames, GRID, _offset(TRUTH, (0.5, 0.5)))
    sigma = uncertainty(target, frames, GRID, result.transform)
    np.testing.assert_allclose(sigma[:2], result.sigma[:2], rtol=1e-9)
    assert np.all(np.isnan(sigma[2:]))


def test_sigma_grows_in_proportion_to_noise():
    """Same scene, same noise pattern at four amplitudes: sigma doubles when the noise doubles."""
    frames = prepare_frames(_frame())
    noises = [0.05, 0.1, 0.2, 0.4]
    sigmas = []
    for noise in noises:
        result = refine(_target(TRUTH, noise=noise, seed=6), frames, GRID, TRUTH)
        sigmas.append(result.sigma[:2])
    sigmas = np.array(sigmas)  # (noise, axis), arcsec
    ratios = sigmas[1:] / sigmas[:-1]
    assert np.all(ratios > 1.9) and np.all(ratios < 2.1), sigmas


def test_sigma_is_calibrated_on_noise_realisations():
    """40 noise seeds and sub-pixel truths: |error| <= 3 sigma on each axis in >= 95 % of the cases, and
    sigma matches the scatter of the errors (neither too small nor too large)."""
    frames = prepare_frames(_frame())
    rng = np.random.default_rng(7)
    errors, sigmas = [], []
    for seed in range(40):
        truth = _offset(Transform(), rng.uniform(-2, 2, size=2))
        target = _target(truth, noise=0.3, seed=100 + seed)
        result = refine(target, frames, GRID, _offset(truth, rng.uniform(-0.7, 0.7, size=2)))
        errors.append([result.transform.dx - truth.dx, result.transform.dy - truth.dy])
        sigmas.append(result.sigma[:2])
    errors, sigmas = np.abs(np.array(errors)), np.array(sigmas)  # arcsec
    within = (errors <= 3 * sigmas).mean(axis=0)
    assert np.all(within >= 0.95), (within, errors, sigmas)
    # For a calibrated Gaussian error the rms error equals sigma.
    ratio = np.sqrt((errors**2).mean(axis=0)) / np.median(sigmas, axis=0)
    assert np.all(ratio > 0.6) and np.all(ratio < 1.6), ratio


def test_chain_rule_derivatives_match_finite_differences_in_all_four_parameters():
    """dR/dtheta from the reference gradient equals central differences of the sampled reference, for
    shifts and scales, on the rotated non-square grid."""
    frames = prepare_frames(_frame())
    theta = np.array([1.3, -0.8, 1.01, 0.99])
    jacobian = _derivatives(frames, GRID, None, theta, [0, 1, 2, 3])
    steps = np.array([1e-3, 1e-3, 1e-5, 1e-5])
    for k in range(4):
        up, down = theta.copy(), theta.copy()
        up[k] += steps[k]
        down[k] -= steps[k]
        numeric = sample_reference(frames, Transform(*up), GRID) - sample_reference(
            frames, Transform(*down), GRID
        )
        numeric /= 2 * steps[k]
        finite = np.isfinite(numeric) & np.isfinite(jacobian[k])
        assert finite.mean() > 0.8
        scale = np.abs(numeric[finite]).max()
        np.testing.assert_allclose(jacobian[k][finite], numeric[finite], atol=3e-3 * scale)
