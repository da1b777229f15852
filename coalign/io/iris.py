"""IRIS level-2 spectrograph rasters and slit-jaw images (SJI): windows, times, pointing, observer.

**Raster files** (one file per raster repeat): the primary HDU holds no data; extension ``n`` is the
spectral window described by ``TDESCn`` / ``TDETn`` / ``TWAVEn`` of the primary header, with numpy
shape ``(steps, y, lambda)``, i.e. FITS axes 1 ``WAVE``, 2 ``HPLT-TAN`` (along the slit), 3 ``HPLN-TAN``
(slit steps), and ``PC`` terms coupling axes 2 and 3. Pixels are not square (the raster step differs
from the slit pixel), so the celestial PC block is copied as it is, never rebuilt from a roll angle.

**SJI files**: the primary HDU is a ``(t, y, x)`` cube whose header gives one pointing for the whole
sequence; each frame's own pointing and roll are in the auxiliary table.

Both carry the **auxiliary extension** as the second-to-last HDU: an image with one row per exposure
whose header keywords give column indices (``TIME``, ``XCENIX``, ``YCENIX``, ``PC1_1IX`` ..., the
exposure times ``EXPTIMEF``/``EXPTIMEN`` for the FUV/NUV spectrograph or ``EXPTIMES`` for the SJI).
``TIME`` is the start of each exposure in seconds after ``STARTOBS``; the level-1 file names listed in
the last HDU are stamped ``EXPTIME / 2`` later, so coalign uses the **mid-exposure** time
``STARTOBS + TIME + EXPTIME / 2`` for every step and frame (``DATE-OBS`` of the maps), and keeps the
start in ``DATE-BEG``.

IRIS L2 files have no observer keywords; IRIS is in a low Earth orbit, so the maps get Earth's
heliographic position at their mid time (`sunpy.coordinates.get_earth`) as ``HGLN_OBS``/``HGLT_OBS``,
with the file's own ``DSUN_OBS`` when present. Missing pixels (IRIS L2 fill value −200) and
non-finite pixels (saturated pixels are +inf) become NaN.

**Resampled files.** The test files shipped with irispy-lmsal were shrunk with
``scipy.ndimage.zoom(data, 0.1)`` (its default ``grid_mode=False`` keeps the centres of the first and
last pixels: new pixel ``k`` samples old pixel ``k (N - 1) / (n - 1)``) and only ``CRPIX`` was multiplied
by 0.1: ``CDELT`` is still the native 0.16635″, ten times too small for the shrunk arrays. The readers
detect this (``NAXIS * CDELT`` far from ``FOVX``/``FOVY``), warn, and with ``repair_plate_scale=True``
rebuild the header exactly for that resampling (see `repair_resampled_header`).
"""

import warnings
from pathlib import Path
from typing import NamedTuple

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from scipy import ndimage
from sunpy.coordinates import get_earth

from coalign.exceptions import AllNaNError, CoalignWarning, ShapeError, TimeCoverageError, WCSError
from coalign.io.fits import celestial_axes
from coalign.io.maps import correct_header
from coalign.transform import Transform

__all__ = [
    "FILL_VALUE",
    "PointingUpdate",
    "corrected_iris_fov",
    "corrected_iris_pointing",
    "integrate_spectra",
    "iris_column_times",
    "iris_windows",
    "read_iris_raster",
    "read_iris_sji",
    "repair_resampled_header",
]

#: IRIS level-2 value of missing pixels.
FILL_VALUE = -200.0
#: A header is taken as resampled when ``NAXIS * CDELT`` and ``FOV`` differ by more than this fraction.
PLATE_SCALE_TOLERANCE = 0.05
#: Aux rows whose roll matrix departs from a rotation by more than this are invalid (missing exposures).
PC_TOLERANCE = 1e-3
#: Header keys copied from the primary header to the maps.
KEPT_KEYS = ("TELESCOP", "INSTRUME", "OBSID", "OBS_DESC", "STARTOBS", "ENDOBS")
#: Solar radius written to the maps when the file gives none (IAU 2015 nominal, sunpy's default).
RSUN_REF = 695700000.0


def _is_iris(header) -> bool:
    return str(header.get("TELESCOP", "")).strip().upper() == "IRIS"


def _is_sji(primary) -> bool:
    return str(primary.get("INSTRUME", "")).strip().upper().startswith("SJI")


def _primary(hdul, path: Path):
    header = hdul[0].header
    if not _is_iris(header):
        raise WCSError(
            f"{path.name} is not an IRIS file (TELESCOP = {header.get('TELESCOP')!r}); "
            "use read_map or the reader of its instrument"
        )
    return header


def _window_names(primary) -> list[str]:
    return [
        str(primary.get(f"TDESC{n}", f"WINDOW{n}")).strip() for n in range(1, int(primary.get("NWIN", 0)) + 1)
    ]


def iris_windows(path) -> list[str]:
    """Names (``TDESCn``) of the spectral windows of an IRIS L2 raster file, in file order.

    Parameters
    ----------
    path : path-like
        IRIS L2 raster (or SJI) FITS file.

    Returns
    -------
    list of str
        E.g. ``['C II 1336', '1343', 'Fe XII 1349', ..., 'Mg II k 2796']``; the window ``n`` (0-based)
        is extension ``n + 1``. An SJI file has one "window", e.g. ``['SJI_2832']``.
    """
    path = Path(path)
    with fits.open(path) as hdul:
        return _window_names(_primary(hdul, path))


