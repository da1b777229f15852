"""Synthetic raster: each target column taken from the reference frame(s) at that column's time."""

from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.time import Time

from coalign.exceptions import EmptySequenceError, ShapeError, TimeCoverageError
from coalign.params import SyntheticParams
from coalign.stages.sampling import FramePlan, sample_reference
from coalign.transform import TargetGrid, Transform

__all__ = ["CarriedFrames", "build_synthetic_raster", "carried_frames", "select_frames"]


def select_frames(
    frame_times: Time, column_times: Time, params: SyntheticParams = SyntheticParams()
) -> FramePlan:
    """Choose the reference frame(s) for every target column.

    Parameters
    ----------
    frame_times : `~astropy.time.Time`, shape (k,)
        Observation times of the reference frames (any order).
    column_times : `~astropy.time.Time`, shape (nx,)
        Acquisition time of each target column (any order: rasters may scan backwards in time).
    params : SyntheticParams
        Maximum allowed time gap and whether to interpolate between bracketing frames.

    Returns
    -------
    plan : FramePlan
        Per-column frame indices (into ``frame_times``) and blending weights.

    Raises
    ------
    EmptySequenceError
        If there is no frame.
    TimeCoverageError
        If a column is farther than ``params.max_time_gap_s`` from every frame.
    """
    frame_times = Time(frame_times)
    column_times = Time(column_times)
    if frame_times.size == 0:
        raise EmptySequenceError("the reference sequence is empty; pass at least one reference map")
    if column_times.size == 0:
        raise TimeCoverageError("column_times is empty; pass one acquisition time per target column")
    ref_s = (frame_times - frame_times.min()).to_value("s").reshape(-1)
    col_s = (column_times - frame_times.min()).to_value("s").reshape(-1)
    gaps = np.abs(col_s[:, None] - ref_s[None, :])
    nearest = gaps.argmin(axis=1)
    worst = int(gaps.min(axis=1).argmax())
    worst_gap = float(gaps.min(axis=1)[worst])
    if worst_gap > params.max_time_gap_s:
        raise TimeCoverageError(
            f"column {worst} (time {column_times.reshape(-1)[worst].isot}) is {worst_gap:.0f} s "
            "from the nearest "
            f"reference frame, more than max_time_gap_s={params.max_time_gap_s:.0f}; the reference sequence "
            f"covers {frame_times.min().isot} to {frame_times.max().isot}: add frames covering the raster "
            "or raise max_time_gap_s"
        )
    if not params.interpolate or ref_s.size == 1:
        return FramePlan(nearest, nearest, np.zeros(col_s.size))
    order = np.argsort(ref_s)
    sorted_s = ref_s[order]
    upper_pos = np.clip(np.searchsorted(sorted_s, col_s), 1, sorted_s.size - 1)
    lower_pos = upper_pos - 1
    span = sorted_s[upper_pos] - sorted_s[lower_pos]
    weight = np.clip(
        np.divide(col_s - sorted_s[lower_pos], span, out=np.zeros_like(col_s), where=span > 0), 0, 1
    )
    return FramePlan(order[lower_pos], order[upper_pos], weight)


class CarriedFrames(NamedTuple):
    """Copies of reference frames, each to be carried by solar rotation to one time (`carried_frames`)."""

    source: np.ndarray  #: original frame index of each copy
    times: Time  #: time each copy is carried to
    plan: FramePlan  #: the columns' plan over the copies


