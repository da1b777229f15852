"""Exhaustive search by FFT: every integer shift at once, sub-pixel peak fit, scale search, polish."""

from functools import partial
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from coalign.params import PhaseParams
from coalign.results import SearchResult
from coalign.stages.fft_ncc import TargetSpectra, ncc_surface_from_spectra, target_spectra
from coalign.stages.refine import refine
from coalign.stages.sampling import FramePlan, inside, interpolate_on_axes, prepare_frames
from coalign.transform import TargetGrid, Transform

__all__ = [
    "AMBIGUOUS_RATIO",
    "WEAK_SCORE",
    "ShiftPeak",
    "fft_search",
    "offset_window",
    "quadratic_peak",
    "scaled_frames",
    "secondary_peak_ratio",
]

#: Below this correlation a peak is flagged ``weak``.
WEAK_SCORE = 0.3
#: A separate peak at least this high (relative to the best, above the median) is flagged ``ambiguous``.
AMBIGUOUS_RATIO = 0.9


def frame_bands(plan: FramePlan | None, n_frames: int, nx: int, mx: int) -> list[tuple[int, int]]:
    """Columns ``[start, stop)`` of each padded frame that any shift can bring under its target columns."""
    if plan is None:
        return [(0, mx)] * n_frames
    bands = []
    for k in range(n_frames):
        used = np.flatnonzero((plan.lower == k) | ((plan.upper == k) & (plan.weight > 0)))
        bands.append((int(used.min()), int(used.max()) + 1 + mx - nx) if used.size else (0, 0))
    return bands


def scaled_frames(
    frames,
    grid: TargetGrid,
    sx: float,
    sy: float,
    *,
    roll: float = 0.0,
    order: int = 1,
    bands=None,
    origin=(0, 0),
    shape=None,
) -> np.ndarray:
    """Frames resampled so that, under scale ``(sx, sy)`` and ``roll``, a shift is an integer translation.

    ``out[k](u) = frames[k](c + L (u - c))`` with ``L = M^-1 R diag(s) M`` and ``c`` the padded reference
    pixel; then target pixel ``p`` under ``Transform(d, s, roll)`` sees ``out[k](p + pad + delta)`` with
    ``d = R diag(s) M delta``. The output is the window of ``shape`` (default: the frames' shape) whose
    pixel ``(0, 0)`` is padded pixel ``origin``; with ``bands`` (output columns ``[start, stop)`` per frame,
    from `frame_bands`), only those columns of each frame are computed and the rest is NaN.
    """
    frames = np.asarray(frames, dtype=float)
    y0, x0 = (int(v) for v in origin)
    shape = tuple(shape) if shape is not None else (frames.shape[1] - y0, frames.shape[2] - x0)
    if sx == 1.0 and sy == 1.0 and roll == 0.0:
        return frames[:, y0 : y0 + shape[0], x0 : x0 + shape[1]]
    m = np.asarray(grid.matrix)
    linear_xy = np.linalg.inv(m) @ Transform(sx=sx, sy=sy, roll=roll).linear @ m
    swap = np.array([[0, 1], [1, 0]])
    linear_yx = swap @ linear_xy @ swap
    centre_yx = np.array(grid.crpix[::-1]) + np.asarray(grid.pad, dtype=float)
    offset = centre_yx - linear_yx @ centre_yx
    bands = bands if bands is not None else [(0, shape[1])] * len(frames)
    out = np.full((len(frames), *shape), np.nan)
    used = [k for k, (start, stop) in enumerate(bands) if stop > start]
    if order == 1 and linear_yx[0, 1] == 0.0 and linear_yx[1, 0] == 0.0 and used:
        # Rows to rows and columns to columns (no roll): one axis at a time, the rows of all frames at once.
        scale = np.diag(linear_yx)
        rows = offset[0] + scale[0] * (y0 + np.arange(shape[0]))
        columns = [offset[1] + scale[1] * (x0 + np.arange(*bands[k])) for k in used]
        n_rows, n_columns = frames.shape[1:]
        rows_inside = inside(rows, n_rows)[:, None]
        values = interpolate_on_axes(frames, rows, columns, used, order)
        for k, x, block in zip(used, columns, values, strict=True):
            block[~(rows_inside & inside(x, n_columns))] = np.nan  # as cval=NaN
            out[k, :, slice(*bands[k])] = block
        return out
    for k in used:
        start, stop = bands[k]
        out[k, :, start:stop] = ndimage.affine_transform(
            frames[k],
            linear_yx,
            offset=offset + linear_yx @ [y0, x0 + start],
            output_shape=(shape[0], stop - start),
            order=order,
            cval=np.nan,
            prefilter=False,
        )
    return out


