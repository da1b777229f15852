"""Read targets, references and their times from files (sunpy Maps)."""

import errno
import os
import re
import warnings
from itertools import pairwise
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.io import fits
from astropy.time import Time
from astropy.utils.exceptions import AstropyUserWarning

from coalign.exceptions import CoalignWarning, EmptySequenceError, TimeCoverageError, WCSError
from coalign.params import SyntheticParams

__all__ = [
    "DEFAULT_MAX_TIME_GAP_S",
    "check_sequence_coverage",
    "column_times_of",
    "find_reference_files",
    "read_map",
    "read_raster",
    "read_sequence",
    "reference_times",
]

#: Largest allowed gap between a raster column and its nearest reference frame, as in `SyntheticParams`.
DEFAULT_MAX_TIME_GAP_S = SyntheticParams().max_time_gap_s

#: Keywords whose cards astropy gathers into one list-like value (``HISTORY`` etc.).
_COMMENTARY = frozenset({"", "COMMENT", "HISTORY"})


def read_map(path: str | os.PathLike) -> sunpy.map.GenericMap:
    """Read a 2-D FITS image as a sunpy Map, with a specific error for unreadable or WCS-less files.

    The file is opened once: the data (in the file's dtype and byte order; memory-mapped copy-on-write
    when stored uncompressed and unscaled, so that only the pages a caller touches are read and edits
    never reach the file) and the header, whose
    ``HISTORY`` and ``COMMENT`` cards become newline-joined text as in the maps sunpy reads itself, so
    that the meta is hashable and sunpy's cached ``wcs`` follows later edits of the meta.

    Parameters
    ----------
    path : path-like
        FITS file whose first HDU with at least two axes holds the image.

    Returns
    -------
    `~sunpy.map.GenericMap`
        With ``meta["keycomments"]`` holding the comment of each keyword that has one.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    OSError
        The file is not readable as FITS (truncated or corrupt).
    WCSError
        No image HDU, or no celestial WCS (``CTYPE1/2``) in its header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}; check the path")
    data, meta, keycomments = _read_with_astropy(path)
    ctypes = [str(meta.get(f"CTYPE{i}", "")).upper() for i in (1, 2)]
    if not (
        # SOLAR-X/Y: the old SOHO convention (EIT), which sunpy reads as helioprojective.
        ctypes[0].startswith(("HPLN", "RA--", "SOLX", "SOLAR-X"))
        and ctypes[1].startswith(("HPLT", "DEC-", "SOLY", "SOLAR-Y"))
    ):
        raise WCSError(
            f"{path} has no celestial WCS (CTYPE1/2 = {ctypes}); it needs CTYPE1/2 (e.g. "
            "HPLN-TAN/HPLT-TAN), CUNIT, CRVAL, CDELT and CRPIX"
        )
    smap = sunpy.map.Map(data, meta)
    smap.meta["keycomments"] = keycomments
    return smap


def _read_with_astropy(path: Path) -> tuple[np.ndarray, dict, dict]:
    """Data, meta and key comments of the first 2-D image HDU; every card of its header parsed."""
    try:
        with warnings.catch_warnings():
            # Header nits astropy can live with (e.g. BLANK on float data) are not errors; truncation is.
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            warnings.filterwarnings("error", message=".*truncated")
            hdul = fits.open(path, memmap=True)
        with hdul:
            image = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2), None)
            # Uncompressed, unscaled data stays memory-mapped (copy-on-write: edits never reach the
            # file) and outlives the closed file; only the pages a caller touches are read. A short
            # file was caught at open (the truncation warning); compressed data is decompressed here.
            # The header is taken after the data so that applied BSCALE/BZERO are gone from it, and every
            # card of it is parsed: an unparsable card raises here.
            data = None if image is None else image.data
            meta = None if image is None else _header_meta(image.header)
    except (
        OSError,
        ValueError,
        TypeError,
        fits.verify.VerifyError,
        fits.verify.VerifyWarning,
        AstropyUserWarning,  # the truncation warning, made an error above
    ) as error:
        if getattr(error, "errno", None) == errno.EMFILE:
            raise OSError(
                errno.EMFILE,
                f"cannot open {path}: too many open files. Each map read keeps its file mapped (one "
                "descriptor) while its data is in use; raise the limit (ulimit -n) or work on fewer "
                "maps at a time",
            ) from error
        raise OSError(
            f"cannot read {path} as FITS ({error}); the file may be truncated or corrupt"
        ) from error
    if image is None:
        raise WCSError(f"{path} holds no 2-D image HDU")
    return data, *meta


def _header_meta(header: fits.Header) -> tuple[dict, dict]:
    """A header as sunpy's dict (first value of a repeated keyword; commentary cards as one text each)."""
    meta = {key: header[key] for key in header}
    for key in meta.keys() & _COMMENTARY:
        meta[key] = "\n".join(header[key])
    return meta, {card.keyword: card.comment for card in header.cards if card.comment}


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


