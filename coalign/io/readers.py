"""Read targets, references and their times from files (sunpy Maps)."""

import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.io import fits
from astropy.time import Time

from coalign.exceptions import CoalignWarning, EmptySequenceError, TimeCoverageError, WCSError

__all__ = ["column_times_of", "find_reference_files", "read_map", "read_raster", "read_sequence"]


def read_map(path):
    """Read a 2-D FITS image as a sunpy Map, with a specific error for unreadable or WCS-less files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            hdul = fits.open(path)
        with hdul:
            hdul.verify("exception")
            image = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2), None)
            header = image.header.copy() if image is not None else None
            if image is not None:
                image.data  # noqa: B018 -- force reading the data to detect truncation
    except (OSError, ValueError, TypeError, fits.verify.VerifyError, fits.verify.VerifyWarning) as error:
        raise OSError(
            f"cannot read {path} as FITS ({error}); the file may be truncated or corrupt"
        ) from error
    if header is None:
        raise WCSError(f"{path} holds no 2-D image HDU")
    ctypes = [str(header.get(f"CTYPE{i}", "")).upper() for i in (1, 2)]
    if not (
        ctypes[0].startswith(("HPLN", "RA--", "SOLX")) and ctypes[1].startswith(("HPLT", "DEC-", "SOLY"))
    ):
        raise WCSError(
            f"{path} has no celestial WCS (CTYPE1/2 = {ctypes}); it needs CTYPE1/2 (e.g. "
            "HPLN-TAN/HPLT-TAN), CUNIT, CRVAL, CDELT and CRPIX"
        )
    smap = sunpy.map.Map(path)
    return smap[0] if isinstance(smap, list) else smap


def _matches_channel(path: Path, header, channel: str) -> bool:
    """True when ``channel`` is the WAVELNTH value or a whole token of the file name (``fsi174``, ``174``)."""
    wavelength = header.get("WAVELNTH")
    if wavelength is not None and str(wavelength).strip().removesuffix(".0") == channel:
        return True
    tokens = re.split(r"[_\-.]", path.stem.lower())
    return channel.lower() in tokens or any(
        t.endswith(channel.lower()) and not t[: -len(channel)].isdigit()
        for t in tokens
        if len(t) > len(channel)
    )


def find_reference_files(
    folder,
    *,
    start: Time | None = None,
    end: Time | None = None,
    channel: str | None = None,
    exclude: tuple[str, ...] = (),
    pattern: str = "*.fits",
) -> list[Path]:
    """Reference files in a folder, optionally limited to a time window, a channel and without tokens.

    Parameters
    ----------
    folder : path-like
        Folder to search (not recursive).
    start, end : `~astropy.time.Time`, optional
        Keep files whose DATE-OBS lies within ``[start, end]``.
    channel : str, optional
        Keep files whose WAVELNTH equals this value or whose name holds it as a token (``..._174_...``,
        ``..._fsi174_...``), e.g. ``"174"``.
    exclude : tuple of str
        Drop files whose name contains any of these tokens (e.g. ``("short", "L1")``).
    pattern : str
        Glob pattern.

    Returns
    -------
    list of Path, sorted by observation time.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"reference folder {folder} does not exist")
    found = []
    for path in sorted(folder.glob(pattern)):
        if any(token in path.name for token in exclude):
            continue
        with fits.open(path) as hdul:  # one open per file: the first HDU that holds an image
            header = next((h.header for h in hdul if h.header.get("NAXIS", 0)), hdul[0].header)
        if channel is not None and not _matches_channel(path, header, channel):
            continue
        date = header.get("DATE-OBS", header.get("DATE_OBS"))
        if date is None:
            warnings.warn(f"{path.name} has no DATE-OBS; skipped", CoalignWarning, stacklevel=2)
            continue
        time = Time(date)
        if (start is not None and time < start) or (end is not None and time > end):
            continue
        found.append((time, path))
    return [path for _, path in sorted(found, key=lambda pair: pair[0])]


def read_sequence(paths) -> list:
    """Read reference maps sorted by time; an empty input raises `EmptySequenceError`."""
    paths = list(paths)
    if not paths:
        raise EmptySequenceError(
            "no reference files were found; check the folder, the time window, the channel "
            "token and the exclude tokens"
        )
    return sorted((read_map(p) for p in paths), key=lambda m: m.date)


def column_times_of(source, n_columns: int | None = None) -> Time:
    """Per-column acquisition times of a raster file, or of a map's single observation time.

    A ``COLUMN_TIMES`` table extension (columns ``TIME_S`` relative to its ``DATEREF`` keyword) gives one
    time per column. For a sunpy Map (an imager), every column gets the map's ``date``.

    Parameters
    ----------
    source : path-like or `~sunpy.map.GenericMap`
    n_columns : int, optional
        Number of columns expected (required for a Map).
    """
    if isinstance(source, sunpy.map.GenericMap):
        return source.date + np.zeros(n_columns or source.data.shape[1]) * u.s
    path = Path(source)
    with fits.open(path) as hdul:
        if "COLUMN_TIMES" not in hdul:
            raise TimeCoverageError(
                f"{path.name} has no COLUMN_TIMES extension; pass per-column times explicitly "
                "(column_times=) or a raster reader that derives them"
            )
        table = hdul["COLUMN_TIMES"]
        times = Time(table.header["DATEREF"]) + np.asarray(table.data["TIME_S"], dtype=float) * u.s
    if n_columns is not None and times.size != n_columns:
        raise TimeCoverageError(f"{path.name}: COLUMN_TIMES has {times.size} rows for {n_columns} columns")
    return times


def read_raster(path):
    """Read a 2-D raster map and its per-column acquisition times.

    Returns
    -------
    smap : `~sunpy.map.GenericMap`
    column_times : `~astropy.time.Time`, shape (nx,)
    """
    smap = read_map(path)
    return smap, column_times_of(path, smap.data.shape[1])
