"""Diagnostic figures build from real results and hold the expected artists."""

from dataclasses import replace
from functools import cache, partial

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from astropy.table import Table
from matplotlib.patches import Ellipse
from PIL import Image

from coalign import (
    ONE_MAP,
    Transform,
    apply_transform,
    build_synthetic_raster,
    clip_percentiles,
    correlate,
    grid_from_wcs,
    one_map_phase,
    reproject_image,
    select_frames,
)
from coalign.plotting import (
    blink_animation,
    correlation_landscape,
    plot_batch_summary,
    plot_before_after,
    plot_correlation_surface,
    plot_difference,
    plot_search_trajectory,
    plot_synthetic_raster,
)
from coalign.stages.fft_ncc import ncc_surface
from coalign.stages.reproject import pad_for_search
from tests.sample import sample, synthetic_reference

ERROR = Transform(3, -2)  # injected into the raster's header; the correction that undoes it is (-3, 2)
NARROW = replace(ONE_MAP, shift_range_arcsec=(6, 6))


@cache
def aligned():
    """(target with a known error, one-map phase result against `synthetic_reference`): run once.

    A single frame does not fit the 3-hour raster (solar rotation under the scan), the synthetic raster does.
    """
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, ERROR)
    return target, one_map_phase(target, synthetic_reference(), NARROW)


def search_inputs(target_map, reference_map, reach_arcsec=(9.0, 9.0)):
    """Target data, padded reference frame and grid, prepared as `run_phase` does (clipped)."""
    data = np.asarray(target_map.data, dtype=float)
    grid = grid_from_wcs(target_map.wcs)
    pad = pad_for_search(grid, data.shape, reach_arcsec)
    frame = reproject_image(reference_map.data, reference_map.wcs, target_map.wcs, data.shape, pad=pad)
    percentiles = NARROW.clip_percentiles
    return clip_percentiles(data, percentiles), clip_percentiles(frame, percentiles), grid.with_pad(pad)


def robust_std(image):
    finite = image[np.isfinite(image)]
    return 1.4826 * np.median(np.abs(finite - np.median(finite)))


def saved(fig, path, min_bytes=10_000):
    fig.savefig(path)
    assert path.stat().st_size > min_bytes
    return path


def test_before_after_has_image_and_contours(tmp_path):
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(10, -5))
    fig = plot_before_after(target, raster, reference)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.images) == 1
        assert len(ax.collections) >= 1  # the contour sets
    fig.savefig(tmp_path / "before_after.png")
    assert (tmp_path / "before_after.png").stat().st_size > 10_000


def test_correlation_surface_marks_the_found_shift(tmp_path):
    target, result = aligned()
    reference = synthetic_reference()
    data, frame, grid = search_inputs(target, reference)
    surface = ncc_surface(data, frame, min_overlap_fraction=NARROW.min_overlap_fraction)
    sigma = (0.4, 0.3)  # arcsec; phases report no uncertainty yet, so any value exercises the ellipse
    fig = plot_correlation_surface(surface, pixel_to_arcsec=grid, best=result.transform, sigma=sigma)
    ax = fig.axes[0]
    assert len(ax.images) == 1
    assert len(ax.collections) >= 1  # contours
    (marker,) = ax.lines
    np.testing.assert_allclose(marker.get_xydata()[0], [result.transform.dx, result.transform.dy])
    (ellipse,) = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert (ellipse.width, ellipse.height) == (2 * sigma[0], 2 * sigma[1])
    # The surface's integer peak is within a pixel of the phase's sub-pixel answer, in the same convention.
    peak_y, peak_x = np.unravel_index(np.nanargmax(surface), surface.shape)
    peak = np.asarray(grid.matrix) @ [peak_x - grid.pad[1], peak_y - grid.pad[0]]
    assert np.all(np.abs(peak - [result.transform.dx, result.transform.dy]) < grid.pixel_scale)
    saved(fig, tmp_path / "surface.png")

    in_pixels = plot_correlation_surface(surface, best=result.shift_pixels, radius_pix=None)
    assert "pixels" in in_pixels.axes[0].get_xlabel()
    with pytest.raises(ValueError, match="pass pixel_to_arcsec="):
        plot_correlation_surface(surface, best=result.transform)