def _select_window(names: list[str], window, path: Path) -> int:
    """0-based index of ``window`` (index, exact name or unique prefix, case-insensitive)."""
    if not names:
        raise WCSError(
            f"{path.name} lists no spectral window (NWIN = 0 or no TDESCn); is it an IRIS L2 raster?"
        )
    if isinstance(window, int | np.integer) and not isinstance(window, bool):
        if not 0 <= window < len(names):
            raise KeyError(
                f"window index {window} out of range for {path.name}; it has {len(names)} windows: {names}"
            )
        return int(window)
    key = str(window).strip().upper()
    matches = [i for i, name in enumerate(names) if name.upper() == key]
    if not matches:
        matches = [i for i, name in enumerate(names) if name.upper().startswith(key)]
    if len(matches) != 1:
        problem = "is ambiguous" if matches else "does not exist"
        raise KeyError(f"window {window!r} {problem} in {path.name}; its windows are: {names}")
    return matches[0]


def _aux_index(hdul) -> int | None:
    """Index of the auxiliary extension (second-to-last HDU, an image with a TIME column index) or None."""
    if len(hdul) < 3:
        return None
    hdu = hdul[len(hdul) - 2]
    if not hdu.is_image or "TIME" not in hdu.header or hdu.data is None:
        return None
    return len(hdul) - 2


def _aux(hdul, path: Path):
    """The auxiliary extension (second-to-last HDU): header of column indices and its (rows, columns) data."""
    index = _aux_index(hdul)
    if index is None:
        raise TimeCoverageError(
            f"{path.name} has no IRIS auxiliary extension (second-to-last HDU with a TIME column index); "
            "it cannot give per-exposure times: is it a complete IRIS L2 file?"
        )
    hdu = hdul[index]
    return hdu.header, np.asarray(hdu.data, dtype=float)


def _aux_column(aux, key: str, path: Path, default=None):
    header, data = aux
    if key not in header:
        if default is not None:
            return np.full(data.shape[0], float(default))
        raise TimeCoverageError(f"the auxiliary extension of {path.name} has no {key} column index")
    return data[:, int(header[key])]


def _start(primary, path: Path) -> Time:
    start = primary.get("STARTOBS", primary.get("DATE_OBS"))
    if start is None:
        raise TimeCoverageError(
            f"{path.name} has no STARTOBS (nor DATE_OBS): the aux TIME column has no origin"
        )
    return Time(start, scale="utc")


def _native_lengths(axes_fov: dict[int, float], header) -> dict[int, int]:
    """Native length ``round(FOV / |CDELT|)`` of each axis that has a field-of-view keyword."""
    out = {}
    for axis, fov in axes_fov.items():
        cdelt = abs(float(header.get(f"CDELT{axis}", 0.0)))
        if fov and cdelt:
            out[axis] = round(float(fov) / cdelt)
    return out


def _inconsistent(native: dict[int, int], header) -> dict[int, int]:
    return {
        axis: n
        for axis, n in native.items()
        if abs(n / int(header[f"NAXIS{axis}"]) - 1) > PLATE_SCALE_TOLERANCE
    }


def repair_resampled_header(header, native_lengths: dict[int, int]) -> fits.Header:
    """Header of an array resampled by ``scipy.ndimage.zoom`` whose WCS kept the native ``CDELT``.

    For each FITS axis ``i`` with native length ``N`` and present length ``n = NAXISi``, the zoom
    (default ``grid_mode=False``) puts new pixel ``k`` (0-based) on old pixel ``k f`` with
    ``f = (N - 1) / (n - 1)``, so the linear part of the WCS becomes ``diag(CDELT) PC diag(f)``:
    ``CDELTi *= fi``, ``PCi_j *= fj / fi``, and the reference pixel moves to ``1 + (CRPIX0 - 1) / f``
    where ``CRPIX0 = CRPIX / z`` is the native one (the resampling multiplied it by the nominal zoom
    ``z``, ``n / N`` rounded to one significant digit: 0.1 for the irispy-lmsal test files). The world
    coordinates of every pixel are then those of the native pixel it was interpolated from.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        Header with ``NAXISi``, ``CDELTi``, ``CRPIXi`` for the listed axes. Not modified.
    native_lengths : dict
        ``{fits_axis: native length}``; axes whose length is unchanged are left alone.

    Returns
    -------
    `~astropy.io.fits.Header`
        A repaired copy with a HISTORY line.

    Examples
    --------
    >>> from astropy.io import fits
    >>> h = fits.Header({"NAXIS": 1, "NAXIS1": 110, "CDELT1": 0.16635, "CRPIX1": 55.15})
    >>> r = repair_resampled_header(h, {1: 1102})
    >>> round(r["CDELT1"], 5), r["CRPIX1"]
    (1.68029, 55.5)
    """
    out = header.copy()
    factors = {}
    for axis, native in native_lengths.items():
        n = int(header[f"NAXIS{axis}"])
        if native == n or n < 2:
            continue
        f = (native - 1) / (n - 1)
        zoom = float(f"{n / native:.1g}")
        factors[axis] = f
        out[f"CDELT{axis}"] = float(header[f"CDELT{axis}"]) * f
        out[f"CRPIX{axis}"] = 1 + (float(header[f"CRPIX{axis}"]) / zoom - 1) / f
    naxis = int(header.get("NAXIS", max(factors, default=0)))
    for i in range(1, naxis + 1):
        for j in range(1, naxis + 1):
            key = f"PC{i}_{j}"
            if key in header and (i in factors or j in factors):
                out[key] = float(header[key]) * factors.get(j, 1.0) / factors.get(i, 1.0)
    if factors:
        summary = ", ".join(f"axis {a}: x{f:.5f}" for a, f in sorted(factors.items()))
        out.add_history(f"coalign: header repaired for a scipy.ndimage.zoom resampling ({summary})")
    return out


