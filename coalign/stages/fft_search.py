"""Exhaustive search by FFT: every integer shift at once, sub-pixel peak fit, scale search, polish."""

from functools import partial

import numpy as np
from scipy import ndimage, optimize

from coalign.params import PhaseParams
from coalign.results import SearchResult
from coalign.stages.correlate import correlate
from coalign.stages.fft_ncc import ncc_surface
from coalign.stages.sampling import FramePlan, prepare_frames
from coalign.transform import TargetGrid, Transform

__all__ = ["fft_search", "quadratic_peak", "scaled_frames"]


def scaled_frames(frames, grid: TargetGrid, sx: float, sy: float, *, order: int = 1) -> np.ndarray:
    """Frames resampled so that, under scale ``(sx, sy)``, a shift is a pure integer translation.

    ``out[k](u) = frames[k](c + L (u - c))`` with ``L = M^-1 diag(s) M`` and ``c`` the padded reference
    pixel; then target pixel ``p`` under ``Transform(d, s)`` sees ``out[k](p + pad + delta)`` with
    ``d = diag(s) M delta``.
    """
    frames = np.asarray(frames, dtype=float)
    if sx == 1.0 and sy == 1.0:
        return frames
    m = np.asarray(grid.matrix)
    linear_xy = np.linalg.inv(m) @ np.diag([sx, sy]) @ m
    swap = np.array([[0, 1], [1, 0]])
    linear_yx = swap @ linear_xy @ swap
    centre_yx = np.array(grid.crpix[::-1]) + np.asarray(grid.pad, dtype=float)
    offset = centre_yx - linear_yx @ centre_yx
    return np.stack(
        [
            ndimage.affine_transform(f, linear_yx, offset=offset, order=order, cval=np.nan, prefilter=False)
            for f in frames
        ]
    )


def quadratic_peak(surface, iy: int, ix: int) -> tuple[float, float]:
    """Sub-pixel peak ``(y, x)`` from parabolas through the 3-point neighbourhood on each axis.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:5, 0:5]
    >>> s = -((yy - 2.3) ** 2) - 2 * (xx - 1.8) ** 2
    >>> [round(v, 6) for v in quadratic_peak(s, 2, 2)]
    [2.3, 1.8]
    """

    def vertex(m, c, p):
        denom = m - 2 * c + p
        if not np.isfinite(denom) or denom >= 0:
            return 0.0
        return float(np.clip(0.5 * (m - p) / denom, -0.5, 0.5))

    ny, nx = surface.shape
    dy = vertex(surface[iy - 1, ix], surface[iy, ix], surface[iy + 1, ix]) if 0 < iy < ny - 1 else 0.0
    dx = vertex(surface[iy, ix - 1], surface[iy, ix], surface[iy, ix + 1]) if 0 < ix < nx - 1 else 0.0
    return iy + dy, ix + dx


def _best_shift(target, frames, grid, sx, sy, start, params, plan):
    """Best (sub-pixel) shift for one scale; returns (Transform, score, edge flag)."""
    surface = ncc_surface(
        target,
        scaled_frames(frames, grid, sx, sy, order=1),
        plan=plan,
        min_overlap_fraction=params.min_overlap_fraction,
        min_overlap_pixels=params.min_overlap_pixels,
    )
    m_s = np.diag([sx, sy]) @ np.asarray(grid.matrix)
    pad_y, pad_x = grid.pad
    oy, ox = np.mgrid[0 : surface.shape[0], 0 : surface.shape[1]]
    d = np.tensordot(m_s, np.stack([ox - pad_x, oy - pad_y]).astype(float), axes=1)
    rx, ry = params.shift_range_arcsec
    inside = (np.abs(d[0] - start.dx) <= rx) & (np.abs(d[1] - start.dy) <= ry)
    masked = np.where(inside, surface, np.nan)
    if not np.isfinite(masked).any():
        return Transform(start.dx, start.dy, sx, sy), float("nan"), False
    iy, ix = np.unravel_index(np.nanargmax(masked), masked.shape)
    peak_y, peak_x = quadratic_peak(np.where(inside, surface, -np.inf), iy, ix)
    dx, dy = m_s @ [peak_x - pad_x, peak_y - pad_y]
    edge = not (inside[max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2].all())
    return Transform(dx, dy, sx, sy), float(masked[iy, ix]), edge