def test_difference_shrinks_after_correction(tmp_path):
    target, result = aligned()
    reference = synthetic_reference()
    fig = plot_difference(target, apply_transform(target, result.transform), reference)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 6
    assert all(len(ax.images) == 1 for ax in image_axes)
    before, after = (np.ma.filled(image_axes[i].images[0].get_array(), np.nan) for i in (2, 5))
    assert robust_std(after) < 0.85 * robust_std(before)
    assert "robust std" in image_axes[5].get_title()
    saved(fig, tmp_path / "difference.png")


def test_blink_animation_writes_a_two_frame_gif(tmp_path):
    target, result = aligned()
    path = tmp_path / "blink.gif"
    fig = blink_animation(target, apply_transform(target, result.transform), synthetic_reference(), path)
    assert [len(ax.images) for ax in fig.axes] == [1, 1]
    assert path.stat().st_size > 5_000
    with Image.open(path) as gif:
        assert gif.is_animated
        assert gif.n_frames == 2


def test_search_trajectory_over_landscape(tmp_path):
    target, result = aligned()
    assert len(result.history) >= 2
    data, frame, grid = search_inputs(target, synthetic_reference())
    score_fn = partial(correlate, data, frame, grid=grid, min_overlap_fraction=NARROW.min_overlap_fraction)
    extent = (-6.0, 2.0, -2.0, 6.0)
    landscape = correlation_landscape(score_fn, extent, shape=(17, 17))
    assert np.nanmax(landscape) > 0.8
    fig = plot_search_trajectory(result, landscape, extent=extent, truth=ERROR.inverse())
    ax, ax_score = fig.axes[:2]
    assert len(ax.images) == 1
    assert len(ax.collections) >= 1  # contours
    path = ax.lines[0].get_xydata()
    np.testing.assert_allclose(path, [(t.dx, t.dy) for t, _ in result.history])
    np.testing.assert_allclose(ax_score.lines[0].get_ydata(), [s for _, s in result.history])
    saved(fig, tmp_path / "trajectory.png")

    computed = plot_search_trajectory(result, score_fn, shape=(5, 5))
    assert computed.axes[0].images[0].get_array().shape == (5, 5)
    with pytest.raises(ValueError, match="needs extent="):
        plot_search_trajectory(result, landscape)


def test_synthetic_raster_panels(tmp_path):
    raster, times, sequence, reference = sample()
    target, result = aligned()
    frame_times = [m.date for m in sequence]
    plan = select_frames(frame_times, times)
    used = np.unique(np.concatenate([plan.lower, plan.upper]))
    data = np.asarray(target.data, dtype=float)
    grid = grid_from_wcs(target.wcs)
    pad = pad_for_search(grid, data.shape, (9.0, 9.0))
    frames = [
        reproject_image(sequence[k].data, sequence[k].wcs, target.wcs, data.shape, pad=pad) for k in used
    ]
    synthetic = build_synthetic_raster(
        frames, [frame_times[k] for k in used], times, grid.with_pad(pad), transform=result.transform
    )
    fig = plot_synthetic_raster(target, synthetic, frame_times, times, plan)
    top, bottom = fig.axes[:2], fig.axes[2:]
    assert [len(ax.images) for ax in top] == [1, 1]
    assert all(len(ax.lines) >= 1 for ax in bottom)
    assert len(bottom[0].lines[0].get_xdata()) == data.shape[1]
    np.testing.assert_allclose(bottom[0].lines[0].get_ydata(), plan.lower)
    assert np.isfinite(synthetic).mean() > 0.9
    saved(fig, tmp_path / "synthetic.png")


def test_batch_summary_from_a_small_batch(tmp_path):
    raster, times, sequence, reference = sample()
    rows = []
    for frame in (sequence[2], sequence[8], sequence[20]):  # images at other times, a known error each
        phase = one_map_phase(apply_transform(frame, ERROR), reference, NARROW)
        rows.append({"time": frame.date.isot, **phase.transform.as_dict(), "score": phase.score})
    for table in (rows, Table(rows=rows[::-1])):
        fig = plot_batch_summary(table)
        assert len(fig.axes) == 3
        assert [len(ax.lines) for ax in fig.axes] == [2, 3, 1]  # dx, dy | sx, sy, 1.0 | score
        np.testing.assert_allclose(fig.axes[2].lines[0].get_ydata(), [r["score"] for r in rows])
    saved(fig, tmp_path / "batch.png")
    with pytest.raises(ValueError, match=r"missing \['score'\]"):
        plot_batch_summary([{k: v for k, v in row.items() if k != "score"} for row in rows])
