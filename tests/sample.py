"""Shared loaders of the bundled real sample (imported by tests; small and cached)."""

from functools import cache

import numpy as np
import sunpy.data.test
import sunpy.map
from astropy.io import fits
from astropy.time import Time
from scipy import ndimage

from coalign.data import SAMPLE_RASTER, sample_reference_files
from coalign.io.readers import read_raster, read_sequence
from coalign.stages.reproject import reproject_image
from coalign.stages.synthetic import build_synthetic_raster
from coalign.transform import grid_from_wcs


@cache
def sample():
    """(raster map, column times, reference sequence, reference nearest mid-raster)."""
    raster, times = read_raster(SAMPLE_RASTER)
    sequence = read_sequence(sample_reference_files())
    middle = times[len(times) // 2]
    reference = min(sequence, key=lambda m: abs((m.date - middle).to_value("s")))
    return raster, times, sequence, reference


@cache
def synthetic_reference():
    """The reference sequence as the sample raster saw it: a map with the raster's grid and WCS whose
    column ``i`` blends the frames bracketing column ``i``'s time (`build_synthetic_raster`).

    The raster's columns span ~3 hours while the Sun rotates under the scan (~0.32" in x per 150 s step):
    against any single frame the raster looks stretched in x by ~1/0.84, so a shift-only comparison with one
    frame is off by several arcsec. This map matches the raster column by column, so a one-map search
    against it has the injected error as its exact truth.
    """
    raster, times, sequence, _ = sample()
    frames = np.stack([reproject_image(m.data, m.wcs, raster.wcs, raster.data.shape) for m in sequence])
    data = build_synthetic_raster(frames, Time([m.date for m in sequence]), times, grid_from_wcs(raster.wcs))
    return sunpy.map.Map(data, raster.meta)


def cubic_sample(image, yy, xx):
    """scipy cubic interpolation at (yy, xx), independent of coalign's sampling; NaN where the bilinear
    support touches a NaN pixel (holes are filled with the mean before the spline, masked after)."""
    valid = np.isfinite(image)
    filled = np.where(valid, image, np.nanmean(image))
    values = ndimage.map_coordinates(filled, [yy, xx], order=3, mode="nearest")
    support = ndimage.map_coordinates(valid.astype(float), [yy, xx], order=1, cval=0.0)
    values[support < 1 - 1e-9] = np.nan
    return values


def nan_smooth(image, sigma):
    """Gaussian smoothing that ignores NaN pixels and keeps them NaN."""
    valid = np.isfinite(image)
    num = ndimage.gaussian_filter(np.where(valid, image, 0.0), sigma)
    den = ndimage.gaussian_filter(valid.astype(float), sigma)
    out = np.full(image.shape, np.nan)
    out[valid] = num[valid] / den[valid]
    return out


#: Hourly SOHO/EIT 195 series shipped with sunpy: images at 00:00 and 01:00, headers 00:00 to 12:00.
EIT_DIR = sunpy.data.test.rootdir / "EIT"
EIT_HEADER_DIR = sunpy.data.test.rootdir / "EIT_header"
EIT_RESAMPLING = 8  # the files were resampled from 1024 x 1024 to 128 x 128


def _repaired_eit_header(header):
    """Geometry of an EIT header of sunpy's test series, made consistent with its 128 x 128 image.

    The files were resampled 8x ("for SunPy") without updating CDELT (2.63"/pixel) or SOLAR_R (372.27
    pixels): as read, the image would span 337" and sunpy would make the Sun 5.6e6 km in radius (its
    rsun is SOLAR_R x CDELT). SOHO was rolled by 180 degrees (SC_ROLL), which sunpy does not apply.
    """
    header = header.copy()
    for key in ("CDELT1", "CDELT2"):
        header[key] = header[key] * EIT_RESAMPLING
    header["SOLAR_R"] = header["SOLAR_R"] / EIT_RESAMPLING
    header["CROTA2"] = float(header["SC_ROLL"])
    return header


def eit_header(hour: int):
    """Repaired header of the EIT frame taken at ``hour`` (0 to 12) on 2004-03-01."""
    (path,) = EIT_HEADER_DIR.glob(f"efz20040301.{hour:02d}00??_s.header")
    return _repaired_eit_header(fits.Header.fromtextfile(path))


@cache
def eit_map(hour: int):
    """The real EIT image of ``hour`` (0 or 1) on 2004-03-01, repaired header, telemetry gaps (0) as NaN."""
    (path,) = EIT_DIR.glob(f"efz20040301.{hour:02d}00??_s.fits")
    data, header = fits.getdata(path, header=True)
    data = data.astype(float)
    data[data == 0] = np.nan
    return sunpy.map.Map(data, _repaired_eit_header(header))