def _image_header(path: Path):
    """Header of the first HDU that holds an image (the primary header if none does); one open per file."""
    with fits.open(path) as hdul:
        return next((h.header for h in hdul if h.header.get("NAXIS", 0)), hdul[0].header)


def _date_obs(header) -> str | None:
    return header.get("DATE-OBS", header.get("DATE_OBS"))


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
        header = _image_header(path)
        if channel is not None and not _matches_channel(path, header, channel):
            continue
        date = _date_obs(header)
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


def reference_times(paths) -> list[tuple[Path, Time]]:
    """Observation time (``DATE-OBS``) of each reference file, sorted by time; the data are not read.

    Parameters
    ----------
    paths : iterable of path-like
        Reference files.

    Returns
    -------
    list of (Path, `~astropy.time.Time`)
        ``(path, time)`` pairs in time order, as `check_sequence_coverage` takes them.

    Raises
    ------
    TimeCoverageError
        A file has no ``DATE-OBS`` (nor ``DATE_OBS``).
    """
    pairs = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"no such reference file: {path}; check the path")
        date = _date_obs(_image_header(path))
        if date is None:
            raise TimeCoverageError(
                f"reference file {path.name} has no DATE-OBS, so it cannot be placed in time; add the "
                "keyword or leave the file out of the sequence"
            )
        pairs.append((path, Time(date)))
    return sorted(pairs, key=lambda pair: pair[1])


def _seconds(later: Time, earlier: Time) -> float:
    return float((later - earlier).to_value(u.s))


def _uncovered(times: Time, frames: list, max_gap_s: float) -> list[str]:
    """Sentences naming the uncovered end(s) of ``times`` (and the widest inner gap), with their sizes."""
    (first_name, first_time), (last_name, last_time) = frames[0], frames[-1]
    start, end = times.min(), times.max()
    problems = []
    early, late = _seconds(first_time, start), _seconds(end, last_time)
    if early > max_gap_s:
        if end < first_time:
            what = f"the whole raster is before the reference files: it begins {early:.0f} s and ends "
            what += f"{_seconds(first_time, end):.0f} s"
        else:
            what = f"its start is not covered: it begins {early:.0f} s"
        problems.append(f"{what} before the first reference file ({first_name})")
    if late > max_gap_s:
        if start > last_time:
            begins = _seconds(start, last_time)
            what = f"the whole raster is after the reference files: it begins {begins:.0f} s and ends "
            what += f"{late:.0f} s"
        else:
            what = f"its end is not covered: it ends {late:.0f} s"
        problems.append(f"{what} after the last reference file ({last_name})")
    margin = max_gap_s * u.s
    inner = [
        (_seconds(b_time, a_time), a_name, a_time, b_name, b_time)
        for (a_name, a_time), (b_name, b_time) in pairwise(frames)
        if np.any((times > a_time + margin) & (times < b_time - margin))
    ]
    if inner:
        width, a_name, a_time, b_name, b_time = max(inner, key=lambda gap: gap[0])
        problems.append(
            f"it is not covered between {a_name} ({a_time.utc.isot}) and {b_name} ({b_time.utc.isot}), "
            f"{width:.0f} s apart"
        )
    return problems