def _plate_scale(header, native: dict[int, int], repair: bool, path: Path, what: str):
    """Repaired header (and per-axis factors) or the header as it is, with a warning when inconsistent."""
    bad = _inconsistent(native, header)
    if not bad:
        return header, {}
    cdelt = {a: abs(float(header[f"CDELT{a}"])) for a in bad}
    unit = {a: str(header.get(f"CUNIT{a}", "")).strip() for a in bad}
    details = "; ".join(
        f"NAXIS{a} * CDELT{a} = {int(header[f'NAXIS{a}']) * cdelt[a]:.4g} {unit[a]} but the field of view is "
        f"{n * cdelt[a]:.4g} {unit[a]} ({n} native pixels)"
        for a, n in bad.items()
    )
    if not repair:
        warnings.warn(
            f"{path.name} {what}: {details}. The file looks resampled without its WCS being updated (as "
            "the irispy-lmsal test files, shrunk x0.1): its plate scale is wrong. Pass "
            "repair_plate_scale=True to rebuild CDELT/CRPIX for that resampling",
            CoalignWarning,
            stacklevel=3,
        )
        return header, {}
    repaired = repair_resampled_header(header, native)
    factors = {
        a: (n - 1) / (int(header[f"NAXIS{a}"]) - 1)
        for a, n in native.items()
        if n != int(header[f"NAXIS{a}"])
    }
    return repaired, factors


def _valid_data(data, resampled_axes=()):
    """Float copy with missing (−200) and non-finite (saturated: +inf) pixels set to NaN.

    Along ``resampled_axes`` (numpy axes of a resampled file, see `repair_resampled_header`) the
    interpolation blended the fill value with its neighbours: values below ``0.75 * FILL_VALUE`` and
    their direct neighbours along those axes are missing too.
    """
    out = np.asarray(data, dtype=float)
    missing = ~np.isfinite(out) | (out == FILL_VALUE)
    if resampled_axes:
        size = [3 if axis in resampled_axes else 1 for axis in range(out.ndim)]
        blended = np.where(np.isfinite(out), out, 0.0) < 0.75 * FILL_VALUE
        missing |= ndimage.binary_dilation(blended, structure=np.ones(size, bool))
    return np.where(missing, np.nan, out)


def integrate_spectra(cube, wavelengths: u.Quantity | None = None, wavelength_range=None) -> np.ndarray:
    """NaN-aware integral over the last axis: mean of the valid samples times the number of samples.

    A spectrum with no valid sample gives NaN, never 0. ``wavelength_range`` (two Quantities or numbers
    in the unit of ``wavelengths``) keeps only the samples inside it.

    Examples
    --------
    >>> integrate_spectra(np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]]))
    array([ 6., nan])
    """
    cube = np.asarray(cube, dtype=float)
    if wavelength_range is not None:
        if wavelengths is None:
            raise ValueError("wavelength_range needs the wavelengths of the last axis; pass wavelengths=")
        low, high = (u.Quantity(w).to_value(wavelengths.unit) for w in wavelength_range)
        keep = (wavelengths.value >= low) & (wavelengths.value <= high)
        if not keep.any():
            raise ValueError(
                f"wavelength_range {wavelength_range} selects no pixel of this window "
                f"({wavelengths.min():.4f} .. {wavelengths.max():.4f}); widen it or pick another window"
            )
        cube = cube[..., keep]
    valid = np.isfinite(cube)
    count = valid.sum(axis=-1)
    total = np.where(valid, cube, 0.0).sum(axis=-1)
    return np.divide(total * cube.shape[-1], count, out=np.full(total.shape, np.nan), where=count > 0)


def _wavelengths(header, axis: int, n: int) -> u.Quantity:
    unit = u.Unit(str(header.get(f"CUNIT{axis}", "Angstrom")).strip() or "Angstrom")
    pixels = np.arange(1, n + 1, dtype=float)
    scale = float(header.get(f"PC{axis}_{axis}", 1.0)) * float(header[f"CDELT{axis}"])
    return (float(header[f"CRVAL{axis}"]) + scale * (pixels - float(header[f"CRPIX{axis}"]))) * unit


def _to_arcsec(value, unit_text) -> float:
    unit = u.Unit(str(unit_text).strip() or "arcsec")
    return float(value) if unit == u.arcsec else float((float(value) * unit).to_value(u.arcsec))


