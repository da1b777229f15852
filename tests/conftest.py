"""Shared fixtures: small helioprojective WCS objects and a smooth random image."""

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy import ndimage


def build_wcs(cdelt=(2.0, 2.0), crval=(0.0, 0.0), shape=(60, 60), rot_deg=0.0):
    """A 2-D helioprojective TAN WCS (arcsec) with CRPIX at the array centre.

    ``shape`` is numpy ``(ny, nx)``. The rotation uses the CROTA2 convention for non-square pixels
    (``PC = [[cos, -lam sin], [sin / lam, cos]]`` with ``lam = CDELT2 / CDELT1``), as sunpy and the
    IRIS headers do. Observer keywords are set so that sunpy/reproject can build the frame.
    """
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]
    wcs.wcs.cunit = ["arcsec", "arcsec"]
    wcs.wcs.cdelt = [float(cdelt[0]), float(cdelt[1])]
    wcs.wcs.crval = [float(crval[0]), float(crval[1])]
    wcs.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    theta = np.deg2rad(rot_deg)
    lam = cdelt[1] / cdelt[0]
    wcs.wcs.pc = [[np.cos(theta), -lam * np.sin(theta)], [np.sin(theta) / lam, np.cos(theta)]]
    wcs.wcs.dateobs = "2014-03-29T14:00:00"
    wcs.wcs.aux.hgln_obs = 0.0
    wcs.wcs.aux.hglt_obs = -6.7
    wcs.wcs.aux.dsun_obs = 1.4937e11
    wcs.wcs.aux.rsun_ref = 695700000.0
    wcs.wcs.set()
    wcs.array_shape = tuple(shape)
    return wcs


def smooth_field(shape, sigma=3.0, seed=0):
    """Gaussian-filtered white noise, normalised to zero mean and unit standard deviation."""
    noise = np.random.default_rng(seed).normal(size=shape)
    field = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    return (field - field.mean()) / field.std()


@pytest.fixture
def make_wcs():
    """Factory ``make_wcs(cdelt=(2.0, 2.0), crval=(0, 0), shape=(60, 60), rot_deg=0.0)``."""
    return build_wcs


@pytest.fixture
def make_field():
    """Factory ``make_field(shape, sigma=3.0, seed=0)`` for smooth random fields."""
    return smooth_field


@pytest.fixture
def image_yx():
    """A smooth 60 x 60 random field (correlation length ~3 pixels)."""
    return smooth_field((60, 60))
