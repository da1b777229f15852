"""The three phases (binned, one-map, synthetic raster) composed from the pure stages.

Each phase takes the target and reference(s) as objects with ``.data`` and ``.wcs`` (sunpy Maps, or
`ImageWithWCS` records for plain arrays), an immutable `~coalign.params.PhaseParams`, the correction to
start from, and a ``map_fn`` for parallel scoring. Each returns a `~coalign.results.PhaseResult` holding
the *full* correction after the phase, so phases chain::

    binned = binned_phase(target, reference)
    one_map = one_map_phase(target, reference, start=binned.transform)
    final = synthetic_raster_phase(target, sequence, column_times=times, start=one_map.transform)
"""

import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from itertools import product
from typing import Any

import numpy as np
from astropy.time import Time

from coalign.exceptions import (
    AllNaNError,
    EmptySequenceError,
    NoOverlapError,
    ShapeError,
    TimeCoverageError,
    WCSError,
)
from coalign.params import (
    AUTO_KERNEL_MAX_ARCSEC,
    AUTO_KERNEL_MIN_BINS,
    BINNED,
    ONE_MAP,
    SYNTHETIC_RASTER,
    PhaseParams,
    SyntheticParams,
)
from coalign.results import AlignmentResult, PhaseResult
from coalign.stages.binning import (
    auto_kernel_arcsec,
    bin_factors,
    bin_image,
    bin_wcs,
    clip_percentiles,
    square_bin_factor,
)
from coalign.stages.correlate import correlate
from coalign.stages.fft_search import fft_search
from coalign.stages.refine import uncertainty
from coalign.stages.reproject import pad_for_search, reproject_frames
from coalign.stages.sampling import FramePlan, prepare_frames
from coalign.stages.search import grid_search, population_search
from coalign.stages.synthetic import carried_frames, select_frames
from coalign.transform import TargetGrid, Transform, grid_from_wcs, pixel_mapping

