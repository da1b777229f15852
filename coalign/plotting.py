"""Diagnostic figures. matplotlib is imported lazily; every function returns the Figure.

The figures are built on `matplotlib.figure.Figure` directly (never pyplot), so no GUI backend is needed:
``fig.savefig("out.png")`` works anywhere, and a notebook displays a returned Figure inline.

Shifts follow the coalign convention (`coalign.transform`): ``dx, dy`` are the arcsec added to the
target's CRVAL1 / CRVAL2, and a shift "in target pixels" is `TargetGrid.shift_in_pixels` of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coalign.transform import TargetGrid, Transform, grid_from_wcs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "blink_animation",
    "correlation_landscape",
    "plot_batch_summary",
    "plot_before_after",
    "plot_correlation_surface",
    "plot_difference",
    "plot_search_trajectory",
    "plot_synthetic_raster",
]

MAD_TO_SIGMA = 1.4826  # robust standard deviation of a Gaussian from its median absolute deviation


def _gray():
    """Gray colour map drawing NaN (no data) in blue, so missing pixels do not pass for bright ones."""
    from matplotlib import colormaps

    return colormaps["gray"].with_extremes(bad="tab:blue")


def _diverging():
    """Blue-white-red colour map for differences, NaN (no data) in gray rather than the white of zero."""
    from matplotlib import colormaps

    return colormaps["RdBu_r"].with_extremes(bad="0.55")


def _limits(data):
    finite = np.asarray(data, dtype=float)[np.isfinite(data)]
    return (np.percentile(finite, 1), np.percentile(finite, 99)) if finite.size else (0, 1)


def _robust_sigma(image) -> float:
    """Robust standard deviation ``1.4826 MAD`` of the finite pixels (NaN if there are none)."""
    finite = np.asarray(image, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(finite - np.median(finite))))


def _robust_normalise(image) -> np.ndarray:
    """``(image - median) / robust std`` over the finite pixels (NaN kept)."""
    image = np.asarray(image, dtype=float)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return image.copy()
    sigma = _robust_sigma(finite)
    if not sigma > 0:
        sigma = float(np.std(finite)) or 1.0
    return (image - np.median(finite)) / sigma


def _pixel_aspect(wcs) -> float:
    """imshow aspect that draws target pixels at their true sky size (height / width)."""
    scale_x, scale_y = grid_from_wcs(wcs.celestial).pixel_scale
    return scale_y / scale_x


def _on_target_grid(reference_map, target_map) -> np.ndarray:
    """The reference resampled onto the target map's grid (NaN outside the reference)."""
    from coalign.stages.reproject import reproject_image

    data = np.asarray(target_map.data, dtype=float)
    return reproject_image(
        np.asarray(reference_map.data, dtype=float), reference_map.wcs, target_map.wcs, data.shape
    )