def _celestial_2d(header, lon: int, lat: int) -> fits.Header:
    """2-D helioprojective header (axis 1 = longitude) from axes ``lon``/``lat`` of a header; PC exact."""
    out = fits.Header()
    for new, old in ((1, lon), (2, lat)):
        unit = header.get(f"CUNIT{old}", "arcsec")
        out[f"CTYPE{new}"] = str(header[f"CTYPE{old}"]).strip()
        out[f"CUNIT{new}"] = "arcsec"
        out[f"CRPIX{new}"] = float(header[f"CRPIX{old}"])
        out[f"CRVAL{new}"] = _to_arcsec(header[f"CRVAL{old}"], unit)
        out[f"CDELT{new}"] = _to_arcsec(header[f"CDELT{old}"], unit)
    for i, old_i in ((1, lon), (2, lat)):
        for j, old_j in ((1, lon), (2, lat)):
            out[f"PC{i}_{j}"] = float(header.get(f"PC{old_i}_{old_j}", 1.0 if old_i == old_j else 0.0))
    return out


def _has_observer(primary) -> bool:
    return all(key in primary for key in ("HGLN_OBS", "HGLT_OBS", "DSUN_OBS"))


def _observer(header: fits.Header, primary, earth) -> fits.Header:
    """Add the observer: the file's keywords if complete, else ``earth`` (IRIS is in Earth orbit).

    ``earth`` is Earth's position at the map's DATE-AVG (`sunpy.coordinates.get_earth`), or None when
    the file has its own observer keywords.
    """
    out = header.copy()
    out["RSUN_REF"] = float(primary.get("RSUN_REF", RSUN_REF))
    if _has_observer(primary):
        for key in ("HGLN_OBS", "HGLT_OBS", "DSUN_OBS"):
            out[key] = float(primary[key])
        return out
    out["HGLN_OBS"] = (float(earth.lon.to_value(u.deg)), "Earth at DATE-AVG (IRIS is in Earth orbit)")
    out["HGLT_OBS"] = (float(earth.lat.to_value(u.deg)), "Earth at DATE-AVG (IRIS is in Earth orbit)")
    if "DSUN_OBS" in primary:
        out["DSUN_OBS"] = (float(primary["DSUN_OBS"]), "IRIS-Sun distance from the file")
    else:
        out["DSUN_OBS"] = (float(earth.radius.to_value(u.m)), "Earth at DATE-AVG (IRIS is in Earth orbit)")
    return out


def _dates(header: fits.Header, begin: Time, end: Time) -> fits.Header:
    out = header.copy()
    mid = begin + (end - begin) / 2
    out["DATE-OBS"] = (mid.isot, "mid-exposure (mid-raster) time")
    out["DATE-BEG"] = begin.isot
    out["DATE-END"] = end.isot
    out["DATE-AVG"] = mid.isot
    return out


def _coalign_history(header) -> list[str]:
    return [str(line) for line in header.get("HISTORY", []) if str(line).startswith("coalign")]


def _exposure_column(detector: str) -> str:
    return "EXPTIMEN" if detector.upper().startswith("NUV") else "EXPTIMEF"


def iris_column_times(path, window: int | str = 0) -> Time:
    """Mid-exposure time of every slit step of an IRIS L2 raster: ``STARTOBS + TIME + EXPTIME / 2``.

    Parameters
    ----------
    path : path-like
        IRIS L2 raster file.
    window : int or str
        Window (index or ``TDESCn`` name): it picks the FUV (``EXPTIMEF``) or NUV (``EXPTIMEN``) exposure.

    Returns
    -------
    `~astropy.time.Time`, shape (n_steps,)
    """
    path = Path(path)
    with fits.open(path) as hdul:
        primary = _primary(hdul, path)
        index = _select_window(_window_names(primary), window, path)
        return _step_times(hdul, primary, index, path)[0]


def _step_times(hdul, primary, index: int, path: Path):
    aux = _aux(hdul, path)
    detector = str(primary.get(f"TDET{index + 1}", "FUV")).strip()
    start = _start(primary, path) + _aux_column(aux, "TIME", path) * u.s
    exposure = _aux_column(aux, _exposure_column(detector), path, default=primary.get("EXPTIME", 0.0))
    return start + exposure / 2 * u.s, start, exposure


