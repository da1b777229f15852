"""Sampling the reference under a correction: NaN holes stay local, identity returns the interior."""

import numpy as np
import pytest
from scipy import ndimage

from coalign import Transform, sample_reference
from coalign.stages import sampling
from coalign.stages.sampling import (
    SPLINE_MARGIN,
    SPLINE_PAD,
    FramePlan,
    prepare_frames,
    reference_gradient,
    sample_at,
    single_frame_plan,
)
from coalign.transform import TargetGrid

GRID = TargetGrid((9.5, 7.5), ((2.0, 0.0), (0.0, 1.5)), (3, 4))


def _frame(seed=0):
    return ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(22, 28)), 2)


def test_identity_returns_the_unpadded_interior():
    frame = _frame()
    out = sample_reference(frame, Transform(), GRID)
    np.testing.assert_allclose(out, frame[3:-3, 4:-4], atol=1e-12)


@pytest.mark.parametrize("order", [1, 3])
def test_nan_hole_does_not_spread(order):
    frame = _frame()
    frame[10, 12] = np.nan
    coords = np.stack(np.mgrid[0:22, 0:28].reshape(2, -1)).astype(float) + 0.25
    values = sample_at(frame, coords, order).reshape(22, 28)
    far = np.ones((22, 28), bool)
    far[7:13, 9:15] = False
    far[-2:, :] = far[:, -2:] = False  # the image edge is out of support for the shifted samples
    assert np.isfinite(values[far]).all()
    assert np.isnan(values[10, 12])


def test_plan_blends_frames_per_column():
    frames = np.stack([np.zeros((22, 28)), np.ones((22, 28))])
    weights = np.linspace(0, 1, 20)
    out = sample_reference(
        frames, Transform(), GRID, plan=FramePlan(np.zeros(20, int), np.ones(20, int), weights)
    )
    np.testing.assert_allclose(out, np.broadcast_to(weights, (16, 20)), atol=1e-12)


def test_single_frame_plan():
    plan = single_frame_plan(5)
    assert plan.lower.tolist() == plan.upper.tolist() == [0] * 5 and not plan.weight.any()


def test_prepared_frames_sample_like_raw_cubic():
    frames = np.stack([_frame(1), _frame(2)])
    frames[0, 8:10, 5:7] = np.nan
    t = Transform(1.3, -0.7, 1.01, 0.99)
    plan = FramePlan(np.repeat([0, 1], 10), np.repeat([0, 1], 10), np.zeros(20))
    raw = sample_reference(frames, t, GRID, plan=plan, order=3)
    prepared = sample_reference(prepare_frames(frames), t, GRID, plan=plan, order=3)
    np.testing.assert_array_equal(np.isnan(raw), np.isnan(prepared))
    np.testing.assert_allclose(prepared[np.isfinite(raw)], raw[np.isfinite(raw)], atol=1e-12)
    assert np.isnan(raw).any() and np.isfinite(raw).mean() > 0.5


def test_frames_valid_in_a_band_are_prefiltered_around_it_only():
    """A frame valid over a band of columns (as each synthetic-raster frame is) samples like the raw
    cubic spline of the whole frame: the coefficients far from the band are not computed."""
    rng = np.random.default_rng(7)
    frames = ndimage.gaussian_filter(rng.normal(size=(2, 90, 120)), (0, 2, 2))
    frames[0, :, :40] = frames[0, :, 75:] = np.nan
    frames[1, :5] = frames[1, -20:] = np.nan
    frames[1, 40:43, 60:62] = np.nan
    grid = TargetGrid((40.0, 30.0), ((2.0, 0.0), (0.0, 1.5)), (15, 20))
    plan = FramePlan(np.repeat([0, 1], 40), np.repeat([0, 1], 40), np.zeros(80))
    prepared = prepare_frames(frames)
    for t in (Transform(), Transform(3.3, -2.1, 1.02, 0.99), Transform(-1.0, 0.5, 0.98, 1.0, 2.0)):
        raw = sample_reference(frames, t, grid, plan=plan, order=3)
        fast = sample_reference(prepared, t, grid, plan=plan)
        np.testing.assert_array_equal(np.isnan(raw), np.isnan(fast))
        np.testing.assert_allclose(fast[np.isfinite(raw)], raw[np.isfinite(raw)], atol=1e-12)
        assert 0.2 < np.isfinite(raw).mean() < 0.9
    far = prepared.coefficients[0, :, 75 + SPLINE_PAD + SPLINE_MARGIN :]
    assert not far.any()
    # Near the valid pixels (where samples read them), the coefficients are the whole frame's.
    for frame, coefficients in zip(frames, prepared.coefficients, strict=True):
        filled = np.pad(np.where(np.isfinite(frame), frame, np.nanmean(frame)), SPLINE_PAD, mode="edge")
        whole = ndimage.spline_filter(filled, order=3, mode="nearest")
        near = ndimage.binary_dilation(np.pad(np.isfinite(frame), SPLINE_PAD), np.ones((7, 7), bool))
        np.testing.assert_allclose(coefficients[near], whole[near], rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "transform", [Transform(), Transform(0.7, -1.3), Transform(-0.4, 0.9, 1.03, 0.98)], ids=str
)
def test_reference_gradient_is_the_derivative_of_the_sampled_reference(transform):
    """Moving every sampling position by a small step along y (x) changes the cubic-sampled reference by
    the gradient times that step."""
    frames = prepare_frames(np.stack([_frame(0), _frame(1)]))
    plan = FramePlan(np.repeat([0, 1], 10), np.repeat([0, 1], 10), np.zeros(20))
    gradient = reference_gradient(frames, transform, GRID, plan=plan)
    h = 1e-4
    # A shift of the correction by dy arcsec moves the sampling positions by dy / 1.5 rows.
    for axis, (ddx, ddy), pixels in ((0, (0.0, 1.5 * h), h), (1, (2.0 * h, 0.0), h)):
        up = Transform(transform.dx + ddx, transform.dy + ddy, transform.sx, transform.sy)
        down = Transform(transform.dx - ddx, transform.dy - ddy, transform.sx, transform.sy)
        numeric = sample_reference(frames, up, GRID, plan=plan) - sample_reference(
            frames, down, GRID, plan=plan
        )
        numeric /= 2 * pixels
        finite = np.isfinite(numeric)
        assert finite.mean() > 0.5
        np.testing.assert_allclose(
            gradient[axis][finite], numeric[finite], atol=2e-3 * np.abs(numeric[finite]).max()
        )


