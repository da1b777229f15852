"""Tests for coalign.stages.search: the grid and population searches and their parallel map_fn."""

import itertools
import multiprocessing
import pickle
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
from scipy import ndimage

from coalign.params import PhaseParams
from coalign.results import SearchResult
from coalign.stages.correlate import correlate
from coalign.stages.search import grid_points, grid_search, population_search, search_step, start_search
from coalign.transform import TargetGrid, Transform

# Objectives live at module level so that they pickle for multiprocessing.


def bowl(t):
    return -((t.dx - 3) ** 2 + (t.dy + 2) ** 2)


def smooth_bowl(t):
    return -((t.dx - 3.3) ** 2 + (t.dy + 2.7) ** 2)


def scale_bowl(t):
    return -((t.dx - 1.3) ** 2 + (t.dy - 0.6) ** 2) - 1e4 * ((t.sx - 1.01) ** 2 + (t.sy - 0.99) ** 2)


def nan_objective(t):
    return float("nan")


def bowl_with_nan_hole(t):
    """A bowl at (10, 0) whose centre region |dx| < 2 has no overlap (NaN)."""
    if abs(t.dx) < 2:
        return float("nan")
    return -((t.dx - 10.0) ** 2 + t.dy**2)


def scale_bowl_wide(t):
    return -(t.dx**2 + t.dy**2) - ((t.sx - 1.2) ** 2 + (t.sy - 1.2) ** 2)


def constant_one(t):
    return 1.0


# --------------------------------------------------------------------------------------------------
# grid_points / grid_search
# --------------------------------------------------------------------------------------------------


def test_grid_points_count_and_bounds():
    params = PhaseParams(shift_range_arcsec=(10.0, 6.0), step_arcsec=(4.0, 3.0))
    start = Transform(5.0, -1.0, 1.02, 0.98)
    points = grid_points(start, params)
    # x: -8, -4, 0, 4, 8 (5 values); y: -6, -3, 0, 3, 6 (5 values).
    assert len(points) == 25
    dxs = sorted({round(p.dx - start.dx, 9) for p in points})
    dys = sorted({round(p.dy - start.dy, 9) for p in points})
    assert dxs == [-8.0, -4.0, 0.0, 4.0, 8.0]
    assert dys == [-6.0, -3.0, 0.0, 3.0, 6.0]
    assert all(p.sx == 1.02 and p.sy == 0.98 for p in points)
    assert start in points


def test_grid_points_docstring_example():
    assert len(grid_points(Transform(), PhaseParams(shift_range_arcsec=(2, 1), step_arcsec=(1, 1)))) == 15


def test_grid_points_zero_range_is_start_only():
    assert grid_points(Transform(1.0, 2.0), PhaseParams(shift_range_arcsec=(0, 0))) == [Transform(1.0, 2.0)]


def test_grid_points_reaches_range_that_is_a_multiple_of_the_step():
    points = grid_points(Transform(), PhaseParams(shift_range_arcsec=(0.3, 0.3), step_arcsec=(0.1, 0.1)))
    assert len(points) == 49
    assert max(p.dx for p in points) == pytest.approx(0.3)


def test_grid_search_finds_lattice_optimum():
    params = PhaseParams(shift_range_arcsec=(6.0, 6.0), step_arcsec=(1.0, 1.0))
    result = grid_search(bowl, Transform(), params)
    assert isinstance(result, SearchResult)
    assert result.transform == Transform(3.0, -2.0)
    assert result.score == 0.0
    assert result.n_evaluations == 13 * 13
    assert result.history == ((Transform(3.0, -2.0), 0.0),)
    assert result.message == "best of 169 grid points"


def test_grid_search_all_nan():
    params = PhaseParams(shift_range_arcsec=(2.0, 2.0), step_arcsec=(1.0, 1.0))
    start = Transform(1.0, 1.0)
    result = grid_search(nan_objective, start, params)
    assert np.isnan(result.score)
    assert result.transform == start
    assert result.n_evaluations == 25
    assert result.message == "no grid point had enough overlap"


def test_grid_search_nan_never_wins():
    params = PhaseParams(shift_range_arcsec=(12.0, 4.0), step_arcsec=(1.0, 1.0))
    result = grid_search(bowl_with_nan_hole, Transform(), params)
    assert result.transform == Transform(10.0, 0.0)


# --------------------------------------------------------------------------------------------------
# population_search
# --------------------------------------------------------------------------------------------------


def test_population_search_converges_on_smooth_bowl():
    params = PhaseParams(
        shift_range_arcsec=(20.0, 20.0), step_arcsec=(4.0, 4.0), min_step_arcsec=(0.05, 0.05)
    )
    result = population_search(smooth_bowl, Transform(), params)
    assert abs(result.transform.dx - 3.3) <= 0.05
    assert abs(result.transform.dy + 2.7) <= 0.05
    assert result.transform.sx == 1.0 and result.transform.sy == 1.0  # scale not fitted
    assert result.score == pytest.approx(smooth_bowl(result.transform))
    assert result.message.startswith(("converged", "plateau"))
    # The history is the trajectory of accepted bests: it starts at the start and improves monotonically.
    assert result.history[0] == (Transform(), smooth_bowl(Transform()))
    scores = [s for _, s in result.history]
    assert all(b > a for a, b in itertools.pairwise(scores))
    assert result.history[-1] == (result.transform, result.score)