def plot_before_after(target_map, corrected_map, reference_map, *, levels=None) -> Figure:
    """Reference image with the target's contours before and after the correction.

    Parameters
    ----------
    target_map, corrected_map : `~sunpy.map.GenericMap`
        The target with its original and its corrected WCS (same data).
    reference_map : `~sunpy.map.GenericMap`
        The reference image.
    levels : sequence of float, optional
        Contour levels in target data units (default: the 90th and 97th percentiles).

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    data = np.nan_to_num(np.asarray(target_map.data, dtype=float), nan=np.nanmin(target_map.data))
    levels = levels if levels is not None else np.nanpercentile(target_map.data, [90, 97])
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    vmin, vmax = _limits(reference_map.data)
    for i, (smap, title) in enumerate(
        ((target_map, "header pointing"), (corrected_map, "corrected pointing"))
    ):
        ax = fig.add_subplot(1, 2, i + 1, projection=reference_map.wcs)
        ax.imshow(reference_map.data, origin="lower", cmap=_gray(), vmin=vmin, vmax=vmax)
        ax.contour(
            data,
            levels=levels,
            colors=["tab:orange", "tab:red"],
            linewidths=0.8,
            transform=ax.get_transform(smap.wcs),
        )
        ax.set_title(f"target contours, {title}")
        ax.set_xlabel("Solar X")
        ax.set_ylabel("Solar Y")
    return fig


def _pixel_matrix(pixel_to_arcsec) -> np.ndarray:
    """2x2 matrix mapping a pixel offset ``(x, y)`` to arcsec ``(dx, dy)``."""
    if isinstance(pixel_to_arcsec, TargetGrid):
        return np.asarray(pixel_to_arcsec.matrix, dtype=float)
    value = np.asarray(pixel_to_arcsec, dtype=float)
    if value.shape in ((), (2,)):
        return np.diag(np.broadcast_to(value, (2,)))
    if value.shape == (2, 2):
        return value
    raise ValueError(
        f"pixel_to_arcsec must be a TargetGrid, a (2, 2) matrix, a pixel scale or a pair of them, got "
        f"shape {value.shape}; use e.g. coalign.grid_from_wcs(target.wcs)"
    )


def plot_correlation_surface(
    surface,
    *,
    pixel_to_arcsec: TargetGrid | float | Sequence[float] | np.ndarray | None = None,
    best: Transform | Sequence[float] | None = None,
    sigma: Sequence[float] | None = None,
    radius_pix: int | None = 8,
) -> Figure:
    """Correlation surface around its peak, with the best shift and an optional 1-sigma ellipse.

    Parameters
    ----------
    surface : (my, mx) array_like
        Correlation for every integer offset, e.g. from `coalign.stages.fft_ncc.ncc_surface`, with the
        zero offset at the centre ``((my - 1) / 2, (mx - 1) / 2)`` (the reference padded equally on both
        sides). Offset ``(x, y)`` is the correction in target pixels. NaN (too little overlap) is blank.
    pixel_to_arcsec : TargetGrid, (2, 2) array_like, float or (float, float), optional
        How a pixel offset ``(x, y)`` becomes the correction ``(dx, dy)`` in arcsec: a `TargetGrid`
        (its ``matrix``, roll included), a matrix, or pixel scales. Without it the axes are in pixels.
    best : Transform or (float, float), optional
        Best shift to mark, ``(x, y)`` in the axes' units (arcsec with ``pixel_to_arcsec``, else target
        pixels), or a `Transform` (needs ``pixel_to_arcsec``). Default: the surface's integer maximum.
    sigma : (float, float), optional
        1-sigma uncertainty ``(sigma_x, sigma_y)`` in the axes' units, drawn as an ellipse about ``best``.
    radius_pix : int or None
        Half-width of the window shown around the surface's maximum, in pixels (None: everything).

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse
    from matplotlib.transforms import Affine2D

    surface = np.asarray(surface, dtype=float)
    if surface.ndim != 2 or not np.isfinite(surface).any():
        raise ValueError(
            f"surface must be a 2-D array with finite values, got shape {surface.shape}; "
            "pass e.g. coalign.stages.fft_ncc.ncc_surface(target, frames)"
        )
    centre_y, centre_x = (surface.shape[0] - 1) / 2, (surface.shape[1] - 1) / 2
    peak_y, peak_x = np.unravel_index(np.nanargmax(surface), surface.shape)
    if radius_pix is None:
        y0, y1, x0, x1 = 0, surface.shape[0], 0, surface.shape[1]
    else:
        y0, y1 = max(peak_y - radius_pix, 0), min(peak_y + radius_pix + 1, surface.shape[0])
        x0, x1 = max(peak_x - radius_pix, 0), min(peak_x + radius_pix + 1, surface.shape[1])
    window = surface[y0:y1, x0:x1]
    in_arcsec = pixel_to_arcsec is not None
    matrix = _pixel_matrix(pixel_to_arcsec) if in_arcsec else np.eye(2)
    ox = np.arange(x0, x1) - centre_x
    oy = np.arange(y0, y1) - centre_y
    grid_x, grid_y = np.meshgrid(ox, oy)
    world = np.tensordot(matrix, np.stack([grid_x, grid_y]), axes=1)
    left, right, bottom, top = ox[0] - 0.5, ox[-1] + 0.5, oy[0] - 0.5, oy[-1] + 0.5

    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(
        window,
        origin="lower",
        extent=(left, right, bottom, top),
        cmap="viridis",
        interpolation="nearest",
    )
    affine = np.eye(3)
    affine[:2, :2] = matrix
    image.set_transform(Affine2D(affine) + ax.transData)  # exact pixel -> arcsec map, roll included
    corners = matrix @ np.array([[left, right, right, left], [bottom, bottom, top, top]])
    ax.set_xlim(corners[0].min(), corners[0].max())
    ax.set_ylim(corners[1].min(), corners[1].max())
    finite = window[np.isfinite(window)]
    if finite.size > 4 and window.shape[0] > 1 and window.shape[1] > 1 and np.ptp(finite) > 0:
        levels = np.linspace(finite.min(), finite.max(), 8)[1:-1]
        ax.contour(world[0], world[1], window, levels=levels, colors="white", linewidths=0.6, alpha=0.8)
    if best is None:
        best_xy = matrix @ [peak_x - centre_x, peak_y - centre_y]
        best_label = "integer peak"
    elif isinstance(best, Transform):
        if not in_arcsec:
            raise ValueError(
                "best is a Transform (arcsec) but the axes are in pixels; pass pixel_to_arcsec= "
                "(e.g. coalign.grid_from_wcs(target.wcs)) or best=result.shift_pixels"
            )
        best_xy, best_label = np.array([best.dx, best.dy]), "best shift"
    else:
        best_xy, best_label = np.asarray(best, dtype=float), "best shift"
    ax.plot(*best_xy, marker="+", markersize=16, mew=2, color="tab:red", linestyle="none", label=best_label)
    if sigma is not None:
        sx, sy = (float(s) for s in sigma)
        ax.add_patch(
            Ellipse(tuple(best_xy), 2 * sx, 2 * sy, fill=False, color="tab:red", lw=1.5, label="1 sigma")
        )
    unit = "arcsec" if in_arcsec else "target pixels"
    ax.set_xlabel(f"dx, correction to CRVAL1 [{unit}]" if in_arcsec else f"x offset [{unit}]")
    ax.set_ylabel(f"dy, correction to CRVAL2 [{unit}]" if in_arcsec else f"y offset [{unit}]")
    ax.set_aspect("equal")
    ax.set_title(f"correlation surface, max r = {np.nanmax(surface):.3f}")
    ax.legend(loc="upper right", fontsize="small")
    fig.colorbar(image, ax=ax, label="Pearson r")
    return fig


