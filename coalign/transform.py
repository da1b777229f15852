"""The pointing correction record and its geometry on a target pixel grid.

Convention (used everywhere in coalign)
---------------------------------------
A `Transform` is the correction to the **target's** pointing, expressed on its WCS:

* ``dx``, ``dy`` -- arcsec **added** to CRVAL1 / CRVAL2 (helioprojective longitude / latitude);
* ``sx``, ``sy`` -- factors **multiplying** CDELT1 / CDELT2 (1.0 = no scale error), i.e. a scaling
  about CRPIX.

The corrected pixel-to-world relation is therefore ``W'(p) = CRVAL + d + diag(CDELT * s) PC (p - CRPIX)``.
`TargetGrid` holds the linear part of the target WCS so that stages can turn a `Transform` into a pixel
mapping without touching WCS objects.
"""

from dataclasses import dataclass

import astropy.units as u
import numpy as np

from coalign.exceptions import WCSError

__all__ = ["TargetGrid", "Transform", "grid_from_wcs", "pixel_mapping"]


def _to_arcsec(value) -> float:
    if isinstance(value, u.Quantity):
        return float(value.to_value(u.arcsec))
    return float(value)


@dataclass(frozen=True, slots=True)
class Transform:
    """Correction to the target's pointing (see the module docstring for the convention).

    Parameters
    ----------
    dx, dy : float or `~astropy.units.Quantity`
        Arcsec added to CRVAL1 / CRVAL2. Plain numbers are taken as arcsec; angle Quantities are converted.
    sx, sy : float
        Factors multiplying CDELT1 / CDELT2.

    Examples
    --------
    >>> import astropy.units as u
    >>> Transform(dx=1 * u.arcmin, dy=-2.5)
    Transform(dx=60.0, dy=-2.5, sx=1.0, sy=1.0)
    >>> Transform(3, 4).compose(Transform(1, 1, sx=1.01))
    Transform(dx=4.0, dy=5.0, sx=1.01, sy=1.0)
    """

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0

    def __post_init__(self):
        for name in ("dx", "dy"):
            object.__setattr__(self, name, _to_arcsec(getattr(self, name)))
        for name in ("sx", "sy"):
            value = float(getattr(self, name))
            if not np.isfinite(value) or value <= 0:
                raise ValueError(
                    f"{name} must be a finite positive scale factor, got {name}={value!r}; "
                    "use 1.0 for no scale error"
                )
            object.__setattr__(self, name, value)
        if not (np.isfinite(self.dx) and np.isfinite(self.dy)):
            raise ValueError(f"dx and dy must be finite, got dx={self.dx!r}, dy={self.dy!r}")

    @property
    def shift(self) -> u.Quantity:
        """``(dx, dy)`` as an arcsec Quantity."""
        return u.Quantity([self.dx, self.dy], u.arcsec)

    def compose(self, other: "Transform") -> "Transform":
        """Return the correction obtained by applying ``other`` after ``self``.

        Shifts add and scale factors multiply (both act on CRVAL and CDELT independently).
        """
        return Transform(self.dx + other.dx, self.dy + other.dy, self.sx * other.sx, self.sy * other.sy)

    def inverse(self) -> "Transform":
        """Return the correction that undoes this one."""
        return Transform(-self.dx, -self.dy, 1.0 / self.sx, 1.0 / self.sy)

    def as_dict(self) -> dict:
        """Plain-float dictionary (``dx``/``dy`` in arcsec) for JSON/ECSV rows."""
        return {"dx_arcsec": self.dx, "dy_arcsec": self.dy, "sx": self.sx, "sy": self.sy}


