"""SPICE L2: the real headers shipped with sunraster parse (windows, WCS, times), and SPICE-like files built
from those real headers, with data filled in from real solar data and a known pointing error, go through the
whole pipeline and through write_corrected."""

import os
import warnings
from dataclasses import replace

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from coalign import (
    BINNED,
    ONE_MAP,
    SYNTHETIC_RASTER,
    AllNaNError,
    CoalignWarning,
    ShapeError,
    Transform,
    correct_header,
    grid_from_wcs,
    reproject_image,
    three_phase_alignment,
    write_corrected,
)
from coalign.data import sample_reference_files
from coalign.io.spice import read_spice_raster, spice_column_times, spice_windows, variable_keyword_times

sunraster = pytest.importorskip("sunraster", reason="the real SPICE headers ship in sunraster's test data")
DATA = os.path.join(os.path.dirname(sunraster.__file__), "tests", "data")
RASTER = os.path.join(DATA, "solo_L2_spice-n-ras-db_20200602T081733_V01_12583760-000.fits")
SIT = os.path.join(DATA, "solo_L2_spice-n-sit_20200620T235901_V01_16777431-000.fits")
TRUTH = Transform(-25.0, 18.0, 1.02, 0.99)  # the correction the file's header needs
NY, NX, NL = 120, 30, 8


def test_real_raster_header_windows_wcs_and_times():
    assert spice_windows(RASTER) == [
        "WINDOW0_70.51",
        "WINDOW1_76.65",
        "DUMBBELL_UPPER_WINDOW3_97.20",
        "DUMBBELL_LOWER_WINDOW3_97.20",
    ]
    with fits.open(RASTER) as hdul:
        header = hdul[0].header
        times = spice_column_times(header, 30)
        table = variable_keyword_times(hdul, header)
    # PC4_1 = -60.25: later columns are earlier; column 0 ends the raster.
    assert header["PC4_1"] == -60.25
    np.testing.assert_allclose(np.diff((times - times[0]).to_value(u.s)), -60.25, atol=1e-6)
    assert times[-1].isot == "2020-06-02T08:18:03.136"  # DATEREF + XPOSURE / 2
    np.testing.assert_allclose((times - table).to_value(u.s), 0, atol=0.01)
    grid = grid_from_wcs(WCS(_celestial_only(header)))
    # Non-square pixels (4" x 1.098") with a 4.6 deg roll: the matrix is diag(CDELT) PC, not a rotation.
    np.testing.assert_allclose(
        grid.matrix,
        [[4 * 0.996769016587, 4 * -0.0220482247697], [1.098 * 0.2926098423, 1.098 * 0.996769016587]],
        rtol=1e-12,
    )


def test_real_sit_and_stare_header_parses():
    assert len(spice_windows(SIT)) == 2
    with fits.open(SIT) as hdul:
        times = spice_column_times(hdul[0].header, 1)
    assert times.size == 1


def test_header_only_file_has_no_data():
    with pytest.raises(ShapeError, match="header-only"):
        read_spice_raster(RASTER, 0)


def test_unknown_window_lists_the_windows():
    with pytest.raises(KeyError, match=r"WINDOW0_70\.51"):
        read_spice_raster(RASTER, "NE VIII")


def _celestial_only(header):
    h = fits.Header()
    for key in ("CTYPE", "CUNIT", "CDELT", "CRPIX", "CRVAL"):
        for axis in (1, 2):
            h[f"{key}{axis}"] = header[f"{key}{axis}"]
    for i in (1, 2):
        for j in (1, 2):
            h[f"PC{i}_{j}"] = header[f"PC{i}_{j}"]
    return h


def _reference_map(header):
    """A real solar image (IRIS SJI 1400 frame) placed at the raster's pointing, seen by Solar Orbiter."""
    frame = sunpy.map.Map(sample_reference_files()[12])
    meta = dict(frame.meta)
    meta.update(
        {
            "crval1": header["CRVAL1"],
            "crval2": header["CRVAL2"],
            "date-obs": header["DATE-AVG"],
            "dsun_obs": header["DSUN_OBS"],
            "hgln_obs": header["HGLN_OBS"],
            "hglt_obs": header["HGLT_OBS"],
        }
    )
    return sunpy.map.Map(frame.data, meta)


def _spice_like(tmp_path):
    """The real raster header cropped to 120 rows and filled with real data seen through the true pointing."""
    with fits.open(RASTER) as hdul:
        headers = [hdul[i].header.copy() for i in (0, 1)]
        table = hdul["VARIABLE_KEYWORDS"].copy()
    reference = _reference_map(headers[0])
    hdus = []
    for i, header in enumerate(headers):
        header["CRPIX2"], header["CRPIX3"] = (NY + 1) / 2, (NL + 1) / 2
        true_2d = WCS(correct_header(_celestial_only(header), TRUTH))
        true_2d.wcs.dateobs = header["DATE-AVG"]
        true_2d.wcs.aux.hgln_obs, true_2d.wcs.aux.hglt_obs = header["HGLN_OBS"], header["HGLT_OBS"]
        true_2d.wcs.aux.dsun_obs = header["DSUN_OBS"]
        scene = reproject_image(reference.data, reference.wcs, true_2d, (NY, NX))
        profile = np.exp(-0.5 * ((np.arange(NL) - 3.5) / 1.5) ** 2)
        noise = np.random.default_rng(i).normal(scale=0.05 * np.nanstd(scene), size=(NL, NY, NX))
        cube = (profile[:, None, None] * scene[None] + noise)[None].astype(np.float32)
        cube[0, :, 50, 7] = np.nan  # one all-NaN spectrum
        hdu = (fits.PrimaryHDU if i == 0 else fits.ImageHDU)(cube, header)
        hdus.append(hdu)
    path = tmp_path / "solo_L2_spice-like.fits"
    fits.HDUList([*hdus, table]).writeto(path)
    return path, reference