def test_population_search_fits_scale():
    params = PhaseParams(
        shift_range_arcsec=(5.0, 5.0),
        step_arcsec=(1.0, 1.0),
        fit_scale=True,
        scale_range=(0.95, 1.05),
        scale_step=0.01,
        min_scale_step=2e-4,
    )
    result = population_search(scale_bowl, Transform(), params)
    assert abs(result.transform.sx - 1.01) <= 1e-3
    assert abs(result.transform.sy - 0.99) <= 1e-3
    assert abs(result.transform.dx - 1.3) <= 0.05
    assert abs(result.transform.dy - 0.6) <= 0.05


def test_population_search_stays_in_bounds():
    params = PhaseParams(shift_range_arcsec=(2.0, 1.0), step_arcsec=(1.0, 1.0))
    start = Transform(0.5, 0.0)
    result = population_search(smooth_bowl, start, params)
    assert abs(result.transform.dx - start.dx) <= 2.0 + 1e-9
    assert abs(result.transform.dy - start.dy) <= 1.0 + 1e-9
    assert result.transform.dx == pytest.approx(2.5)  # the edge nearest to the optimum at 3.3
    assert result.transform.dy == pytest.approx(-1.0)


def test_population_search_stops_at_max_corr():
    result = population_search(constant_one, Transform(), PhaseParams())
    assert result.transform == Transform()
    assert result.message == "reached max_corr=0.999"
    assert result.n_evaluations == 1 + 8


def test_population_search_stops_at_max_iter():
    result = population_search(smooth_bowl, Transform(), PhaseParams(max_iter=2, step_arcsec=(0.5, 0.5)))
    assert result.message == "stopped at max_iter=2"


def test_population_search_all_nan():
    result = population_search(nan_objective, Transform(1.0, 2.0), PhaseParams())
    assert np.isnan(result.score)
    assert result.transform == Transform(1.0, 2.0)


def test_population_search_leaves_a_nan_start():
    params = PhaseParams(shift_range_arcsec=(30.0, 30.0), step_arcsec=(4.0, 4.0))
    result = population_search(bowl_with_nan_hole, Transform(), params)
    assert np.isfinite(result.score)
    assert abs(result.transform.dx - 10.0) <= 0.05


def test_population_search_large_scale_step():
    params = PhaseParams(
        shift_range_arcsec=(2.0, 2.0),
        step_arcsec=(1.0, 1.0),
        fit_scale=True,
        scale_range=(0.5, 2.0),
        scale_step=1.0,
        min_scale_step=1e-3,
    )
    result = population_search(scale_bowl_wide, Transform(), params)
    assert result.transform.sx == pytest.approx(1.2, abs=1e-2)


def test_search_step_api():
    params = PhaseParams(shift_range_arcsec=(20.0, 20.0), step_arcsec=(4.0, 4.0))
    state = start_search(smooth_bowl, Transform(), params)
    assert state.n_evaluations == 1 and state.steps == (4.0, 4.0, 0.0) and not state.done
    state = search_step(smooth_bowl, state, params)
    assert state.iteration == 1
    assert state.score > smooth_bowl(Transform())
    # 8 neighbours plus the population-gradient proposal.
    assert state.n_evaluations == 1 + 8 + 1
    done = state.__class__(**{**{s: getattr(state, s) for s in state.__slots__}, "done": True})
    assert search_step(smooth_bowl, done, params) is done


# --------------------------------------------------------------------------------------------------
# serial == parallel, picklable objectives
# --------------------------------------------------------------------------------------------------


def correlation_objective(make_field):
    pad = 6
    field = make_field((52, 52), sigma=2.5, seed=11)
    target = ndimage.shift(field, (0.4, -1.3), order=3, mode="nearest")[pad:-pad, pad:-pad]
    grid = TargetGrid(crpix=(19.5, 19.5), matrix=((2.0, 0.0), (0.0, 2.0)), pad=(pad, pad))
    return partial(correlate, target, field, grid=grid)


def test_partial_of_correlate_pickles(make_field):
    score_fn = correlation_objective(make_field)
    clone = pickle.loads(pickle.dumps(score_fn))
    t = Transform(1.5, -0.5)
    assert clone(t) == score_fn(t)
    assert np.isfinite(score_fn(t))


def test_serial_equals_parallel(make_field):
    # max_corr=1.0 so that the correlation search refines down to the minimum step.
    params = PhaseParams(
        shift_range_arcsec=(6.0, 6.0), step_arcsec=(2.0, 2.0), min_step_arcsec=(0.05, 0.05), max_corr=1.0
    )
    cases = [(smooth_bowl, Transform()), (correlation_objective(make_field), Transform())]
    serial = [population_search(fn, start, params, map_fn=map) for fn, start in cases]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        forked = [population_search(fn, start, params, map_fn=pool.map) for fn, start in cases]
    with ThreadPoolExecutor(max_workers=3) as executor:
        threaded = [population_search(fn, start, params, map_fn=executor.map) for fn, start in cases]
    assert serial == forked == threaded
    # The correlation search recovers the known shift: target(p) = field(p + pad + s) with s = (x 1.3, y -0.4)
    # pixels, so the correction is d = 2 arcsec/pixel * s = (2.6, -0.8) arcsec.
    found = serial[1].transform
    assert found.dx == pytest.approx(2.6, abs=0.1)
    assert found.dy == pytest.approx(-0.8, abs=0.1)