def check_sequence_coverage(
    column_times,
    frames,
    *,
    max_time_gap_s: float | u.Quantity = DEFAULT_MAX_TIME_GAP_S,
    target="the target",
    window: tuple[Time, Time] | None = None,
) -> None:
    """Check, file by file, that a reference sequence covers a raster's acquisition times.

    Every column must lie within ``max_time_gap_s`` of some reference frame, the rule the synthetic
    raster applies (`coalign.stages.synthetic.select_frames`); checking it on the file times before any
    map is read or aligned turns a late error about a column index into one about files.

    Parameters
    ----------
    column_times : `~astropy.time.Time`
        Acquisition time of each target column (any order).
    frames : iterable of (path-like or str, `~astropy.time.Time`)
        ``(file, observation time)`` of each reference frame, e.g. from `reference_times`.
    max_time_gap_s : float or Quantity
        Largest allowed gap (seconds, or a time Quantity); default that of `SyntheticParams`.
    target : path-like or str
        The target file, named in the message.
    window : (Time, Time), optional
        Time window the reference files were selected in (e.g. the target's span widened by a margin);
        named in the message, with the advice to widen it.

    Raises
    ------
    EmptySequenceError
        ``frames`` is empty.
    TimeCoverageError
        Some column is farther than ``max_time_gap_s`` from every frame. The message names the target
        and its time span, the span of the reference files with the first and last names, which end is
        uncovered (or which pair of files leaves a gap) and by how many seconds, and the fix.

    Examples
    --------
    >>> times = Time("2014-03-29T14:00") + [0, 600, 1200] * u.s
    >>> check_sequence_coverage(times, [("a.fits", Time("2014-03-29T14:05"))])
    >>> check_sequence_coverage(times, [("a.fits", Time("2014-03-29T13:00"))])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    coalign.exceptions.TimeCoverageError: reference files do not cover the raster of the target: ...
    """
    gap = max_time_gap_s.to_value(u.s) if isinstance(max_time_gap_s, u.Quantity) else float(max_time_gap_s)
    if not gap > 0:
        raise ValueError(f"max_time_gap_s must be > 0, got {max_time_gap_s!r}; use e.g. 30 * u.min")
    times = Time(column_times).reshape(-1)
    if times.size == 0:
        raise TimeCoverageError("column_times is empty; pass one acquisition time per target column")
    frames = sorted(((Path(name).name, Time(time)) for name, time in frames), key=lambda pair: pair[1])
    if not frames:
        raise EmptySequenceError(
            "no reference files were given; pass files whose times cover the target's columns"
        )
    frame_s = np.array([_seconds(time, times.min()) for _, time in frames])
    column_s = (times - times.min()).to_value(u.s)
    nearest = np.abs(column_s[:, None] - frame_s[None, :]).min(axis=1)
    bad = nearest > gap
    if not bad.any():
        return
    (first_name, first_time), (last_name, last_time) = frames[0], frames[-1]
    files = f"the {len(frames)} reference files span" if len(frames) > 1 else "the one reference file is at"
    span = f"{first_time.utc.isot} ({first_name})"
    if len(frames) > 1:
        span += f" to {last_time.utc.isot} ({last_name})"
    problems = _uncovered(times, frames, gap)
    need = times[bad]
    widen = ""
    if window is not None:
        low, high = (Time(t).utc.isot for t in window)
        widen = f", widen the time window the files were selected in (now {low} to {high})"
    raise TimeCoverageError(
        f"reference files do not cover the raster of {Path(str(target)).name}: its columns were taken from "
        f"{times.min().utc.isot} to {times.max().utc.isot}, {files} {span}, and max_time_gap_s={gap:.0f} s; "
        f"{'; '.join(problems)}. Add reference files covering "
        f"{need.min().utc.isot} to {need.max().utc.isot}{widen}, or raise max_time_gap_s"
    )


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
