"""Search strategies over the correction parameters, parallelised through a ``map_fn``.

The objective is any picklable callable ``score_fn(transform) -> float`` (e.g. a `functools.partial` of
`coalign.stages.correlate.correlate`); NaN scores (insufficient overlap) never win.
"""

from dataclasses import dataclass, replace
from itertools import product

import numpy as np

from coalign.params import PhaseParams
from coalign.results import SearchResult
from coalign.transform import Transform

__all__ = ["SearchState", "grid_points", "grid_search", "population_search", "search_step", "start_search"]


def _key(score: float) -> float:
    return score if np.isfinite(score) else -np.inf


@dataclass(frozen=True, slots=True)
class SearchState:
    """State of the population search between two `search_step` calls."""

    transform: Transform
    score: float
    origin: Transform
    steps: tuple[float, float, float]
    plateau: int = 0
    n_evaluations: int = 0
    iteration: int = 0
    history: tuple[tuple[Transform, float], ...] = ()
    done: bool = False
    message: str = ""


def _in_bounds(candidate: Transform, origin: Transform, params: PhaseParams) -> bool:
    rx, ry = params.shift_range_arcsec
    low, high = params.scale_range
    return (
        abs(candidate.dx - origin.dx) <= rx + 1e-9
        and abs(candidate.dy - origin.dy) <= ry + 1e-9
        and low <= candidate.sx <= high
        and low <= candidate.sy <= high
    )


def _neighbours(state: SearchState, params: PhaseParams) -> list[Transform]:
    t = state.transform
    step_x, step_y, step_s = state.steps
    moves = [(i * step_x, j * step_y, 0.0, 0.0) for i, j in product((-1, 0, 1), repeat=2) if (i, j) != (0, 0)]
    if params.fit_scale:
        moves += [
            (0.0, 0.0, i * step_s, j * step_s) for i, j in product((-1, 0, 1), repeat=2) if (i, j) != (0, 0)
        ]
    candidates = [
        Transform(t.dx + a, t.dy + b, t.sx + c, t.sy + d)
        for a, b, c, d in moves
        if t.sx + c > 0 and t.sy + d > 0
    ]
    return [c for c in candidates if _in_bounds(c, state.origin, params)]


def start_search(score_fn, start: Transform, params: PhaseParams) -> SearchState:
    """Initial `SearchState` at ``start`` (one objective evaluation)."""
    score = score_fn(start)
    return SearchState(
        transform=start,
        score=score,
        origin=start,
        steps=(*params.step_arcsec, params.scale_step if params.fit_scale else 0.0),
        n_evaluations=1,
        history=((start, score),),
    )


def _at_min_step(steps, params: PhaseParams) -> bool:
    min_x, min_y = params.min_step_arcsec
    scale_done = (not params.fit_scale) or steps[2] <= params.min_scale_step
    return steps[0] <= min_x and steps[1] <= min_y and scale_done


