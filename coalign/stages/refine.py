"""Joint local refinement of a correction by Gauss-Newton, and its 1-sigma errors.

Maximising Pearson's r between the target ``t`` and the reference ``R(theta)`` seen through correction
``theta`` is the same as minimising the residual of the linear fit ``t ~ alpha + beta R(theta)``, because
that residual is ``sum (t - mean t)^2 (1 - r^2)`` over the overlap. Linearising ``R`` around the current
``theta`` turns each step into one linear least-squares problem

    t ~ alpha + beta R + sum_k (beta delta_k) dR/dtheta_k,

whose solution gives the step ``delta`` and, at convergence, the covariance of ``theta``: the residual
variance times the inverse normal matrix, inflated by the residual's spatial correlation (neighbouring
residuals are not independent when the scene evolved or the noise is smoothed).
"""

from typing import NamedTuple

import numpy as np

from coalign.stages.correlate import pearson
from coalign.stages.sampling import FramePlan, SplineFrames, reference_gradient, sample_reference
from coalign.transform import TargetGrid, Transform, pixel_mapping

__all__ = ["Refinement", "correlation_inflation", "refine", "uncertainty"]

#: Gauss-Newton stops once its next step is below this fraction of its 1-sigma error, or below 1/50 of
#: a 0.05-pixel change, whichever is larger.
STOP_SIGMA = 0.1
#: A full step at least this fraction of the previous one, in the same direction, is extrapolated ...
STEADY_RATIO = 0.3
#: ... to these multiples of itself, as long as the correlation keeps rising.
EXTRAPOLATION = (2.0, 4.0, 8.0, 16.0)
#: Half-width (pixels) of the lag window over which the residual autocorrelation is summed.
INFLATION_LAGS = 2


class Refinement(NamedTuple):
    """Outcome of `refine`: the correction, its correlation, 1-sigma errors and evaluation count."""

    transform: Transform
    score: float
    sigma: tuple[float, float, float, float, float]
    n_evaluations: int
    converged: bool


N_PARAMETERS = 5  # dx, dy, sx, sy, roll


def _values(transform: Transform) -> np.ndarray:
    return np.array([transform.dx, transform.dy, transform.sx, transform.sy, transform.roll])


def _free(fit_scale: bool, fit_roll: bool) -> list[int]:
    return [0, 1] + ([2, 3] if fit_scale else []) + ([4] if fit_roll else [])


def _steps(grid: TargetGrid, shape) -> np.ndarray:
    """Parameter changes worth 0.05 pixel: for shifts, and for scales and roll at the image edge."""
    pixel = np.linalg.norm(np.asarray(grid.matrix), axis=0)  # arcsec per pixel along x, y
    half_size = max(shape) / 2.0
    edge = 0.05 / half_size
    return np.array([0.05 * pixel[0], 0.05 * pixel[1], edge, edge, np.rad2deg(edge)])


def correlation_inflation(residual, lags: int = INFLATION_LAGS) -> float:
    """Variance inflation from the spatial correlation of a residual image (1 for white noise).

    The sum of the residual's normalised autocorrelation over lags within ``lags`` pixels on each axis
    (NaN pixels excluded), floored at 1. For white noise it is 1; for residuals correlated over a few
    pixels it approaches the number of pixels per independent sample.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(correlation_inflation(rng.normal(size=(200, 200))), 1)
    1.0
    """
    residual = np.asarray(residual, dtype=float)
    valid = np.isfinite(residual)
    if valid.sum() < 4:
        return 1.0
    # Rows padded by `lags` zeros and flattened: lag (dy, dx) is the offset dy * width + dx, and the
    # pairs it would wrap into the next or previous row meet the padding.
    ny, nx = residual.shape
    width = nx + lags
    e = np.zeros((ny, width))
    e[:, :nx] = np.where(valid, residual - residual[valid].mean(), 0.0)
    m = np.zeros((ny, width))
    m[:, :nx] = valid
    e, m = e.ravel(), m.ravel()
    variance = (e @ e) / (m @ m)
    if not variance > 0:
        return 1.0
    total = 1.0  # lag 0; the autocorrelation is symmetric, so each other lag counts twice
    for dy in range(lags + 1):
        for dx in range(-lags if dy else 1, lags + 1):
            k = dy * width + dx
            n = m[:-k] @ m[k:]
            if n > 0:
                total += 2 * (e[:-k] @ e[k:]) / n / variance
    return float(max(1.0, total))


