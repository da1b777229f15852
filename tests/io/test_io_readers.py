"""Readers: sample raster times, reference discovery and filters, bad files."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from coalign import EmptySequenceError, TimeCoverageError, WCSError, column_times_of, read_map, read_sequence
from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR, sample_reference_files
from coalign.io.readers import find_reference_files, read_raster


def test_sample_raster_has_one_time_per_column():
    smap, times = read_raster(SAMPLE_RASTER)
    assert times.size == smap.data.shape[1] == 70
    steps = np.diff((times - times[0]).to_value(u.s))
    np.testing.assert_allclose(steps, 150.0)
    assert times[0] == Time(smap.meta["date-obs"])


def test_column_times_of_an_imager_repeats_its_date():
    smap = read_map(sample_reference_files()[0])
    times = column_times_of(smap)
    assert times.size == smap.data.shape[1] and np.all(times == smap.date)


def test_find_reference_files_time_window_channel_and_exclude():
    every = find_reference_files(SAMPLE_REFERENCE_DIR)
    assert len(every) == 26
    dates = [Time(fits.getheader(p)["DATE-OBS"]) for p in every]
    assert dates == sorted(dates)
    window = find_reference_files(SAMPLE_REFERENCE_DIR, start=dates[3], end=dates[6])
    assert window == every[3:7]
    assert find_reference_files(SAMPLE_REFERENCE_DIR, channel="1400") == every
    assert find_reference_files(SAMPLE_REFERENCE_DIR, channel="174") == []
    assert find_reference_files(SAMPLE_REFERENCE_DIR, exclude=(every[0].name[-11:],)) == every[1:]


def test_read_sequence_of_nothing_raises():
    with pytest.raises(EmptySequenceError, match="no reference files were found"):
        read_sequence([])


def test_corrupt_file_raises_naming_it(tmp_path):
    broken = tmp_path / "broken.fits"
    broken.write_bytes(SAMPLE_RASTER.read_bytes()[:5000])
    with pytest.raises(OSError, match=r"broken\.fits"):
        read_map(broken)


def test_file_without_celestial_wcs_raises(tmp_path):
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((8, 8))).writeto(plain)
    with pytest.raises(WCSError, match=r"plain\.fits has no celestial WCS"):
        read_map(plain)


def test_raster_without_column_times_raises():
    with pytest.raises(TimeCoverageError, match="no COLUMN_TIMES extension"):
        column_times_of(sample_reference_files()[0], 110)
