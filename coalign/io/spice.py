"""Solar Orbiter/SPICE L2 rasters: windows, wavelength integration and per-column acquisition times.

SPICE L2 windows are 4-D: numpy ``(t, lambda, y, x)``, FITS axes 1 HPLN (slit steps), 2 HPLT (along the
slit), 3 WAVE, 4 UTC. Time is FITS axis 4, coupled to the slit-step axis by ``PC4_1`` (negative when the
raster scans from east to west so that later columns are earlier), relative to ``DATEREF``. The
``VARIABLE_KEYWORDS`` table gives each exposure's acquisition start (``TIMAQUTC``); adding ``XPOSURE / 2``
gives the mid-exposure time that the WCS encodes. Pixels are not square, so the celestial PC matrix is
copied as it is, never rebuilt from ``CROTA``.
"""

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.io import fits
from astropy.time import Time

from coalign.exceptions import AllNaNError, CoalignWarning, ShapeError, TimeCoverageError, WCSError

__all__ = ["read_spice_raster", "spice_column_times", "spice_windows", "variable_keyword_times"]

#: Extensions that are never spectral windows.
NOT_WINDOWS = ("VARIABLE_KEYWORDS", "WCSDVARR")
#: Header keys copied from the window header to the 2-D map header (besides the celestial WCS).
KEPT_KEYS = (
    "TELESCOP",
    "INSTRUME",
    "DETECTOR",
    "OBSRVTRY",
    "LEVEL",
    "BUNIT",
    "BTYPE",
    "DSUN_OBS",
    "HGLN_OBS",
    "HGLT_OBS",
    "CRLN_OBS",
    "CRLT_OBS",
    "RSUN_REF",
    "RSUN_ARC",
    "SPIOBSID",
    "RASTERNO",
    "STUDY",
    "OBS_ID",
    "XPOSURE",
    "DATE-BEG",
    "DATE-END",
    "DATEREF",
    "FILENAME",
)


def _is_window(hdu) -> bool:
    header = hdu.header
    name = str(header.get("EXTNAME", "")).upper()
    return (
        hdu.is_image
        and not name.startswith(NOT_WINDOWS)
        and str(header.get("CTYPE1", "")).startswith("HPLN")
        and str(header.get("CTYPE3", "")).startswith("WAVE")
    )


def spice_windows(path) -> list[str]:
    """Names (EXTNAME) of the spectral windows of a SPICE L2 file, in file order.

    Distortion (``WCSDVARR``) and table extensions are never windows.
    """
    with fits.open(path) as hdul:
        return [str(h.header.get("EXTNAME", f"HDU{i}")) for i, h in enumerate(hdul) if _is_window(h)]


def _n_columns(header) -> int:
    if "NAXIS1" in header and int(header.get("NAXIS", 0)) >= 1:
        return int(header["NAXIS1"])
    raise ShapeError("the window header has no NAXIS1 (a header-only file?); pass n_columns explicitly")


def spice_column_times(header, n_columns: int | None = None) -> Time:
    """Mid-exposure time of every slit step (column) from the window's WCS.

    ``t(i) = DATEREF + CRVAL4 + CDELT4 * (PC4_1 (i + 1 - CRPIX1) + PC4_4 (1 - CRPIX4))`` for the first
    time index, in ``CUNIT4`` (seconds); other ``PC4_j`` terms are evaluated at the reference pixel.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        Header of one window.
    n_columns : int, optional
        Number of slit steps; default ``NAXIS1``.
    """
    if not str(header.get("CTYPE4", "")).upper().startswith(("UTC", "TIME")):
        raise TimeCoverageError(
            f"CTYPE4 is {header.get('CTYPE4')!r}, not a time axis; pass column_times explicitly"
        )
    reference = header.get("DATEREF", header.get("DATE-BEG", header.get("DATE-OBS")))
    if reference is None:
        raise TimeCoverageError(
            "the window header has no DATEREF, DATE-BEG or DATE-OBS; pass column_times explicitly"
        )
    n = _n_columns(header) if n_columns is None else int(n_columns)
    unit = u.Unit(str(header.get("CUNIT4", "s")).strip() or "s")
    columns = np.arange(1, n + 1, dtype=float)
    offset = header.get("PC4_1", 0.0) * (columns - header.get("CRPIX1", 1.0))
    offset = offset + header.get("PC4_4", 1.0) * (1.0 - header.get("CRPIX4", 1.0))
    seconds = (header.get("CRVAL4", 0.0) + header.get("CDELT4", 1.0) * offset) * unit
    return Time(reference) + seconds.to(u.s)


def variable_keyword_times(hdul, header) -> Time | None:
    """Mid-exposure times from the ``VARIABLE_KEYWORDS`` table (``TIMAQUTC + XPOSURE / 2``), or None."""
    if "VARIABLE_KEYWORDS" not in hdul or "TIMAQUTC" not in hdul["VARIABLE_KEYWORDS"].columns.names:
        return None
    starts = np.ravel(hdul["VARIABLE_KEYWORDS"].data["TIMAQUTC"][0])
    exposure = float(header.get("XPOSURE", 0.0))
    return Time([s.strip() for s in starts]) + exposure / 2 * u.s


