"""The Coaligner facade drives the functional core and keeps the classic names."""

import astropy.units as u
import numpy as np
import pytest

from coalign import Coaligner, TimeCoverageError, Transform, apply_transform, grid_from_wcs
from coalign.data import SAMPLE_REFERENCE_DIR
from tests.sample import sample


def test_facade_three_phases_from_folder_recover_the_error():
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(-35.0, 25.0, 1.03, 0.98))
    truth = Transform(-35.0, 25.0, 1.03, 0.98).inverse()
    aligner = Coaligner.from_folder(target, SAMPLE_REFERENCE_DIR, column_times=times, time_margin=10 * u.min)
    assert len(aligner.list_of_reference_maps) == len(aligner.reference_files) >= 20
    assert aligner.best_params == Transform()
    binned = aligner.run_binned_xcorr()
    assert aligner.best_params == binned.transform
    aligner.run_one_map_xcorr()
    aligner.run_synthetic_raster_xcorr()
    found = aligner.best_params
    err = grid_from_wcs(target.wcs).shift_in_pixels(Transform(found.dx - truth.dx, found.dy - truth.dy))
    assert max(abs(e) for e in err) <= 0.25
    assert abs(found.sx / truth.sx - 1) <= 0.005 and abs(found.sy / truth.sy - 1) <= 0.005
    corrected = aligner.results["synthetic_raster"]["corrected_target_map"]
    np.testing.assert_array_equal(corrected.data, target.data)
    assert set(aligner.results) == {"binned", "one_map", "synthetic_raster"}


def test_from_folder_refuses_files_that_do_not_cover_the_raster(tmp_path):
    """A folder whose files end ~100 minutes before the raster does: the error names the files and the fix."""
    import shutil

    raster, times, _, _ = sample()
    for path in sorted(SAMPLE_REFERENCE_DIR.glob("*.fits"))[:10]:
        shutil.copy(path, tmp_path / path.name)
    with pytest.raises(TimeCoverageError, match=r"(?s)iris_sji_1400_.*Add reference files covering"):
        Coaligner.from_folder(raster, tmp_path, column_times=times, time_margin=24 * u.h)


def _one_map_on_its_own(raster, reference, **kwargs):
    """What a one-map search against ``reference`` finds on the sample raster with no error injected.

    The raster's columns span ~3 hours while the Sun rotates under the scan (~0.32" per 150 s step in x), so
    against one frame it is stretched in x and a shift-only search finds an offset of its own (~5" in x for
    the mid-raster frame); an error injected into the header comes on top of it.
    """
    aligner = Coaligner(raster, reference)
    aligner.xcorr_one_map_kwargs.update(kwargs)
    return aligner.run_one_map_xcorr().transform


def test_classic_kwargs_and_seed_shift():
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(6.0, -4.0))
    aligner = Coaligner(target, reference)
    aligner.xcorr_one_map_kwargs.update(shift_range=(10, 10), max_corr=0.99)
    result = aligner.run_one_map_xcorr(seed_shift=(-5 * u.arcsec, 3 * u.arcsec))
    own = _one_map_on_its_own(raster, reference, shift_range=(10, 10), max_corr=0.99)
    assert abs(result.transform.dx - own.dx + 6.0) < 1.0 and abs(result.transform.dy - own.dy - 4.0) < 1.0
    aligner.xcorr_one_map_kwargs["no_such_setting"] = 1
    with pytest.raises(KeyError, match="no setting 'no_such_setting'"):
        aligner.run_one_map_xcorr()


def test_sequence_needs_column_times():
    raster, times, sequence, reference = sample()
    aligner = Coaligner(raster, reference, sequence)
    with pytest.raises(TimeCoverageError, match="column_times"):
        aligner.run_synthetic_raster_xcorr()


def _single_map_scale(target, reference, seed_shift=None):
    aligner = Coaligner(target, reference)
    aligner.xcorr_one_map_kwargs["shift_range"] = (10, 10)
    # Against one frame the sample raster's x scale is ~0.84 (solar rotation under the 3-hour scan): the
    # scale range must reach it.
    aligner.synthetic_kwargs["scale_range"] = (0.7, 1.3)
    aligner.run_one_map_xcorr(seed_shift=seed_shift)
    return aligner.run_synthetic_raster_xcorr()


def test_single_map_scale_solution():
    """Without a sequence, phase 3 solves shift and scale against the one reference map."""
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(4.0, -3.0, 1.02, 1.0))
    found = _single_map_scale(target, reference, seed_shift=(-4, 3))
    own = _single_map_scale(raster, reference)
    assert found.flags == () and own.flags == ()
    # The injected 2 % comes on top of the raster's own scale against this frame. A single frame of an
    # evolving scene: looser than with the sequence.
    assert abs(found.transform.sx * 1.02 / own.transform.sx - 1) < 0.015


def test_n_jobs_validation():
    raster, times, sequence, reference = sample()
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        Coaligner(raster, reference, n_jobs=0)


def test_n_jobs_two_matches_serial():
    raster, times, sequence, reference = sample()
    target = apply_transform(raster, Transform(6.0, -4.0))
    runs = []
    for n_jobs in (1, 2):
        aligner = Coaligner(target, reference, n_jobs=n_jobs)
        aligner.xcorr_one_map_kwargs.update(shift_range=(10, 10), min_step=(0.25, 0.25))
        runs.append(aligner.run_one_map_xcorr())
    assert runs[0].transform == runs[1].transform and runs[0].score == runs[1].score
