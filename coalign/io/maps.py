"""Apply a pointing correction to a sunpy Map or a FITS header (data untouched)."""

from datetime import UTC, datetime

import astropy.units as u
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
    the scale factors multiply ``CDELT`` (or the matching rows of a ``CD`` matrix). All other keys,
    the spectral and time axes included, are kept.

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


def _history_text(transform: Transform) -> str:
    from coalign import __version__

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return (
        f"coalign {__version__} {stamp}: pointing corrected, CRVAL1 += {transform.dx:.4f} arcsec, "
        f"CRVAL2 += {transform.dy:.4f} arcsec, CDELT1 *= {transform.sx:.6f}, CDELT2 *= {transform.sy:.6f}"
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