def _select(hdul, window):
    windows = [(i, str(h.header.get("EXTNAME", f"HDU{i}"))) for i, h in enumerate(hdul) if _is_window(h)]
    names = [name for _, name in windows]
    if not windows:
        raise WCSError("the file has no SPICE spectral window (HPLN/HPLT/WAVE/UTC image extension)")
    if isinstance(window, int):
        if not 0 <= window < len(windows):
            raise KeyError(
                f"window index {window} out of range; the file has {len(windows)} windows: {names}"
            )
        return hdul[windows[window][0]]
    matches = [i for i, name in windows if name == window or name.upper().startswith(str(window).upper())]
    if len(matches) != 1:
        raise KeyError(
            f"window {window!r} {'is ambiguous' if matches else 'does not exist'}; windows: {names}"
        )
    return hdul[matches[0]]


def _integrate(cube, header, wavelength_range):
    if wavelength_range is not None:
        unit = u.Unit(str(header.get("CUNIT3", "nm")).strip())
        pixels = np.arange(1, cube.shape[0] + 1)
        wavelengths = (header["CRVAL3"] + header["CDELT3"] * (pixels - header["CRPIX3"])) * unit
        low, high = (u.Quantity(w).to(unit) for w in wavelength_range)
        keep = (wavelengths >= low) & (wavelengths <= high)
        if not keep.any():
            raise ValueError(
                f"wavelength_range {wavelength_range} selects no pixel of this window "
                f"({wavelengths.min():.4f} .. {wavelengths.max():.4f})"
            )
        cube = cube[keep]
    valid = np.isfinite(cube)
    count = valid.sum(axis=0)
    total = np.where(valid, cube, 0.0).sum(axis=0)
    # NaN-aware integral: mean of the valid samples times the number of samples; all-NaN spectra stay NaN.
    return np.divide(total * cube.shape[0], count, out=np.full(total.shape, np.nan), where=count > 0)


def _celestial_header(header) -> fits.Header:
    out = fits.Header()
    for axis in (1, 2):
        for key in ("CTYPE", "CUNIT", "CDELT", "CRPIX", "CRVAL"):
            out[f"{key}{axis}"] = header[f"{key}{axis}"]
    for i in (1, 2):
        for j in (1, 2):
            out[f"PC{i}_{j}"] = header.get(f"PC{i}_{j}", 1.0 if i == j else 0.0)
    out["DATE-OBS"] = header.get("DATE-AVG", header.get("DATE-OBS"))
    for key in KEPT_KEYS:
        if key in header:
            out[key] = header[key]
    out["EXTNAME"] = header.get("EXTNAME", "WINDOW")
    out["WAVELNTH"] = header.get("CRVAL3")
    out["WAVEUNIT"] = header.get("CUNIT3", "nm")
    return out


def read_spice_raster(path, window=0, *, wavelength_range=None, time_index: int = 0):
    """Read one SPICE L2 window as a 2-D raster map integrated over wavelength, with its column times.

    Parameters
    ----------
    path : path-like
        SPICE L2 FITS file.
    window : int or str
        Window index (among the spectral windows) or EXTNAME (a unique prefix is enough).
    wavelength_range : (Quantity, Quantity), optional
        Integrate only this range (e.g. ``(77.0, 77.2) * u.nm``); default: the whole window.
    time_index : int
        Index along the time axis (0 for rasters).

    Returns
    -------
    raster : `~sunpy.map.GenericMap`
        NaN-aware integral over wavelength; a spectrum with no valid sample gives NaN, never 0.
    column_times : `~astropy.time.Time`, shape (nx,)
        Mid-exposure time of each slit step, from the WCS (checked against ``VARIABLE_KEYWORDS``).
    """
    path = Path(path)
    with fits.open(path) as hdul:
        if any(str(h.header.get("EXTNAME", "")).upper().startswith("WCSDVARR") for h in hdul):
            warnings.warn(
                f"{path.name} carries WCSDVARR distortion arrays (per-step pointing); they are ignored, "
                "so the correction found is a mean over the raster",
                CoalignWarning,
                stacklevel=2,
            )
        hdu = _select(hdul, window)
        header = hdu.header
        if hdu.data is None:
            raise ShapeError(f"{path.name}[{header.get('EXTNAME')}] holds no data (a header-only file)")
        data = np.asarray(hdu.data, dtype=float)
        if data.ndim != 4:
            raise ShapeError(f"expected a 4-D (t, lambda, y, x) window, got shape {data.shape}")
        image = _integrate(data[time_index], header, wavelength_range)
        times = spice_column_times(header, data.shape[-1])
        table_times = variable_keyword_times(hdul, header)
    if table_times is not None and table_times.size == times.size:
        worst = np.max(np.abs((table_times.sort() - times.sort()).to_value(u.s)))
        if worst > max(1.0, float(header.get("XPOSURE", 0.0)) / 2):
            warnings.warn(
                f"{path.name}: WCS column times and VARIABLE_KEYWORDS TIMAQUTC differ by up to "
                f"{worst:.1f} s; using the WCS times",
                CoalignWarning,
                stacklevel=2,
            )
    if not np.isfinite(image).any():
        raise AllNaNError(f"{path.name}[{header.get('EXTNAME')}] has no valid spectrum in the selected range")
    return sunpy.map.Map(image, _celestial_header(header)), times
