"""Apply a pointing correction to a sunpy Map or a FITS header (data untouched)."""

from datetime import UTC, datetime

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.io import fits

from coalign.exceptions import WCSError
from coalign.transform import Transform

__all__ = ["apply_transform", "correct_header", "make_corrected_wcs_map"]


def _axis_unit(header, axis: int):
    unit = header.get(f"CUNIT{axis}", header.get(f"cunit{axis}", "deg")) or "deg"
    return u.Unit(str(unit).strip())


def correct_header(
    header, transform: Transform, *, lon_axis: int = 1, lat_axis: int = 2, history: str | None = None
):
    """Return a corrected copy of a FITS header (`~astropy.io.fits.Header` or dict-like sunpy meta).

    ``CRVAL{lon_axis}`` and ``CRVAL{lat_axis}`` get ``dx`` and ``dy`` (converted to their ``CUNIT``);
    the scale factors multiply ``CDELT`` (or the matching rows of a ``CD`` matrix). A roll rotates the
    longitude and latitude rows of the ``PC`` (or ``CD``) matrix: ``PC' = diag(CDELT')^-1 R
    diag(CDELT') PC`` with ``CDELT'`` the scaled ``CDELT``, exact for non-square pixels and for axes
    coupled to others (e.g. time in a SPICE raster); a ``CROTA2`` header is rewritten as ``PC`` first.
    All other keys, the spectral and time axes included, are kept.

    Parameters
    ----------
    header : `~astropy.io.fits.Header` or dict-like
        Header to correct. Not modified.
    transform : Transform
        The correction (see `coalign.transform` for the convention).
    lon_axis, lat_axis : int
        FITS axis numbers of helioprojective longitude and latitude (1 and 2 for images; e.g. 3 and 2
        for an IRIS raster window).
    history : str, optional
        HISTORY text to append.
    """
    out = header.copy()
    keys = {k.upper() for k in out.keys()}
    if transform.roll or ("CROTA2" in keys and transform.sx != transform.sy):
        # (CROTA2 alone cannot hold a rotation once the pixels' aspect changes: rewritten as PC)
        _apply_roll(out, keys, transform, lon_axis, lat_axis)
    for axis, shift, scale in (
        (lon_axis, transform.dx, transform.sx),
        (lat_axis, transform.dy, transform.sy),
    ):
        if f"CRVAL{axis}" not in keys:
            raise WCSError(f"header has no CRVAL{axis}; it needs a celestial WCS (CTYPE/CRVAL/CDELT/CRPIX)")
        unit = _axis_unit(out, axis)
        out[f"CRVAL{axis}"] = float(out[f"CRVAL{axis}"]) + (shift * u.arcsec).to_value(unit)
        cd_keys = [f"CD{axis}_{j}" for j in range(1, 8) if f"CD{axis}_{j}" in keys]
        if cd_keys:
            for key in cd_keys:
                out[key] = float(out[key]) * scale
        elif f"CDELT{axis}" in keys:
            out[f"CDELT{axis}"] = float(out[f"CDELT{axis}"]) * scale
        else:
            raise WCSError(f"header has neither CDELT{axis} nor CD{axis}_j; cannot apply a scale correction")
    if history:
        if isinstance(out, fits.Header):
            out.add_history(history)
        else:
            previous = out.get("history", "")
            out["history"] = f"{previous}\n{history}" if previous else history
    return out


def _n_axes(header, lon_axis, lat_axis) -> int:
    n = int(header.get("WCSAXES", header.get("NAXIS", 0)) or 0)
    return max(n, lon_axis, lat_axis)


def _apply_roll(out, keys, transform: Transform, lon_axis: int, lat_axis: int) -> None:
    """Rotate the celestial rows of the PC (or CD) matrix of ``out`` in place by ``transform.roll``."""
    angle = np.deg2rad(transform.roll)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    axes = (lon_axis, lat_axis)
    n = _n_axes(out, lon_axis, lat_axis)
    columns = range(1, n + 1)
    if any(f"CD{i}_{j}" in keys for i in axes for j in columns):
        cd = np.array([[float(out.get(f"CD{i}_{j}", 0.0)) for j in columns] for i in axes])
        for (i, j), value in np.ndenumerate(rotation @ np.diag([transform.sx, transform.sy]) @ cd):
            out[f"CD{axes[i]}_{j + 1}"] = float(value) / [transform.sx, transform.sy][i]  # scaled below
        return
    cdelt = np.array([float(out.get(f"CDELT{i}", 1.0)) for i in axes])
    pc = np.array([[float(out.get(f"PC{i}_{j}", 1.0 if i == j else 0.0)) for j in columns] for i in axes])
    if not any(f"PC{i}_{j}" in keys for i in axes for j in columns) and "CROTA2" in keys:
        # sunpy's reading of CROTA2 for non-square pixels: PC = diag(CDELT)^-1 R(CROTA2) diag(CDELT)
        crota = np.deg2rad(float(out["CROTA2"]))
        turn = np.array([[np.cos(crota), -np.sin(crota)], [np.sin(crota), np.cos(crota)]])
        block = np.diag(1 / cdelt) @ turn @ np.diag(cdelt)
        pc[:, [lon_axis - 1, lat_axis - 1]] = block
        for key in ("CROTA2", "CROTA1"):
            if key in keys:
                del out[key]
    scaled = cdelt * [transform.sx, transform.sy]
    rolled = np.diag(1 / scaled) @ rotation @ np.diag(scaled) @ pc
    for (i, j), value in np.ndenumerate(rolled):
        out[f"PC{axes[i]}_{j + 1}"] = float(value)


def _history_text(transform: Transform) -> str:
    from coalign import __version__

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return (
        f"coalign {__version__} {stamp}: pointing corrected, CRVAL1 += {transform.dx:.4f} arcsec, "
        f"CRVAL2 += {transform.dy:.4f} arcsec, CDELT1 *= {transform.sx:.6f}, CDELT2 *= {transform.sy:.6f}"
        + (f", roll += {transform.roll:.5f} deg" if transform.roll else "")
    )


def apply_transform(smap, transform: Transform):
    """Return a **new** sunpy Map whose WCS is corrected by ``transform``; data and other metadata untouched.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Map to correct. Not modified; the new map shares nothing mutable with it.
    transform : Transform
        Correction of its pointing.

    Returns
    -------
    `~sunpy.map.GenericMap`
    """
    if not isinstance(smap, sunpy.map.GenericMap):
        raise TypeError(
            f"apply_transform expects a sunpy Map, got {type(smap).__name__}; "
            "use correct_header for a FITS header"
        )
    meta = correct_header(smap.meta, transform, history=_history_text(transform))
    return sunpy.map.Map(smap.data.copy(), meta)


#: Name used by the classic API.
make_corrected_wcs_map = apply_transform