@pytest.mark.parametrize(
    "transform",
    [Transform(), Transform(1.3, -0.7, 1.04, 0.97), Transform(9.0, -7.5, 1.1, 0.92)],
    ids=str,
)
def test_axis_aligned_sampling_matches_the_general_path(monkeypatch, transform):
    """Without roll, prepared frames are sampled one axis at a time: the same values, NaN masks and
    gradients as map_coordinates at every position, also where the positions leave the frames."""
    frames = np.stack([_frame(1), _frame(2)])
    frames[0, 8:10, 5:7] = np.nan
    frames[1, :2] = np.nan
    prepared = prepare_frames(frames)
    plan = FramePlan(np.repeat([0, 1], 10), np.ones(20, int), np.linspace(0, 1, 20))
    fast = sample_reference(prepared, transform, GRID, plan=plan)
    fast_gradient = reference_gradient(prepared, transform, GRID, plan=plan)
    monkeypatch.setattr(sampling, "_separable", lambda matrix: False)
    general = sample_reference(prepared, transform, GRID, plan=plan)
    general_gradient = reference_gradient(prepared, transform, GRID, plan=plan)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(general))
    np.testing.assert_allclose(fast[np.isfinite(fast)], general[np.isfinite(fast)], atol=1e-12)
    np.testing.assert_array_equal(np.isnan(fast_gradient), np.isnan(general_gradient))
    finite = np.isfinite(fast_gradient)
    np.testing.assert_allclose(fast_gradient[finite], general_gradient[finite], atol=1e-9)
    assert np.isnan(fast).any() and np.isfinite(fast).mean() > 0.5


@pytest.mark.parametrize("order", [1, 3])
def test_interpolation_on_axes_is_ndimage_interpolation_on_tensor_grids(order):
    """Each block is the image's spline at rows x its columns, as map_coordinates gives it (prefiltered
    coefficients for cubic), NaN spreading only over the supports that hold a NaN pixel."""
    images = np.stack([_frame(3), _frame(4)])
    if order == 3:
        images = np.stack([ndimage.spline_filter(image, order=3, mode="nearest") for image in images])
    images[1, 9, 14] = np.nan
    rows = 2.0 + 0.93 * np.arange(17) + 0.01
    half = (order + 1) // 2
    # Blocks from both images, one reading frame 0 again up to the last position the basis covers and
    # one from the first: their columns sit side by side in the one product along x.
    columns = [
        3.3 + 1.07 * np.arange(12),
        8.6 + 0.91 * np.arange(9),
        np.linspace(14.2, 28 - half, 7),
        np.linspace(half - 1.0, 5.5, 6),
    ]
    frames = [0, 1, 0, 1]
    blocks = sampling.interpolate_on_axes(images, rows, columns, frames, order)
    assert len(blocks) == len(columns)
    for k, x, block in zip(frames, columns, blocks, strict=True):
        yy, xx = np.meshgrid(rows, x, indexing="ij")
        expected = ndimage.map_coordinates(images[k], [yy, xx], order=order, prefilter=False, mode="nearest")
        assert block.shape == (rows.size, x.size)
        np.testing.assert_array_equal(np.isnan(block), np.isnan(expected))
        np.testing.assert_allclose(block[np.isfinite(block)], expected[np.isfinite(block)], atol=1e-12)
    assert np.isnan(blocks[1]).any() and np.isfinite(blocks[1]).mean() > 0.8
