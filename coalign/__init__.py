"""coalign: sub-pixel coalignment of solar rasters and images by cross-correlation, with WCS correction."""

__version__ = "0.1.0"
