"""Known-truth accuracy of the three phases on the bundled real IRIS sample, and bad-input errors."""

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import sunpy.map
from astropy.time import Time

from coalign import (
    BINNED,
    ONE_MAP,
    SYNTHETIC_RASTER,
    AllNaNError,
    EmptySequenceError,
    ImageWithWCS,
    NoOverlapError,
    TimeCoverageError,
    Transform,
    WCSError,
    apply_transform,
    executor_map,
    grid_from_wcs,
    one_map_phase,
    pool_map,
    synthetic_raster_phase,
    three_phase_alignment,
)
from coalign.pipelines.phases import reproject_and_bin
from coalign.stages.binning import bin_wcs
from coalign.stages.reproject import padded_wcs
from tests.sample import sample

CASES = [
    Transform(-35.0, 25.0, 1.03, 0.98),
    Transform(42.0, 18.0, 0.975, 1.025),
    Transform(-20.0, -45.0, 1.02, 1.0),
]


@pytest.mark.parametrize("injected", CASES, ids=lambda t: f"{t.dx:+.0f},{t.dy:+.0f},{t.sx},{t.sy}")
def test_three_phases_recover_injected_error(injected):
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, injected)
    truth = injected.inverse()
    result = three_phase_alignment(target, reference, sequence, column_times=times)
    found = result.transform
    err_x, err_y = grid_from_wcs(target.wcs).shift_in_pixels(
        Transform(found.dx - truth.dx, found.dy - truth.dy)
    )
    assert abs(err_x) <= 0.25 and abs(err_y) <= 0.25, (found, truth)
    # The sample's target comes from other frames than the references (scene evolution over ~5 min):
    # its x scale is determined to about 0.2 % (1 sigma). Noise-only known-truth cases, with tighter
    # bounds, are in test_pipeline_accuracy.py.
    assert abs(found.sx / truth.sx - 1) <= 0.0075, (found, truth)
    assert abs(found.sy / truth.sy - 1) <= 0.005, (found, truth)
    assert [p.name for p in result.phases] == ["binned", "one_map", "synthetic_raster"]
    assert all(p.elapsed_s > 0 and p.n_evaluations > 0 for p in result.phases)


def test_binned_phase_reaches_far_shifts():
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(-60.0, 40.0))
    first = three_phase_alignment(
        target, reference, [reference], phases=(BINNED, ONE_MAP, replace(SYNTHETIC_RASTER, fit_scale=False))
    ).phases[0]
    assert abs(first.transform.dx - 60.0) < 6 and abs(first.transform.dy + 40.0) < 6


def test_target_is_not_modified():
    raster, times, sequence, reference = sample()
    before = raster.data.copy(), dict(raster.meta)
    one_map_phase(raster, reference, replace(ONE_MAP, shift_range_arcsec=(4, 4)))
    np.testing.assert_array_equal(raster.data, before[0])
    assert dict(raster.meta) == before[1]


def _small_phase(map_fn):
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(3.0, -2.0, 1.01, 1.0))
    params = replace(
        SYNTHETIC_RASTER,
        shift_range_arcsec=(6, 6),
        step_arcsec=(2, 2),
        min_step_arcsec=(0.25, 0.25),
        min_scale_step=2e-3,
    )
    return synthetic_raster_phase(target, sequence, params, column_times=times, map_fn=map_fn)


def test_serial_process_pool_and_threads_agree():
    serial = _small_phase(map)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pooled = _small_phase(pool_map(pool))
    with ThreadPoolExecutor(2) as executor:
        threaded = _small_phase(executor_map(executor))
    for other in (pooled, threaded):
        assert other.transform == serial.transform
        assert other.score == serial.score
        assert other.history == serial.history


def test_all_nan_target_raises():
    raster, times, sequence, reference = sample()
    empty = sunpy.map.Map(np.full(raster.data.shape, np.nan), raster.meta)
    with pytest.raises(AllNaNError, match="target holds no finite pixel"):
        one_map_phase(empty, reference)


def test_no_overlap_raises():
    raster, times, sequence, reference = sample()
    far = apply_transform(raster, Transform(0.0, -700.0))  # still on the disk: no off-limb warning
    with pytest.raises(NoOverlapError, match="does not overlap"):
        one_map_phase(far, reference)


def test_missing_celestial_wcs_raises():
    raster, times, sequence, reference = sample()
    with pytest.raises(WCSError, match="target has no celestial WCS"):
        one_map_phase(ImageWithWCS(raster.data, None), reference)


def test_empty_sequence_raises():
    raster, times, sequence, reference = sample()
    with pytest.raises(EmptySequenceError, match="empty reference sequence"):
        synthetic_raster_phase(raster, [], column_times=times)


def test_column_times_mismatch_raises():
    raster, times, sequence, reference = sample()
    with pytest.raises(TimeCoverageError, match=r"column_times has 69 entries but the target has 70 columns"):
        synthetic_raster_phase(raster, sequence, column_times=times[:-1])


def test_sequence_without_column_times_raises():
    raster, times, sequence, reference = sample()
    with pytest.raises(TimeCoverageError, match="per-column times"):
        synthetic_raster_phase(raster, sequence)


def test_sequence_not_covering_raster_raises():
    raster, times, sequence, reference = sample()
    late = Time(times) + 30 * 86400 * np.ones(times.size) * 1.0 * __import__("astropy.units").units.s
    with pytest.raises(TimeCoverageError, match="max_time_gap_s"):
        synthetic_raster_phase(raster, sequence, column_times=late)


