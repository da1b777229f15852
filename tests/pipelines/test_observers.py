"""Observer-aware alignment: a target seen from another vantage point than the reference.

The target is a real AIA 171 image (sunpy's test file, SDO at Earth, 2011-02-15) reprojected onto the grid
of a Solar-Orbiter-like observer at 0.5 au, 30 degrees of heliographic longitude west of Earth, with a
known pointing error written into its header. `one_map_phase` reprojects the reference through both
observers and recovers the error; relabelling the target's observer as Earth (the naive mistake of
ignoring where the target was taken from) gives a far larger error.
"""

from dataclasses import replace

import astropy.units as u
import numpy as np
import pytest
import sunpy.data.test
import sunpy.map
from astropy.coordinates import SkyCoord
from sunpy.coordinates import frames, get_earth

from coalign import ONE_MAP, Transform, apply_transform, grid_from_wcs, one_map_phase

#: Wide enough for the naive case to find its (wrong) best match; the aware case does not need it.
WIDE = replace(ONE_MAP, shift_range_arcsec=(300.0, 300.0), step_arcsec=(10.0, 10.0))
#: Target pixel (arcsec, seen from 0.5 au: about the AIA test image's 19" pixel seen from Earth).
PIXEL = 10.0


@pytest.fixture(scope="module")
def reference():
    return sunpy.map.Map(sunpy.data.test.get_test_filepath("aia_171_level1.fits"))


@pytest.fixture(scope="module")
def target(reference):
    """The AIA image as seen from (lon 30 deg, lat 0, 0.5 au), 64 x 64 pixels around (-600", 300")."""
    time = reference.reference_date
    observer = SkyCoord(30 * u.deg, 0 * u.deg, 0.5 * u.au, frame=frames.HeliographicStonyhurst, obstime=time)
    centre = SkyCoord(
        -600 * u.arcsec,
        300 * u.arcsec,
        frame=frames.Helioprojective(observer=observer, obstime=time, rsun=reference.rsun_meters),
    )
    header = sunpy.map.make_fitswcs_header((64, 64), centre, scale=[PIXEL, PIXEL] * u.arcsec / u.pix)
    seen = reference.reproject_to(header)
    assert np.isfinite(seen.data).all()  # the whole field is on the disk seen from both observers
    return sunpy.map.Map(seen.data, seen.meta)


def _as_if_from_earth(smap):
    """The same map relabelled as seen from Earth: pixels and angles untouched, observer replaced."""
    earth = get_earth(smap.reference_date)
    meta = dict(smap.meta)
    meta.update(
        hgln_obs=earth.lon.to_value(u.deg),
        hglt_obs=earth.lat.to_value(u.deg),
        dsun_obs=earth.radius.to_value(u.m),
    )
    return sunpy.map.Map(smap.data, meta)


def _error_pixels(target, found: Transform, truth: Transform) -> float:
    dx, dy = grid_from_wcs(target.wcs).shift_in_pixels(Transform(found.dx - truth.dx, found.dy - truth.dy))
    return float(np.hypot(dx, dy))


def test_the_target_really_has_another_observer(target, reference):
    separation = target.observer_coordinate.separation(reference.observer_coordinate)
    assert separation.to_value(u.deg) == pytest.approx(np.hypot(30, 6.82), abs=0.5)
    assert target.observer_coordinate.radius.to(u.au).value == pytest.approx(0.5)


@pytest.mark.parametrize("truth", [Transform(12.0, -7.0), Transform(-23.5, 16.2), Transform(4.4, 31.0)])
def test_observer_aware_alignment_recovers_the_error(target, reference, truth):
    wrong = apply_transform(target, Transform(-truth.dx, -truth.dy))  # the correction to find is `truth`
    result = one_map_phase(wrong, reference, WIDE)
    # Measured 0.03-0.05 target pixel (0.3-0.5 arcsec seen from 0.5 au), correlation 0.997.
    assert _error_pixels(target, result.transform, truth) <= 0.2, result.transform
    assert result.score > 0.99


@pytest.mark.parametrize("truth", [Transform(12.0, -7.0), Transform(-23.5, 16.2)])
def test_ignoring_the_observer_gives_a_much_larger_error(target, reference, truth):
    wrong = apply_transform(target, Transform(-truth.dx, -truth.dy))
    aware = one_map_phase(wrong, reference, WIDE)
    naive = one_map_phase(_as_if_from_earth(wrong), reference, WIDE)
    aware_error = _error_pixels(target, aware.transform, truth)
    naive_error = _error_pixels(target, naive.transform, truth)
    # Measured: aware 0.04 pixel, naive 13 pixels (~130 arcsec) with a correlation of only 0.69.
    assert naive_error > 5.0 and naive_error > 50 * aware_error, (aware.transform, naive.transform)
    assert naive.score < aware.score - 0.2
