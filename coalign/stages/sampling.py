"""Sample reference frames at the positions a corrected target pixel grid sees."""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.interpolate import BSpline

from coalign.transform import TargetGrid, Transform, pixel_mapping

__all__ = [
    "FramePlan",
    "SplineFrames",
    "inside",
    "interpolate_on_axes",
    "prepare_frames",
    "reference_gradient",
    "sample_at",
    "sample_reference",
    "single_frame_plan",
]


class FramePlan(NamedTuple):
    """Which reference frames feed each target column: ``(1 - weight) * lower + weight * upper``."""

    lower: np.ndarray
    upper: np.ndarray
    weight: np.ndarray


SPLINE_PAD = 12  # what scipy pads before prefiltering for mode="nearest"
#: Pixels kept around a frame's valid region when prefiltering. The prefilter's influence decays by
#: 2 - sqrt(3) per pixel and the region's mirrored edge lies twice this far from the valid pixels: their
#: coefficients are the whole frame's to double precision.
SPLINE_MARGIN = 16


class SplineFrames(NamedTuple):
    """Frames prefiltered once for cubic sampling: spline coefficients and the valid-pixel masks (1 or 0,
    in single precision)."""

    coefficients: np.ndarray
    valid: np.ndarray


def prepare_frames(frames) -> SplineFrames:
    """Prefilter frames for repeated cubic sampling (holes filled with the mean, masks kept apart).

    Sampling prepared frames with `sample_reference` gives the same values as sampling the raw frames
    with ``order=3``, without recomputing the spline coefficients at every call. Only the region within
    `SPLINE_MARGIN` of each frame's valid pixels is filtered: a valid sample never reads beyond it, and
    the coefficients there are left at zero (a synthetic-raster frame is valid over a band of columns,
    so most of each frame is never touched).
    """
    frames = np.asarray(frames, dtype=float)
    frames = frames[None] if frames.ndim == 2 else frames
    valid = np.isfinite(frames)
    n, ny, nx = frames.shape
    coefficients = np.zeros((n, ny + 2 * SPLINE_PAD, nx + 2 * SPLINE_PAD))
    masks = np.zeros(frames.shape, dtype=np.float32)
    valid_rows, valid_columns = valid.any(axis=2), valid.any(axis=1)
    for k, frame in enumerate(frames):
        if not valid_rows[k].any():
            coefficients[k] = np.nan
            continue
        # Within the region the frame's holes and surroundings take the mean of its valid pixels, as the
        # whole filled frame would; beyond the frame, the edge treatment of
        # map_coordinates(mode="nearest", prefilter=True): the frame padded by repeating its edge.
        (y0, y1), (x0, x1) = _span(valid_rows[k]), _span(valid_columns[k])
        rows, columns = slice(max(y0, 0), min(y1, ny)), slice(max(x0, 0), min(x1, nx))
        inner, inner_valid = frame[rows, columns], valid[k, rows, columns]
        fill = float(inner[inner_valid].mean())
        region = np.pad(
            np.where(inner_valid, inner, fill),
            ((rows.start - y0, y1 - rows.stop), (columns.start - x0, x1 - columns.stop)),
            mode="edge",
        )
        ndimage.spline_filter(
            region,
            order=3,
            mode="nearest",
            output=coefficients[k, y0 + SPLINE_PAD : y1 + SPLINE_PAD, x0 + SPLINE_PAD : x1 + SPLINE_PAD],
        )
        masks[k, rows, columns] = inner_valid
    return SplineFrames(coefficients, masks)


def _span(any_valid) -> tuple[int, int]:
    """Indices ``[start, stop)`` along one axis of the spline-padded frame within `SPLINE_MARGIN` of its
    valid pixels, in frame coordinates (from ``-SPLINE_PAD``)."""
    used = np.flatnonzero(any_valid)
    n = any_valid.size
    return max(int(used[0]) - SPLINE_MARGIN, -SPLINE_PAD), min(
        int(used[-1]) + 1 + SPLINE_MARGIN, n + SPLINE_PAD
    )


def single_frame_plan(nx: int) -> FramePlan:
    """Plan in which every one of ``nx`` columns uses frame 0 (the one-reference-map case)."""
    zeros = np.zeros(nx, dtype=int)
    return FramePlan(zeros, zeros, np.zeros(nx))


