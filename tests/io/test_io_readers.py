"""Readers: sample raster times, reference discovery and filters, bad files."""

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from coalign import EmptySequenceError, TimeCoverageError, WCSError, column_times_of, read_map, read_sequence
from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR, sample_reference_files
from coalign.io.readers import check_sequence_coverage, find_reference_files, read_raster, reference_times


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


def test_file_with_short_data_raises_naming_it(tmp_path):
    """A complete header whose data ends early (an interrupted copy) is caught when the file is read."""
    short = tmp_path / "short.fits"
    whole = (SAMPLE_REFERENCE_DIR / sample_reference_files()[0].name).read_bytes()
    short.write_bytes(whole[: len(whole) - 2 * 2880])
    with pytest.raises(OSError, match=r"short\.fits.*truncated"):
        read_map(short)


def test_edits_of_the_data_never_reach_the_file(tmp_path):
    """The data is mapped from the file copy-on-write: a caller may edit it, the file stays as it was."""
    path = tmp_path / "frame.fits"
    path.write_bytes(sample_reference_files()[0].read_bytes())
    before = path.read_bytes()
    smap = read_map(path)
    expected = fits.getdata(path)
    np.testing.assert_array_equal(smap.data, expected)
    smap.data[:] = -1.0
    del smap
    assert path.read_bytes() == before


def test_running_out_of_file_descriptors_names_the_limit(monkeypatch):
    """Mapped data keeps a descriptor per map: hitting the limit says so instead of blaming the file."""
    import errno

    def no_descriptor_left(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(fits, "open", no_descriptor_left)
    with pytest.raises(OSError, match=r"too many open files.*ulimit -n") as caught:
        read_map(sample_reference_files()[0])
    assert caught.value.errno == errno.EMFILE


def test_file_without_celestial_wcs_raises(tmp_path):
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.ones((8, 8))).writeto(plain)
    with pytest.raises(WCSError, match=r"plain\.fits has no celestial WCS"):
        read_map(plain)


def test_raster_without_column_times_raises():
    with pytest.raises(TimeCoverageError, match="no COLUMN_TIMES extension"):
        column_times_of(sample_reference_files()[0], 110)


# --- file-level time coverage of a reference sequence --------------------------------------------------


def test_reference_times_are_the_file_dates_in_time_order():
    files = sample_reference_files()
    pairs = reference_times(reversed(files))
    assert [path for path, _ in pairs] == files
    assert [time for _, time in pairs] == [Time(fits.getheader(p)["DATE-OBS"]) for p in files]


def test_reference_file_without_date_raises_naming_it(tmp_path):
    undated = tmp_path / "undated.fits"
    fits.PrimaryHDU(np.ones((4, 4))).writeto(undated)
    with pytest.raises(TimeCoverageError, match=r"undated\.fits has no DATE-OBS.*add the keyword"):
        reference_times([undated])


@pytest.mark.parametrize(
    "subset",
    [slice(None), [*range(10), *range(14, 26)]],  # all frames; a 42-minute hole, within 30 min of a frame
    ids=["whole-sequence", "short-hole"],
)
def test_a_covering_sequence_passes(subset):
    _, times = read_raster(SAMPLE_RASTER)
    pairs = reference_times(sample_reference_files())
    chosen = pairs[subset] if isinstance(subset, slice) else [pairs[i] for i in subset]
    assert check_sequence_coverage(times, chosen, target=SAMPLE_RASTER) is None


def _coverage_error(times, pairs, **kwargs) -> str:
    with pytest.raises(TimeCoverageError) as error:
        check_sequence_coverage(times, pairs, target=SAMPLE_RASTER, **kwargs)
    message = str(error.value)
    # Every message names the target and its span, the first and last files, and the fix.
    assert message.startswith(f"reference files do not cover the raster of {SAMPLE_RASTER.name}: ")
    assert f"taken from {times.min().isot} to {times.max().isot}" in message
    assert f"({pairs[0][0].name})" in message and f"({pairs[-1][0].name})" in message
    assert "Add reference files covering" in message and message.endswith("or raise max_time_gap_s")
    return message


def test_a_sequence_entirely_before_the_raster_raises():
    _, times = read_raster(SAMPLE_RASTER)
    pairs = reference_times(sample_reference_files())
    later = times + 1 * u.day
    message = _coverage_error(later, pairs)
    assert (
        f"the 26 reference files span {pairs[0][1].isot} ({pairs[0][0].name}) to {pairs[-1][1].isot}"
        in message
    )
    begins, ends = ((t - pairs[-1][1]).to_value(u.s) for t in (later.min(), later.max()))
    assert (
        f"the whole raster is after the reference files: it begins {begins:.0f} s and ends {ends:.0f} s "
        f"after the last reference file ({pairs[-1][0].name})" in message
    )
    assert f"covering {later.min().isot} to {later.max().isot}, or raise" in message  # the whole raster


