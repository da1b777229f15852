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
