"""Tests for coalign.params: validation, unit conversion, immutability of the phase records."""

import dataclasses
import pickle

import astropy.units as u
import pytest

from coalign.params import BINNED, ONE_MAP, SYNTHETIC_RASTER, PhaseParams, SyntheticParams


@pytest.mark.parametrize(
    "params",
    [PhaseParams(), BINNED, ONE_MAP, SYNTHETIC_RASTER],
    ids=["default", "BINNED", "ONE_MAP", "SYNTHETIC"],
)
def test_presets_are_valid_records(params):
    # Re-validating the field values through the constructor must not raise and gives an equal record.
    assert PhaseParams(**{f.name: getattr(params, f.name) for f in dataclasses.fields(params)}) == params


def test_defaults():
    p = PhaseParams()
    assert p.shift_range_arcsec == (150.0, 150.0)
    assert p.step_arcsec == (4.0, 4.0)
    assert p.bin_kernel_arcsec is None
    assert p.strategy == "fft"
    assert SyntheticParams() == SyntheticParams(max_time_gap_s=1800.0, interpolate=True)
    assert not SyntheticParams().differential_rotation


def test_binned_reaches_wide_shift_range():
    assert min(BINNED.shift_range_arcsec) >= 150.0
    assert BINNED.bin_kernel_arcsec == "auto"
    assert BINNED.strategy == ONE_MAP.strategy == SYNTHETIC_RASTER.strategy == "fft"


def test_phases_narrow_down():
    assert BINNED.shift_range_arcsec > ONE_MAP.shift_range_arcsec > SYNTHETIC_RASTER.shift_range_arcsec
    assert SYNTHETIC_RASTER.fit_scale and not ONE_MAP.fit_scale


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"step_arcsec": (-1.0, 2.0)}, r"step_arcsec and min_step_arcsec must be > 0.*step_arcsec=\(2, 2\)"),
        ({"step_arcsec": 0.0}, r"step_arcsec and min_step_arcsec must be > 0"),
        ({"min_step_arcsec": (0.1, -0.1)}, r"min_step_arcsec must be > 0"),
        ({"shift_range_arcsec": (-5.0, 5.0)}, r"shift_range_arcsec must be >= 0"),
        ({"shift_range_arcsec": (float("nan"), 5.0)}, r"shift_range_arcsec must be finite"),
        ({"bin_kernel_arcsec": 0}, r"bin_kernel_arcsec must be a positive angle, got bin_kernel_arcsec=0\.0"),
        (
            {"bin_kernel_arcsec": -5},
            r"bin_kernel_arcsec must be a positive angle, got bin_kernel_arcsec=-5\.0",
        ),
        ({"bin_kernel_arcsec": -5 * u.arcsec}, r"bin_kernel_arcsec must be a positive angle"),
        ({"bin_kernel_arcsec": float("inf")}, r"bin_kernel_arcsec must be a positive angle"),
        ({"min_overlap_fraction": 0}, r"min_overlap_fraction must be in \(0, 1\], got 0"),
        ({"min_overlap_fraction": 1.5}, r"min_overlap_fraction must be in \(0, 1\]"),
        ({"min_overlap_pixels": 1}, r"min_overlap_pixels must be >= 2"),
        (
            {"strategy": "grid"},
            r"strategy must be one of \('fft', 'grid\+population', 'population'\), got strategy='grid'",
        ),
        ({"scale_range": (1.01, 1.05)}, r"scale_range must satisfy 0 < low <= 1 <= high"),
        ({"scale_step": 0}, r"scale_step and min_scale_step must be > 0"),
        ({"plateau_iters": 0}, r"plateau_iters and max_iter must be >= 1"),
        ({"max_iter": 0}, r"plateau_iters and max_iter must be >= 1"),
        ({"interpolation_order": 2}, r"interpolation_order must be 0, 1 or 3, got 2"),
        ({"clip_percentiles": (95.0, 5.0)}, r"clip_percentiles must satisfy 0 <= low < high <= 100"),
        ({"clip_percentiles": (0.0, 101.0)}, r"clip_percentiles must satisfy"),
    ],
)
def test_invalid_phase_params(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        PhaseParams(**kwargs)


def test_invalid_synthetic_params():
    with pytest.raises(ValueError, match=r"max_time_gap_s must be > 0, got 0\.0; use e\.g\. 30 \* u\.min"):
        SyntheticParams(max_time_gap_s=0)
    with pytest.raises(ValueError, match=r"max_time_gap_s must be > 0"):
        SyntheticParams(max_time_gap_s=float("nan"))


def test_quantity_conversion_shift_range():
    p = PhaseParams(shift_range_arcsec=2 * u.arcmin)
    assert p.shift_range_arcsec == (120.0, 120.0)
    assert all(type(v) is float for v in p.shift_range_arcsec)
    p = PhaseParams(shift_range_arcsec=[1, 2] * u.arcmin, step_arcsec=3 * u.arcsec)
    assert p.shift_range_arcsec == pytest.approx((60.0, 120.0))
    assert p.step_arcsec == (3.0, 3.0)


def test_scalar_pairs_broadcast():
    p = PhaseParams(shift_range_arcsec=10, min_step_arcsec=0.1)
    assert p.shift_range_arcsec == (10.0, 10.0)
    assert p.min_step_arcsec == (0.1, 0.1)


def test_quantity_conversion_kernel_and_time_gap():
    assert PhaseParams(bin_kernel_arcsec=0.5 * u.arcmin).bin_kernel_arcsec == pytest.approx(30.0)
    assert PhaseParams(bin_kernel_arcsec=12).bin_kernel_arcsec == 12.0
    assert SyntheticParams(max_time_gap_s=30 * u.min).max_time_gap_s == pytest.approx(1800.0)


def test_quantity_with_wrong_unit_is_rejected():
    with pytest.raises(u.UnitConversionError):
        PhaseParams(shift_range_arcsec=5 * u.m)


def test_records_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BINNED.shift_range_arcsec = (1.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SyntheticParams().interpolate = False


def test_replace_revalidates_and_leaves_original():
    wide = dataclasses.replace(BINNED, shift_range_arcsec=(200.0, 200.0))
    assert wide.shift_range_arcsec == (200.0, 200.0)
    assert BINNED.shift_range_arcsec == (150.0, 150.0)
    with pytest.raises(ValueError, match="min_overlap_fraction"):
        dataclasses.replace(ONE_MAP, min_overlap_fraction=0.0)


@pytest.mark.parametrize("record", [PhaseParams(), BINNED, SYNTHETIC_RASTER, SyntheticParams(600.0, False)])
def test_pickle_round_trip(record):
    clone = pickle.loads(pickle.dumps(record))
    assert clone == record
    assert type(clone) is type(record)


def test_angle_pairs_accept_quantities_and_pairs_of_them():
    assert PhaseParams(roll_range_deg=(-30 * u.arcmin, 1 * u.deg)).roll_range_deg == (-0.5, 1.0)
    assert PhaseParams(roll_range_deg=[-1, 2] * u.deg).roll_range_deg == (-1.0, 2.0)
    assert PhaseParams(shift_range_arcsec=(1 * u.arcmin, 30 * u.arcsec)).shift_range_arcsec == (60.0, 30.0)
