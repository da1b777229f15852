"""Shared loaders of the bundled real sample (imported by tests; small and cached)."""

from functools import cache

import numpy as np
import sunpy.map
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


def nan_smooth(image, sigma):
    """Gaussian smoothing that ignores NaN pixels and keeps them NaN."""
    valid = np.isfinite(image)
    num = ndimage.gaussian_filter(np.where(valid, image, 0.0), sigma)
    den = ndimage.gaussian_filter(valid.astype(float), sigma)
    out = np.full(image.shape, np.nan)
    out[valid] = num[valid] / den[valid]
    return out