def sample_at(image, coords, order=1) -> np.ndarray:
    """Interpolate an image with NaN holes at fractional ``coords`` (``(2, n)`` in ``(y, x)`` order).

    A result is NaN when its interpolation support touches a NaN pixel or leaves the image. Cubic
    sampling (``order=3``) fills holes with the mean before prefiltering and masks them afterwards, so
    a hole never spreads through the spline coefficients.
    """
    image = np.asarray(image, dtype=float)
    if order <= 1:
        return ndimage.map_coordinates(image, coords, order=order, cval=np.nan, prefilter=False)
    valid = np.isfinite(image)
    filled = np.where(valid, image, np.nanmean(image))
    values = ndimage.map_coordinates(filled, coords, order=order, mode="nearest")
    support = ndimage.map_coordinates(valid.astype(float), coords, order=1, cval=0.0, prefilter=False)
    values[support < 1.0 - 1e-9] = np.nan
    return values


def _frame_columns(plan: FramePlan, n_frames_used):
    """For each frame used by ``plan``: its index, the columns it feeds and their weights."""
    for k in n_frames_used:
        weight = np.where(plan.lower == k, 1.0 - plan.weight, 0.0) + np.where(
            plan.upper == k, plan.weight, 0.0
        )
        columns = np.flatnonzero(weight > 0)
        if columns.size:
            yield k, columns, weight[columns]


def _sampling_setup(frames, transform: Transform, grid: TargetGrid, plan: FramePlan | None):
    """Frames array, optional SplineFrames, target shape, plan and the pixel mapping of ``transform``."""
    prepared = frames if isinstance(frames, SplineFrames) else None
    frames = prepared.coefficients if prepared is not None else np.asarray(frames, dtype=float)
    if frames.ndim == 2:
        frames = frames[None]
    pad_y, pad_x = grid.pad
    full_shape = (prepared.valid if prepared is not None else frames).shape
    ny, nx = full_shape[1] - 2 * pad_y, full_shape[2] - 2 * pad_x
    plan = single_frame_plan(nx) if plan is None else plan
    used = np.unique(np.concatenate([plan.lower, plan.upper]))
    return frames, prepared, (ny, nx), _frame_columns(plan, used), pixel_mapping(transform, grid)


def _coordinates(matrix, offset, ny, columns):
    """Padded-reference coordinates ``(2, ny * len(columns))`` seen by target columns ``columns``."""
    yy, xx = np.mgrid[0:ny, 0 : columns.size]
    pix = np.stack([yy.ravel(), columns[xx.ravel()]])
    return matrix @ pix + offset[:, None]


def _separable(matrix) -> bool:
    """Whether the mapping sends rows to rows and columns to columns (no roll, axis-aligned grid)."""
    return bool(matrix[0, 1] == 0.0 and matrix[1, 0] == 0.0)


def _column_blocks(scale, offset, ny, per_frame):
    """Per frame, under a `_separable` mapping of diagonal ``scale``: its index, target columns and
    weights, the first of those columns ``x0``, where the reference is read for target pixel ``(0, x0)``,
    and the output shape from column ``x0`` to the last one."""
    for k, columns, weight in per_frame:
        x0 = int(columns.min())
        yield k, columns, weight, x0, offset + scale * [0.0, x0], (ny, int(columns.max()) + 1 - x0)


def _basis(positions, n: int, order: int):
    """B-spline basis of ``order`` (1 or 3) on ``n`` coefficients at integer knots, sparse
    ``(len(positions), n)``, from `scipy.interpolate.BSpline.design_matrix`: the weights with which
    `scipy.ndimage` interpolates (prefiltered) values, ``value(p) = sum_j c_j beta(p - j)``. Positions
    are clipped to the span where the whole basis is defined; callers mask those that lie beyond."""
    half = (order + 1) // 2
    knots = np.arange(-half, n + half, dtype=float)
    return BSpline.design_matrix(np.clip(positions, half - 1.0, n - half), knots, order)


def _column_span(positions, n: int, order: int) -> tuple[np.ndarray, int, int]:
    """Positions clipped as `_basis` clips them, and the columns ``[c0, c1)`` their basis reads."""
    half = (order + 1) // 2
    clipped = np.clip(positions, half - 1.0, n - half)
    c0 = max(int(np.floor(clipped.min())) - half, 0)
    c1 = min(int(np.floor(clipped.max())) + half + 1, n)
    return clipped, c0, c1


class _SeparableSetup(NamedTuple):
    """A `_separable` mapping laid out for one-axis-at-a-time sampling of prepared frames, positions in
    frame pixels."""

    rows: np.ndarray  # positions of the target rows
    blocks: list  # per frame: (k, columns, weight, x0, start, span) from `_column_blocks`
    x_positions: list  # per block: positions of its output columns


