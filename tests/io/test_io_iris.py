"""IRIS L2 rasters and slit-jaw images: real files from irispy-lmsal 0.5.0 (see tests/data/iris/README.md).

The files were shrunk x0.1 by irispy's test-data script without updating CDELT, so most tests read them
with ``repair_plate_scale=True``; the tests of the reading rules that do not depend on the plate scale
read them as they are and expect the plate-scale warning.
"""

import re
import warnings
from dataclasses import replace
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import sunpy.data.test
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from scipy import ndimage
from sunpy.coordinates import get_earth

from coalign import (
    BINNED,
    ONE_MAP,
    SYNTHETIC_RASTER,
    CoalignWarning,
    TimeCoverageError,
    Transform,
    WCSError,
    apply_transform,
    grid_from_wcs,
    one_map_phase,
    three_phase_alignment,
    write_corrected,
)
from coalign.io.iris import (
    _inconsistent,
    _native_lengths,
    integrate_spectra,
    iris_column_times,
    iris_windows,
    read_iris_raster,
    read_iris_sji,
    repair_resampled_header,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "iris"
RASTER = DATA / "iris_l2_20140329_140938_3860258481_raster_t000_r00000.fits"
SJI = DATA / "iris_l2_20140329_140938_3860258481_SJI_2832_t000.fits"
SJI_SNS = DATA / "iris_l2_20210905_001833_3620258102_SJI_2832_t000_deconvolved.fits"
WINDOWS = [
    "C II 1336",
    "1343",
    "Fe XII 1349",
    "O I 1356",
    "Si IV 1403",
    "2832",
    "2826",
    "2814",
    "Mg II k 2796",
]
PLATE_SCALE = "repair_plate_scale=True"
#: Frames of the SJI 2832 file whose auxiliary rows were interpolated through missing exposures.
BAD_POINTING = r"frames \[6, 7\] have no valid pointing"
#: Native (full-resolution) lengths of the 2014 files: 1094 slit pixels, 1102 SJI columns.
NATIVE_Y, NATIVE_X = 1094, 1102
#: The 8-step raster is 16" wide: a bare population search from zero shift can stop in a side lobe
#: (measured -2.9 raster steps for one injection below); the FFT strategy scores every shift first.
STRATEGY = "fft"


def _raster(window="2832", path=RASTER, **kwargs):
    return read_iris_raster(path, window, repair_plate_scale=True, **kwargs)


def _sji(path=SJI, **kwargs):
    if path == SJI:
        with pytest.warns(CoalignWarning, match=BAD_POINTING):
            return read_iris_sji(path, repair_plate_scale=True, **kwargs)
    return read_iris_sji(path, repair_plate_scale=True, **kwargs)


def _stamp(filename: str) -> Time:
    """Time stamp of an IRIS level-1 file name, ``iris20140329_14094300_fuv.fits`` (mid-exposure)."""
    day, clock = re.search(r"iris(\d{8})_(\d{8})_", filename).groups()
    return Time(
        f"{day[:4]}-{day[4:6]}-{day[6:]}T{clock[:2]}:{clock[2:4]}:{clock[4:6]}.{clock[6:]}", scale="utc"
    )


def _arcsec_world(wcs, *pixels):
    return np.array(wcs.pixel_to_world_values(*pixels)) * 3600


def _copy_with(tmp_path, source, edit, name="edited.fits"):
    """A copy of a vendored file with ``edit(hdul)`` applied (the original is never touched).

    Untouched HDUs are copied as raw bytes: the raster's ASCII table declares 7 fields but its rows hold
    9, which astropy cannot re-encode once the table is read.
    """
    with fits.open(source) as hdul:
        edit(hdul)
        hdul.writeto(tmp_path / name)
    return tmp_path / name


# --- windows -------------------------------------------------------------------------------------------


def test_windows_are_listed_from_tdesc():
    assert iris_windows(RASTER) == WINDOWS
    assert iris_windows(SJI) == ["SJI_2832"]


def test_window_by_index_name_and_prefix():
    by_name, _ = _raster("Si IV 1403")
    by_index, _ = _raster(4)
    by_prefix, _ = _raster("si iv")
    np.testing.assert_array_equal(by_name.data, by_index.data)
    np.testing.assert_array_equal(by_name.data, by_prefix.data)
    assert by_name.meta["extname"] == "Si IV 1403"
    assert by_name.meta["detector"] == "FUV2"
    assert by_name.meta["wavelnth"] == pytest.approx(1402.77001953)


@pytest.mark.parametrize(
    ("window", "message"),
    [("Ne VIII", "does not exist"), ("28", "is ambiguous"), (9, "out of range")],
)
def test_unknown_window_lists_the_windows(window, message):
    with pytest.raises(KeyError, match=message) as error:
        read_iris_raster(RASTER, window)
    assert "Mg II k 2796" in str(error.value) and RASTER.name in str(error.value)


def test_wrong_file_kinds_are_refused(tmp_path):
    with pytest.raises(WCSError, match="read_iris_sji"):
        read_iris_raster(SJI)
    with pytest.raises(WCSError, match="read_iris_raster"):
        read_iris_sji(RASTER)

    def sit_and_stare(hdul):
        for hdu in hdul[1:-2]:
            hdu.header["CDELT3"] = 0.0

    with pytest.raises(WCSError, match="sit-and-stare"):
        read_iris_raster(_copy_with(tmp_path, RASTER, sit_and_stare), "Si IV")


# --- times ---------------------------------------------------------------------------------------------


def test_step_times_match_the_header_and_the_level1_file_names():
    _, times = _raster("Si IV 1403")
    with fits.open(RASTER) as hdul:
        primary, table = hdul[0].header, hdul[-1].data
    assert times.size == 8 == primary["NRASTERP"]
    steps = np.diff(times.unix)
    assert np.all(steps > 0)
    assert steps.mean() == pytest.approx(primary["STEPT_AV"], abs=0.01)
    start, end = Time(primary["STARTOBS"]), Time(primary["ENDOBS"])
    assert start < times[0] and times[-1] < end
    # Exposure starts: the first is DATE_OBS, the last DATE_END (to the header's 0.1 s rounding).
    exposure = float(primary["EXPTIME"])
    assert abs((times[0] - exposure / 2 * u.s - Time(primary["DATE_OBS"])).to_value(u.s)) < 0.01
    assert abs((times[-1] - exposure / 2 * u.s - Time(primary["DATE_END"])).to_value(u.s)) < 0.1
    # Mid-exposure times are the stamps of the level-1 FUV exposures the raster was made from.
    stamps = Time([_stamp(name) for name in table["FUVfilename"]])
    np.testing.assert_allclose((times - stamps).to_value(u.s), 0, atol=0.01)
    np.testing.assert_allclose((iris_column_times(RASTER, "Si IV") - times).to_value(u.s), 0, atol=1e-6)


def test_nuv_window_uses_the_nuv_exposures():
    _, times = _raster("2832")
    with fits.open(RASTER) as hdul:
        stamps = Time([_stamp(name) for name in hdul[-1].data["NUVfilename"]])
    np.testing.assert_allclose((times - stamps).to_value(u.s), 0, atol=0.1)


def test_map_dates_and_observer():
    raster, times = _raster("Si IV 1403")
    meta = raster.meta
    begin, end, mid = (Time(meta[key]) for key in ("date-beg", "date-end", "date-avg"))
    assert raster.date == mid
    assert abs((mid - (begin + (end - begin) / 2)).to_value(u.s)) < 0.001
    assert begin < times[0] < times[-1] < end
    earth = get_earth(mid)
    assert meta["hgln_obs"] == pytest.approx(earth.lon.to_value(u.deg), abs=1e-9)
    assert meta["hglt_obs"] == pytest.approx(earth.lat.to_value(u.deg), abs=1e-9)
    assert meta["dsun_obs"] == 1.49372e11  # the file's IRIS-Sun distance
    observer = raster.observer_coordinate  # no warning: the observer is complete
    assert observer.radius.to_value(u.m) == pytest.approx(1.49372e11)
    assert raster.spatial_units == (u.arcsec, u.arcsec)
    assert raster.unit == u.DN


# --- wavelength integration --------------------------------------------------------------------------


def test_integrate_spectra_rules():
    cube = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(integrate_spectra(cube), [6.0, np.nan, 0.0])
    wavelengths = np.array([1400.0, 1401.0, 1402.0]) * u.AA
    narrow = integrate_spectra(cube, wavelengths, (1400.5, 1402.5) * u.AA)
    np.testing.assert_array_equal(narrow, [6.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="selects no pixel"):
        integrate_spectra(cube, wavelengths, (1.0, 2.0) * u.nm)


def test_fill_values_and_infinities_are_missing(tmp_path):
    def edit(hdul):
        cube = hdul[6].data  # window "2832": (steps, y, lambda)
        cube[2, 30, :] = -200.0  # a spectrum that is all fill value
        cube[3, 31, :5] = -200.0  # partly missing
        cube[3, 31, 5] = np.inf  # a saturated sample
        cube[4, 32, :] = 0.0  # zero is data, not missing

    path = _copy_with(tmp_path, RASTER, edit)
    with pytest.warns(CoalignWarning, match=PLATE_SCALE):
        raster, _ = read_iris_raster(path, "2832")
    with fits.open(path) as hdul:
        spectrum = hdul[6].data[3, 31].astype(float)
    assert np.isnan(raster.data[30, 2])
    valid = spectrum[np.isfinite(spectrum) & (spectrum != -200.0)]
    assert 0 < valid.size < spectrum.size - 6  # the window's own edge sample is a fill value too
    assert raster.data[31, 3] == pytest.approx(valid.mean() * spectrum.size, rel=1e-12)
    assert raster.data[32, 4] == 0.0
    # Rows whose every spectrum is the fill value are NaN, never 0 or -200 * n.
    with fits.open(RASTER) as hdul:
        all_fill = np.all(hdul[6].data == -200.0, axis=(0, 2))
    assert all_fill.sum() >= 5 and np.isnan(raster.data[all_fill]).all()


def test_repair_also_masks_the_blended_fill_margin():
    with pytest.warns(CoalignWarning, match=PLATE_SCALE):
        raw, _ = read_iris_raster(RASTER, "2832")
    repaired, _ = _raster("2832")
    # Row 103 blends the fill value (-200 x 12 samples) with data in the resampled file.
    assert np.all(raw.data[103] < -2000)
    assert np.isnan(repaired.data[103]).all()
    assert np.isfinite(repaired.data[:100]).all()


def test_wavelength_range_integrates_a_part_of_the_window():
    full, _ = _raster("Si IV 1403")
    line, _ = _raster("Si IV 1403", wavelength_range=(1402.5, 1403.1) * u.AA)
    assert np.nanmedian(line.data / full.data) < 0.9
    with pytest.raises(ValueError, match="selects no pixel"):
        _raster("Si IV 1403", wavelength_range=(1300, 1301) * u.AA)


# --- WCS -----------------------------------------------------------------------------------------------


def test_pc_block_is_copied_exactly_and_world_coordinates_match_the_3d_wcs():
    with pytest.warns(CoalignWarning, match=PLATE_SCALE):
        raster, _ = read_iris_raster(RASTER, "Si IV 1403")
    with fits.open(RASTER) as hdul:
        header = hdul[5].header.copy()
    meta = raster.meta
    # FITS axes 3 (HPLN) and 2 (HPLT) become 1 and 2; non-square pixels, so PC2_3 != -PC3_2.
    assert (meta["pc1_1"], meta["pc1_2"]) == (header["PC3_3"], header["PC3_2"])
    assert (meta["pc2_1"], meta["pc2_2"]) == (header["PC2_3"], header["PC2_2"])
    assert (meta["cdelt1"], meta["cdelt2"]) == (header["CDELT3"], header["CDELT2"])
    assert (meta["crpix1"], meta["crpix2"], meta["crval1"]) == (
        header["CRPIX3"],
        header["CRPIX2"],
        header["CRVAL3"],
    )
    cube = WCS(header)
    y, x = np.mgrid[0:109:12, 0:8:3]
    got = _arcsec_world(raster.wcs, x, y)
    want = _arcsec_world(cube, np.zeros_like(x), y, x)[[2, 1]]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_repaired_raster_maps_each_pixel_to_its_native_slit_pixel():
    raster, _ = _raster("Si IV 1403")
    with fits.open(RASTER) as hdul:
        native = hdul[5].header.copy()
    for axis in (1, 2):  # the resampling multiplied CRPIX by 0.1 along lambda and y only
        native[f"CRPIX{axis}"] = native[f"CRPIX{axis}"] / 0.1
    f = (NATIVE_Y - 1) / (109 - 1)
    assert raster.meta["cdelt2"] == pytest.approx(0.16635 * f, rel=1e-12)
    assert raster.meta["crpix2"] == pytest.approx(55.0)  # (109 + 1) / 2: the slit centre stays the centre
    y, x = np.mgrid[0:109:9, 0:8]
    got = _arcsec_world(raster.wcs, x, y)
    want = _arcsec_world(WCS(native), np.zeros_like(x), y * f, x)[[2, 1]]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # The step positions agree with the per-exposure pointing of the auxiliary table (to 0.1").
    with fits.open(RASTER) as hdul:
        aux, columns = hdul[-2].data, hdul[-2].header
    centre = _arcsec_world(raster.wcs, np.arange(8), np.full(8, 54.0))
    np.testing.assert_allclose(centre[0], aux[:, columns["XCENIX"]], atol=0.1)
    np.testing.assert_allclose(centre[1], aux[:, columns["YCENIX"]], atol=0.1)


def test_resampled_header_is_detected_and_real_headers_are_not():
    with fits.open(RASTER) as hdul:
        primary, window = hdul[0].header, hdul[5].header
    assert _inconsistent(_native_lengths({2: primary["FOVY"]}, window), window) == {2: NATIVE_Y}
    # A real full-resolution SJI header (shipped with sunpy): NAXIS * CDELT = FOV, nothing to repair.
    real = fits.Header.fromtextfile(
        sunpy.data.test.get_test_filepath("iris_l2_20130801_074720_4040000014_SJI_1400_t000.header")
    )
    native = _native_lengths({1: real["FOVX"], 2: real["FOVY"]}, real)
    assert native == {1: real["NAXIS1"], 2: real["NAXIS2"]}
    assert _inconsistent(native, real) == {}
    assert repair_resampled_header(real, native) == real


def test_repair_model_is_scipy_zoom_and_not_fov_over_n():
    """Shrink a native WCS grid as irispy did (zoom 0.1, CRPIX x 0.1) and check the repaired header."""
    native_n, cdelt, native_crpix = NATIVE_X, 0.16635, (NATIVE_X + 1) / 2
    header = fits.Header({"NAXIS": 1, "NAXIS1": native_n, "CDELT1": cdelt, "CRPIX1": native_crpix})
    # The field is its own native (0-based) pixel index, so the zoomed values say where each pixel sampled.
    shrunk = ndimage.zoom(np.arange(native_n, dtype=float), 0.1)
    n = shrunk.size
    header["NAXIS1"], header["CRPIX1"] = n, native_crpix * 0.1  # what irispy's compress.py wrote

    def native_pixel(cdelt1, crpix1):
        """0-based native pixel that a header places at each 0-based shrunk pixel."""
        return cdelt1 * (np.arange(n) + 1 - crpix1) / cdelt + native_crpix - 1

    repaired = repair_resampled_header(header, {1: native_n})
    np.testing.assert_allclose(native_pixel(repaired["CDELT1"], repaired["CRPIX1"]), shrunk, atol=1e-6)
    # CDELT = FOV / n with CRPIX at the centre (tools/make_sample_data.py) is off by 0.45 pixel at the edges.
    fov_over_n = native_pixel(native_n * cdelt / n, (n + 1) / 2)
    assert 4.0 < np.abs(fov_over_n - shrunk).max() < 5.0  # native pixels: 0.40-0.50 shrunk pixel


def test_aux_times_prove_the_zoom_kept_the_end_pixels():
    """The aux table of the SJI 2832 file was zoomed with its cube: rows are 179/17 native rows apart."""
    with fits.open(SJI) as hdul:
        time = hdul[1].data[:, hdul[1].header["TIME"]]
        native_rows, cadence = len(hdul[2].data), hdul[0].header["CADPL_AV"]
    spacing = np.diff(time) / cadence
    np.testing.assert_allclose(spacing, (native_rows - 1) / (time.size - 1), rtol=1e-3)
    assert abs(spacing.mean() - native_rows / time.size) > 0.5  # not FOV / N (10 rows)


# --- slit-jaw images ---------------------------------------------------------------------------------


def test_sji_frames_times_and_pointing():
    frames = _sji()
    with fits.open(SJI) as hdul:
        primary, aux, columns, table = hdul[0].header, hdul[1].data, hdul[1].header, hdul[2].data
    assert len(frames) == primary["NAXIS3"] == 18
    mids = Time([m.date for m in frames])
    assert np.all(np.diff(mids.unix) > 0)
    assert Time(primary["STARTOBS"]) < mids[0] and mids[-1] < Time(primary["ENDOBS"])
    assert Time(frames[0].meta["date-beg"]) == Time(primary["DATE_OBS"])
    assert abs((Time(frames[-1].meta["date-beg"]) - Time(primary["DATE_END"])).to_value(u.s)) < 0.001
    # Frames 0 and 17 are native exposures 0 and 179: their mid times are those level-1 stamps.
    assert abs((mids[0] - _stamp(table["SJIfilename"][0])).to_value(u.s)) < 0.01
    assert abs((mids[-1] - _stamp(table["SJIfilename"][-1])).to_value(u.s)) < 0.01
    # Per-frame pointing from the aux table: IRIS tracks solar rotation, ~30" over the sequence.
    crval1 = np.array([m.meta["crval1"] for m in frames])
    good = np.array([k not in (6, 7) for k in range(18)])
    np.testing.assert_allclose(crval1[good], aux[good, columns["XCENIX"]], atol=1e-9)
    assert np.ptp(crval1) > 25 and np.all(np.diff(crval1) > 0)
    pc12 = np.array([m.meta["pc1_2"] for m in frames])
    ratio = ((NATIVE_Y - 1) / 108) / ((NATIVE_X - 1) / 109)  # the repair's f_y / f_x
    np.testing.assert_allclose(pc12[good], aux[good, columns["PC1_2IX"]] * ratio, rtol=1e-12)
    assert frames[0].scale[0].to_value(u.arcsec / u.pix) == pytest.approx(0.16635 * 1101 / 109)
    assert frames[0].reference_pixel.x.to_value(u.pix) == pytest.approx((110 - 1) / 2)
    for frame in frames:
        assert not np.any(frame.data == -200.0) and np.isnan(frame.data).any()
        assert frame.meta["hgln_obs"] == pytest.approx(0, abs=1e-9)


def test_sji_sit_and_stare_file_has_valid_pointing_everywhere():
    frames = _sji(SJI_SNS)  # no warning: every aux row is valid
    assert len(frames) == 10
    assert np.all(np.diff(Time([m.date for m in frames]).unix) > 1800)
    assert frames[0].meta["crval1"] == pytest.approx(-53.3422, abs=1e-4)
    assert frames[-1].meta["crval1"] == pytest.approx(-11.4457, abs=1e-4)


def test_sji_frame_selection():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = read_iris_sji(SJI, frames=slice(0, 3), repair_plate_scale=True)
    assert [m.meta["frame"] for m in frames] == [0, 1, 2]


def test_sji_plate_scale_warning_names_the_fix():
    with pytest.warns(CoalignWarning, match="1102 native pixels.*repair_plate_scale=True"):
        frames = read_iris_sji(SJI, frames=[0])
    assert frames[0].scale[0].to_value(u.arcsec / u.pix) == pytest.approx(0.16635)


def test_sji_with_an_aux_table_not_resampled_with_the_cube(tmp_path):
    """As irispy's SJI 1400 test file: 54 frames, 540 aux rows; frame k is aux row k * 539 / 53."""
    with fits.open(SJI) as hdul:
        aux = hdul[1].data

    def densify(hdul):
        rows = np.linspace(0, aux.shape[0] - 1, 10 * aux.shape[0])
        index = np.arange(aux.shape[0])
        hdul[1].data = np.stack([np.interp(rows, index, column) for column in aux.T], axis=1)

    path = _copy_with(tmp_path, SJI, densify)
    with (
        pytest.warns(CoalignWarning, match=PLATE_SCALE),
        pytest.raises(TimeCoverageError, match=r"180 rows for 18 frames.*repair_plate_scale=True"),
    ):
        read_iris_sji(path, frames=[0])
    # Rows interpolated between a valid and a garbage row are garbage too: frame 8 joins 6 and 7.
    with pytest.warns(CoalignWarning, match=r"frames \[6, 7, 8\] have no valid pointing"):
        dense = read_iris_sji(path, repair_plate_scale=True)
    original = _sji()
    starts = [Time([m.meta["date-beg"] for m in maps]) for maps in (dense, original)]
    np.testing.assert_allclose((starts[0] - starts[1]).to_value(u.s), 0, atol=0.002)  # ms-rounded strings


# --- write_corrected ------------------------------------------------------------------------------------


def _sji_as_written(path, bad_pointing: bool):
    """Frames of an SJI file with the WCS as written (no plate-scale repair)."""
    with pytest.warns(CoalignWarning, match=PLATE_SCALE):
        if not bad_pointing:
            return read_iris_sji(path)
        with pytest.warns(CoalignWarning, match=BAD_POINTING):
            return read_iris_sji(path)


def _pointing_columns(hdul) -> list[int]:
    aux = hdul[-2].header
    return [aux["XCENIX"], aux["YCENIX"]]


def _assert_only_the_pointing_columns_changed(src, dst):
    """Data bytes of every HDU identical, except the XCENIX/YCENIX columns of the auxiliary extension."""
    assert [type(h) for h in src] == [type(h) for h in dst]
    aux = len(src) - 2
    for index, (a, b) in enumerate(zip(src, dst, strict=True)):
        if index != aux:
            assert (a.data is None and b.data is None) or a.data.tobytes() == b.data.tobytes()
    a, b = src[aux].data, dst[aux].data
    assert (a.dtype, a.shape) == (b.dtype, b.shape)
    others = np.delete(np.arange(a.shape[1]), _pointing_columns(src))
    assert a[:, others].tobytes() == b[:, others].tobytes()


def _without(header, *keys) -> fits.Header:
    out = header.copy()
    for key in keys:
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


def _pointing(hdul) -> np.ndarray:
    """``(rows, 2)`` XCENIX, YCENIX of the auxiliary extension (arcsec)."""
    return hdul[-2].data[:, _pointing_columns(hdul)].astype(float)


def _centre(hdul) -> np.ndarray:
    return np.array([hdul[0].header["XCEN"], hdul[0].header["YCEN"]], float)


def test_write_corrected_round_trip_on_the_raster(tmp_path):
    truth = Transform(4.2, -3.1, 1.01, 0.99)
    out = write_corrected(RASTER, truth, tmp_path / "corrected.fits", references=[SJI.name])
    with fits.open(RASTER) as src, fits.open(out) as dst:
        _assert_only_the_pointing_columns_changed(src, dst)
        for a, b in zip(src[1:-2], dst[1:-2], strict=True):
            assert b.header["CRVAL3"] == pytest.approx(a.header["CRVAL3"] + 4.2, abs=1e-9)
            assert b.header["CRVAL2"] == pytest.approx(a.header["CRVAL2"] - 3.1, abs=1e-9)
            assert b.header["CDELT3"] == pytest.approx(a.header["CDELT3"] * 1.01, rel=1e-15)
            assert b.header["CDELT2"] == pytest.approx(a.header["CDELT2"] * 0.99, rel=1e-15)
            for key in ("CRVAL1", "CDELT1", "CRPIX1", "CRPIX2", "CRPIX3", "PC2_3", "PC3_2", "PC2_2", "PC3_3"):
                assert b.header[key] == a.header[key]
            assert b.header["PRSTEP1"] == "SPATIAL-COORDINATE-CORRECTION"
        assert _without(src[0].header, "XCEN", "YCEN", "FOVX", "FOVY", "HISTORY") == _without(
            dst[0].header, "XCEN", "YCEN", "FOVX", "FOVY", "HISTORY"
        )
        assert dst[0].header["FOVX"] == pytest.approx(src[0].header["FOVX"] * 1.01, rel=1e-15)  # the steps
        assert dst[0].header["FOVY"] == pytest.approx(src[0].header["FOVY"] * 0.99, rel=1e-15)  # the slit
        assert _without(src[-2].header, "HISTORY") == _without(dst[-2].header, "HISTORY")
    y, x = np.mgrid[0:109:11, 0:8:2]
    for window in WINDOWS:
        with pytest.warns(CoalignWarning, match=PLATE_SCALE):
            corrected, _ = read_iris_raster(out, window)
        with pytest.warns(CoalignWarning, match=PLATE_SCALE):
            original, _ = read_iris_raster(RASTER, window)
        expected = apply_transform(original, truth)
        np.testing.assert_allclose(
            _arcsec_world(corrected.wcs, x, y), _arcsec_world(expected.wcs, x, y), rtol=0, atol=1e-6
        )
        np.testing.assert_array_equal(corrected.data, original.data)


def test_write_corrected_sji_keeps_the_correction_on_every_frame(tmp_path):
    out = write_corrected(SJI_SNS, Transform(5.0, -2.0), tmp_path / "sji.fits")
    before, after = _sji(SJI_SNS), _sji(out)
    for a, b in zip(before, after, strict=True):
        assert b.meta["crval1"] == pytest.approx(a.meta["crval1"] + 5.0, abs=1e-9)
        assert b.meta["crval2"] == pytest.approx(a.meta["crval2"] - 2.0, abs=1e-9)
        assert b.date == a.date


@pytest.mark.parametrize("path", [SJI, SJI_SNS], ids=["2014", "2021-sit-and-stare"])
@pytest.mark.parametrize(
    "truth", [Transform(5.0, -2.0), Transform(-7.5, 3.25, 1.02, 0.985)], ids=["shift", "shift-and-scale"]
)
def test_write_corrected_moves_the_sji_frame_pointing_with_the_wcs(tmp_path, path, truth):
    out = write_corrected(path, truth, tmp_path / "sji.fits")
    with fits.open(path) as src, fits.open(out) as dst:
        _assert_only_the_pointing_columns_changed(src, dst)
        moved, centre = _pointing(dst) - _pointing(src), _centre(dst) - _centre(src)
        assert (
            src[0].header["XCEN"] == src[0].header["CRVAL1"]
            and src[0].header["YCEN"] == src[0].header["CRVAL2"]
        )
        history = "\n".join(dst[-2].header["HISTORY"])
        assert "XCEN/YCEN and XCENIX/YCENIX" in history and f"dx={truth.dx:+.4f}" in history
        assert "XCENIX/YCENIX" in "\n".join(dst[0].header["HISTORY"])
    # XCEN, YCEN = CRVAL1, CRVAL2 sit on CRPIX, which the correction moves by exactly (dx, dy) whatever the
    # scale; every frame's XCENIX, YCENIX moves with them.
    np.testing.assert_allclose(centre, [truth.dx, truth.dy], rtol=0, atol=1e-9)
    np.testing.assert_allclose(moved, np.tile([truth.dx, truth.dy], (len(moved), 1)), rtol=0, atol=1e-9)
    # Re-read, every frame has the input frame's WCS corrected by the transform, and the same data.
    before, after = (_sji_as_written(p, bad_pointing=path == SJI) for p in (path, out))
    ny, nx = before[0].data.shape
    y, x = np.mgrid[0:ny:6, 0:nx:6]
    for a, b in zip(before, after, strict=True):
        expected = apply_transform(a, truth)
        np.testing.assert_allclose(
            _arcsec_world(b.wcs, x, y), _arcsec_world(expected.wcs, x, y), rtol=0, atol=1e-6
        )
        np.testing.assert_array_equal(b.data, a.data)
        assert b.date == a.date


def test_sji_pointing_off_the_reference_pixel_moves_with_the_scale(tmp_path):
    """Were XCEN/YCEN another pixel than CRPIX, they move as that pixel: shift plus scale about CRPIX."""
    pixel = (30.0, 8.0)  # FITS (1-based) pixel, far from CRPIX = (18.45, 20.05)

    def off_centre(hdul):
        lon, lat = WCS(hdul[0].header, naxis=2).wcs_pix2world([pixel[0]], [pixel[1]], 1)
        hdul[0].header["XCEN"], hdul[0].header["YCEN"] = lon[0] * 3600, lat[0] * 3600

    source = _copy_with(tmp_path, SJI_SNS, off_centre)
    truth = Transform(3.0, -4.0, 1.05, 0.95)
    out = write_corrected(source, truth, tmp_path / "sji.fits")
    with fits.open(source) as src, fits.open(out) as dst:
        _assert_only_the_pointing_columns_changed(src, dst)
        lon, lat = WCS(dst[0].header, naxis=2).wcs_pix2world([pixel[0]], [pixel[1]], 1)
        np.testing.assert_allclose(_centre(dst), [lon[0] * 3600, lat[0] * 3600], rtol=0, atol=1e-6)
        delta = _centre(dst) - _centre(src)
        moved = _pointing(dst) - _pointing(src)
    # (s - 1) * CDELT * (p - CRPIX): about +0.10" in x and -0.10" in y besides the shift.
    assert abs(delta[0] - truth.dx) > 0.05 and abs(delta[1] - truth.dy) > 0.05
    np.testing.assert_allclose(moved, np.tile(delta, (len(moved), 1)), rtol=0, atol=1e-9)
    before, after = (_sji_as_written(p, bad_pointing=False) for p in (source, out))
    y, x = np.mgrid[0:40:6, 0:37:6]
    for a, b in zip(before, after, strict=True):
        expected = apply_transform(a, truth)
        np.testing.assert_allclose(
            _arcsec_world(b.wcs, x, y), _arcsec_world(expected.wcs, x, y), rtol=0, atol=1e-6
        )


def test_sji_rows_without_pointing_are_left_alone(tmp_path):
    def drop_row(hdul):
        hdul[-2].data[3, _pointing_columns(hdul)] = 0.0  # a missing exposure: no pointing

    source = _copy_with(tmp_path, SJI_SNS, drop_row)
    out = write_corrected(source, Transform(5.0, -2.0), tmp_path / "sji.fits")
    with fits.open(source) as src, fits.open(out) as dst:
        _assert_only_the_pointing_columns_changed(src, dst)
        moved = _pointing(dst) - _pointing(src)
        assert np.all(_pointing(dst)[3] == 0.0)
        assert "(HDU 1, 9 rows)" in "\n".join(dst[-2].header["HISTORY"])
    np.testing.assert_allclose(np.delete(moved, 3, axis=0), np.tile([5.0, -2.0], (9, 1)), rtol=0, atol=1e-9)


def test_write_corrected_moves_each_raster_step_pointing_as_its_pixel(tmp_path):
    truth = Transform(4.2, -3.1, 1.01, 0.99)
    out = write_corrected(RASTER, truth, tmp_path / "corrected.fits")
    with fits.open(RASTER) as src, fits.open(out) as dst:
        _assert_only_the_pointing_columns_changed(src, dst)
        before, after = (WCS(h[1].header).sub(["longitude", "latitude"]) for h in (src, dst))
        old, new = _pointing(src), _pointing(dst)
        centre = _centre(dst) - _centre(src)
        cdelt3 = src[1].header["CDELT3"]
        assert src[0].header["XCEN"] == src[1].header["CRVAL3"]
        assert "as their pixels of HDU 1" in "\n".join(dst[0].header["HISTORY"])
    steps, rows = before.world_to_pixel_values(old[:, 0] / 3600, old[:, 1] / 3600)
    np.testing.assert_allclose(steps, np.arange(8), atol=0.05)  # each row is one slit position
    expected = np.array(after.pixel_to_world_values(steps, rows)).T * 3600
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-6)
    # The x scale spreads the slit positions about CRPIX3 = 4: 1 % of a 2" step per step.
    moved = new[:, 0] - old[:, 0]
    np.testing.assert_allclose(np.diff(moved), 0.01 * cdelt3 * np.diff(steps), rtol=1e-3)
    assert moved[3] == pytest.approx(truth.dx, abs=2e-4)  # step 4 is CRPIX3 (to the pointing jitter)
    np.testing.assert_allclose(centre, [truth.dx, truth.dy], rtol=0, atol=1e-9)  # XCEN is CRVAL3


def _as_archive_file(hdul):
    """Write the repaired WCS into the SJI cube's header: consistent with its array, as an archive file."""
    header = hdul[0].header
    hdul[0].header = repair_resampled_header(
        header, _native_lengths({1: header["FOVX"], 2: header["FOVY"]}, header)
    )


def test_write_corrected_scales_the_field_of_view_with_the_plate_scale(tmp_path):
    """FOVX/FOVY follow sx/sy: a 6 % scale correction does not make the file look resampled on re-reading."""
    source = _copy_with(tmp_path, SJI_SNS, _as_archive_file)
    truth = Transform(3.0, -2.0, 1.06, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoalignWarning)
        before = read_iris_sji(source)
        out = write_corrected(source, truth, tmp_path / "sji.fits")
        after = read_iris_sji(out)  # no "looks resampled" warning
    with fits.open(source) as src, fits.open(out) as dst:
        _assert_only_the_pointing_columns_changed(src, dst)
        assert dst[0].header["FOVX"] == pytest.approx(src[0].header["FOVX"] * 1.06, rel=1e-15)
        assert dst[0].header["FOVY"] == src[0].header["FOVY"]  # sy = 1: left alone
        history = list(dst[0].header["HISTORY"])
        assert "coalign: FOVX x 1.060000 with the plate-scale correction" in history
        assert not any("FOVY" in line for line in history)
    ny, nx = before[0].data.shape
    y, x = np.mgrid[0:ny:6, 0:nx:6]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(b.data, a.data)
        np.testing.assert_allclose(
            _arcsec_world(b.wcs, x, y), _arcsec_world(apply_transform(a, truth).wcs, x, y), rtol=0, atol=1e-6
        )
    # The shrunk file itself, read with the repair, is repaired for its true native size after the correction.
    out = write_corrected(SJI_SNS, truth, tmp_path / "shrunk.fits")
    for a, b in zip(_sji(SJI_SNS), _sji(out), strict=True):
        assert b.meta["cdelt1"] == pytest.approx(a.meta["cdelt1"] * 1.06, rel=1e-12)
        assert b.meta["cdelt2"] == pytest.approx(a.meta["cdelt2"], rel=1e-12)


def test_an_integer_auxiliary_extension_is_refused_before_writing(tmp_path):
    def to_integers(hdul):
        hdul[-2].data = np.round(hdul[-2].data).astype(np.int32)

    source = _copy_with(tmp_path, SJI_SNS, to_integers)
    with pytest.raises(WCSError, match=r"holds int32 values.*rewrite it as unscaled floating point"):
        write_corrected(source, Transform(5.0, -2.0), tmp_path / "sji.fits")
    assert not (tmp_path / "sji.fits").exists()


def test_files_that_are_not_iris_keep_their_auxiliary_extension(tmp_path):
    def other_telescope(hdul):
        hdul[0].header["TELESCOP"] = "OTHER"

    source = _copy_with(tmp_path, SJI_SNS, other_telescope)
    out = write_corrected(source, Transform(5.0, -2.0), tmp_path / "sji.fits")
    with fits.open(source) as src, fits.open(out) as dst:
        assert src[-2].data.tobytes() == dst[-2].data.tobytes()
        assert src[0].header["XCEN"] == dst[0].header["XCEN"]


# --- through the pipeline -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raster_and_frames():
    raster, times = _raster("2832")
    with pytest.warns(CoalignWarning, match=BAD_POINTING):
        frames = read_iris_sji(SJI, repair_plate_scale=True)
    return raster, times, frames


def _pixels(raster, dx, dy):
    return grid_from_wcs(raster.wcs).shift_in_pixels(Transform(dx, dy))


def test_raster_and_sji_are_coaligned_by_the_iris_pipeline(raster_and_frames):
    raster, _, frames = raster_and_frames
    found = one_map_phase(raster, frames[0], replace(ONE_MAP, strategy=STRATEGY)).transform
    # Level 2 IRIS data are coaligned (raster to SJI) to about a pixel; measured (-0.28, 0.00) pixel.
    assert max(abs(p) for p in _pixels(raster, found.dx, found.dy)) <= 1.0, found


@pytest.mark.parametrize(
    ("injected", "bound_x"),
    [
        ((4 * 1.99544, 5 * 1.68352), 0.15),  # whole pixels: measured (0.06, 0.06)
        ((3.0, -2.0), 0.4),  # fractional steps: the bilinear resampling locks to pixels, measured 0.33
        ((-7.3, 5.1), 0.4),  # measured (0.28, 0.05)
        ((10.0, 8.0), 0.4),  # measured (-0.06, -0.04)
    ],
)
def test_one_map_phase_recovers_an_injected_error(raster_and_frames, injected, bound_x):
    """Relative recovery: the correction of the injected raster minus that of the original one."""
    raster, _, frames = raster_and_frames
    params = replace(ONE_MAP, strategy=STRATEGY)
    baseline = one_map_phase(raster, frames[0], params).transform
    found = one_map_phase(apply_transform(raster, Transform(*injected)), frames[0], params).transform
    error = _pixels(raster, found.dx - baseline.dx + injected[0], found.dy - baseline.dy + injected[1])
    assert abs(error[0]) <= bound_x and abs(error[1]) <= 0.2, (found, baseline, error)


def test_three_phase_alignment_against_the_sji_sequence(raster_and_frames):
    raster, times, frames = raster_and_frames
    # 8 steps of 2": the x scale is not constrained (a free sx runs to its bound), so fix the scale.
    phases = tuple(
        replace(p, strategy=STRATEGY) for p in (BINNED, ONE_MAP, replace(SYNTHETIC_RASTER, fit_scale=False))
    )
    first = three_phase_alignment(raster, frames[0], frames, column_times=times, phases=phases)
    injected = (-9.0, 7.7)
    bad = apply_transform(raster, Transform(*injected))
    second = three_phase_alignment(bad, frames[0], frames, column_times=times, phases=phases)
    baseline, found = first.transform, second.transform
    error = _pixels(raster, found.dx - baseline.dx + injected[0], found.dy - baseline.dy + injected[1])
    # The difference of two solutions, each with 1-sigma errors of ~0.13-0.16 px in x (a 16" wide target)
    # and ~0.4 px in y: measured (0.40, 0.09) raster pixels.
    sigma = np.hypot(first.phases[-1].sigma[:2], second.phases[-1].sigma[:2])
    assert np.all(np.abs(error) <= 3 * np.abs(_pixels(raster, *sigma))), (found, baseline, error, sigma)
    assert abs(error[0]) <= 0.5 and abs(error[1]) <= 0.2, (found, baseline, error)