def _derivatives(frames, grid, plan, theta, free, sampled=None) -> np.ndarray:
    """Images dR/dtheta_k of the sampled reference, one per free parameter, by the chain rule.

    The reference's gradient (`reference_gradient`) times the derivative of the sampling position
    ``q = A(theta) p + b(theta)``: linear in the shifts and scales (a unit difference is exact), and a
    central difference of 1e-4 degree for the roll.
    """
    gradient = reference_gradient(frames, Transform(*theta), grid, plan=plan, sampled=sampled)
    yy, xx = np.arange(gradient.shape[1], dtype=float)[:, None], np.arange(gradient.shape[2], dtype=float)
    columns = []
    for k in free:
        step = 1e-4 if k == 4 else 0.5
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        (matrix_up, offset_up), (matrix_down, offset_down) = (
            pixel_mapping(Transform(*values), grid) for values in (up, down)
        )
        d_matrix, d_offset = (matrix_up - matrix_down) / (2 * step), (offset_up - offset_down) / (2 * step)
        # dq = d_matrix @ (y, x) + d_offset per axis: a constant for the shifts, a row or a column for
        # the scales without roll (zero terms left out).
        dq = [
            d_offset[i] + sum(c * v for c, v in zip(d_matrix[i], (yy, xx), strict=True) if c) for i in (0, 1)
        ]
        columns.append(gradient[0] * dq[0] + gradient[1] * dq[1])
    return np.stack(columns)


def _linear_system(target, base, jacobian):
    """Target values, design matrix [1, R, dR/dtheta...] over the common valid pixels (transposed: one row
    per column), and that mask."""
    valid = np.isfinite(target) & np.isfinite(base) & np.all(np.isfinite(jacobian), axis=0)
    design = np.stack([np.ones(np.count_nonzero(valid)), base[valid], *(j[valid] for j in jacobian)])
    return target[valid], design, valid


def refine(
    target,
    frames: SplineFrames,
    grid: TargetGrid,
    start: Transform,
    *,
    plan: FramePlan | None = None,
    fit_scale: bool = False,
    fit_roll: bool = False,
    max_iter: int = 20,
    min_overlap_fraction: float = 0.3,
    min_overlap_pixels: int = 16,
) -> Refinement:
    """Gauss-Newton refinement of ``start`` on the exact (cubic-sampled) correlation, with 1-sigma errors.

    Parameters
    ----------
    target : (ny, nx) ndarray
        Target image, NaN for invalid pixels. Not modified.
    frames : SplineFrames
        Reference frame(s) on the padded target grid, prefiltered by
        `~coalign.stages.sampling.prepare_frames`.
    grid : TargetGrid
        Target grid geometry with the frames' padding.
    start : Transform
        Starting correction (within about a pixel of the optimum, e.g. an FFT peak).
    plan : FramePlan, optional
        Frames used per target column (synthetic raster).
    fit_scale : bool
        Refine ``sx, sy`` jointly with the shift.
    fit_roll : bool
        Refine the roll jointly too.
    max_iter : int
        Maximum Gauss-Newton steps.
    min_overlap_fraction, min_overlap_pixels
        As in `~coalign.stages.correlate.pearson`.

    Returns
    -------
    Refinement
        ``sigma`` holds the 1-sigma errors of ``(dx, dy, sx, sy, roll)``; NaN for parameters not fitted.
    """
    target = np.asarray(target, dtype=float)
    free = _free(fit_scale, fit_roll)
    steps = _steps(grid, target.shape)
    theta = _values(start)
    n_eval = 0

    def sample(values):
        return sample_reference(frames, Transform(*values), grid, plan=plan)

    def score(sampled):
        return pearson(
            target, sampled, min_overlap_fraction=min_overlap_fraction, min_overlap_pixels=min_overlap_pixels
        )

    base = sample(theta)
    best = score(base)
    n_eval += 1
    converged, previous = False, None
    for _iteration in range(max_iter):
        jacobian = _derivatives(frames, grid, plan, theta, free, base)
        n_eval += 2
        step = _solve(target, base, jacobian, free, min_overlap_pixels)
        if not step.ok:
            break
        delta = step.delta.copy()
        if np.all(np.abs(delta[free]) < np.maximum(steps[free] / 50, STOP_SIGMA * step.sigma[free])):
            converged = True  # the next step would be negligible: theta, base and jacobian agree
            break
        origin, accepted, halved = theta, False, False
        for _halving in range(5):
            trial = origin + delta
            if trial[2] > 0 and trial[3] > 0:
                sampled = sample(trial)
                value = score(sampled)
                n_eval += 1
                if np.isfinite(value) and value >= best - 1e-12:
                    theta, best, base, accepted = trial, value, sampled, True
                    break
            delta, halved = delta / 2, True
        if not accepted:
            break
        if not halved and _steady(delta[free] / steps[free], previous):
            # Far from the optimum with a large misfit, Gauss-Newton steps fall short by a steady
            # factor: go further along the same direction while the correlation keeps rising.
            for multiple in EXTRAPOLATION:
                trial = origin + multiple * delta
                if not (trial[2] > 0 and trial[3] > 0):
                    break
                sampled = sample(trial)
                value = score(sampled)
                n_eval += 1
                if not (np.isfinite(value) and value > best):
                    break
                theta, best, base = trial, value, sampled
        previous = (theta - origin)[free] / steps[free]
    else:
        jacobian = _derivatives(frames, grid, plan, theta, free, base)  # max_iter reached after a step
        n_eval += 2
        step = _solve(target, base, jacobian, free, min_overlap_pixels)
    if not step.ok:  # the last system (at theta) could not be solved: errors from all valid pixels
        step = _solve(target, base, jacobian, free, 2)
    return Refinement(
        Transform(*theta), float(best), tuple(float(v) for v in step.sigma), n_eval, bool(converged)
    )