def plot_difference(target_map, corrected_map, reference_map) -> Figure:
    """Target vs the reference resampled onto its grid, and their difference, before and after.

    Each image is normalised by its robust standard deviation (``(x - median) / (1.4826 MAD)``) before
    differencing, so the difference shows misalignment rather than a calibration ratio. Both difference
    panels share one colour scale; their titles give the difference's robust standard deviation, which a
    good correction lowers (transients that only one image holds, such as a flare, stay in both).

    Parameters
    ----------
    target_map, corrected_map : `~sunpy.map.GenericMap`
        The target with its header and its corrected WCS (same data).
    reference_map : `~sunpy.map.GenericMap`
        The reference image, resampled onto each grid with `coalign.stages.reproject.reproject_image`.

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    target = _robust_normalise(target_map.data)
    rows = []
    for smap, label in ((target_map, "header pointing"), (corrected_map, "corrected pointing")):
        reference = _robust_normalise(_on_target_grid(reference_map, smap))
        rows.append((label, reference, target - reference))
    diff_limit = float(np.nanpercentile(np.abs(rows[0][2]), 95)) or 1.0
    aspect = _pixel_aspect(target_map.wcs)
    vmin, vmax = _limits(target)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True, sharey=True)
    for row, (label, reference, difference) in zip(axes, rows, strict=True):
        row[0].imshow(target, origin="lower", cmap=_gray(), vmin=vmin, vmax=vmax, aspect=aspect)
        row[0].set_title("target")
        row[1].imshow(reference, origin="lower", cmap=_gray(), vmin=vmin, vmax=vmax, aspect=aspect)
        row[1].set_title(f"reference on the target grid,\n{label}")
        diff_image = row[2].imshow(
            difference, origin="lower", cmap=_diverging(), vmin=-diff_limit, vmax=diff_limit, aspect=aspect
        )
        spread = _robust_sigma(difference)
        row[2].set_title(f"target - reference,\nrobust std {spread:.2f}")
        row[0].set_ylabel("target y [pixel]")
    for ax in axes[1]:
        ax.set_xlabel("target x [pixel]")
    fig.colorbar(diff_image, ax=axes[:, 2], label="difference [robust sigma]", shrink=0.8)
    return fig


def blink_animation(
    target_map, corrected_map, reference_map, path: str | Path, *, fps: float = 1.5, dpi: int = 80
) -> Figure:
    """Write an animated GIF blinking the target and the reference on its grid, before and after.

    The left panel uses the header pointing, the right one the corrected pointing; each alternates the
    target and the reference resampled onto that grid (both normalised by their robust standard
    deviation). Features that jump between frames are misaligned.

    Parameters
    ----------
    target_map, corrected_map : `~sunpy.map.GenericMap`
        The target with its header and its corrected WCS (same data).
    reference_map : `~sunpy.map.GenericMap`
        The reference image.
    path : str or `~pathlib.Path`
        Output GIF file (written with `matplotlib.animation.PillowWriter`).
    fps : float
        Frames per second.
    dpi : int
        Resolution of the frames.

    Returns
    -------
    `~matplotlib.figure.Figure`
        The figure, showing the last frame.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.figure import Figure

    target = _robust_normalise(target_map.data)
    panels = [
        (label, _robust_normalise(_on_target_grid(reference_map, smap)))
        for smap, label in ((target_map, "header pointing"), (corrected_map, "corrected pointing"))
    ]
    vmin, vmax = _limits(target)
    aspect = _pixel_aspect(target_map.wcs)
    fig = Figure(figsize=(7, 5), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    images = []
    for ax in axes:
        images.append(ax.imshow(target, origin="lower", cmap=_gray(), vmin=vmin, vmax=vmax, aspect=aspect))
        ax.set_xlabel("target x [pixel]")
    axes[0].set_ylabel("target y [pixel]")

    def show(frame):
        for ax, image, (label, reference) in zip(axes, images, panels, strict=True):
            image.set_data(target if frame == 0 else reference)
            ax.set_title(f"{label}\n{'TARGET' if frame == 0 else 'REFERENCE'}")
        return images

    animation = FuncAnimation(fig, show, frames=2, interval=1000 / fps, blit=False)
    animation.save(str(path), writer=PillowWriter(fps=fps), dpi=dpi)
    return fig


def correlation_landscape(
    score_fn: Callable[[Transform], float],
    extent: Sequence[float],
    *,
    shape: tuple[int, int] = (31, 31),
    sx: float = 1.0,
    sy: float = 1.0,
    map_fn=map,
) -> np.ndarray:
    """Score a grid of shifts, e.g. for `plot_search_trajectory`.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(transform) -> float``, e.g. a `functools.partial` of `coalign.stages.correlate.correlate`
        with the target, the reference frames and the grid bound (picklable for process pools).
    extent : (dx_min, dx_max, dy_min, dy_max)
        Range of the corrections ``dx, dy`` in arcsec (grid points include both ends).
    shape : (int, int)
        Number of points ``(n_dy, n_dx)``.
    sx, sy : float
        Scale factors held fixed.
    map_fn : callable
        ``map_fn(func, iterable)`` used to score the points.

    Returns
    -------
    landscape : (n_dy, n_dx) ndarray
        ``landscape[j, i]`` is the score at ``dx_i, dy_j``; NaN where the overlap is too small.
    """
    dx = np.linspace(extent[0], extent[1], shape[1])
    dy = np.linspace(extent[2], extent[3], shape[0])
    points = [Transform(x, y, sx, sy) for y in dy for x in dx]
    return np.array(list(map_fn(score_fn, points)), dtype=float).reshape(shape)


def plot_search_trajectory(
    result,
    surface: np.ndarray | Callable[[Transform], float] | None = None,
    *,
    extent: Sequence[float] | None = None,
    truth: Transform | None = None,
    shape: tuple[int, int] = (31, 31),
) -> Figure:
    """Trajectory of a search (its accepted best corrections) in arcsec, and the score per step.

    Parameters
    ----------
    result : SearchResult, PhaseResult or SearchState
        Anything with a ``history`` of ``(Transform, score)`` pairs, e.g. from the population search
        (`coalign.stages.search.population_search`, or `search_step` run by hand).
    surface : (n_dy, n_dx) ndarray or callable, optional
        Correlation landscape drawn under the trajectory: a precomputed array over ``extent`` (see
        `correlation_landscape`), or a ``score_fn(transform)`` evaluated here on ``shape`` points.
    extent : (dx_min, dx_max, dy_min, dy_max), optional
        Arcsec range of the landscape; required with an array. With a callable the default is a square
        centred on the trajectory, 1.5 times its largest extent (at least 4 arcsec wide).
    truth : Transform, optional
        The known correction, marked when given (e.g. the inverse of an injected error).
    shape : (int, int)
        Points ``(n_dy, n_dx)`` when ``surface`` is a callable.

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    from matplotlib.figure import Figure

    history = tuple(getattr(result, "history", ()))
    if not history:
        raise ValueError(
            "result has no search history; pass a SearchResult or PhaseResult from the population search "
            "(strategy='population' or 'grid+population')"
        )
    dx = np.array([t.dx for t, _ in history])
    dy = np.array([t.dy for t, _ in history])
    scores = np.array([s for _, s in history], dtype=float)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax, ax_score = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1.3, 1)})
    if surface is not None:
        if callable(surface):
            if extent is None:
                half = max(2.0, 0.75 * max(np.ptp(dx), np.ptp(dy)))
                cx, cy = (dx.min() + dx.max()) / 2, (dy.min() + dy.max()) / 2
                extent = (cx - half, cx + half, cy - half, cy + half)
            last = history[-1][0]
            surface = correlation_landscape(surface, extent, shape=shape, sx=last.sx, sy=last.sy)
        elif extent is None:
            raise ValueError(
                "a precomputed landscape needs extent=(dx_min, dx_max, dy_min, dy_max) in arcsec, "
                "the range it was computed on (see correlation_landscape)"
            )
        surface = np.asarray(surface, dtype=float)
        x = np.linspace(extent[0], extent[1], surface.shape[1])
        y = np.linspace(extent[2], extent[3], surface.shape[0])
        half_x = (x[1] - x[0]) / 2 if x.size > 1 else 0.5
        half_y = (y[1] - y[0]) / 2 if y.size > 1 else 0.5
        image = ax.imshow(
            surface,
            origin="lower",
            extent=(x[0] - half_x, x[-1] + half_x, y[0] - half_y, y[-1] + half_y),
            cmap="viridis",
            aspect="equal",
        )
        finite = surface[np.isfinite(surface)]
        if finite.size > 4 and min(surface.shape) > 1 and np.ptp(finite) > 0:
            ax.contour(x, y, surface, levels=8, colors="white", linewidths=0.5, alpha=0.7)
        fig.colorbar(image, ax=ax, label="Pearson r")
    ax.plot(dx, dy, "-o", color="tab:orange", ms=4, lw=1.2, label="accepted best")
    ax.plot(dx[0], dy[0], "s", color="tab:blue", ms=8, label="start")
    ax.plot(dx[-1], dy[-1], "*", color="tab:red", ms=14, label="end")
    if truth is not None:
        colour = "white" if surface is not None else "black"
        ax.plot(truth.dx, truth.dy, "x", color=colour, ms=12, mew=2)
        ax.annotate(
            "truth", (truth.dx, truth.dy), textcoords="offset points", xytext=(6, 6), fontsize=9, color=colour
        )
    ax.set_xlabel("dx, correction to CRVAL1 [arcsec]")
    ax.set_ylabel("dy, correction to CRVAL2 [arcsec]")
    ax.set_title(f"search trajectory ({len(history)} accepted steps)")
    ax.legend(loc="best", fontsize="small")
    ax_score.plot(np.arange(len(history)), scores, "-o", color="tab:orange")
    ax_score.set_xlabel("accepted step")
    ax_score.set_ylabel("Pearson r")
    ax_score.set_title(getattr(result, "message", "") or "score")
    return fig


def plot_synthetic_raster(target, synthetic, frame_times, column_times, plan) -> Figure:
    """The synthetic raster beside the target, with the frame(s) and time gap of every column.

    Parameters
    ----------
    target : (ny, nx) array_like or Map-like
        The target (an object with ``.data`` is accepted).
    synthetic : (ny, nx) array_like
        The synthetic raster on the same grid (`coalign.stages.synthetic.build_synthetic_raster`).
    frame_times : `~astropy.time.Time`, shape (k,)
        Times of the reference frames ``plan`` indexes.
    column_times : `~astropy.time.Time`, shape (nx,)
        Acquisition time of each target column.
    plan : `~coalign.stages.sampling.FramePlan`
        Frames per column, from `coalign.stages.synthetic.select_frames`.

    Returns
    -------
    `~matplotlib.figure.Figure`
        Top: target and synthetic raster (columns aligned with the panels below). Bottom: the frame
        index used by each column (earlier and later bracketing frames when blending) and the gap
        ``column time - frame time`` in minutes.
    """
    from astropy.time import Time
    from matplotlib.figure import Figure

    target = np.asarray(getattr(target, "data", target), dtype=float)
    synthetic = np.asarray(synthetic, dtype=float)
    frame_times, column_times = Time(frame_times).reshape(-1), Time(column_times).reshape(-1)
    lower, upper = np.asarray(plan.lower), np.asarray(plan.upper)
    nx = target.shape[1]
    if synthetic.shape != target.shape or column_times.size != nx or lower.size != nx:
        raise ValueError(
            f"target {target.shape}, synthetic {synthetic.shape}, {column_times.size} column times and a "
            f"plan for {lower.size} columns must agree on the number of columns; build the synthetic "
            "raster and the plan from these column_times"
        )
    columns = np.arange(nx)
    gap_lower = (column_times - frame_times[lower]).to_value("min")
    gap_upper = (column_times - frame_times[upper]).to_value("min")
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"height_ratios": (2.2, 1)})
    for ax, image, title in (
        (axes[0, 0], target, "target"),
        (axes[0, 1], synthetic, "synthetic raster"),
    ):
        vmin, vmax = _limits(image)
        ax.imshow(image, origin="lower", cmap=_gray(), vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_title(title)
        ax.set_ylabel("y [pixel]")
    blends = bool(np.any(lower != upper))
    ax = axes[1, 0]
    ax.step(columns, lower, where="mid", color="tab:blue", label="earlier frame" if blends else "frame")
    if blends:
        ax.step(columns, upper, where="mid", color="tab:red", label="later frame")
    ax.set_ylabel("reference frame index")
    ax.set_title(f"frames used ({np.unique(np.concatenate([lower, upper])).size} of {frame_times.size})")
    ax.legend(fontsize="small")
    ax = axes[1, 1]
    ax.plot(columns, gap_lower, ".-", color="tab:blue", label="to earlier frame" if blends else "to frame")
    if blends:
        ax.plot(columns, gap_upper, ".-", color="tab:red", label="to later frame")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_ylabel("column time - frame time [min]")
    ax.set_title("time gap per column")
    ax.legend(fontsize="small")
    for ax in axes[1]:
        ax.set_xlabel("target column")
    return fig


BATCH_COLUMNS = ("time", "dx_arcsec", "dy_arcsec", "sx", "sy", "score")


def _columns(table) -> dict[str, Any]:
    if (
        isinstance(table, Sequence)
        and not isinstance(table, str)
        and all(isinstance(row, Mapping) for row in table)
    ):
        names = set.intersection(*(set(row) for row in table)) if table else set()
        get = {name: [row[name] for row in table] for name in names}
    else:
        names = set(getattr(table, "colnames", None) or getattr(table, "columns", ()))  # Table, DataFrame
        get = {name: table[name] for name in names}
    missing = [name for name in BATCH_COLUMNS if name not in names]
    if missing or len(get.get("time", ())) == 0:
        raise ValueError(
            f"the batch table needs the columns {list(BATCH_COLUMNS)} and at least one row; missing "
            f"{missing}; build rows as {{'time': t.isot, **phase.transform.as_dict(), 'score': phase.score}}"
        )
    return get


def plot_batch_summary(table) -> Figure:
    """Corrections and scores of a batch of alignments over time.

    Parameters
    ----------
    table : `~astropy.table.Table` or list of dict
        One row per aligned target with the columns ``time`` (ISO string or `~astropy.time.Time`),
        ``dx_arcsec``, ``dy_arcsec``, ``sx``, ``sy`` and ``score`` (e.g. ``PhaseResult.as_dict()`` rows
        plus a time). Rows are sorted by time; NaN values (failed files) are left as gaps.

    Returns
    -------
    `~matplotlib.figure.Figure`
        Three panels sharing the time axis: shifts (arcsec), scale factors, scores.
    """
    from astropy.time import Time
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    columns = _columns(table)
    times = Time(columns["time"]).reshape(-1)
    order = np.argsort(times.jd)
    when = times[order].utc.to_datetime()
    values = {name: np.asarray(columns[name], dtype=float)[order] for name in BATCH_COLUMNS[1:]}
    fig = Figure(figsize=(9, 7), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    for ax, names, ylabel in (
        (axes[0], ("dx_arcsec", "dy_arcsec"), "shift [arcsec]"),
        (axes[1], ("sx", "sy"), "scale factor"),
        (axes[2], ("score",), "Pearson r"),
    ):
        for name, colour in zip(names, ("tab:blue", "tab:red"), strict=False):
            ax.plot(when, values[name], "o-", color=colour, ms=4, label=name)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize="small")
    axes[1].axhline(1.0, color="gray", lw=0.8)
    axes[0].set_title(f"batch of {len(when)} alignments")
    locator = AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes[-1].set_xlabel("time [UTC]")
    return fig