def search_step(score_fn, state: SearchState, params: PhaseParams, *, map_fn=map) -> SearchState:
    """One iteration of the population search.

    The neighbours of the current best (a 3x3 lattice of shift steps, plus one of scale steps when
    ``params.fit_scale``) are scored through ``map_fn``. If some improve on the current best, the search
    also scores their correlation-weighted mean displacement (the population gradient) and moves to the
    best point seen; otherwise every step is halved (adaptive step). It stops at the minimum step, on a
    plateau of ``params.plateau_iters`` iterations, at ``params.max_corr`` or after ``params.max_iter``.

    Parameters
    ----------
    score_fn : callable
        Picklable ``score_fn(transform) -> float``.
    state : SearchState
        Current state (from `start_search` or a previous step).
    params : PhaseParams
        Bounds, steps and stopping rules.
    map_fn : callable
        ``map_fn(func, iterable)``; builtins `map`, ``Pool.map``, ``Executor.map``, ... give equal results.

    Returns
    -------
    state : SearchState
        A new state; ``state.done`` says whether to stop.
    """
    if state.done:
        return state
    candidates = _neighbours(state, params)
    scores = list(map_fn(score_fn, candidates))
    n_eval = state.n_evaluations + len(candidates)
    best_t, best_s = state.transform, state.score
    keys = np.array([_key(s) for s in scores])
    base = _key(state.score)
    if not np.isfinite(base) and np.isfinite(keys).any():
        base = (
            keys[np.isfinite(keys)].min() - 1.0
        )  # from a start with no score, any scored neighbour improves
    with np.errstate(invalid="ignore"):  # -inf - -inf when nothing has a score
        gains = keys - base
    improved = np.isfinite(gains) & (gains > 0)
    if improved.any():
        weights = gains[improved] / gains[improved].sum()
        deltas = np.array(
            [
                [c.dx - best_t.dx, c.dy - best_t.dy, c.sx - best_t.sx, c.sy - best_t.sy]
                for c, ok in zip(candidates, improved, strict=True)
                if ok
            ]
        )
        move = weights @ deltas
        proposal = Transform(
            best_t.dx + move[0], best_t.dy + move[1], best_t.sx + move[2], best_t.sy + move[3]
        )
        pool = [(c, s) for c, s, ok in zip(candidates, scores, improved, strict=True) if ok]
        if _in_bounds(proposal, state.origin, params):
            pool.append((proposal, score_fn(proposal)))
            n_eval += 1
        best_t, best_s = max(pool, key=lambda pair: _key(pair[1]))
    gain = _key(best_s) - base
    # Adaptive steps per parameter group: a group (shift or scale) with no improving move halves its step.
    t0 = state.transform
    is_scale = np.array([c.sx != t0.sx or c.sy != t0.sy for c in candidates], dtype=bool)
    shift_improved = bool((improved & ~is_scale).any())
    scale_improved = bool((improved & is_scale).any())
    steps = (
        *(state.steps[:2] if shift_improved else (state.steps[0] / 2, state.steps[1] / 2)),
        state.steps[2] if scale_improved else state.steps[2] / 2,
    )
    plateau = state.plateau + 1 if not gain > 1e-6 else 0
    iteration = state.iteration + 1
    history = (*state.history, (best_t, best_s)) if gain > 0 else state.history
    message, done = "", False
    if not improved.any() and _at_min_step(state.steps, params):
        message, done = "converged: no better neighbour at the minimum step", True
    elif plateau >= params.plateau_iters and _at_min_step(steps, params):
        message, done = f"plateau: no gain for {plateau} iterations", True
    elif _key(best_s) >= params.max_corr:
        message, done = f"reached max_corr={params.max_corr}", True
    elif iteration >= params.max_iter:
        message, done = f"stopped at max_iter={params.max_iter}", True
    return replace(
        state,
        transform=best_t,
        score=best_s,
        steps=steps,
        plateau=plateau,
        n_evaluations=n_eval,
        iteration=iteration,
        history=history,
        done=done,
        message=message,
    )


def population_search(score_fn, start: Transform, params: PhaseParams, *, map_fn=map) -> SearchResult:
    """Loop `search_step` from ``start`` until it stops."""
    state = start_search(score_fn, start, params)
    while not state.done:
        state = search_step(score_fn, state, params, map_fn=map_fn)
    return SearchResult(state.transform, state.score, state.n_evaluations, state.history, state.message)


def grid_points(start: Transform, params: PhaseParams) -> list[Transform]:
    """Every shift on the ``params.step_arcsec`` lattice within ``params.shift_range_arcsec`` of ``start``.

    Examples
    --------
    >>> p = PhaseParams(shift_range_arcsec=(2, 1), step_arcsec=(1, 1))
    >>> len(grid_points(Transform(), p))
    15
    """
    (rx, ry), (step_x, step_y) = params.shift_range_arcsec, params.step_arcsec
    n_x, n_y = np.floor(rx / step_x + 1e-9), np.floor(ry / step_y + 1e-9)
    xs = np.arange(-n_x, n_x + 1) * step_x
    ys = np.arange(-n_y, n_y + 1) * step_y
    return [Transform(start.dx + x, start.dy + y, start.sx, start.sy) for y in ys for x in xs]


def grid_search(score_fn, start: Transform, params: PhaseParams, *, map_fn=map) -> SearchResult:
    """Score every point of `grid_points` through ``map_fn`` and return the best."""
    points = grid_points(start, params)
    scores = list(map_fn(score_fn, points))
    keys = [_key(s) for s in scores]
    if not np.isfinite(max(keys)):
        return SearchResult(start, float("nan"), len(points), (), "no grid point had enough overlap")
    best = int(np.argmax(keys))
    return SearchResult(
        points[best],
        scores[best],
        len(points),
        ((points[best], scores[best]),),
        f"best of {len(points)} grid points",
    )