def offset_window(
    grid: TargetGrid, target_shape, frame_shape, start: Transform, params: PhaseParams, scales, rolls=(0.0,)
):
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of the padded frames that the search window can reach.

    The window holds every integer offset whose shift lies within ``params.shift_range_arcsec`` of
    ``start`` at any scale in ``scales`` (both axes) and roll in ``rolls``, plus two offsets of margin
    (for the peak fit and the edge flag); the frames' padding may be much wider, since it covers
    ``start`` itself.
    """
    (ny, nx), (my, mx) = target_shape, frame_shape
    rx, ry = params.shift_range_arcsec
    m = np.asarray(grid.matrix)
    corners = [
        np.linalg.solve(
            Transform(sx=scale_x, sy=scale_y, roll=roll).linear @ m, [start.dx + ex, start.dy + ey]
        )
        for scale_x in scales
        for scale_y in scales
        for roll in rolls
        for ex in (-rx, rx)
        for ey in (-ry, ry)
    ]
    low = np.floor(np.min(corners, axis=0)) - 2
    high = np.ceil(np.max(corners, axis=0)) + 2
    pad_y, pad_x = grid.pad
    x0, x1 = int(max(0, pad_x + low[0])), int(min(mx, pad_x + high[0] + nx))
    y0, y1 = int(max(0, pad_y + low[1])), int(min(my, pad_y + high[1] + ny))
    if x1 - x0 < nx or y1 - y0 < ny:  # the window leaves the frames: search what they hold
        return 0, my, 0, mx
    return y0, y1, x0, x1


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


class ShiftPeak(NamedTuple):
    """Best integer-grid shift for one scale, with its sub-pixel vertex and sanity measures."""

    transform: Transform
    score: float
    edge: bool
    second_ratio: float


def secondary_peak_ratio(surface, iy: int, ix: int) -> float:
    """Height of the best peak outside the main lobe, relative to the main peak (above the median).

    The main lobe is the connected region around ``(iy, ix)`` where the surface exceeds the midpoint
    between the peak and the median; 1 means another peak as high as the best, 0 none above the median.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:40, 0:40]
    >>> def blob(y, x):
    ...     return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8)
    >>> s = blob(10, 10) + 0.5 * blob(30, 28)
    >>> round(secondary_peak_ratio(s, 10, 10), 2)
    0.5
    """
    finite = np.isfinite(surface)
    peak = surface[iy, ix]
    floor = float(np.median(surface[finite]))
    if not peak > floor:
        return 0.0
    labels, _ = ndimage.label(finite & (surface > (peak + floor) / 2))
    outside = finite & (labels != labels[iy, ix])
    if not outside.any():
        return 0.0
    return float(max(0.0, (np.max(surface[outside]) - floor) / (peak - floor)))


def _best_shift(
    prepared: TargetSpectra, frames, grid, sx, sy, start, params, plan, window, roll=0.0
) -> ShiftPeak:
    """Best (sub-pixel) shift for one scale and roll, from the masked NCC surface over the search window."""
    y0, y1, x0, x1 = window
    bands = frame_bands(plan, len(frames), prepared.target_shape[1], x1 - x0)
    scaled = scaled_frames(
        frames, grid, sx, sy, roll=roll, order=1, bands=bands, origin=(y0, x0), shape=(y1 - y0, x1 - x0)
    )
    surface = ncc_surface_from_spectra(
        prepared,
        scaled,
        min_overlap_fraction=params.min_overlap_fraction,
        min_overlap_pixels=params.min_overlap_pixels,
    )
    m_s = Transform(sx=sx, sy=sy, roll=roll).linear @ np.asarray(grid.matrix)
    origin_y, origin_x = y0 - grid.pad[0], x0 - grid.pad[1]  # surface index -> offset from unshifted
    oy, ox = np.mgrid[0 : surface.shape[0], 0 : surface.shape[1]]
    d = np.tensordot(m_s, np.stack([ox + origin_x, oy + origin_y]).astype(float), axes=1)
    rx, ry = params.shift_range_arcsec
    inside = (np.abs(d[0] - start.dx) <= rx) & (np.abs(d[1] - start.dy) <= ry)
    masked = np.where(inside, surface, np.nan)
    if not np.isfinite(masked).any():
        return ShiftPeak(Transform(start.dx, start.dy, sx, sy, roll), float("nan"), False, 0.0)
    iy, ix = np.unravel_index(np.nanargmax(masked), masked.shape)
    peak_y, peak_x = quadratic_peak(np.where(inside, surface, -np.inf), iy, ix)
    dx, dy = m_s @ [peak_x + origin_x, peak_y + origin_y]
    edge = not (inside[max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2].all())
    ratio = secondary_peak_ratio(masked, iy, ix)
    return ShiftPeak(Transform(dx, dy, sx, sy, roll), float(masked[iy, ix]), edge, ratio)


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
    """Exact exhaustive search: FFT correlation over all shifts, scale grid, then Gauss-Newton refinement.

    1. For each scale candidate (only ``start``'s scale unless ``params.fit_scale``), the masked NCC by
       FFT scores every integer shift within ``params.shift_range_arcsec`` of ``start``; a parabola
       through the peak's neighbours gives the sub-pixel shift. Scale candidates are scored through
       ``map_fn``: a 1-D grid on ``sx``, then on ``sy``, at ``params.scale_step``, each scored coarse to
       fine (every other value, then the neighbours of the best; `_grid_peaks`); then the shift is
       searched again at the scale at the vertex of the grid's scores. The surfaces are computed in
       single precision (good to ~1e-6 in r): they only place the peak for step 2.
       With ``params.fit_roll``, a grid over the roll (``params.roll_range_deg`` at
       ``params.roll_step_deg``) follows, at the best scale.
    2. The best candidate is refined jointly in shift (and scale, and roll) on the exact metric (cubic
       sampling) by Gauss-Newton (`coalign.stages.refine.refine`), which also gives the 1-sigma errors.

    The result carries sanity flags (see `coalign.results.FLAGS`): ``edge`` (peak on the window's
    edge), ``weak`` (r below `WEAK_SCORE`), ``ambiguous`` (a separate peak at least `AMBIGUOUS_RATIO` as
    high above the median), ``scale_edge`` (a scale at the edge of ``params.scale_range``) and
    ``roll_edge``.
    """
    frames = np.asarray(frames, dtype=float)
    frames = frames[None] if frames.ndim == 2 else frames
    n_eval = 1
    linear_start = (start.sx, start.sy, start.roll)  # the grid's best scale and roll (vertices)
    # The integer-shift surfaces only place the peak for the refinement, which works on the exact metric
    # in double precision: single precision will do.
    best_at = _shift_scorer(target, frames, grid, start, params, plan, np.float32)
    if params.fit_scale or params.fit_roll:
        grid_peaks, linear_start = _scale_and_roll_grids(best_at, start, params, map_fn)
        n_eval += len(grid_peaks)
    # The shift at the grid's best scale and roll.
    peak = best_at(sx=linear_start[0], sy=linear_start[1], roll=linear_start[2])
    if not np.isfinite(peak.score):
        return SearchResult(start, float("nan"), n_eval, (), "no shift had enough overlap")
    history = ((peak.transform, peak.score),)
    refined = refine(
        target,
        prepare_frames(frames),
        grid,
        Transform(peak.transform.dx, peak.transform.dy, *linear_start),
        plan=plan,
        fit_scale=params.fit_scale,
        fit_roll=params.fit_roll,
        min_overlap_fraction=params.min_overlap_fraction,
        min_overlap_pixels=params.min_overlap_pixels,
    )
    n_eval += refined.n_evaluations
    transform, score = peak.transform, peak.score
    # The refinement only accepts steps that raise the exact (cubic) correlation from the peak's value.
    if np.isfinite(refined.score) and _within(refined.transform, start, params):
        transform, score = refined.transform, refined.score
        history = (*history, (transform, score))
    flags = _flags(peak, transform, score, params)
    message = "converged: FFT peak refined" if refined.converged else "FFT peak; refinement did not converge"
    if "edge" in flags:
        message = "peak on the edge of the search window"
    return SearchResult(transform, score, n_eval, history, message, refined.sigma, flags)


def _scale_and_roll_grids(best_at, start: Transform, params: PhaseParams, map_fn):
    """Peaks of the 1-D grids on ``sx``, then ``sy`` (``params.fit_scale``), then the roll
    (``params.fit_roll``), each at the best of the previous ones (scored coarse to fine, `_grid_peaks`);
    and ``(sx, sy, roll)`` at the vertices of parabolas through the best grid scores."""
    sx, sy, roll = start.sx, start.sy, start.roll
    peaks = []
    if params.fit_scale:
        low, high = params.scale_range
        sxs = _scale_axis(low, high, params.scale_step, start.sx)
        x_peaks = _grid_peaks(sxs, lambda value: (best_at, value, sy, roll), map_fn)
        best_sx = max((p for p in x_peaks if p is not None), key=lambda p: _key(p.score)).transform.sx
        sys_ = _scale_axis(low, high, params.scale_step, start.sy)
        y_peaks = _grid_peaks(sys_, lambda value: (best_at, best_sx, value, roll), map_fn)
        peaks += [p for p in x_peaks + y_peaks if p is not None]
        sx, sy = _vertex(sxs, _scores(x_peaks)), _vertex(sys_, _scores(y_peaks))
    if params.fit_roll:
        low, high = params.roll_range_deg
        rolls = _scale_axis(low, high, params.roll_step_deg, start.roll)
        r_peaks = _grid_peaks(rolls, lambda value: (best_at, sx, sy, value), map_fn)
        peaks += [p for p in r_peaks if p is not None]
        roll = _vertex(rolls, _scores(r_peaks))
    return peaks, (sx, sy, roll)


def _grid_peaks(values, arguments, map_fn) -> list:
    """Peaks over a 1-D grid, scored coarse to fine through ``map_fn``: every other value and the last,
    then the neighbours of the best of them; None for the values left unscored.

    The best grid value and its two neighbours are always scored (all `_vertex` needs), and they are
    those of the whole grid unless the score varies faster than the grid step: a value better than both
    of its coarse neighbours but away from the best of them would be missed.
    """
    peaks = [None] * len(values)

    def score(indices):
        results = map_fn(_call_best, [arguments(values[i]) for i in indices])
        for i, peak in zip(indices, results, strict=True):
            peaks[i] = peak

    score(sorted({*range(0, len(values), 2), len(values) - 1}))
    best = max((i for i, p in enumerate(peaks) if p is not None), key=lambda i: _key(peaks[i].score))
    score([i for i in (best - 1, best + 1) if 0 <= i < len(values) and peaks[i] is None])
    return peaks


def _scores(peaks):
    return [p.score if p is not None else float("nan") for p in peaks]


def _shift_scorer(target, frames, grid, start, params, plan, dtype=np.float64):
    """``best_at(sx, sy, roll)``: the best shift at one scale and roll, over the frames' window that the
    search can reach (`offset_window`), with the target's spectra computed once."""
    low, high = params.scale_range if params.fit_scale else (1.0, 1.0)
    scales = (min(low, start.sx, start.sy), max(high, start.sx, start.sy))
    low, high = params.roll_range_deg if params.fit_roll else (0.0, 0.0)
    rolls = (min(low, start.roll), max(high, start.roll))
    window = offset_window(grid, target.shape, frames.shape[1:], start, params, scales, rolls)
    y0, y1, x0, x1 = window
    prepared = target_spectra(target, (y1 - y0, x1 - x0), plan=plan, dtype=dtype)
    return partial(_best_shift, prepared, frames, grid, start=start, params=params, plan=plan, window=window)


def _within(transform: Transform, start: Transform, params: PhaseParams) -> bool:
    """Whether a refined transform stayed inside the search window and scale range."""
    rx, ry = params.shift_range_arcsec
    low, high = params.scale_range
    inside = abs(transform.dx - start.dx) <= rx + 1e-9 and abs(transform.dy - start.dy) <= ry + 1e-9
    if params.fit_scale:
        inside &= low - 1e-9 <= transform.sx <= high + 1e-9 and low - 1e-9 <= transform.sy <= high + 1e-9
    if params.fit_roll:
        inside &= params.roll_range_deg[0] - 1e-9 <= transform.roll <= params.roll_range_deg[1] + 1e-9
    return bool(inside)


def _flags(peak: ShiftPeak, transform: Transform, score: float, params: PhaseParams) -> tuple[str, ...]:
    flags = []
    if peak.edge:
        flags.append("edge")
    if not score >= WEAK_SCORE:
        flags.append("weak")
    if peak.second_ratio >= AMBIGUOUS_RATIO:
        flags.append("ambiguous")
    if params.fit_scale:
        low, high = params.scale_range
        margin = params.scale_step / 2
        if min(transform.sx, transform.sy) < low + margin or max(transform.sx, transform.sy) > high - margin:
            flags.append("scale_edge")
    if params.fit_roll:
        low, high = params.roll_range_deg
        if not low + params.roll_step_deg / 2 <= transform.roll <= high - params.roll_step_deg / 2:
            flags.append("roll_edge")
    return tuple(flags)


def _vertex(values, scores) -> float:
    """Value at the vertex of the parabola through the best score and its two neighbours on a grid."""
    scores = np.array([_key(v) for v in scores])
    i = int(np.argmax(scores))
    if 0 < i < len(values) - 1 and np.all(np.isfinite(scores[i - 1 : i + 2])):
        offset = quadratic_peak(scores[None, i - 1 : i + 2], 0, 1)[1] - 1
        return float(values[i] + offset * (values[i + 1] - values[i]))
    return float(values[i])


def _call_best(args):
    best_at, sx, sy, roll = args
    return best_at(sx=sx, sy=sy, roll=roll)


def _key(score):
    return score if np.isfinite(score) else -np.inf