__all__ = [
    "ImageWithWCS",
    "binned_phase",
    "one_map_phase",
    "reproject_and_bin",
    "run_phase",
    "synthetic_raster_phase",
    "three_phase_alignment",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageWithWCS:
    """A bare image and its celestial WCS, for callers without sunpy Maps (``date`` optional)."""

    data: Any
    wcs: Any
    date: Time | None = None


def _checked_image(obj, role: str, *, as_float: bool = True):
    """``(data, celestial WCS)`` of a Map-like, with specific errors for wrong shapes, no WCS, all NaN.

    With ``as_float=False`` the data is returned as stored (e.g. big-endian float32 from a FITS file) and
    not scanned for finite pixels: resampling converts and checks only the part it needs.
    """
    data = getattr(obj, "data", None)
    data = np.asarray(data, dtype=float) if as_float else np.asarray(data)
    wcs = getattr(obj, "wcs", None)
    if data.ndim != 2:
        raise ShapeError(
            f"the {role} must be a 2-D image, got shape {data.shape}; "
            "integrate a raster over wavelength or pick one frame of a cube first"
        )
    if wcs is None or not getattr(wcs, "has_celestial", False):
        raise WCSError(
            f"the {role} has no celestial WCS; give it HPLN/HPLT (or RA/DEC) CTYPE, CRVAL, CDELT and "
            "CRPIX keywords, or build it with sunpy.map.Map(data, header)"
        )
    if as_float and not np.isfinite(data).any():
        raise AllNaNError(
            f"the {role} holds no finite pixel (all NaN or inf); check the file, the chosen "
            "window, or the wavelength range used to integrate it"
        )
    return data, wcs.celestial


def _reference_times(references) -> Time:
    times = [getattr(r, "date", None) for r in references]
    if any(t is None for t in times):
        raise TimeCoverageError(
            "every reference map needs an observation time (DATE-OBS) for a synthetic raster"
        )
    return Time(times)


def target_time(target) -> Time:
    """The target's observation time (``date`` attribute), required for differential rotation."""
    date = getattr(target, "date", None)
    if date is None:
        raise TimeCoverageError("differential rotation needs the target's observation time (DATE-OBS)")
    return Time(date)


def run_phase(
    name: str,
    target,
    references,
    params: PhaseParams,
    *,
    start: Transform = Transform(),
    column_times: Time | None = None,
    synthetic: SyntheticParams = SyntheticParams(),
    map_fn=map,
) -> PhaseResult:
    """Run one search phase: (bin) → reproject reference(s) onto the padded target grid → search.

    Parameters
    ----------
    name : str
        Phase name recorded in the result.
    target : Map-like
        Object with a 2-D ``.data`` and a celestial ``.wcs``. Not modified.
    references : sequence of Map-like
        One reference (single-map phase) or a time sequence (with ``column_times``: synthetic raster).
    params : PhaseParams
        Search settings.
    start : Transform
        Correction to start from (the previous phase's result).
    column_times : `~astropy.time.Time`, optional
        Per-column acquisition times of the target; required for a synthetic raster from several frames.
    synthetic : SyntheticParams
        Frame selection for the synthetic raster.
    map_fn : callable
        ``map_fn(func, iterable)`` used to score candidates in parallel.

    Returns
    -------
    PhaseResult
    """
    t0 = time.perf_counter()
    references = list(references)
    if not references:
        raise EmptySequenceError(
            f"phase {name!r} got an empty reference sequence; pass at least one reference map"
        )
    target_data, target_wcs = _checked_image(target, "target")
    full_grid = grid_from_wcs(target_wcs)
    plan_columns = None
    if column_times is not None:
        column_times = Time(column_times)
        if column_times.size != target_data.shape[1]:
            raise TimeCoverageError(
                f"column_times has {column_times.size} entries but the target has "
                f"{target_data.shape[1]} columns "
                f"(shape {target_data.shape}); pass one time per column (x axis)"
            )
    if len(references) > 1 and column_times is None:
        raise TimeCoverageError(
            "a sequence of reference maps needs the target's per-column times; pass column_times="
        )
    if len(references) > 1:
        frame_plan = select_frames(_reference_times(references), column_times, synthetic)
        used = np.unique(np.concatenate([frame_plan.lower, frame_plan.upper]))
        references = [references[i] for i in used]
        remap = {int(k): i for i, k in enumerate(used)}
        plan_columns = (
            np.array([remap[int(k)] for k in frame_plan.lower]),
            np.array([remap[int(k)] for k in frame_plan.upper]),
            frame_plan.weight,
        )
    kernel = params.bin_kernel_arcsec
    if kernel == "auto":
        kernel = auto_kernel_arcsec(
            target_wcs,
            target_data.shape,
            max_kernel_arcsec=AUTO_KERNEL_MAX_ARCSEC,
            min_bins=AUTO_KERNEL_MIN_BINS,
        )
    kernel_factor, native_wcs = None, target_wcs
    if kernel is not None:
        if plan_columns is not None:
            raise ShapeError(
                "binning a target with per-column times is not supported; use the synthetic-raster "
                "phase at full resolution (bin_kernel_arcsec=None)"
            )
        kernel_factor = bin_factors(target_wcs, kernel)
        target_data, target_wcs = bin_image(target_data, kernel_factor), bin_wcs(target_wcs, kernel_factor)
    factor = square_bin_factor(target_wcs, target_data.shape[0]) if params.square_bins else 1
    if factor > 1:  # rows much finer than columns: ~square bins (columns, and their times, are kept)
        target_data, target_wcs = bin_image(target_data, (factor, 1)), bin_wcs(target_wcs, (factor, 1))
    grid = grid_from_wcs(target_wcs)
    reach = (abs(start.dx) + params.shift_range_arcsec[0], abs(start.dy) + params.shift_range_arcsec[1])
    scale_range = (
        min(params.scale_range[0], start.sx, start.sy),
        max(params.scale_range[1], start.sx, start.sy),
    )
    roll_range = (
        (min(params.roll_range_deg[0], start.roll), max(params.roll_range_deg[1], start.roll))
        if params.fit_roll
        else (min(start.roll, 0.0), max(start.roll, 0.0))
    )
    pad = pad_for_search(
        grid,
        target_data.shape,
        reach,
        scale_range if params.fit_scale else (min(start.sx, start.sy, 1.0), max(start.sx, start.sy, 1.0)),
        roll_range,
    )
    grid = grid.with_pad(pad)
    plan = FramePlan(*plan_columns) if plan_columns is not None else None
    rotate_to = [None] * len(references)
    if synthetic.differential_rotation and plan is not None:
        carried = carried_frames(plan, column_times, synthetic.rotation_chunk_s)
        references, rotate_to, plan = (
            [references[k] for k in carried.source],
            list(carried.times),
            carried.plan,
        )
    elif synthetic.differential_rotation:
        rotate_to = [target_time(target)] * len(references)
    rows, columns = reachable_region(
        grid, target_data.shape, start, params, scale_range, roll_range, plan=plan, n_frames=len(references)
    )
    checked = [_checked_image(ref, "reference", as_float=False) for ref in references]
    region = {"pad": pad, "columns": columns, "rows": rows, "rotate_to": rotate_to}
    if kernel_factor is None:
        frames = reproject_frames(checked, target_wcs, target_data.shape, **region)
    else:
        frames = reproject_and_bin(checked, native_wcs, target_data.shape, kernel_factor, **region)
    if params.clip_percentiles is not None:
        target_data = clip_percentiles(target_data, params.clip_percentiles)
        # One pair of levels for the whole sequence: each frame may hold only the band of columns it
        # serves, and per-frame levels would then differ from band to band.
        frames = clip_percentiles(frames, params.clip_percentiles, out=frames)  # the stack is ours
    score_fn = partial(
        correlate,
        target_data,
        frames,
        grid=grid,
        plan=plan,
        order=params.interpolation_order,
        min_overlap_fraction=params.min_overlap_fraction,
        min_overlap_pixels=params.min_overlap_pixels,
    )
    n_eval = 0
    if params.strategy == "fft":
        result = fft_search(target_data, frames, grid, params, start=start, plan=plan, map_fn=map_fn)
    elif params.strategy == "grid+population":
        coarse = grid_search(score_fn, start, params, map_fn=map_fn)
        n_eval += coarse.n_evaluations
        if not np.isfinite(coarse.score):
            raise _overlap_error(name, params)
        start = coarse.transform
    if params.strategy != "fft":
        result = population_search(score_fn, start, params, map_fn=map_fn)
        if np.isfinite(result.score):
            sigma = uncertainty(
                target_data,
                prepare_frames(frames),
                grid,
                result.transform,
                plan=plan,
                fit_scale=params.fit_scale,
            )
            result = replace(result, sigma=sigma)
    n_eval += result.n_evaluations
    if not np.isfinite(result.score):
        raise _overlap_error(name, params)
    elapsed = time.perf_counter() - t0
    log.info(
        "phase %s: %s score=%.4f (%d evaluations, %.2f s)",
        name,
        result.transform,
        result.score,
        n_eval,
        elapsed,
    )
    return PhaseResult(
        name=name,
        transform=result.transform,
        score=result.score,
        n_evaluations=n_eval,
        elapsed_s=elapsed,
        shift_pixels=full_grid.shift_in_pixels(result.transform),
        history=result.history,
        message=result.message,
        sigma=result.sigma,
        flags=result.flags,
    )


def reproject_and_bin(
    references,
    native_wcs,
    binned_shape: tuple[int, int],
    factor: tuple[int, int],
    *,
    pad: tuple[int, int],
    columns,
    rows: tuple[int, int],
    rotate_to,
) -> np.ndarray:
    """References resampled onto a binned target's padded grid, block-averaged as the target was.

    Each reference is resampled at the target's native resolution over the native pixels of the binned
    grid's region, then binned by ``factor`` with `~coalign.stages.binning.bin_image`: every reference
    bin averages the same sky as the target bin it is compared with, and only the part of each reference
    under the region is read (not a whole full-disc image binned first).

    Parameters
    ----------
    references : sequence of (array_like, `~astropy.wcs.WCS`)
        Reference images and their celestial WCS, as for `~coalign.stages.reproject.reproject_frames`.
    native_wcs : `~astropy.wcs.WCS`
        The target's WCS before binning.
    binned_shape : (int, int)
        Shape of the binned target.
    factor : (int, int)
        Bin size ``(fy, fx)`` the target was binned with (`~coalign.stages.binning.bin_image`).
    pad, columns, rows, rotate_to
        As for `~coalign.stages.reproject.reproject_frames`, in bins of the binned grid.

    Returns
    -------
    (n_frames, ny + 2 pad_y, nx + 2 pad_x) ndarray
        On the binned padded grid.
    """
    fy, fx = factor
    native = reproject_frames(
        references,
        native_wcs,
        (binned_shape[0] * fy, binned_shape[1] * fx),
        pad=(pad[0] * fy, pad[1] * fx),
        columns=[(start * fx, stop * fx) for start, stop in columns],
        rows=(rows[0] * fy, rows[1] * fy),
        rotate_to=rotate_to,
    )
    return np.stack([bin_image(frame, factor) for frame in native])


#: Pixels resampled beyond the positions a search can read (interpolation support of the refinement).
REACH_MARGIN = 4
#: Offsets the integer search scores beyond its window (peak fit and edge flag; see `offset_window`).
WINDOW_MARGIN_OFFSETS = 2


def reachable_region(
    grid: TargetGrid,
    target_shape,
    start: Transform,
    params: PhaseParams,
    scale_range,
    roll_range=(0.0, 0.0),
    *,
    plan: FramePlan | None = None,
    n_frames: int = 1,
):
    """Rows ``(y0, y1)`` of the padded grid, and per frame the columns ``(x0, x1)``, that a search around
    ``start`` can read.

    Every correction the search may try (a shift within ``params.shift_range_arcsec`` of ``start``, the
    scale within ``scale_range`` if ``params.fit_scale`` and the roll within ``roll_range`` if
    ``params.fit_roll``, else those of ``start``) maps the target pixels affinely into the padded grid
    (`~coalign.transform.pixel_mapping`), so what it reads is bounded by the images of the corners. Each
    frame of a synthetic raster (``plan``) needs only what the target columns it serves can read; the
    padding, by contrast, covers ``start`` itself and every frame's columns. The bounds are widened by the
    offsets the integer search scores beyond its window and by `REACH_MARGIN` pixels; a frame that serves
    no column gets ``(0, 0)``.
    """
    ny, nx = target_shape
    padded = (ny + 2 * grid.pad[0], nx + 2 * grid.pad[1])
    rx, ry = params.shift_range_arcsec
    scales = list(product(scale_range, scale_range)) if params.fit_scale else [(start.sx, start.sy)]
    rolls = roll_range if params.fit_roll else (start.roll,)
    mappings = [
        pixel_mapping(Transform(start.dx + ex, start.dy + ey, sx, sy, roll), grid)
        for ex, ey, (sx, sy), roll in product((-rx, rx), (-ry, ry), scales, rolls)
    ]
    step = max(np.abs(matrix).sum(axis=1).max() for matrix, _ in mappings)
    margin = REACH_MARGIN + int(np.ceil(WINDOW_MARGIN_OFFSETS * step))

    def bounds(rows, columns):
        corners = np.array([[y, x] for y in rows for x in columns], dtype=float).T
        seen = np.concatenate([matrix @ corners + offset[:, None] for matrix, offset in mappings], axis=1)
        low = np.floor(seen.min(axis=1)).astype(int) - margin
        high = np.ceil(seen.max(axis=1)).astype(int) + 1 + margin
        return [(max(0, int(lo)), min(n, int(hi))) for lo, hi, n in zip(low, high, padded, strict=True)]

    row_span, _ = bounds((0, ny - 1), (0, nx - 1))
    plan = plan if plan is not None else FramePlan(np.zeros(nx, int), np.zeros(nx, int), np.zeros(nx))
    columns = []
    for k in range(n_frames):
        used = np.flatnonzero((plan.lower == k) | ((plan.upper == k) & (plan.weight > 0)))
        columns.append(bounds((0, ny - 1), (used.min(), used.max()))[1] if used.size else (0, 0))
    return tuple(row_span), columns


def _overlap_error(name, params):
    return NoOverlapError(
        f"phase {name!r}: no candidate correction gave the minimum overlap (min_overlap_fraction="
        f"{params.min_overlap_fraction}, min_overlap_pixels={params.min_overlap_pixels}) between target and "
        "reference; check that they observe the same region, widen shift_range_arcsec, or lower the minimum"
    )


def binned_phase(
    target, reference, params: PhaseParams = BINNED, *, start: Transform = Transform(), map_fn=map
) -> PhaseResult:
    """Phase 1: coarse, wide search on maps block-averaged to ``params.bin_kernel_arcsec``."""
    if params.bin_kernel_arcsec is None:
        raise ValueError(
            "the binned phase needs params.bin_kernel_arcsec, e.g. replace(BINNED, bin_kernel_arcsec=20)"
        )
    return run_phase("binned", target, [reference], params, start=start, map_fn=map_fn)


def one_map_phase(
    target, reference, params: PhaseParams = ONE_MAP, *, start: Transform = Transform(), map_fn=map
) -> PhaseResult:
    """Phase 2: refinement against one reference map, unbinned (with `ONE_MAP`, rows much finer than the
    columns are binned towards square pixels: ``PhaseParams.square_bins``)."""
    return run_phase("one_map", target, [reference], params, start=start, map_fn=map_fn)


def synthetic_raster_phase(
    target,
    references,
    params: PhaseParams = SYNTHETIC_RASTER,
    *,
    column_times: Time | None = None,
    start: Transform = Transform(),
    synthetic: SyntheticParams = SyntheticParams(),
    map_fn=map,
) -> PhaseResult:
    """Phase 3: shift (and scale) against the synthetic raster built from the reference sequence.

    With one reference map (or no ``column_times``) every column uses that map: the phase then solves
    shift and scale against a single image.
    """
    return run_phase(
        "synthetic_raster",
        target,
        references,
        params,
        start=start,
        column_times=column_times,
        synthetic=synthetic,
        map_fn=map_fn,
    )


def three_phase_alignment(
    target,
    reference,
    references=None,
    *,
    column_times=None,
    phases: tuple[PhaseParams, PhaseParams, PhaseParams] = (BINNED, ONE_MAP, SYNTHETIC_RASTER),
    synthetic: SyntheticParams = SyntheticParams(),
    start: Transform = Transform(),
    map_fn=map,
) -> AlignmentResult:
    """Binned → one-map → synthetic-raster, each phase seeded by the previous one's correction.

    Parameters
    ----------
    target : Map-like
        The raster (2-D, e.g. integrated over wavelength) whose pointing is corrected.
    reference : Map-like
        The reference map used by phases 1 and 2 (e.g. the frame closest to the raster's mid-time).
    references : sequence of Map-like, optional
        Time sequence for phase 3 (default: ``[reference]``).
    column_times : `~astropy.time.Time`, optional
        Per-column acquisition times of the target (needed when ``references`` has several maps).
    phases : three PhaseParams
        Settings of the three phases.

    Returns
    -------
    AlignmentResult
    """
    binned_params, one_map_params, synthetic_params = phases
    first = binned_phase(target, reference, binned_params, start=start, map_fn=map_fn)
    second = one_map_phase(target, reference, one_map_params, start=first.transform, map_fn=map_fn)
    third = synthetic_raster_phase(
        target,
        list(references) if references else [reference],
        synthetic_params,
        column_times=column_times,
        start=second.transform,
        synthetic=synthetic,
        map_fn=map_fn,
    )
    return AlignmentResult((first, second, third))
