"""Tests for coalign.transform: the Transform record, TargetGrid and the pixel mapping convention."""

import dataclasses
import pickle

import astropy.units as u
import numpy as np
import pytest
from astropy.wcs import WCS

from coalign.exceptions import WCSError
from coalign.transform import TargetGrid, Transform, grid_from_wcs, pixel_mapping

# --------------------------------------------------------------------------------------------------
# Transform record
# --------------------------------------------------------------------------------------------------


def test_transform_defaults_are_identity():
    t = Transform()
    assert (t.dx, t.dy, t.sx, t.sy) == (0.0, 0.0, 1.0, 1.0)


def test_transform_converts_angle_quantities_to_arcsec():
    t = Transform(dx=1 * u.arcmin, dy=-0.5 * u.arcmin)
    assert t.dx == pytest.approx(60.0)
    assert t.dy == pytest.approx(-30.0)
    assert isinstance(t.dx, float)
    assert Transform(dx=1 * u.deg).dx == pytest.approx(3600.0)


def test_transform_plain_numbers_are_arcsec_and_floats():
    t = Transform(3, -4, 2, 1)
    assert (t.dx, t.dy, t.sx, t.sy) == (3.0, -4.0, 2.0, 1.0)
    assert all(type(v) is float for v in (t.dx, t.dy, t.sx, t.sy))


def test_transform_rejects_non_angle_quantity():
    with pytest.raises(u.UnitConversionError):
        Transform(dx=3 * u.m)


def test_transform_shift_quantity():
    shift = Transform(dx=1.5, dy=-2.0).shift
    assert shift.unit == u.arcsec
    np.testing.assert_array_equal(shift.value, [1.5, -2.0])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sx": 0.0}, r"sx must be a finite positive scale factor, got sx=0\.0"),
        ({"sx": -1.0}, r"sx must be a finite positive scale factor, got sx=-1\.0"),
        ({"sy": 0.0}, r"sy must be a finite positive scale factor"),
        ({"sx": float("nan")}, r"sx must be a finite positive scale factor, got sx=nan"),
        ({"sy": float("inf")}, r"sy must be a finite positive scale factor, got sy=inf"),
        ({"dx": float("nan")}, r"dx and dy must be finite, got dx=nan"),
        ({"dy": float("inf")}, r"dx and dy must be finite, got dx=0\.0, dy=inf"),
        ({"dx": np.nan * u.arcsec}, r"dx and dy must be finite"),
    ],
)
def test_transform_validation_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Transform(**kwargs)


def test_transform_scale_error_suggests_fix():
    with pytest.raises(ValueError, match=r"use 1\.0 for no scale error"):
        Transform(sx=0)


