"""The correction convention on real headers: round trips and agreement with the stages' pixel mapping."""

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from coalign import Transform, WCSError, apply_transform, correct_header, grid_from_wcs
from coalign.transform import pixel_mapping
from tests.sample import sample


def _world_arcsec(smap, x, y):
    coords = smap.pixel_to_world(x * u.pix, y * u.pix)
    return coords.Tx.to_value(u.arcsec), coords.Ty.to_value(u.arcsec)


def test_apply_then_inverse_restores_pixel_to_world():
    raster = sample()[0]
    error = Transform(-35.0, 25.0, 1.03, 0.98)
    restored = apply_transform(apply_transform(raster, error), error.inverse())
    y, x = np.mgrid[0:100:7, 0:70:5]
    for a, b in zip(_world_arcsec(raster, x, y), _world_arcsec(restored, x, y), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_apply_transform_moves_crval_and_scales_cdelt():
    raster = sample()[0]
    out = apply_transform(raster, Transform(10.0, -4.0, 1.02, 0.99))
    assert out.reference_coordinate.Tx.to_value(u.arcsec) == pytest.approx(
        raster.reference_coordinate.Tx.to_value(u.arcsec) + 10.0, abs=1e-9
    )
    assert out.reference_coordinate.Ty.to_value(u.arcsec) == pytest.approx(
        raster.reference_coordinate.Ty.to_value(u.arcsec) - 4.0, abs=1e-9
    )
    assert float((out.scale.axis1 / raster.scale.axis1).decompose()) == pytest.approx(1.02)
    assert float((out.scale.axis2 / raster.scale.axis2).decompose()) == pytest.approx(0.99)
    assert out.data is not raster.data
    np.testing.assert_array_equal(out.data, raster.data)
    assert "coalign" in out.meta["history"]


def test_pixel_mapping_agrees_with_corrected_wcs():
    """The stages' affine map and the corrected header describe the same sky (TAN curvature < 1 mas)."""
    raster = sample()[0]
    t = Transform(12.0, -7.0, 1.03, 0.97)
    corrected = apply_transform(raster, t)
    matrix, offset = pixel_mapping(t, grid_from_wcs(raster.wcs))
    y, x = np.mgrid[0:100:9, 0:70:6].astype(float)
    qy, qx = np.tensordot(matrix, np.stack([y, x]), axes=1) + offset[:, None, None]
    for a, b in zip(_world_arcsec(corrected, x, y), _world_arcsec(raster, qx, qy), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=0)


def test_correct_header_with_cd_matrix_and_degrees():
    header = fits.Header(
        {
            "NAXIS": 2,
            "CTYPE1": "HPLN-TAN",
            "CTYPE2": "HPLT-TAN",
            "CUNIT1": "deg",
            "CUNIT2": "deg",
            "CRVAL1": 0.1,
            "CRVAL2": -0.2,
            "CD1_1": 1e-3,
            "CD1_2": 1e-5,
            "CD2_1": -1e-5,
            "CD2_2": 1e-3,
        }
    )
    out = correct_header(header, Transform(36.0, -72.0, 2.0, 0.5))
    assert out["CRVAL1"] == pytest.approx(0.11) and out["CRVAL2"] == pytest.approx(-0.22)
    assert (out["CD1_1"], out["CD1_2"]) == pytest.approx((2e-3, 2e-5))
    assert (out["CD2_1"], out["CD2_2"]) == pytest.approx((-0.5e-5, 0.5e-3))
    assert header["CRVAL1"] == 0.1  # input untouched


def test_correct_header_without_wcs_raises():
    with pytest.raises(WCSError, match="no CRVAL1"):
        correct_header(fits.Header({"NAXIS": 2}), Transform(1, 1))


def test_apply_transform_rejects_non_maps():
    with pytest.raises(TypeError, match="expects a sunpy Map"):
        apply_transform(np.zeros((3, 3)), Transform())


# --- roll ----------------------------------------------------------------------------------------------


def _celestial_header(kind: str) -> fits.Header:
    """A 2-D helioprojective header with non-square pixels (2" x 0.5") rolled by 3 degrees, written with
    a PC matrix, a CD matrix or CROTA2; or a 3-D one (lat on axis 2, lon on axis 3, time on axis 1
    coupled to lon) as in an IRIS or SPICE raster."""
    header = fits.Header()
    angle = np.deg2rad(3.0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    cdelt = np.array([2.0, 0.5])
    pc = np.diag(1 / cdelt) @ turn @ np.diag(cdelt)
    if kind == "raster":
        header["NAXIS"] = header["WCSAXES"] = 3
        for key, values in (("CTYPE", ("UTC", "HPLT-TAN", "HPLN-TAN")), ("CUNIT", ("s", "arcsec", "arcsec"))):
            for axis, value in enumerate(values, start=1):
                header[f"{key}{axis}"] = value
        header.update(CRPIX1=1.0, CRPIX2=40.0, CRPIX3=10.0, CRVAL1=0.0, CRVAL2=-200.0, CRVAL3=300.0)
        header.update(CDELT1=1.0, CDELT2=0.5, CDELT3=2.0)
        header.update(PC3_3=pc[0, 0], PC3_2=pc[0, 1], PC2_3=pc[1, 0], PC2_2=pc[1, 1], PC3_1=-0.3)
        return header
    header["NAXIS"] = 2
    header.update(CTYPE1="HPLN-TAN", CTYPE2="HPLT-TAN", CUNIT1="arcsec", CUNIT2="arcsec")
    header.update(CRPIX1=30.0, CRPIX2=40.0, CRVAL1=300.0, CRVAL2=-200.0)
    if kind == "cd":
        for (i, j), value in np.ndenumerate(np.diag(cdelt) @ pc):
            header[f"CD{i + 1}_{j + 1}"] = value
    else:
        header.update(CDELT1=cdelt[0], CDELT2=cdelt[1])
        if kind == "pc":
            for (i, j), value in np.ndenumerate(pc):
                header[f"PC{i + 1}_{j + 1}"] = value
        else:
            header["CROTA2"] = 3.0
    return header


@pytest.mark.parametrize("roll", [0.8, 0.0])
@pytest.mark.parametrize("kind", ["pc", "cd", "crota", "raster"])
def test_roll_follows_the_convention_on_every_header_form(kind, roll):
    """Intermediate world coordinates after the correction are d + R(roll) diag(s) times the original ones
    (about CRPIX), for non-square pixels, PC, CD, CROTA2 and a 3-D raster with a coupled time axis."""
    from astropy.wcs import WCS

    header = _celestial_header(kind)
    transform = Transform(4.0, -3.0, 1.02, 0.97, roll)
    lon, lat = (3, 2) if kind == "raster" else (1, 2)
    corrected = correct_header(header, transform, lon_axis=lon, lat_axis=lat)
    before, after = WCS(header), WCS(corrected)
    rows = [lon - 1, lat - 1]

    def linear(wcs):  # world offset per pixel offset, rows and columns in FITS axis order
        return np.diag(wcs.wcs.get_cdelt()) @ wcs.wcs.get_pc()

    np.testing.assert_allclose(linear(after)[rows], transform.linear @ linear(before)[rows], atol=1e-12)
    np.testing.assert_allclose(after.wcs.crpix, before.wcs.crpix)
    assert "CROTA2" not in corrected
    # the shift goes to CRVAL; other axes are untouched
    assert corrected[f"CRVAL{lon}"] == pytest.approx(header[f"CRVAL{lon}"] + 4.0)
    if kind == "raster":  # the time row is untouched
        np.testing.assert_allclose(linear(after)[0], linear(before)[0])


def test_roll_agrees_with_the_stages_pixel_mapping():
    """A map corrected by a roll sees, at target pixel p, the sky its uncorrected grid has at q = A p + b."""
    raster = sample()[0]
    transform = Transform(5.0, -2.0, 1.01, 0.99, -0.7)
    corrected = apply_transform(raster, transform)
    grid = grid_from_wcs(raster.wcs)
    matrix, offset = pixel_mapping(transform, grid)
    y, x = np.mgrid[0:100:9, 0:70:6].astype(float)
    q = np.tensordot(matrix, np.stack([y, x]), axes=1) + offset[:, None, None]
    seen = corrected.pixel_to_world(x * u.pix, y * u.pix)
    there = raster.pixel_to_world(q[1] * u.pix, q[0] * u.pix)
    assert np.max(seen.separation(there).to_value(u.arcsec)) < 1e-3
