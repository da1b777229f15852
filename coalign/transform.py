"""The pointing correction record and its geometry on a target pixel grid.

Convention (used everywhere in coalign)
---------------------------------------
A `Transform` is the correction to the **target's** pointing, expressed on its WCS:

* ``dx``, ``dy`` -- arcsec **added** to CRVAL1 / CRVAL2 (helioprojective longitude / latitude);
* ``sx``, ``sy`` -- factors **multiplying** CDELT1 / CDELT2 (1.0 = no scale error), i.e. a scaling
  about CRPIX;
* ``roll`` -- degrees **added** to the roll: the (scaled) intermediate world coordinates are rotated by
  ``R(roll)`` about CRPIX, counter-clockwise from +longitude towards +latitude, as an increase of
  ``CROTA2`` does. In the header this is ``PC' = diag(CDELT')^-1 R diag(CDELT') PC``, exact for
  non-square pixels.

The corrected pixel-to-world relation is therefore
``W'(p) = CRVAL + d + R(roll) diag(s) diag(CDELT) PC (p - CRPIX)``.
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


@dataclass(frozen=True, slots=True, repr=False)
class Transform:
    """Correction to the target's pointing (see the module docstring for the convention).

    Parameters
    ----------
    dx, dy : float or `~astropy.units.Quantity`
        Arcsec added to CRVAL1 / CRVAL2. Plain numbers are taken as arcsec; angle Quantities are converted.
    sx, sy : float
        Factors multiplying CDELT1 / CDELT2.
    roll : float or `~astropy.units.Quantity`
        Degrees added to the roll (plain numbers are degrees). Shown in the repr only when not 0.

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
    roll: float = 0.0

    def __post_init__(self):
        for name in ("dx", "dy"):
            object.__setattr__(self, name, _to_arcsec(getattr(self, name)))
        roll = self.roll.to_value(u.deg) if isinstance(self.roll, u.Quantity) else self.roll
        if not np.isfinite(float(roll)):
            raise ValueError(f"roll must be finite (degrees), got roll={self.roll!r}")
        object.__setattr__(self, "roll", float(roll))
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

    def __repr__(self) -> str:
        roll = f", roll={self.roll!r}" if self.roll else ""
        return f"Transform(dx={self.dx!r}, dy={self.dy!r}, sx={self.sx!r}, sy={self.sy!r}{roll})"

    @property
    def linear(self) -> np.ndarray:
        """``R(roll) diag(sx, sy)``: the linear part of the correction on intermediate world coordinates."""
        angle = np.deg2rad(self.roll)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return rotation @ np.diag([self.sx, self.sy])

    def compose(self, other: "Transform") -> "Transform":
        """Return the correction obtained by applying ``other`` after ``self``.

        Shifts add, scale factors multiply and rolls add (as they act on CRVAL, CDELT and the roll);
        with a roll, this is exact when the scale of ``other`` is isotropic.
        """
        return Transform(
            self.dx + other.dx,
            self.dy + other.dy,
            self.sx * other.sx,
            self.sy * other.sy,
            self.roll + other.roll,
        )

    def inverse(self) -> "Transform":
        """Return the correction that undoes this one (with a roll: exact when ``sx == sy``)."""
        return Transform(-self.dx, -self.dy, 1.0 / self.sx, 1.0 / self.sy, -self.roll)

    def as_dict(self) -> dict:
        """Plain-float dictionary (``dx``/``dy`` in arcsec, ``roll`` in degrees) for JSON/ECSV rows."""
        return {
            "dx_arcsec": self.dx,
            "dy_arcsec": self.dy,
            "sx": self.sx,
            "sy": self.sy,
            "roll_deg": self.roll,
        }


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
    linear_xy = m_inv @ transform.linear @ m
    crpix_xy = np.asarray(grid.crpix)
    offset_xy = crpix_xy + m_inv @ [transform.dx, transform.dy] - linear_xy @ crpix_xy
    swap = np.array([[0, 1], [1, 0]])
    matrix_yx = swap @ linear_xy @ swap
    offset_yx = offset_xy[::-1] + np.asarray(grid.pad, dtype=float)
    return matrix_yx, offset_yx