@dataclass(frozen=True, slots=True)
class TargetGrid:
    """Linear geometry of a target pixel grid, the frame in which stages work.

    Parameters
    ----------
    crpix : (float, float)
        Reference pixel ``(x, y)``, 0-based, in the unpadded target array.
    matrix : ((float, float), (float, float))
        ``diag(CDELT) @ PC`` in arcsec per pixel: maps a pixel offset ``(x, y)`` to an offset
        ``(lon, lat)`` in arcsec.
    pad : (int, int)
        Padding ``(pad_y, pad_x)`` of the reference arrays around the target grid, in pixels.
    """

    crpix: tuple[float, float]
    matrix: tuple[tuple[float, float], tuple[float, float]]
    pad: tuple[int, int] = (0, 0)

    @property
    def pixel_scale(self) -> tuple[float, float]:
        """Arcsec per pixel along ``(x, y)``: the column norms of ``matrix``."""
        m = np.asarray(self.matrix)
        return float(np.hypot(*m[:, 0])), float(np.hypot(*m[:, 1]))

    def with_pad(self, pad: tuple[int, int]) -> "TargetGrid":
        """Return the same grid with another reference padding."""
        return TargetGrid(self.crpix, self.matrix, (int(pad[0]), int(pad[1])))

    def shift_in_pixels(self, transform: Transform) -> tuple[float, float]:
        """The shift part of ``transform`` in target pixels ``(x, y)``."""
        x, y = np.linalg.solve(np.asarray(self.matrix), [transform.dx, transform.dy])
        return float(x), float(y)


def grid_from_wcs(wcs, pad: tuple[int, int] = (0, 0)) -> TargetGrid:
    """Build a `TargetGrid` from a 2-D celestial WCS.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        2-D celestial WCS, longitude on the first axis (e.g. ``HPLN-TAN``, ``HPLT-TAN``).
    pad : (int, int)
        Padding ``(pad_y, pad_x)`` of the reference arrays, in pixels.

    Returns
    -------
    grid : TargetGrid
    """
    if wcs is None or wcs.naxis != 2 or not wcs.has_celestial:
        raise WCSError(
            f"expected a 2-D celestial WCS, got {wcs!r}; select the spatial axes "
            "(e.g. integrate a raster over wavelength) and make sure CTYPE1/2 are HPLN/HPLT"
        )
    if wcs.wcs.lng != 0 or wcs.wcs.lat != 1:
        raise WCSError(
            f"the WCS must have longitude on axis 1 and latitude on axis 2, got CTYPE={list(wcs.wcs.ctype)}; "
            "transpose the image so that numpy axes are (y, x)"
        )
    scale = np.array([u.Unit(unit).to(u.arcsec) for unit in wcs.wcs.cunit])
    matrix = (scale * wcs.wcs.get_cdelt())[:, None] * wcs.wcs.get_pc()
    crpix = wcs.wcs.crpix - 1.0
    return TargetGrid(
        crpix=(float(crpix[0]), float(crpix[1])),
        matrix=tuple(tuple(float(v) for v in row) for row in matrix),
        pad=(int(pad[0]), int(pad[1])),
    )


def pixel_mapping(transform: Transform, grid: TargetGrid) -> tuple[np.ndarray, np.ndarray]:
    """Affine map from target pixels to padded-reference pixels under a correction.

    A target pixel ``p = (y, x)`` sees, once corrected, the sky that the *uncorrected* target grid
    places at pixel ``q = A @ p + b`` of the padded reference array (the reference resampled onto the
    target grid padded by ``grid.pad``).

    Returns
    -------
    matrix : (2, 2) ndarray
        ``A`` in numpy ``(y, x)`` order, ready for `scipy.ndimage.affine_transform`.
    offset : (2,) ndarray
        ``b`` in ``(y, x)`` order.
    """
    m = np.asarray(grid.matrix)
    m_inv = np.linalg.inv(m)
    linear_xy = m_inv @ np.diag([transform.sx, transform.sy]) @ m
    crpix_xy = np.asarray(grid.crpix)
    offset_xy = crpix_xy + m_inv @ [transform.dx, transform.dy] - linear_xy @ crpix_xy
    swap = np.array([[0, 1], [1, 0]])
    matrix_yx = swap @ linear_xy @ swap
    offset_yx = offset_xy[::-1] + np.asarray(grid.pad, dtype=float)
    return matrix_yx, offset_yx