def read_iris_raster(
    path, window: int | str = 0, *, wavelength_range=None, repair_plate_scale: bool = False
) -> tuple[sunpy.map.GenericMap, Time]:
    """Read one window of an IRIS L2 raster file as a 2-D map integrated over wavelength, with step times.

    Parameters
    ----------
    path : path-like
        IRIS L2 raster file (one raster repeat, ``..._raster_t000_r00000.fits``).
    window : int or str
        Window index (0-based, in ``TDESCn`` order) or name: exact (``"Si IV 1403"``) or a unique
        prefix (``"Mg II k"``), case-insensitive. A name that does not exist raises `KeyError` listing them.
    wavelength_range : (Quantity, Quantity), optional
        Integrate only this range, e.g. ``(1402.5, 1403.1) * u.AA``; default: the whole window.
    repair_plate_scale : bool
        Rebuild the WCS of a resampled file whose header kept the native plate scale (the irispy-lmsal
        test files); see the module docstring. A file that is consistent is never changed.

    Returns
    -------
    raster : `~sunpy.map.GenericMap`
        ``(y, steps)`` image: the NaN-aware integral over wavelength (a spectrum with no valid sample is
        NaN, the fill value −200 is missing). Its header has the window's exact celestial PC block
        (axes reordered to longitude, latitude), arcsec units, ``DATE-OBS`` = ``DATE-AVG`` = the
        raster's mid time, ``DATE-BEG``/``DATE-END``, and the observer (Earth, see the module docstring).
    column_times : `~astropy.time.Time`, shape (n_steps,)
        Mid-exposure time of each step, from the auxiliary extension.

    Raises
    ------
    KeyError
        Unknown window.
    WCSError
        A slit-jaw or sit-and-stare file (no spatial raster), or a window without a helioprojective WCS.
    """
    path = Path(path)
    with fits.open(path) as hdul:
        primary = _primary(hdul, path)
        if _is_sji(primary):
            raise WCSError(f"{path.name} is a slit-jaw (SJI) file, not a raster; read it with read_iris_sji")
        names = _window_names(primary)
        index = _select_window(names, window, path)
        if index + 1 >= len(hdul) or hdul[index + 1].data is None:
            raise ShapeError(f"{path.name}: window {names[index]!r} (extension {index + 1}) holds no data")
        hdu = hdul[index + 1]
        header = hdu.header.copy()
        raw = np.asarray(hdu.data, dtype=float)
        times, starts, exposures = _step_times(hdul, primary, index, path)
    label = f"window {names[index]!r}"
    if raw.ndim != 3:
        raise ShapeError(
            f"{path.name} {label}: expected a 3-D (steps, y, lambda) window, got shape {raw.shape}"
        )
    axes = celestial_axes(header)
    if axes is None or sorted(axes) != [2, 3] or not str(header.get("CTYPE1", "")).upper().startswith("WAVE"):
        raise WCSError(
            f"{path.name} {label}: expected FITS axes WAVE, HPLT, HPLN, got CTYPE1-3 = "
            f"{[header.get(f'CTYPE{i}') for i in (1, 2, 3)]}; is it an IRIS L2 raster?"
        )
    lon, lat = axes
    if float(header.get(f"CDELT{lon}", 0.0)) == 0.0:
        raise WCSError(
            f"{path.name} is a sit-and-stare observation (CDELT{lon} = 0: every step sees the same slit "
            "position), so its x axis is time, not space; it cannot be aligned as an image. Align the "
            "slit-jaw images (read_iris_sji) instead"
        )
    if any(float(header.get(key, 0.0)) != 0.0 for key in (f"PC{lon}_1", f"PC{lat}_1")):
        raise WCSError(
            f"{path.name} {label}: the pointing depends on the wavelength pixel (PC{lon}_1 or PC{lat}_1 is "
            "not 0), which a 2-D map cannot represent; use a reader that keeps the 3-D WCS (e.g. irispy)"
        )
    native = _native_lengths({lat: primary.get("FOVY")}, header)
    if _inconsistent(native, header) and f"TWMIN{index + 1}" in primary and f"TWMAX{index + 1}" in primary:
        # Resampled along the slit, so along wavelength too: TWMIN/TWMAX span the native window.
        span = float(primary[f"TWMAX{index + 1}"]) - float(primary[f"TWMIN{index + 1}"])
        native[1] = round(span / abs(float(header["CDELT1"]))) + 1
    header, factors = _plate_scale(header, native, repair_plate_scale, path, label)
    data = _valid_data(raw, tuple(raw.ndim - axis for axis in factors))
    if times.size != data.shape[0]:
        raise TimeCoverageError(
            f"{path.name}: the auxiliary extension has {times.size} rows for {data.shape[0]} raster steps; "
            "the file may be truncated"
        )
    image = integrate_spectra(data, _wavelengths(header, 1, data.shape[2]), wavelength_range).T
    if not np.isfinite(image).any():
        raise AllNaNError(f"{path.name} {label} has no valid spectrum in the selected range")
    begin, end = starts.min(), (starts + exposures * u.s).max()
    out = _dates(_celestial_2d(header, lon, lat), begin, end)
    out = _observer(out, primary, None if _has_observer(primary) else get_earth(begin + (end - begin) / 2))
    for key in KEPT_KEYS:
        if key in primary and key not in out:
            out[key] = primary[key]
    out["DETECTOR"] = str(primary.get(f"TDET{index + 1}", "")).strip()
    out["EXTNAME"] = names[index]
    out["WAVELNTH"] = float(primary.get(f"TWAVE{index + 1}", header.get("CRVAL1")))
    out["WAVEUNIT"] = "Angstrom"
    out["BUNIT"] = "DN"
    out["XPOSURE"] = float(np.mean(exposures))
    for line in _coalign_history(header):
        out.add_history(line)
    return sunpy.map.Map(image, out), times


def _row_validity(xcen, ycen, pc) -> np.ndarray:
    """Rows whose pointing is usable: finite, not zero, roll matrix a rotation (missing exposures are 0)."""
    det = pc[:, 0, 0] * pc[:, 1, 1] - pc[:, 0, 1] * pc[:, 1, 0]
    norm = pc[:, 0, 0] ** 2 + pc[:, 1, 0] ** 2
    finite = np.isfinite(xcen) & np.isfinite(ycen) & np.isfinite(pc).all(axis=(1, 2))
    return (
        finite
        & ((xcen != 0) | (ycen != 0))
        & (np.abs(det - 1) < PC_TOLERANCE)
        & (np.abs(norm - 1) < PC_TOLERANCE)
    )


