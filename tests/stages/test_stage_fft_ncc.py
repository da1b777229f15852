"""The FFT surface is the same statistic as the direct correlation, shift by shift."""

import numpy as np
import pytest
from scipy import ndimage

from coalign import ShapeError, Transform, correlate
from coalign.stages.fft_ncc import ncc_surface, ncc_surface_from_spectra, target_spectra
from coalign.stages.sampling import FramePlan
from coalign.transform import TargetGrid

PAD = (5, 6)
NY, NX = 40, 30


def _frames(seed=1):
    rng = np.random.default_rng(seed)
    shape = (3, NY + 2 * PAD[0], NX + 2 * PAD[1])
    frames = ndimage.gaussian_filter(rng.normal(size=shape), (0, 2, 2)) + 0.01 * rng.normal(size=shape)
    frames[0, 10:14, 10:20] = np.nan
    frames[1, 30:35, 5:9] = np.nan
    target = frames[0, PAD[0] + 2 : PAD[0] + 2 + NY, PAD[1] - 3 : PAD[1] - 3 + NX] + 0.1 * rng.normal(
        size=(NY, NX)
    )
    target[5:8, 5:9] = np.nan
    return target, frames


PLANS = {
    "single": None,
    "nearest": FramePlan(np.repeat([0, 1, 2], 10), np.repeat([0, 1, 2], 10), np.zeros(NX)),
    "interpolated": FramePlan(np.repeat([0, 1], 15), np.repeat([1, 2], 15), np.linspace(0, 1, NX)),
}


@pytest.mark.parametrize("name", PLANS)
def test_surface_equals_direct_correlation_at_every_integer_shift(name):
    target, frames = _frames()
    plan = PLANS[name]
    reference = frames if plan is not None else frames[0]
    surface = ncc_surface(target, reference, plan=plan, min_overlap_fraction=0.3, min_overlap_pixels=16)
    grid = TargetGrid((0.0, 0.0), ((1.0, 0.0), (0.0, 1.0)), PAD)
    compared = 0
    for oy in range(surface.shape[0]):
        for ox in range(surface.shape[1]):
            direct = correlate(
                target,
                reference,
                Transform(ox - PAD[1], oy - PAD[0]),
                grid,
                plan=plan,
                order=0,
                min_overlap_fraction=0.3,
                min_overlap_pixels=16,
            )
            assert np.isnan(direct) == np.isnan(surface[oy, ox])
            if np.isfinite(direct):
                assert surface[oy, ox] == pytest.approx(direct, abs=1e-9)
                compared += 1
    assert compared > 100


@pytest.mark.parametrize("name", PLANS)
def test_surface_without_reference_holes_equals_direct_correlation(name):
    """Frames valid over every band: the overlap sums come from the target's totals, with the same r."""
    target, frames = _frames(seed=4)
    frames = np.where(np.isfinite(frames), frames, 0.0)
    plan = PLANS[name]
    reference = frames if plan is not None else frames[0]
    surface = ncc_surface(target, reference, plan=plan, min_overlap_fraction=0.3, min_overlap_pixels=16)
    grid = TargetGrid((0.0, 0.0), ((1.0, 0.0), (0.0, 1.0)), PAD)
    direct = [
        correlate(target, reference, Transform(ox - PAD[1], oy - PAD[0]), grid, plan=plan, order=0)
        for oy in range(surface.shape[0])
        for ox in range(surface.shape[1])
    ]
    np.testing.assert_allclose(surface.ravel(), direct, atol=1e-9)
    assert np.isfinite(surface).all()


def test_surface_peak_at_the_known_offset():
    target, frames = _frames(seed=3)
    surface = ncc_surface(target, frames[0])
    assert np.unravel_index(np.nanargmax(surface), surface.shape) == (PAD[0] + 2, PAD[1] - 3)


def test_minimum_overlap_gives_nan():
    target, frames = _frames()
    frame = np.full(frames[0].shape, np.nan)
    frame[PAD[0] : -PAD[0], PAD[1] : -PAD[1]] = frames[0, PAD[0] : -PAD[0], PAD[1] : -PAD[1]]
    surface = ncc_surface(target, frame, min_overlap_fraction=0.95)
    assert np.isnan(surface[0, 0]) and np.isfinite(surface[PAD[0], PAD[1]])


def test_reference_smaller_than_target_raises():
    with pytest.raises(ShapeError, match="at least as large as the target"):
        ncc_surface(np.zeros((10, 10)), np.zeros((5, 5)))


@pytest.mark.parametrize("name", PLANS)
def test_prepared_target_spectra_score_any_reference(name):
    """Spectra prepared once give the same surface as a fresh call, for several references in turn."""
    target, frames = _frames()
    plan = PLANS[name]
    prepared = target_spectra(target, frames.shape[1:], plan=plan)
    for seed in (2, 3):
        _, other = _frames(seed)
        reference = other if plan is not None else other[0]
        np.testing.assert_allclose(
            ncc_surface_from_spectra(prepared, reference),
            ncc_surface(target, reference, plan=plan),
            atol=1e-12,
        )


def test_prepared_spectra_refuse_frames_of_another_shape():
    target, frames = _frames()
    prepared = target_spectra(target, frames.shape[1:])
    with pytest.raises(ShapeError, match="call target_spectra again"):
        ncc_surface_from_spectra(prepared, frames[:, :-1])


@pytest.mark.parametrize("name", PLANS)
def test_single_precision_surface_is_close_to_double(name):
    target, frames = _frames()
    plan = PLANS[name]
    reference = frames if plan is not None else frames[0]
    double = ncc_surface_from_spectra(target_spectra(target, frames.shape[1:], plan=plan), reference)
    prepared = target_spectra(target, frames.shape[1:], plan=plan, dtype=np.float32)
    single = ncc_surface_from_spectra(prepared, reference)
    assert prepared.spectra.dtype == np.complex64 and single.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(single), np.isnan(double))
    np.testing.assert_allclose(single, double, atol=1e-5)
    assert np.isfinite(double).mean() > 0.5