@pytest.mark.parametrize("kernel", [0.0, -5.0])
def test_bad_bin_kernel_raises(kernel):
    with pytest.raises(ValueError, match="bin_kernel_arcsec must be a positive angle"):
        replace(BINNED, bin_kernel_arcsec=kernel)


def test_reproject_and_bin_averages_the_sky_of_each_target_bin():
    """A reference that is a linear function of the sky keeps it through resampling and block averaging:
    each bin of the result holds the function at its own centre on the binned padded grid (an off-by-one
    in the pad, the rows or the columns scaled to native pixels would move it by a whole bin)."""
    raster, _, _, reference = sample()

    def function(coords):
        return 2.0 * coords.Tx.to_value("arcsec") - 0.5 * coords.Ty.to_value("arcsec")

    yy, xx = np.mgrid[0 : reference.data.shape[0], 0 : reference.data.shape[1]]
    linear = sunpy.map.Map(function(reference.wcs.pixel_to_world(xx, yy)), reference.meta)
    factor, pad, rows, columns = (5, 2), (3, 4), (1, 22), [(2, 41)]
    target_wcs = raster.wcs.celestial
    binned_shape = (raster.data.shape[0] // 5, raster.data.shape[1] // 2)
    out = reproject_and_bin(
        [(linear.data, linear.wcs)],
        target_wcs,
        binned_shape,
        factor,
        pad=pad,
        columns=columns,
        rows=rows,
        rotate_to=[None],
    )[0]
    binned, _ = padded_wcs(bin_wcs(target_wcs, factor), binned_shape, pad)
    by, bx = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    expected = function(binned.pixel_to_world(bx, by).transform_to(linear.coordinate_frame))
    inside = np.zeros(out.shape, bool)
    inside[rows[0] : rows[1], columns[0][0] : columns[0][1]] = True
    assert np.isnan(out[~inside]).all()
    # Bins whose native pixels all fall inside the reference (at its edge a bin averages its covered part).
    native_shape = (binned_shape[0] * 5, binned_shape[1] * 2)
    native, _ = padded_wcs(target_wcs, native_shape, (pad[0] * 5, pad[1] * 2))
    ny, nx = np.multiply(out.shape, factor)
    ry, rx = np.mgrid[0:ny, 0:nx]
    px, py = linear.wcs.world_to_pixel(native.pixel_to_world(rx, ry).transform_to(linear.coordinate_frame))
    within = (px >= 0) & (px <= linear.data.shape[1] - 1) & (py >= 0) & (py <= linear.data.shape[0] - 1)
    whole = within.reshape(out.shape[0], 5, out.shape[1], 2).all(axis=(1, 3)) & inside
    assert whole.sum() > 0.8 * inside.sum()
    np.testing.assert_allclose(out[whole], expected[whole], atol=0.01)


@pytest.mark.parametrize("roll", [0.0, 1.5])
def test_reachable_region_holds_every_position_a_search_can_read(make_wcs, roll):
    """Each frame's columns and the rows hold, with the interpolation support, every padded-grid position
    that any correction within the search ranges reads for the target columns the frame serves (checked
    at random corrections, extreme scales included), and a frame's band is far narrower than the grid."""
    from coalign.pipelines.phases import REACH_MARGIN, reachable_region
    from coalign.stages.reproject import pad_for_search
    from coalign.stages.sampling import FramePlan
    from coalign.transform import pixel_mapping

    shape = (266, 192)
    grid = grid_from_wcs(make_wcs(cdelt=(4.0, 3.3), shape=shape, rot_deg=roll))
    start = Transform(-80.0, -73.0, 1.0, 1.0, 0.0)
    params = replace(SYNTHETIC_RASTER, fit_roll=roll != 0.0, roll_range_deg=(-1.0, 1.0))
    scale_range, roll_range = params.scale_range, params.roll_range_deg if roll else (0.0, 0.0)
    reach = (abs(start.dx) + params.shift_range_arcsec[0], abs(start.dy) + params.shift_range_arcsec[1])
    grid = grid.with_pad(pad_for_search(grid, shape, reach, scale_range, roll_range))
    frame_of_column = np.arange(shape[1]) // 10
    plan = FramePlan(frame_of_column, frame_of_column, np.zeros(shape[1]))
    n_frames = int(frame_of_column.max()) + 2  # the last frame serves no column
    rows, columns = reachable_region(
        grid, shape, start, params, scale_range, roll_range, plan=plan, n_frames=n_frames
    )
    assert columns[-1] == (0, 0)
    padded_width = shape[1] + 2 * grid.pad[1]
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    support = REACH_MARGIN / 2  # cubic sampling reads two pixels either side
    for _ in range(40):
        rx, ry = params.shift_range_arcsec
        sx, sy = rng.choice(scale_range, 2) if rng.random() < 0.5 else rng.uniform(*scale_range, 2)
        trial = Transform(
            start.dx + rng.uniform(-rx, rx), start.dy + rng.uniform(-ry, ry), sx, sy, rng.uniform(*roll_range)
        )
        matrix, offset = pixel_mapping(trial, grid)
        seen = np.tensordot(matrix, np.stack([yy, xx]).astype(float), axes=1) + offset[:, None, None]
        assert rows[0] <= seen[0].min() - support and seen[0].max() + support <= rows[1] - 1
        for k in range(n_frames - 1):
            x = seen[1][:, frame_of_column == k]
            assert columns[k][0] <= x.min() - support and x.max() + support <= columns[k][1] - 1, (k, trial)
    widths = [stop - start for start, stop in columns[:-1]]
    assert max(widths) < padded_width / 3, (widths, padded_width)
