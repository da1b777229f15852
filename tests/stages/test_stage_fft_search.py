"""FFT search: sub-pixel shifts on a rotated, non-square grid, scale, and the scaled-frame identity."""

import numpy as np
import pytest
from scipy import ndimage

from coalign import PhaseParams, Transform, sample_reference
from coalign.stages.fft_search import (
    ShiftPeak,
    _grid_peaks,
    _scores,
    _vertex,
    fft_search,
    scaled_frames,
)
from coalign.transform import TargetGrid, pixel_mapping

GRID = TargetGrid((24.5, 19.5), ((2.0, 0.05), (-0.06, 1.5)), (12, 12))


def _field(seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=(64, 74)), 2.5)


def _target_for(truth, frame, noise=0.0, seed=1):
    matrix, offset = pixel_mapping(truth, GRID)
    target = ndimage.affine_transform(frame, matrix, offset=offset, output_shape=(40, 50), order=3)
    return target + noise * np.std(target) * np.random.default_rng(seed).normal(size=target.shape)


@pytest.mark.parametrize("truth", [Transform(3.3, -2.2), Transform(-7.9, 4.1), Transform(0.4, 0.7)])
def test_shift_only_recovers_sub_pixel_truth(truth):
    frame = _field()
    target = _target_for(truth, frame, noise=0.02)
    params = PhaseParams(shift_range_arcsec=(12, 12), min_step_arcsec=(0.01, 0.01))
    result = fft_search(target, frame, GRID, params)
    err_pix = GRID.shift_in_pixels(Transform(result.transform.dx - truth.dx, result.transform.dy - truth.dy))
    assert max(abs(e) for e in err_pix) < 0.05, result


def test_shift_and_scale_recovered():
    truth = Transform(2.6, -1.7, 1.02, 0.985)
    frame = _field(seed=4)
    target = _target_for(truth, frame, noise=0.02)
    params = PhaseParams(
        shift_range_arcsec=(8, 8),
        min_step_arcsec=(0.01, 0.01),
        fit_scale=True,
        scale_range=(0.96, 1.04),
        scale_step=0.005,
    )
    found = fft_search(target, frame, GRID, params).transform
    err_pix = GRID.shift_in_pixels(Transform(found.dx - truth.dx, found.dy - truth.dy))
    assert max(abs(e) for e in err_pix) < 0.1
    assert abs(found.sx / truth.sx - 1) < 0.002 and abs(found.sy / truth.sy - 1) < 0.002


def test_scaled_frames_turn_scale_into_translation():
    """Under scale s, integer offset delta of the scaled frames equals Transform(d = diag(s) M delta, s)."""
    frame = _field(seed=2)
    s = (1.03, 0.97)
    scaled = scaled_frames(frame[None], GRID, *s, order=1)[0]
    delta = np.array([2, -3])  # (x, y) pixels
    d = np.diag(s) @ np.asarray(GRID.matrix) @ delta
    via_transform = sample_reference(frame, Transform(d[0], d[1], *s), GRID, order=1)
    pad_y, pad_x = GRID.pad
    window = scaled[pad_y + delta[1] : pad_y + delta[1] + 40, pad_x + delta[0] : pad_x + delta[0] + 50]
    both = np.isfinite(via_transform) & np.isfinite(window)
    assert both.mean() > 0.9
    np.testing.assert_allclose(window[both], via_transform[both], atol=1e-9)


def test_axis_aligned_scaled_frames_match_affine_transform():
    """Without roll on an axis-aligned grid, the frames are scaled one axis at a time: the values and NaN
    spread of `scipy.ndimage.affine_transform` (order 1), band by band."""
    rng = np.random.default_rng(3)
    frames = np.stack([_field(seed) for seed in range(3)])
    frames[rng.random(frames.shape) < 0.02] = np.nan
    grid = TargetGrid((24.5, 19.5), ((2.0, 0.0), (0.0, 1.5)), (12, 12))
    sx, sy = 1.04, 0.97
    bands, origin, shape = [(0, 30), (12, 50), (40, 40)], (3, 5), (50, 60)
    got = scaled_frames(frames, grid, sx, sy, bands=bands, origin=origin, shape=shape)
    linear = np.linalg.inv(grid.matrix) @ Transform(sx=sx, sy=sy).linear @ np.asarray(grid.matrix)
    linear_yx = linear[::-1, ::-1]
    centre = np.array(grid.crpix[::-1]) + grid.pad
    expected = np.full_like(got, np.nan)
    for k, (start, stop) in enumerate(bands[:2]):
        expected[k, :, start:stop] = ndimage.affine_transform(
            frames[k],
            linear_yx,
            offset=centre - linear_yx @ centre + linear_yx @ [origin[0], origin[1] + start],
            output_shape=(shape[0], stop - start),
            order=1,
            cval=np.nan,
            prefilter=False,
        )
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(got)], atol=1e-13)
    assert np.isnan(got[0]).mean() < 0.6


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11])
@pytest.mark.parametrize("best", [0.95, 0.973, 1.0, 1.021, 1.05])
def test_grid_scored_coarse_to_fine_keeps_the_best_point_and_its_vertex(n, best):
    """On a smooth score, every other grid value and the neighbours of the best of them give the same best
    value and vertex as the whole grid, with about half the evaluations."""
    values = np.linspace(0.95, 1.05, n)
    scored = []

    def best_at(sx, sy, roll):
        scored.append(sx)
        return ShiftPeak(Transform(sx=sx, sy=sy, roll=roll), 1 - (sx - best) ** 2, False, 0.0)

    peaks = _grid_peaks(values, lambda value: (best_at, value, 1.0, 0.0), map)
    whole = [1 - (v - best) ** 2 for v in values]
    i = int(np.argmax(whole))
    assert all(peaks[j] is not None for j in (i - 1, i, i + 1) if 0 <= j < n)
    assert _vertex(values, _scores(peaks)) == _vertex(values, whole)
    assert len(scored) == len(set(scored)) <= n // 2 + 3