def _steady(step, previous) -> bool:
    """Whether a full step continues the previous one: same direction and at least 30 % of its size."""
    if previous is None:
        return False
    return bool(step @ previous > 0 and np.linalg.norm(step) > STEADY_RATIO * np.linalg.norm(previous))


class _Step(NamedTuple):
    """One linear least-squares problem solved: the step, its 1-sigma errors, and whether it is usable."""

    delta: np.ndarray
    sigma: np.ndarray
    ok: bool


def _solve(target, base, jacobian, free, min_pixels) -> _Step:
    """Gauss-Newton step and 1-sigma errors at the sampled reference ``base`` with derivative images
    ``jacobian`` (both at the same correction).

    The errors are the residual variance times ``(X^T X)^-1``, inflated for the residual's spatial
    correlation (`correlation_inflation`), divided by the fitted gain ``beta``.
    """
    t, design, valid = _linear_system(target, base, jacobian)
    delta, sigma = np.zeros(N_PARAMETERS), np.full(N_PARAMETERS, np.nan)
    if t.size < max(min_pixels, design.shape[0] + 2):
        return _Step(delta, sigma, False)
    # Normal equations, with the columns scaled to unit norm to keep them well conditioned.
    normal = design @ design.T
    scale = 1.0 / np.sqrt(np.diag(normal))
    if not np.all(np.isfinite(scale)):
        return _Step(delta, sigma, False)
    try:
        inverse = scale[:, None] * np.linalg.inv(normal * scale[:, None] * scale) * scale
    except np.linalg.LinAlgError:
        return _Step(delta, sigma, False)
    coef = inverse @ (design @ t)
    beta = coef[1]
    if not beta > 0:
        return _Step(delta, sigma, False)
    residual = t - coef @ design
    residual_image = np.full(valid.shape, np.nan)
    residual_image[valid] = residual
    variance = residual @ residual / (t.size - design.shape[0]) * correlation_inflation(residual_image)
    diagonal = np.diag(inverse)[2:]
    # theta_k = c_k / beta with c_k the gradient coefficients; beta's own error is second order.
    delta[free] = coef[2:] / beta
    sigma[free] = np.sqrt(np.clip(diagonal, 0, None) * variance) / beta
    return _Step(delta, sigma, True)


def uncertainty(
    target,
    frames: SplineFrames,
    grid: TargetGrid,
    transform: Transform,
    *,
    plan=None,
    fit_scale=False,
    fit_roll=False,
) -> tuple[float, float, float, float, float]:
    """1-sigma errors of ``(dx, dy, sx, sy, roll)`` at a found correction (NaN for parameters not fitted).

    The same estimate `refine` returns, for corrections found by other searches.
    """
    target = np.asarray(target, dtype=float)
    free = _free(fit_scale, fit_roll)
    theta = _values(transform)
    base = sample_reference(frames, transform, grid, plan=plan)
    jacobian = _derivatives(frames, grid, plan, theta, free, base)
    return tuple(float(v) for v in _solve(target, base, jacobian, free, 2).sigma)