@pytest.mark.parametrize("strategy", ["population", "fft"])
def test_spice_like_file_through_the_pipeline(tmp_path, strategy):
    path, reference = _spice_like(tmp_path)
    raster, times = read_spice_raster(path, "WINDOW1")
    assert raster.data.shape == (NY, NX)
    assert np.isnan(raster.data[50, 7])  # the all-NaN spectrum stays NaN, never 0
    assert np.isfinite(raster.data[49:52, 6:9]).sum() == 8
    with fits.open(path) as hdul:
        np.testing.assert_allclose(
            (times - variable_keyword_times(hdul, hdul[1].header)).to_value(u.s), 0, atol=0.01
        )
    assert Time(raster.meta["date-obs"]) == Time("2020-06-02T08:32:36.879")
    phases = (BINNED, ONE_MAP, replace(SYNTHETIC_RASTER, strategy=strategy))
    found = three_phase_alignment(raster, reference, [reference], column_times=times, phases=phases).transform
    err = grid_from_wcs(raster.wcs).shift_in_pixels(Transform(found.dx - TRUTH.dx, found.dy - TRUTH.dy))
    assert max(abs(e) for e in err) <= 0.25, found
    assert abs(found.sy / TRUTH.sy - 1) <= 0.005, found
    if strategy == "fft":
        assert abs(found.sx / TRUTH.sx - 1) <= 0.005, found
    else:
        # 30 slit steps of 4": the x scale is weakly constrained and the population search stops in a
        # ripple of the flat valley (measured sx = 1.0035 for a true 1.02); see the issue notes.
        assert abs(found.sx / TRUTH.sx - 1) <= 0.02, found


def test_wavelength_range_and_all_nan_window(tmp_path):
    path, _ = _spice_like(tmp_path)
    with fits.open(path) as hdul:
        header = hdul[1].header
    centre = header["CRVAL3"] * u.nm
    narrow, _ = read_spice_raster(path, 1, wavelength_range=(centre - 0.01 * u.nm, centre + 0.01 * u.nm))
    full, _ = read_spice_raster(path, 1)
    assert np.nanmean(narrow.data) < np.nanmean(full.data)
    with pytest.raises(ValueError, match="selects no pixel"):
        read_spice_raster(path, 1, wavelength_range=(1 * u.nm, 2 * u.nm))
    with fits.open(path) as hdul:
        hdul[1].data[...] = np.nan
        hdul.writeto(tmp_path / "empty.fits")
    with pytest.raises(AllNaNError, match="no valid spectrum"):
        read_spice_raster(tmp_path / "empty.fits", 1)


def test_write_corrected_on_a_spice_file(tmp_path):
    path, _ = _spice_like(tmp_path)
    out = write_corrected(path, TRUTH, tmp_path / "corrected.fits", references=["ref.fits"])
    with fits.open(path) as src, fits.open(out) as dst:
        assert [h.name for h in src] == [h.name for h in dst]
        for i in (0, 1):
            assert src[i].data.tobytes() == dst[i].data.tobytes()
            assert dst[i].header["CRVAL1"] == pytest.approx(src[i].header["CRVAL1"] + TRUTH.dx)
            assert dst[i].header["CDELT2"] == pytest.approx(src[i].header["CDELT2"] * TRUTH.sy)
            assert dst[i].header["PC4_1"] == src[i].header["PC4_1"]  # the time axis is untouched
            steps = {k: v for k, v in dst[i].header.items() if k.startswith("PRSTEP")}
            previous = {k: v for k, v in src[i].header.items() if k.startswith("PRSTEP")}
            assert steps == {**previous, f"PRSTEP{len(previous) + 1}": "SPATIAL-COORDINATE-CORRECTION"}
        corrected, _ = read_spice_raster(out, 1)
        expected = WCS(correct_header(_celestial_only(src[1].header), TRUTH))
        y, x = np.mgrid[0:NY:13, 0:NX:7]
        got = corrected.wcs.pixel_to_world_values(x, y)
        want = expected.pixel_to_world_values(x, y)
        np.testing.assert_allclose(np.array(got) * 3600, np.array(want) * 3600, atol=1e-6)


def test_wcsdvarr_is_ignored_with_a_warning(tmp_path):
    path, _ = _spice_like(tmp_path)
    with fits.open(path) as hdul:
        extra = fits.ImageHDU(np.zeros((2, 30), np.float32), name="WCSDVARR")
        fits.HDUList([*hdul, extra]).writeto(tmp_path / "dvarr.fits")
    assert spice_windows(tmp_path / "dvarr.fits") == spice_windows(path)
    with pytest.warns(CoalignWarning, match="WCSDVARR"):
        read_spice_raster(tmp_path / "dvarr.fits", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_spice_raster(path, 0)
