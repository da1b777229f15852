"""Tests for coalign.stages.synthetic: frame selection per raster column and the synthetic raster."""

import astropy.units as u
import numpy as np
import pytest
from astropy.time import Time

from coalign.exceptions import EmptySequenceError, ShapeError, TimeCoverageError
from coalign.params import SyntheticParams
from coalign.stages.synthetic import build_synthetic_raster, select_frames
from coalign.transform import TargetGrid, Transform

T0 = Time("2014-03-29T14:00:00", scale="utc")
NEAREST = SyntheticParams(interpolate=False)


def times(seconds):
    return T0 + np.asarray(seconds, dtype=float) * u.s


FRAME_TIMES = times([0, 100, 200])

# --------------------------------------------------------------------------------------------------
# select_frames
# --------------------------------------------------------------------------------------------------


def test_select_frames_nearest():
    plan = select_frames(FRAME_TIMES, times([10, 90, 160]), NEAREST)
    np.testing.assert_array_equal(plan.lower, [0, 1, 2])
    np.testing.assert_array_equal(plan.upper, [0, 1, 2])
    np.testing.assert_array_equal(plan.weight, [0.0, 0.0, 0.0])


def test_select_frames_interpolate_weights():
    plan = select_frames(FRAME_TIMES, times([10, 90, 160, 100, 0, 200]), SyntheticParams(interpolate=True))
    lower, upper = FRAME_TIMES[plan.lower], FRAME_TIMES[plan.upper]
    # Each column time is (1 - w) * t_lower + w * t_upper with t_lower <= t <= t_upper.
    blended = (1 - plan.weight) * (lower - T0).to_value("s") + plan.weight * (upper - T0).to_value("s")
    np.testing.assert_allclose(blended, [10, 90, 160, 100, 0, 200], atol=1e-6)
    np.testing.assert_array_equal(plan.lower[:3], [0, 0, 1])
    np.testing.assert_array_equal(plan.upper[:3], [1, 1, 2])
    np.testing.assert_allclose(plan.weight[:3], [0.1, 0.9, 0.6], atol=1e-9)
    assert np.all((plan.weight >= 0) & (plan.weight <= 1))


def test_select_frames_outside_sequence_uses_end_frame():
    plan = select_frames(FRAME_TIMES, times([-30, 260]), SyntheticParams(interpolate=True))
    # Before the first frame: all weight on frame 0; after the last: all weight on frame 2.
    assert (1 - plan.weight[0]) == pytest.approx(1.0) and plan.lower[0] == 0
    assert plan.weight[1] == pytest.approx(1.0) and plan.upper[1] == 2


def test_select_frames_decreasing_column_times():
    plan = select_frames(FRAME_TIMES, times([200, 160, 90, 10]), NEAREST)
    np.testing.assert_array_equal(plan.lower, [2, 2, 1, 0])
    plan = select_frames(FRAME_TIMES, times([160, 90, 10]), SyntheticParams(interpolate=True))
    np.testing.assert_array_equal(plan.lower, [1, 0, 0])
    np.testing.assert_array_equal(plan.upper, [2, 1, 1])
    np.testing.assert_allclose(plan.weight, [0.6, 0.9, 0.1], atol=1e-9)


def test_select_frames_unsorted_frame_times():
    frame_times = times([200, 0, 100])  # indices refer to this order
    plan = select_frames(frame_times, times([10, 160]), NEAREST)
    np.testing.assert_array_equal(plan.lower, [1, 0])
    plan = select_frames(frame_times, times([10, 160]), SyntheticParams(interpolate=True))
    np.testing.assert_array_equal(plan.lower, [1, 2])
    np.testing.assert_array_equal(plan.upper, [2, 0])
    np.testing.assert_allclose(plan.weight, [0.1, 0.6], atol=1e-9)


def test_select_frames_single_frame_interpolate_falls_back_to_nearest():
    plan = select_frames(times([50]), times([0, 50, 100]), SyntheticParams(interpolate=True))
    np.testing.assert_array_equal(plan.lower, [0, 0, 0])
    np.testing.assert_array_equal(plan.weight, [0, 0, 0])


def test_select_frames_gap_too_large():
    params = SyntheticParams(max_time_gap_s=50, interpolate=False)
    with pytest.raises(
        TimeCoverageError, match=r"column 3 \(time 2014-03-29T14:06:40\.000\) is 200 s"
    ) as info:
        select_frames(FRAME_TIMES, times([10, 90, 160, 400]), params)
    message = str(info.value)
    assert "max_time_gap_s=50" in message
    assert "raise max_time_gap_s" in message
    assert "2014-03-29T14:00:00.000 to 2014-03-29T14:03:20.000" in message