def carried_frames(plan: FramePlan, column_times: Time, chunk_s: float) -> CarriedFrames:
    """Split a plan into chunks of columns, each with its own copies of its frames and one target time.

    Columns that use the same frame pair are cut into chunks spanning at most ``chunk_s`` seconds; each
    chunk gets its own copy of its lower and upper frames, to be carried to the mean time of its columns.
    With blending, both frames that bracket a column are then carried to (nearly) that column's time, so
    the synthetic raster keeps the drift of features across the scan.

    Examples
    --------
    >>> plan = FramePlan(np.array([0, 0, 0, 0]), np.array([1, 1, 1, 1]), np.array([0.1, 0.4, 0.6, 0.9]))
    >>> times = Time("2020-01-01") + np.array([0, 60, 120, 180]) * u.s
    >>> carried = carried_frames(plan, times, 90.0)
    >>> carried.source.tolist(), carried.plan.lower.tolist(), carried.plan.upper.tolist()
    ([0, 1, 0, 1], [0, 0, 2, 2], [1, 1, 3, 3])
    >>> (carried.times - times[0]).to_value("s").round(6).tolist()
    [30.0, 30.0, 150.0, 150.0]
    """
    column_times = Time(column_times)
    seconds = (column_times - column_times.min()).to_value("s")
    lower, upper = np.empty_like(plan.lower), np.empty_like(plan.upper)
    sources, targets = [], []
    pairs = {}
    for col, (lo, hi, w) in enumerate(zip(plan.lower, plan.upper, plan.weight, strict=True)):
        pairs.setdefault((int(lo), int(hi) if w > 0 else int(lo)), []).append(col)
    for (lo, hi), columns in pairs.items():
        columns = np.array(sorted(columns, key=lambda c: seconds[c]))
        start = 0
        while start < columns.size:
            stop = start + 1
            while stop < columns.size and seconds[columns[stop]] - seconds[columns[start]] <= chunk_s:
                stop += 1
            chunk = columns[start:stop]
            when = column_times.min() + np.mean(seconds[chunk]) * u.s
            lower[chunk] = len(sources)
            sources.append(lo)
            targets.append(when)
            if hi != lo:
                sources.append(hi)
                targets.append(when)
            upper[chunk] = len(sources) - 1
            start = stop
    weight = np.where(upper != lower, plan.weight, 0.0)
    return CarriedFrames(np.array(sources), Time(targets), FramePlan(lower, upper, weight))


def build_synthetic_raster(
    frames,
    frame_times: Time,
    column_times: Time,
    grid: TargetGrid,
    *,
    transform: Transform = Transform(),
    params: SyntheticParams = SyntheticParams(),
    order: int = 1,
) -> np.ndarray:
    """Build the raster the reference sequence would have produced on the target grid.

    Column ``i`` is sampled from the frame nearest to ``column_times[i]`` (or blended from the two
    bracketing frames), at the sky positions the target grid sees once corrected by ``transform``.

    Parameters
    ----------
    frames : (k, ny + 2 pad_y, nx + 2 pad_x) array_like
        Reference frames resampled onto the target grid padded by ``grid.pad``. Not modified.
    frame_times : `~astropy.time.Time`, shape (k,)
        Their times.
    column_times : `~astropy.time.Time`, shape (nx,)
        Acquisition time of each target column.
    grid : TargetGrid
        Target grid geometry with the padding used for ``frames``.
    transform : Transform
        Correction of the target pointing (identity by default).
    params : SyntheticParams
        Frame selection settings.
    order : int
        Interpolation order.

    Returns
    -------
    synthetic : (ny, nx) ndarray
        NaN where the reference is invalid.
    """
    frames = np.asarray(frames, dtype=float)
    if frames.ndim != 3:
        raise ShapeError(f"frames must be a (k, ny, nx) stack, got shape {frames.shape}")
    nx = frames.shape[2] - 2 * grid.pad[1]
    if Time(frame_times).size != frames.shape[0]:
        raise ShapeError(f"{frames.shape[0]} frames but {Time(frame_times).size} frame times")
    if Time(column_times).size != nx:
        raise TimeCoverageError(
            f"column_times has {Time(column_times).size} entries but the target has {nx} columns; "
            "pass one acquisition time per target column"
        )
    plan = select_frames(frame_times, column_times, params)
    return sample_reference(frames, transform, grid, plan=plan, order=order)