def _scale_axis(low, high, step, centre):
    values = np.arange(centre - np.floor((centre - low) / step) * step, high + 1e-12, step)
    return values[(values >= low - 1e-12) & (values <= high + 1e-12)]


def fft_search(
    target,
    frames,
    grid: TargetGrid,
    params: PhaseParams,
    *,
    start: Transform = Transform(),
    plan: FramePlan | None = None,
    map_fn=map,
) -> SearchResult:
    """Exact exhaustive search: FFT correlation over all shifts, scale grid, then continuous polish.

    1. For each scale candidate (only ``start``'s scale unless ``params.fit_scale``), the masked NCC by
       FFT scores every integer shift within ``params.shift_range_arcsec`` of ``start``; a parabola
       through the peak's neighbours gives the sub-pixel shift. Scale candidates are scored through
       ``map_fn``: a 1-D grid on ``sx``, then on ``sy``, at ``params.scale_step``.
    2. The best candidate is polished on the exact metric (`correlate` with cubic sampling) by Powell's
       method over the shift (and scale) parameters.

    The returned message says whether the peak lies on the edge of the search window.
    """
    frames = np.asarray(frames, dtype=float)
    frames = frames[None] if frames.ndim == 2 else frames
    best_at = partial(_best_shift, target, frames, grid, start=start, params=params, plan=plan)
    n_eval = 0
    candidates = [(start.sx, start.sy)]
    if params.fit_scale:
        low, high = params.scale_range
        sxs = _scale_axis(low, high, params.scale_step, start.sx)
        results = list(map_fn(_call_best, [(best_at, sx, start.sy) for sx in sxs]))
        n_eval += len(sxs)
        best_sx = max(results, key=lambda r: _key(r[1]))[0].sx
        sys_ = _scale_axis(low, high, params.scale_step, start.sy)
        results += list(map_fn(_call_best, [(best_at, best_sx, sy) for sy in sys_]))
        n_eval += len(sys_)
    else:
        results = list(map_fn(_call_best, [(best_at, sx, sy) for sx, sy in candidates]))
        n_eval += 1
    transform, score, edge = max(results, key=lambda r: _key(r[1]))
    if not np.isfinite(score):
        return SearchResult(start, float("nan"), n_eval, (), "no shift had enough overlap")
    history = ((transform, score),)
    objective = partial(
        correlate,
        target,
        prepare_frames(frames),
        grid=grid,
        plan=plan,
        order=3,
        min_overlap_fraction=params.min_overlap_fraction,
        min_overlap_pixels=params.min_overlap_pixels,
    )
    polished, polished_score, n_polish = _polish(objective, transform, params)
    n_eval += n_polish
    if _key(polished_score) >= _key(score):
        transform, score = polished, polished_score
        history = (*history, (transform, score))
    message = "peak on the edge of the search window" if edge else "converged: FFT peak polished"
    return SearchResult(transform, score, n_eval, history, message)


def _call_best(args):
    best_at, sx, sy = args
    return best_at(sx=sx, sy=sy)


def _key(score):
    return score if np.isfinite(score) else -np.inf


def _polish(objective, start: Transform, params: PhaseParams):
    """Powell polish of the exact metric around ``start`` (shift in pixels-ish units, scale in steps)."""
    scale_x, scale_y = params.min_step_arcsec
    units = np.array([1.0, 1.0, params.scale_step, params.scale_step])
    free = 4 if params.fit_scale else 2
    origin = np.array([start.dx, start.dy, start.sx, start.sy])
    counter = {"n": 0}

    def negative(z):
        counter["n"] += 1
        values = origin.copy()
        values[:free] += z * units[:free]
        if values[2] <= 0 or values[3] <= 0:
            return 1.0
        score = objective(Transform(*values))
        return -score if np.isfinite(score) else 1.0

    res = optimize.minimize(
        negative,
        np.zeros(free),
        method="Powell",
        options={"xtol": min(scale_x, scale_y) / 10, "ftol": 1e-9, "maxfev": 400},
    )
    values = origin.copy()
    values[:free] += res.x * units[:free]
    return Transform(*values), -float(res.fun), counter["n"]