def test_select_frames_gap_within_limit_is_accepted():
    plan = select_frames(FRAME_TIMES, times([249]), SyntheticParams(max_time_gap_s=50, interpolate=False))
    np.testing.assert_array_equal(plan.lower, [2])


def test_select_frames_empty_sequence():
    with pytest.raises(
        EmptySequenceError, match="the reference sequence is empty; pass at least one reference"
    ):
        select_frames(Time([], format="unix"), times([0, 1]))


def test_select_frames_no_columns():
    with pytest.raises(TimeCoverageError, match="column_times is empty"):
        select_frames(FRAME_TIMES, Time([], format="unix"))


# --------------------------------------------------------------------------------------------------
# build_synthetic_raster
# --------------------------------------------------------------------------------------------------

NY, NX, PAD = 8, 6, (2, 3)
COLUMN_SECONDS = [10, 90, 160, 200, 0, 130]


def constant_frames():
    """Frame k is the constant image of value k."""
    shape = (NY + 2 * PAD[0], NX + 2 * PAD[1])
    return np.stack([np.full(shape, float(k)) for k in range(3)])


def grid():
    return TargetGrid(crpix=((NX - 1) / 2, (NY - 1) / 2), matrix=((2.0, 0.0), (0.0, 2.0)), pad=PAD)


def test_synthetic_raster_nearest_takes_the_chosen_frame():
    out = build_synthetic_raster(
        constant_frames(), FRAME_TIMES, times(COLUMN_SECONDS), grid(), params=NEAREST
    )
    assert out.shape == (NY, NX)
    np.testing.assert_allclose(out, np.broadcast_to([0.0, 1.0, 2.0, 2.0, 0.0, 1.0], (NY, NX)))


def test_synthetic_raster_interpolate_blends_frames():
    out = build_synthetic_raster(
        constant_frames(),
        FRAME_TIMES,
        times(COLUMN_SECONDS),
        grid(),
        params=SyntheticParams(interpolate=True),
    )
    # Frame value k at time 100 k s: the linear blend at time t is t / 100.
    np.testing.assert_allclose(out, np.broadcast_to(np.array(COLUMN_SECONDS) / 100.0, (NY, NX)), atol=1e-12)


def test_synthetic_raster_samples_corrected_positions(make_field):
    frames = np.stack([make_field((NY + 2 * PAD[0], NX + 2 * PAD[1]), seed=k) for k in range(3)])
    column_times = times(COLUMN_SECONDS)
    chosen = [0, 1, 2, 2, 0, 1]
    out = build_synthetic_raster(frames, FRAME_TIMES, column_times, grid(), params=NEAREST)
    for i, k in enumerate(chosen):
        np.testing.assert_allclose(out[:, i], frames[k][PAD[0] : PAD[0] + NY, PAD[1] + i], atol=1e-12)
    # A correction of +2 arcsec = +1 pixel in x samples one column further right.
    shifted = build_synthetic_raster(
        frames, FRAME_TIMES, column_times, grid(), transform=Transform(dx=2.0), params=NEAREST
    )
    for i, k in enumerate(chosen):
        np.testing.assert_allclose(shifted[:, i], frames[k][PAD[0] : PAD[0] + NY, PAD[1] + i + 1], atol=1e-12)


def test_synthetic_raster_does_not_modify_frames():
    frames = constant_frames()
    before = frames.copy()
    build_synthetic_raster(frames, FRAME_TIMES, times(COLUMN_SECONDS), grid())
    np.testing.assert_array_equal(frames, before)


def test_synthetic_raster_column_times_mismatch():
    with pytest.raises(TimeCoverageError, match="column_times has 4 entries but the target has 6 columns"):
        build_synthetic_raster(constant_frames(), FRAME_TIMES, times([0, 1, 2, 3]), grid())


def test_synthetic_raster_frame_times_mismatch():
    with pytest.raises(ShapeError, match="3 frames but 2 frame times"):
        build_synthetic_raster(constant_frames(), times([0, 100]), times(COLUMN_SECONDS), grid())


def test_synthetic_raster_needs_a_stack():
    with pytest.raises(ShapeError, match=r"frames must be a \(k, ny, nx\) stack, got shape \(12, 12\)"):
        build_synthetic_raster(np.zeros((12, 12)), FRAME_TIMES, times(COLUMN_SECONDS), grid())