def _at(rows: np.ndarray, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Values at fractional aux rows, interpolated linearly (from the valid rows only, if given)."""
    index = np.arange(values.shape[0], dtype=float)
    keep = np.ones(values.shape[0], bool) if valid is None else valid
    flat = values.reshape(values.shape[0], -1)
    out = np.stack([np.interp(rows, index[keep], flat[keep, c]) for c in range(flat.shape[1])], axis=-1)
    return out.reshape((rows.size, *values.shape[1:]))


def read_iris_sji(path, *, frames=None, repair_plate_scale: bool = False) -> list[sunpy.map.GenericMap]:
    """Read an IRIS L2 slit-jaw file as one sunpy Map per frame, each with its own time and pointing.

    Each frame's pointing is the file's ``CRVAL1/2`` moved by that frame's offset in the auxiliary table,
    ``(XCENIX, YCENIX) - (XCEN, YCEN)`` (IRIS tracks solar rotation: the frames of a 4-hour sequence span
    ~30″ in x), with its own roll ``PC1_1IX .. PC2_2IX``. `~coalign.io.fits.write_corrected` moves
    ``CRVAL``, ``XCEN``/``YCEN`` and every ``XCENIX``/``YCENIX`` together (`corrected_iris_pointing`),
    so a corrected file reads back with the corrected pointing on every frame. Rows of missing exposures
    (zero pointing and roll) are interpolated in time from the valid rows, with a warning if the frame
    holds data.

    Parameters
    ----------
    path : path-like
        IRIS L2 SJI file (``..._SJI_<band>_t000.fits``).
    frames : int, slice or sequence of int, optional
        Frames to read (default: all).
    repair_plate_scale : bool
        Rebuild the WCS of a resampled file whose header kept the native plate scale (the irispy-lmsal
        test files); frames then map to fractional aux rows if the aux table was not resampled with them.

    Returns
    -------
    list of `~sunpy.map.GenericMap`
        ``DATE-OBS`` = ``DATE-AVG`` = mid-exposure ``STARTOBS + TIME + EXPTIMES / 2``, ``DATE-BEG`` the
        exposure start; missing (−200) and saturated (inf) pixels are NaN; observer Earth.
    """
    path = Path(path)
    with fits.open(path) as hdul:
        primary = _primary(hdul, path)
        if not _is_sji(primary):
            raise WCSError(
                f"{path.name} is not a slit-jaw file (INSTRUME = {primary.get('INSTRUME')!r}); "
                "read a raster with read_iris_raster"
            )
        header = primary.copy()
        cube = hdul[0].data
        if cube is None or cube.ndim != 3:
            raise ShapeError(
                f"{path.name}: expected a 3-D (t, y, x) SJI cube, got {getattr(cube, 'shape', None)}"
            )
        aux = _aux(hdul, path)
        n_frames = cube.shape[0]
        picked = np.arange(n_frames)[frames] if frames is not None else np.arange(n_frames)
        picked = np.atleast_1d(picked)
        planes = [np.asarray(cube[k], dtype=float) for k in picked]
    if celestial_axes(header) != (1, 2):
        raise WCSError(f"{path.name}: expected HPLN/HPLT on FITS axes 1 and 2 of the SJI cube")
    native = _native_lengths({1: header.get("FOVX"), 2: header.get("FOVY")}, header)
    header, factors = _plate_scale(header, native, repair_plate_scale, path, "(SJI cube)")
    data = [_valid_data(plane, tuple(2 - axis for axis in factors)) for plane in planes]
    n_aux = aux[1].shape[0]
    if n_aux == n_frames:
        rows = picked.astype(float)
    elif repair_plate_scale and n_frames > 1:
        rows = picked * (n_aux - 1) / (n_frames - 1)
    else:
        raise TimeCoverageError(
            f"{path.name}: the auxiliary extension has {n_aux} rows for {n_frames} frames, so frame times "
            "and pointing are ambiguous. If the file was resampled in time (the irispy-lmsal test files), "
            "pass repair_plate_scale=True"
        )
    start = _start(primary, path)
    begins = start + _at(rows, _aux_column(aux, "TIME", path)) * u.s
    exposures = _at(rows, _aux_column(aux, "EXPTIMES", path, default=primary.get("EXPTIME", 0.0)))
    xcen, ycen = _aux_column(aux, "XCENIX", path), _aux_column(aux, "YCENIX", path)
    pc = np.stack([_aux_column(aux, f"PC{i}_{j}IX", path) for i in (1, 2) for j in (1, 2)], axis=-1)
    pc = pc.reshape(-1, 2, 2)
    valid = _row_validity(xcen, ycen, pc)
    if not valid.any():
        raise WCSError(
            f"{path.name}: no row of the auxiliary extension has a valid pointing (XCENIX/YCENIX/PC)"
        )
    frame_valid = _at(rows, valid.astype(float)) > 1 - 1e-9
    pointing = _at(rows, np.stack([xcen, ycen], axis=-1), valid)
    rolls = _at(rows, pc, valid)
    interpolated = [
        int(k) for k, ok, d in zip(picked, frame_valid, data, strict=True) if not ok and np.isfinite(d).any()
    ]
    if interpolated:
        warnings.warn(
            f"{path.name}: frames {interpolated} have no valid pointing in the auxiliary extension "
            "(missing or resampled exposures); their pointing and roll were interpolated in time from the "
            "other frames. Check these frames before using them as references",
            CoalignWarning,
            stacklevel=2,
        )
    offset = (
        _to_arcsec(header["CRVAL1"], header.get("CUNIT1", "arcsec"))
        - float(primary.get("XCEN", header["CRVAL1"])),
        _to_arcsec(header["CRVAL2"], header.get("CUNIT2", "arcsec"))
        - float(primary.get("YCEN", header["CRVAL2"])),
    )
    base = _celestial_2d(header, 1, 2)
    for line in _coalign_history(header):
        base.add_history(line)
    mids = begins + exposures / 2 * u.s
    earths = None if _has_observer(primary) else get_earth(mids)
    maps = []
    for k, image in enumerate(data):
        out = base.copy()
        out["CRVAL1"] = float(pointing[k, 0]) + offset[0]
        out["CRVAL2"] = float(pointing[k, 1]) + offset[1]
        for i in (1, 2):
            for j in (1, 2):
                out[f"PC{i}_{j}"] = float(rolls[k, i - 1, j - 1]) * factors.get(j, 1.0) / factors.get(i, 1.0)
        out = _dates(out, begins[k], begins[k] + exposures[k] * u.s)
        out = _observer(out, primary, None if earths is None else earths[k])
        for key in KEPT_KEYS:
            if key in primary and key not in out:
                out[key] = primary[key]
        out["WAVELNTH"] = float(primary.get("TWAVE1", 0.0))
        out["WAVEUNIT"] = "Angstrom"
        out["BUNIT"] = "DN"
        out["XPOSURE"] = float(exposures[k])
        out["FRAME"] = (int(picked[k]), f"frame index in {path.name}"[:47])
        maps.append(sunpy.map.Map(image, out))
    return maps


# --------------------------------------------------------------------------------------------------
# Pointing outside the WCS, for write_corrected
# --------------------------------------------------------------------------------------------------


class PointingUpdate(NamedTuple):
    """The IRIS pointing of a file moved by a correction (see `corrected_iris_pointing`)."""

    #: Index of the auxiliary extension in the HDU list.
    aux_index: int
    #: New data of the auxiliary extension: a copy with only the XCENIX and YCENIX columns changed.
    aux_data: np.ndarray
    #: Corrected ``XCEN``/``YCEN`` of the primary header (only the keys it has).
    primary: dict
    #: HISTORY lines saying what moved and how.
    history: tuple


def _sky_mover(header, lon: int, lat: int, transform: Transform):
    """``move(x, y)``: corrected world coordinates (arcsec) of the pixels the header puts at ``(x, y)``."""
    before = WCS(_celestial_2d(header, lon, lat))
    after = WCS(_celestial_2d(correct_header(header, transform, lon_axis=lon, lat_axis=lat), lon, lat))

    def move(x, y):
        pixels = before.wcs_world2pix(np.asarray(x, float) / 3600, np.asarray(y, float) / 3600, 1)
        new_x, new_y = after.wcs_pix2world(*pixels, 1)
        return new_x * 3600, new_y * 3600

    return move


def _reference_wcs_hdu(hdul, aux_index: int):
    """The HDU whose WCS the pointing refers to: the SJI cube, or the first raster window."""
    candidates = [hdul[0]] if _is_sji(hdul[0].header) else list(hdul[1:aux_index])
    return next((h for h in candidates if h.is_image and celestial_axes(h.header) is not None), None)


def corrected_iris_pointing(hdul, transform: Transform, *, name: str = "the file") -> PointingUpdate | None:
    """Move the pointing an IRIS L2 file keeps outside its WCS by the correction applied to its WCS.

    IRIS level-2 files give the pointing again in the primary header (``XCEN``, ``YCEN``) and per exposure
    in the auxiliary extension (columns ``XCENIX``, ``YCENIX``, arcsec). Each value is a point of the sky;
    after the correction it becomes the corrected world coordinate of the pixel the uncorrected WCS put it
    on (`~coalign.io.maps.correct_header`: ``CRVAL += (dx, dy)``, ``CDELT *= (sx, sy)`` about ``CRPIX``):

    * **SJI**: ``XCEN``/``YCEN`` is located on the cube's WCS (pixel ``p``) and moves by ``delta``, the
      corrected minus the original coordinate of ``p``; every frame's ``XCENIX``/``YCENIX`` moves by the
      same ``delta``. A frame is the cube's pixel grid with its own pointing, which refers to the same
      pixel ``p``; one ``delta`` for all keeps the offsets ``XCENIX - XCEN`` that `read_iris_sji` adds to
      ``CRVAL``, so a re-read frame has exactly the corrected WCS. IRIS L2 SJI files have
      ``XCEN, YCEN = CRVAL1, CRVAL2``: ``p`` is ``CRPIX`` and ``delta = (dx, dy)`` whatever the scale.
      Were ``XCEN`` on another pixel (e.g. the geometric centre, with ``CRPIX`` elsewhere), ``delta``
      would also hold the scale about ``CRPIX``, ``(S - 1) CDELT PC (p - CRPIX)`` through the projection,
      computed with the cube's roll; the frames' own rolls (``PC*IX``, within ~1e-3 of it) would change
      that term by less than ``|S - 1| 1e-3 CDELT |p - CRPIX|``. Without ``XCEN``/``YCEN``, ``p`` is
      ``CRPIX``.
    * **Raster**: the steps share the window WCS, and each step's ``XCENIX``/``YCENIX`` (the slit
      centre at that step) moves as its own pixel of the first window, so a scale correction moves the
      steps apart (by ``(sx - 1) * CDELT3`` per step); ``XCEN``/``YCEN`` likewise.

    Rows of missing exposures (non-finite pointing, or zero for both) are left as they are.

    Parameters
    ----------
    hdul : `~astropy.io.fits.HDUList`
        An open file. Not modified.
    transform : Transform
        The correction applied to the file's WCS.
    name : str
        File name used in messages.

    Returns
    -------
    PointingUpdate or None
        None when the file is not an IRIS L2 file with ``XCENIX``/``YCENIX`` auxiliary columns.

    Raises
    ------
    WCSError
        The auxiliary extension is not floating point or is scaled (``BSCALE``/``BZERO``), so its pointing
        columns cannot be rewritten without touching the other columns.
    """
    primary = hdul[0].header
    aux_index = _aux_index(hdul) if _is_iris(primary) else None
    if aux_index is None or not {"XCENIX", "YCENIX"} <= set(hdul[aux_index].header):
        return None
    reference = _reference_wcs_hdu(hdul, aux_index)
    if reference is None:
        return None
    aux = hdul[aux_index]
    scaled = float(aux.header.get("BSCALE", 1.0)) != 1.0 or float(aux.header.get("BZERO", 0.0)) != 0.0
    if aux.data.dtype.kind != "f" or scaled:
        raise WCSError(
            f"the auxiliary extension of {name} holds {aux.data.dtype.name} values"
            f"{' scaled by BSCALE/BZERO' if scaled else ''}, so its XCENIX/YCENIX pointing cannot be moved "
            "without changing the other columns; rewrite it as unscaled floating point first"
        )
    lon, lat = celestial_axes(reference.header)
    move = _sky_mover(reference.header, lon, lat, transform)
    keys = ("XCEN", "YCEN") if "XCEN" in primary and "YCEN" in primary else ()
    if keys:
        old_centre = np.array([float(primary[key]) for key in keys])
    else:  # no XCEN/YCEN: the frames' pointing refers to CRPIX, whose coordinate is CRVAL
        header = reference.header
        old_centre = np.array(
            [_to_arcsec(header[f"CRVAL{a}"], header.get(f"CUNIT{a}", "arcsec")) for a in (lon, lat)]
        )
    new_centre = np.array([float(v) for v in move(*old_centre)])
    data = np.array(aux.data, copy=True)
    ix, iy = int(aux.header["XCENIX"]), int(aux.header["YCENIX"])
    x, y = data[:, ix].astype(float), data[:, iy].astype(float)
    present = np.isfinite(x) & np.isfinite(y) & ((x != 0) | (y != 0))
    if _is_sji(primary):
        delta = new_centre - old_centre
        moved = (x[present] + delta[0], y[present] + delta[1])
        how = f"by ({delta[0]:+.6f}, {delta[1]:+.6f}) arcsec"
    else:
        moved = move(x[present], y[present])
        how = f"as their pixels of HDU {hdul.index_of(reference)}"
    data[present, ix], data[present, iy] = moved
    which = "XCEN/YCEN and " if keys else ""
    history = (
        "coalign: IRIS pointing moved with the WCS correction",
        f"dx={transform.dx:+.4f} dy={transform.dy:+.4f} arcsec sx={transform.sx:.6f} sy={transform.sy:.6f}:",
        f"{which}XCENIX/YCENIX (HDU {aux_index}, {int(present.sum())} rows) {how}",
    )
    new = {key: float(value) for key, value in zip(keys, new_centre, strict=False)}
    return PointingUpdate(aux_index, data, new, history)


def corrected_iris_fov(hdul, transform: Transform) -> dict[int, dict[str, float]]:
    """The field of view an IRIS L2 file gives besides its WCS, scaled by a correction's plate scale.

    IRIS level-2 headers (the primary header; any other HDU that carries them too) give the field of view
    in arcsec as ``FOVX`` (along solar x: the SJI columns or the raster steps) and ``FOVY`` (along solar y:
    the SJI rows or the slit). A correction multiplies ``CDELT`` by ``sx``, ``sy``; the field of view scales
    with it, ``FOVX * sx`` and ``FOVY * sy``. The readers compare ``FOVX / CDELT`` with ``NAXIS`` to
    recognise resampled files (`repair_resampled_header`): were the field of view left alone, a corrected
    file whose scale changed by more than ~5 % (``PLATE_SCALE_TOLERANCE``) would look resampled, and one
    read with ``repair_plate_scale=True`` would be repaired for a wrong native size.

    Parameters
    ----------
    hdul : `~astropy.io.fits.HDUList`
        An open file. Not modified.
    transform : Transform
        The correction applied to the file's WCS.

    Returns
    -------
    dict
        ``{hdu_index: {"FOVX": value, "FOVY": value}}`` with the scaled keys each HDU has, for the axes
        whose factor is not 1; empty when the file is not an IRIS file or the correction has no scale.
    """
    if not _is_iris(hdul[0].header):
        return {}
    factors = {key: f for key, f in (("FOVX", transform.sx), ("FOVY", transform.sy)) if f != 1.0}
    out = {}
    for index, hdu in enumerate(hdul):
        scaled = {key: float(hdu.header[key]) * f for key, f in factors.items() if key in hdu.header}
        if scaled:
            out[index] = scaled
    return out