def _separable_setup(matrix, offset, shape, per_frame) -> _SeparableSetup:
    ny, _ = shape
    scale = np.diag(matrix).copy()
    blocks = list(_column_blocks(scale, offset, ny, per_frame))
    rows = offset[0] + scale[0] * np.arange(ny)
    x_positions = [start[1] + scale[1] * np.arange(span[1]) for _, _, _, _, start, span in blocks]
    return _SeparableSetup(rows, blocks, x_positions)


def interpolate_on_axes(
    images: np.ndarray,
    rows: np.ndarray,
    column_positions: Sequence[np.ndarray],
    frames: Sequence[int],
    order: int,
) -> list[np.ndarray]:
    """Spline values of ``order`` (1 or 3) on tensor grids: for each block ``b``, image ``frames[b]`` at
    rows ``rows`` times columns ``column_positions[b]`` (pixel positions, ``(len(rows), len(columns))``).

    The weights are `scipy.interpolate.BSpline.design_matrix`'s (those of `scipy.ndimage`: order 3 reads
    prefiltered coefficients, order 1 interpolates linearly). One sparse product along y serves all
    blocks at once (their rows are the same), then one along x, block-diagonal; being sparse, both
    spread a NaN pixel only to the values whose support holds it. Positions beyond the span where the
    whole basis is defined read the nearest defined value: mask them.
    """
    if not len(frames):
        return []
    n_rows, n_columns = images.shape[1:]
    spans = [_column_span(x, n_columns, order) for x in column_positions]
    gathered = np.concatenate(
        [images[k, :, c0:c1] for k, (_, c0, c1) in zip(frames, spans, strict=True)], axis=1
    )
    along_y = _basis(rows, n_rows, order) @ gathered
    # One basis along x for all blocks: each block's columns [c0, c1) sit at its offset in ``gathered``,
    # and its (clipped) positions are moved by the same whole number of pixels, so the weights are the
    # block's own and no support reaches into a neighbouring block.
    widths = [c1 - c0 for _, c0, c1 in spans]
    offsets = np.cumsum([0, *widths])
    moved = np.concatenate([x - c0 + o for (x, c0, _), o in zip(spans, offsets[:-1], strict=True)])
    along_x = _basis(moved, int(offsets[-1]), order) @ along_y.T
    split_at = np.cumsum([len(x) for x in column_positions])[:-1]
    return [block.T for block in np.split(along_x, split_at)]


def _interpolate_blocks(images, setup: _SeparableSetup, order: int, pad: int = 0, steps=(0.0, 0.0)):
    """`interpolate_on_axes` at the positions of ``setup`` in ``images`` padded by ``pad`` pixels, moved
    by ``steps`` (y, x)."""
    return interpolate_on_axes(
        images,
        setup.rows + pad + steps[0],
        [x + pad + steps[1] for x in setup.x_positions],
        [b[0] for b in setup.blocks],
        order,
    )


def inside(positions: np.ndarray, n: int) -> np.ndarray:
    """Whether positions lie within ``[0, n - 1]`` (to rounding), where linear interpolation with a
    constant ``cval`` reads no pixel outside an image of ``n`` pixels."""
    return (positions >= -1e-9) & (positions <= n - 1 + 1e-9)


def _sample_separable(prepared: SplineFrames, matrix, offset, shape, per_frame) -> np.ndarray:
    """`sample_reference` of prepared frames under a `_separable` mapping: the same cubic spline and
    support, one axis at a time."""
    ny, nx = shape
    setup = _separable_setup(matrix, offset, shape, per_frame)
    values = _interpolate_blocks(prepared.coefficients, setup, 3, SPLINE_PAD)
    supports = _interpolate_blocks(prepared.valid, setup, 1)
    n_rows, n_columns = prepared.valid.shape[1:]
    rows_inside = inside(setup.rows, n_rows)[:, None]
    out = np.zeros((ny, nx))
    for (_, columns, weight, x0, _, _), x, block, support in zip(
        setup.blocks, setup.x_positions, values, supports, strict=True
    ):
        block[~(rows_inside & inside(x, n_columns)) | (support < 1.0 - 1e-9)] = np.nan
        out[:, columns] += weight * block[:, columns - x0]
    return out


def _moved_separable(coefficients, matrix, offset, shape, per_frame, step) -> np.ndarray:
    """The cubic spline moved by ``step`` along y and along x, as in `reference_gradient`, under a
    `_separable` mapping: ``(2, ny, nx)``."""
    ny, nx = shape
    setup = _separable_setup(matrix, offset, shape, per_frame)
    moved = np.zeros((2, ny, nx))
    for axis, probe in enumerate(step * np.eye(2)):
        values = _interpolate_blocks(coefficients, setup, 3, SPLINE_PAD, probe)
        for (_, columns, weight, x0, _, _), block in zip(setup.blocks, values, strict=True):
            moved[axis][:, columns] += weight * block[:, columns - x0]
    return moved


