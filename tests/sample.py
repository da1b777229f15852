"""Shared loaders of the bundled real sample (imported by tests; small and cached)."""

from functools import cache

import numpy as np
from scipy import ndimage

from coalign.data import SAMPLE_RASTER, sample_reference_files
from coalign.io.readers import read_raster, read_sequence


@cache
def sample():
    """(raster map, column times, reference sequence, reference nearest mid-raster)."""
    raster, times = read_raster(SAMPLE_RASTER)
    sequence = read_sequence(sample_reference_files())
    middle = times[len(times) // 2]
    reference = min(sequence, key=lambda m: abs((m.date - middle).to_value("s")))
    return raster, times, sequence, reference


def nan_smooth(image, sigma):
    """Gaussian smoothing that ignores NaN pixels and keeps them NaN."""
    valid = np.isfinite(image)
    num = ndimage.gaussian_filter(np.where(valid, image, 0.0), sigma)
    den = ndimage.gaussian_filter(valid.astype(float), sigma)
    out = np.full(image.shape, np.nan)
    out[valid] = num[valid] / den[valid]
    return out
