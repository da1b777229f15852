"""Exception and warning types raised by coalign.

Every error message names the offending value and says how to fix it.
"""

__all__ = [
    "AllNaNError",
    "CoalignError",
    "CoalignWarning",
    "EmptySequenceError",
    "NoOverlapError",
    "ShapeError",
    "TimeCoverageError",
    "WCSError",
]


class CoalignError(Exception):
    """Base class for coalign errors."""


class ShapeError(CoalignError, ValueError):
    """An array has the wrong shape, or two arrays do not share a grid."""


class AllNaNError(CoalignError, ValueError):
    """An image holds no finite pixel, so nothing can be correlated."""


class NoOverlapError(CoalignError, ValueError):
    """The target and the reference do not overlap on the sky (or overlap too little)."""


class WCSError(CoalignError, ValueError):
    """A map or header lacks a usable celestial (helioprojective) WCS."""


class EmptySequenceError(CoalignError, ValueError):
    """A reference sequence holds no map."""


class TimeCoverageError(CoalignError, ValueError):
    """Acquisition times are missing, mismatched, or not covered by the reference sequence."""


class CoalignWarning(UserWarning):
    """Valid but suspicious input, e.g. a long gap between a raster column and its reference frame."""