def test_transform_is_frozen():
    t = Transform(1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dx = 5.0


def test_compose_adds_shifts_and_multiplies_scales():
    t = Transform(3.0, 4.0, 1.02, 0.98).compose(Transform(-1.0, 0.5, 1.5, 2.0))
    assert t.dx == pytest.approx(2.0)
    assert t.dy == pytest.approx(4.5)
    assert t.sx == pytest.approx(1.53)
    assert t.sy == pytest.approx(1.96)


def test_compose_with_identity_is_noop():
    t = Transform(3.25, -1.5, 1.01, 0.99)
    assert t.compose(Transform()) == t
    assert Transform().compose(t) == t


@pytest.mark.parametrize("t", [Transform(3.5, -1.25, 1.02, 0.97), Transform(-120.0, 7.0, 0.9, 1.1)])
def test_compose_inverse_round_trip(t):
    for ident in (t.compose(t.inverse()), t.inverse().compose(t)):
        assert ident.dx == pytest.approx(0.0, abs=1e-12)
        assert ident.dy == pytest.approx(0.0, abs=1e-12)
        assert ident.sx == pytest.approx(1.0, rel=1e-12)
        assert ident.sy == pytest.approx(1.0, rel=1e-12)
    back = t.inverse().inverse()
    assert back.dx == pytest.approx(t.dx)
    assert back.dy == pytest.approx(t.dy)
    assert back.sx == pytest.approx(t.sx)
    assert back.sy == pytest.approx(t.sy)


def test_inverse_values():
    inv = Transform(2.0, -3.0, 2.0, 0.5).inverse()
    assert (inv.dx, inv.dy, inv.sx, inv.sy) == (-2.0, 3.0, 0.5, 2.0)


def test_transform_pickle_round_trip():
    t = Transform(1.25 * u.arcmin, -3.5, 1.01, 0.995)
    clone = pickle.loads(pickle.dumps(t))
    assert clone == t
    assert clone is not t


def test_transform_as_dict():
    assert Transform(1.0, -2.0, 1.1, 0.9, 0.25).as_dict() == {
        "dx_arcsec": 1.0,
        "dy_arcsec": -2.0,
        "sx": 1.1,
        "sy": 0.9,
        "roll_deg": 0.25,
    }


def test_roll_repr_quantity_and_linear_part():
    assert repr(Transform(1.0, 2.0)) == "Transform(dx=1.0, dy=2.0, sx=1.0, sy=1.0)"
    t = Transform(roll=30 * u.arcmin, sx=2.0)
    assert t.roll == pytest.approx(0.5)
    assert "roll=0.5" in repr(t)
    angle = np.deg2rad(0.5)
    np.testing.assert_allclose(
        t.linear, [[2 * np.cos(angle), -np.sin(angle)], [2 * np.sin(angle), np.cos(angle)]]
    )
    assert Transform(roll=0.3).compose(Transform(roll=0.2)).roll == pytest.approx(0.5)
    assert Transform(roll=0.3).inverse().roll == -0.3
    with pytest.raises(ValueError, match="roll must be finite"):
        Transform(roll=float("nan"))


# --------------------------------------------------------------------------------------------------
# grid_from_wcs and TargetGrid
# --------------------------------------------------------------------------------------------------


def test_grid_from_wcs_non_square_rotated(make_wcs):
    cdelt = (4.0, 1.1)
    wcs = make_wcs(cdelt=cdelt, shape=(50, 40), rot_deg=2.0)
    grid = grid_from_wcs(wcs, pad=(3, 7))
    pc = wcs.wcs.get_pc()
    np.testing.assert_allclose(np.asarray(grid.matrix), np.diag(cdelt) @ pc, rtol=1e-12, atol=1e-12)
    # The PC matrix really is the rotated one (so the check above is not trivially diagonal).
    theta = np.deg2rad(2.0)
    lam = cdelt[1] / cdelt[0]
    expected_pc = [[np.cos(theta), -lam * np.sin(theta)], [np.sin(theta) / lam, np.cos(theta)]]
    np.testing.assert_allclose(pc, expected_pc, rtol=1e-12)
    # CRPIX is converted to 0-based (x, y); CRPIX1 = (nx + 1) / 2 = 20.5 -> 19.5.
    assert grid.crpix == pytest.approx((19.5, 24.5))
    assert grid.pad == (3, 7)
    assert all(type(v) is int for v in grid.pad)


def test_grid_pixel_scale_non_square(make_wcs):
    grid = grid_from_wcs(make_wcs(cdelt=(4.0, 1.1), rot_deg=2.0))
    assert grid.pixel_scale == pytest.approx((4.0, 1.1), rel=1e-12)


def test_grid_from_wcs_degree_units(make_wcs):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.cdelt = [2.0 / 3600, 3.0 / 3600]
    wcs.wcs.crpix = [10.0, 20.0]
    wcs.wcs.set()
    grid = grid_from_wcs(wcs)
    np.testing.assert_allclose(grid.matrix, [[2.0, 0.0], [0.0, 3.0]], atol=1e-12)
    assert grid.crpix == (9.0, 19.0)


def test_grid_from_wcs_rejects_3d_wcs():
    wcs = WCS(naxis=3)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN", "WAVE"]
    wcs.wcs.cunit = ["arcsec", "arcsec", "Angstrom"]
    wcs.wcs.set()
    with pytest.raises(
        WCSError, match=r"(?s)expected a 2-D celestial WCS.*integrate a raster over wavelength"
    ):
        grid_from_wcs(wcs)


def test_grid_from_wcs_rejects_none_and_non_celestial():
    with pytest.raises(WCSError, match="expected a 2-D celestial WCS, got None"):
        grid_from_wcs(None)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["WAVE", "UTC"]
    with pytest.raises(WCSError, match="expected a 2-D celestial WCS"):
        grid_from_wcs(wcs)


def test_grid_from_wcs_rejects_swapped_axes():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLT-TAN", "HPLN-TAN"]
    wcs.wcs.cunit = ["arcsec", "arcsec"]
    wcs.wcs.set()
    with pytest.raises(WCSError, match=r"longitude on axis 1 and latitude on axis 2.*transpose the image"):
        grid_from_wcs(wcs)


def test_wcs_error_is_value_error():
    with pytest.raises(ValueError, match="celestial"):
        grid_from_wcs(None)


def test_with_pad_and_shift_in_pixels():
    grid = TargetGrid(crpix=(5.0, 6.0), matrix=((2.0, 0.0), (0.0, 0.5)))
    padded = grid.with_pad((4.0, 9.0))
    assert padded.pad == (4, 9)
    assert padded.crpix == grid.crpix and padded.matrix == grid.matrix
    assert grid.shift_in_pixels(Transform(dx=3.0, dy=1.0)) == pytest.approx((1.5, 2.0))


# --------------------------------------------------------------------------------------------------
# pixel_mapping
# --------------------------------------------------------------------------------------------------


def test_pixel_mapping_identity_gives_pad_offset(make_wcs):
    grid = grid_from_wcs(make_wcs(cdelt=(4.0, 1.1), rot_deg=2.0), pad=(3, 5))
    matrix, offset = pixel_mapping(Transform(), grid)
    np.testing.assert_allclose(matrix, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(offset, [3.0, 5.0], atol=1e-12)  # (pad_y, pad_x)


def test_pixel_mapping_pure_shift_x(make_wcs):
    # Adding dx to CRVAL1 moves the world of every target pixel by +dx: corrected pixel p sees what the
    # uncorrected grid shows at q_x = p_x + dx / cdelt1 (here +2 pixels), q_y = p_y.
    cdelt1 = 2.0
    grid = grid_from_wcs(make_wcs(cdelt=(cdelt1, 3.0)), pad=(4, 6))
    matrix, offset = pixel_mapping(Transform(dx=2 * cdelt1), grid)
    np.testing.assert_allclose(matrix, np.eye(2), atol=1e-12)
    for y, x in [(0, 0), (10, 3), (59, 59)]:
        qy, qx = matrix @ [y, x] + offset
        assert qx == pytest.approx(x + 2 + 6)
        assert qy == pytest.approx(y + 4)


def test_pixel_mapping_pure_shift_y(make_wcs):
    grid = grid_from_wcs(make_wcs(cdelt=(2.0, 3.0)))
    matrix, offset = pixel_mapping(Transform(dy=-3.0 * 1.5), grid)
    np.testing.assert_allclose(matrix, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(offset, [-1.5, 0.0], atol=1e-12)


def test_pixel_mapping_scale_about_crpix(make_wcs):
    grid = grid_from_wcs(make_wcs(cdelt=(2.0, 2.0), shape=(40, 60)))
    crpix_x, crpix_y = grid.crpix
    matrix, offset = pixel_mapping(Transform(sx=1.1), grid)
    for y, x in [(0, 0), (7, 50), (39, 59), (crpix_y, crpix_x)]:
        qy, qx = matrix @ [y, x] + offset
        assert qx - crpix_x == pytest.approx(1.1 * (x - crpix_x))
        assert qy == pytest.approx(y)


def test_pixel_mapping_matches_wcs_round_trip(make_wcs):
    # Independent check of the whole convention through astropy: build the corrected WCS by editing the
    # header (CRVAL + d, CDELT * s), take the world of each target pixel, and find where the uncorrected,
    # padded grid places that world.
    cdelt, crval, shape, rot, pad = (2.0, 1.5), (500.0, -300.0), (40, 50), 10.0, (6, 4)
    t = Transform(dx=3.7, dy=-2.2, sx=1.02, sy=0.97)
    base = make_wcs(cdelt=cdelt, crval=crval, shape=shape, rot_deg=rot)
    corrected = make_wcs(
        cdelt=(cdelt[0] * t.sx, cdelt[1] * t.sy),
        crval=(crval[0] + t.dx, crval[1] + t.dy),
        shape=shape,
        rot_deg=rot,
    )
    corrected.wcs.pc = base.wcs.get_pc()  # scale factors multiply CDELT only; PC is unchanged
    corrected.wcs.set()
    padded = base.deepcopy()
    padded.wcs.crpix = np.add(base.wcs.crpix, [pad[1], pad[0]])
    padded.wcs.set()

    yy, xx = np.mgrid[0 : shape[0] : 7, 0 : shape[1] : 9]
    world = corrected.pixel_to_world_values(xx.ravel(), yy.ravel())
    qx, qy = padded.world_to_pixel_values(*world)

    matrix, offset = pixel_mapping(t, grid_from_wcs(base, pad=pad))
    q = matrix @ np.stack([yy.ravel(), xx.ravel()]) + offset[:, None]
    np.testing.assert_allclose(q[0], qy, atol=1e-4)
    np.testing.assert_allclose(q[1], qx, atol=1e-4)


def _cd_matrix_wcs():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]
    wcs.wcs.cunit = ["arcsec", "arcsec"]
    wcs.wcs.cd = [[2.0, 0.1], [-0.1, 1.5]]
    wcs.wcs.crpix = [30.5, 20.5]
    wcs.wcs.set()
    return wcs


def test_grid_from_wcs_cd_matrix_values():
    grid = grid_from_wcs(_cd_matrix_wcs())
    np.testing.assert_allclose(grid.matrix, [[2.0, 0.1], [-0.1, 1.5]], rtol=1e-12)
    assert grid.crpix == (29.5, 19.5)


def test_grid_from_wcs_cd_matrix_without_warning():
    grid = grid_from_wcs(_cd_matrix_wcs())
    np.testing.assert_allclose(grid.matrix, [[2.0, 0.1], [-0.1, 1.5]], rtol=1e-12)