def test_a_sequence_ending_too_early_raises_naming_the_uncovered_end():
    _, times = read_raster(SAMPLE_RASTER)
    pairs = reference_times(sample_reference_files()[:10])  # up to 15:25:56; the raster ends at 17:07:38
    message = _coverage_error(times, pairs)
    late = (times.max() - pairs[-1][1]).to_value(u.s)
    assert late == pytest.approx(6102, abs=1)
    assert (
        f"its end is not covered: it ends {late:.0f} s after the last reference file ({pairs[-1][0].name})"
        in message
    )
    assert "start is not covered" not in message
    # The columns farther than 1800 s from 15:25:56 start at 15:57:38 (columns are 150 s apart).
    assert "covering 2014-03-29T15:57:38.344 to 2014-03-29T17:07:38.344" in message
    # Raising the allowed gap (seconds or a Quantity) accepts the same files.
    assert check_sequence_coverage(times, pairs, max_time_gap_s=6110) is None
    assert check_sequence_coverage(times, pairs, max_time_gap_s=2 * u.hour) is None


def test_a_sequence_starting_too_late_or_with_a_hole_raises():
    _, times = read_raster(SAMPLE_RASTER)
    pairs = reference_times(sample_reference_files())
    message = _coverage_error(times, pairs[10:])
    early = (pairs[10][1] - times.min()).to_value(u.s)
    assert f"its start is not covered: it begins {early:.0f} s before the first reference file" in message
    holed = pairs[:5] + pairs[20:]  # 14:43:25 to 17:15:43: the middle columns are > 30 min from any file
    message = _coverage_error(times, holed)
    assert f"not covered between {holed[4][0].name} ({holed[4][1].isot}) and {holed[5][0].name}" in message
    assert "end is not covered" not in message and "start is not covered" not in message


def test_coverage_error_names_the_selection_window():
    _, times = read_raster(SAMPLE_RASTER)
    pairs = reference_times(sample_reference_files()[:3])
    window = (times.min() - 30 * u.min, times.max() + 30 * u.min)
    message = _coverage_error(times, pairs, window=window)
    assert (
        f"widen the time window the files were selected in (now {window[0].isot} to {window[1].isot})"
        in message
    )


def test_coverage_check_refuses_bad_arguments():
    _, times = read_raster(SAMPLE_RASTER)
    with pytest.raises(EmptySequenceError, match="no reference files were given"):
        check_sequence_coverage(times, [])
    with pytest.raises(ValueError, match="max_time_gap_s must be > 0"):
        check_sequence_coverage(times, reference_times(sample_reference_files()), max_time_gap_s=0)


@pytest.mark.parametrize("name", ["aia_171_level1.fits", "EIT/efz20040301.000010_s.fits"])
def test_read_map_gives_the_map_sunpy_reads(name):
    """One read of the file gives sunpy's own map: class, data, WCS, observer and key comments (the AIA
    test file has a BLANK keyword on float data, the EIT one the old SOLAR-X/Y axes)."""
    import sunpy.data.test

    path = Path(sunpy.data.test.rootdir) / name
    ours, theirs = read_map(path), sunpy.map.Map(path)
    assert type(ours) is type(theirs)
    np.testing.assert_array_equal(ours.data, theirs.data)
    assert ours.wcs.wcs.compare(theirs.wcs.wcs)
    assert ours.observer_coordinate.separation_3d(theirs.observer_coordinate).to_value("m") < 1e-3
    assert ours.meta["keycomments"] == theirs.meta["keycomments"]


def test_read_map_history_is_text_and_the_wcs_follows_meta_edits():
    """HISTORY and COMMENT come as newline-joined text (not a view of the header), so the meta hashes and
    sunpy recomputes its cached WCS after an edit of the meta."""
    import sunpy.data.test

    path = Path(sunpy.data.test.rootdir) / "EIT/efz20040301.000010_s.fits"
    smap = read_map(path)
    header = fits.getheader(path)
    assert smap.meta["history"] == "\n".join(header["HISTORY"]) and "\n" in smap.meta["history"]
    assert smap.meta["comment"] == "\n".join(header["COMMENT"])
    crval1 = smap.wcs.wcs.crval[0]
    smap.meta["crval1"] += 36
    assert smap.wcs.wcs.crval[0] == pytest.approx(crval1 + 0.01)


def test_unparsable_card_raises_naming_the_file(tmp_path):
    """A header card whose value cannot be parsed (a string without its closing quote) is an OSError that
    names the file, not an astropy error from deep inside a later stage."""
    path = tmp_path / "garbled.fits"
    raw = bytearray(sample_reference_files()[0].read_bytes())
    start = raw.index(b"TELESCOP=")
    raw[start : start + 80] = b"TELESCOP= 'IRIS".ljust(80)
    path.write_bytes(bytes(raw))
    with pytest.raises(OSError, match=r"garbled\.fits"):
        read_map(path)