def sample_reference(
    frames, transform: Transform, grid: TargetGrid, *, plan: FramePlan | None = None, order: int = 1
) -> np.ndarray:
    """The reference as seen by the target grid once its pointing is corrected by ``transform``.

    Parameters
    ----------
    frames : (ny + 2 pad_y, nx + 2 pad_x) or (k, ny + 2 pad_y, nx + 2 pad_x) array_like, or SplineFrames
        Reference frame(s) resampled onto the target grid padded by ``grid.pad``. Not modified.
        `SplineFrames` (from `prepare_frames`) are sampled with cubic splines whatever ``order`` (one axis
        at a time when the mapping has no roll and the grid is axis-aligned: the same values).
    transform : Transform
        Candidate correction of the target pointing.
    grid : TargetGrid
        Target grid geometry, with the padding used for ``frames``.
    plan : FramePlan, optional
        Frame(s) used for each target column (default: frame 0 everywhere).
    order : int
        Interpolation order (0, 1 or 3).

    Returns
    -------
    sampled : (ny, nx) ndarray
        NaN where the reference is invalid or out of the padded grid.
    """
    frames, prepared, (ny, nx), per_frame, (matrix, offset) = _sampling_setup(frames, transform, grid, plan)
    if prepared is not None and _separable(matrix):
        return _sample_separable(prepared, matrix, offset, (ny, nx), per_frame)
    out = np.zeros((ny, nx))
    for k, columns, weight in per_frame:
        coords = _coordinates(matrix, offset, ny, columns)
        if prepared is not None:
            values = ndimage.map_coordinates(
                frames[k], coords + SPLINE_PAD, order=3, mode="nearest", prefilter=False
            )
            support = ndimage.map_coordinates(
                prepared.valid[k], coords, order=1, cval=0.0, prefilter=False, output=np.float64
            )
            values[support < 1.0 - 1e-9] = np.nan
        else:
            values = sample_at(frames[k], coords, order)
        out[:, columns] += weight * values.reshape(ny, columns.size)
    return out


def reference_gradient(
    frames: SplineFrames,
    transform: Transform,
    grid: TargetGrid,
    *,
    plan: FramePlan | None = None,
    sampled=None,
    step: float = 1e-3,
) -> np.ndarray:
    """Gradient of the cubic-sampled reference along the padded-reference axes, at each target pixel.

    Forward differences of the spline interpolant over ``step`` reference pixels from the positions
    `sample_reference` samples (two probes; one axis at a time without roll on an axis-aligned grid,
    else one `~scipy.ndimage.map_coordinates` call per frame). With
    the chain rule this gives the derivative of the sampled reference with respect to any parameter of
    the mapping. For a cubic spline and ``step = 1e-3`` the truncation error is ~1e-3 of the second
    derivative, far below what the refinement needs.

    Parameters
    ----------
    frames : SplineFrames
        Prefiltered frames from `prepare_frames`.
    transform, grid, plan
        As in `sample_reference`.
    sampled : (ny, nx) ndarray, optional
        `sample_reference` of the same frames, transform and plan, if already computed; its NaNs (holes,
        outside the frames) carry over to the gradient.
    step : float
        Difference step, in reference pixels.

    Returns
    -------
    gradient : (2, ny, nx) ndarray
        ``d/dy`` and ``d/dx`` (numpy axis order) of the reference, per reference pixel.
    """
    if sampled is None:
        sampled = sample_reference(frames, transform, grid, plan=plan)
    coefficients, _, (ny, nx), per_frame, (matrix, offset) = _sampling_setup(frames, transform, grid, plan)
    if _separable(matrix):
        return (_moved_separable(coefficients, matrix, offset, (ny, nx), per_frame, step) - sampled) / step
    moved = np.zeros((2, ny, nx))
    probes = step * np.eye(2)
    for k, columns, weight in per_frame:
        coords = _coordinates(matrix, offset, ny, columns) + SPLINE_PAD
        stacked = np.concatenate([coords + probe[:, None] for probe in probes], axis=1)
        values = ndimage.map_coordinates(coefficients[k], stacked, order=3, mode="nearest", prefilter=False)
        moved[:, :, columns] += weight * values.reshape(2, ny, columns.size)
    return (moved - sampled) / step
