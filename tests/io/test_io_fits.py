"""write_corrected / write_map: HDUs and data bytes kept, provenance, atomic and safe."""

import numpy as np
import pytest
from astropy.io import fits

from coalign import Transform, WCSError, write_corrected, write_map
from coalign.data import SAMPLE_RASTER
from coalign.io.fits import celestial_axes
from tests.sample import sample


def test_write_corrected_keeps_everything_but_the_pointing(tmp_path):
    out = write_corrected(
        SAMPLE_RASTER, Transform(5.0, -3.0, 1.01, 0.99), tmp_path / "c.fits", references=["a.fits", "b.fits"]
    )
    with fits.open(SAMPLE_RASTER) as src, fits.open(out) as dst:
        assert len(src) == len(dst)
        assert src[0].data.dtype == dst[0].data.dtype
        assert src[0].data.tobytes() == dst[0].data.tobytes()
        np.testing.assert_array_equal(src["COLUMN_TIMES"].data["TIME_S"], dst["COLUMN_TIMES"].data["TIME_S"])
        h0, h1 = src[0].header, dst[0].header
        assert h1["CRVAL1"] == pytest.approx(h0["CRVAL1"] + 5.0 / 3600)
        assert h1["CDELT2"] == pytest.approx(h0["CDELT2"] * 0.99)
        assert h1["PRSTEP1"] == "SPATIAL-COORDINATE-CORRECTION"
        assert h1["PRPROC1"] == "coalign" and h1["PRREF1"] == "a.fits,b.fits"
        assert any("pointing corrected" in str(card) for card in h1["HISTORY"])
        for key in ("DATE-OBS", "DATE-END", "BUNIT", "WAVELNTH"):
            assert h1[key] == h0[key]


def test_write_corrected_refuses_to_overwrite(tmp_path):
    target = tmp_path / "c.fits"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_corrected(SAMPLE_RASTER, Transform(), target)
    assert target.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="never overwrites an input"):
        write_corrected(target, Transform(), target, overwrite=True)


def test_write_corrected_without_celestial_hdu_leaves_nothing(tmp_path):
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((3, 3))).writeto(plain)
    with pytest.raises(WCSError, match="no image HDU with a celestial WCS"):
        write_corrected(plain, Transform(), tmp_path / "out.fits")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.fits"]


def test_celestial_axes_of_a_raster_window_header():
    header = fits.Header({"NAXIS": 3, "CTYPE1": "WAVE", "CTYPE2": "HPLT-TAN", "CTYPE3": "HPLN-TAN"})
    assert celestial_axes(header) == (3, 2)


def test_write_map_round_trip(tmp_path):
    raster = sample()[0]
    path = write_map(raster, tmp_path / "m.fits")
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, raster.data)
        assert hdul[0].header["CDELT1"] == pytest.approx(raster.meta["cdelt1"])
