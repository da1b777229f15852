"""Batch coalignment of many rasters: one task per file, any ``map_fn``, a resumable results table.

Each target file is one task, `align_file`, a pure top-level function of the file path and a frozen
`BatchConfig`: it reads the target, finds its reference frames in a folder by time, runs the three
phases serially and returns one row of the results table (a plain dict, see `COLUMNS`). A failure never
escapes a task: it becomes a row with ``status == "error"``. `run_batch` hands the tasks to a
``map_fn`` (builtin ``map``, or `as_completed_map` over a process pool or a dask ``Client``), so the
parallelism is across files, and writes the table (ECSV) atomically after each completed file. A rerun
skips the files already in the table with status ``"ok"``.

    >>> from coalign.batch import run_batch, scheduler_map                      # doctest: +SKIP
    >>> with scheduler_map("processes", workers=4) as map_fn:                  # doctest: +SKIP
    ...     table = run_batch(files, "sji_1400/", "results.ecsv", out_dir="corrected/", map_fn=map_fn)
"""

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures import as_completed as futures_as_completed
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.time import Time

from coalign.exceptions import EmptySequenceError, TimeCoverageError
from coalign.executors import MapFn
from coalign.params import BINNED, ONE_MAP, SYNTHETIC_RASTER, PhaseParams, SyntheticParams
from coalign.results import AlignmentResult

__all__ = [
    "COLUMNS",
    "SCHEDULERS",
    "BatchConfig",
    "align_file",
    "as_completed_map",
    "batch_table",
    "crashed_row",
    "expand_targets",
    "output_path_for",
    "read_batch_table",
    "read_target",
    "run_batch",
    "scheduler_map",
    "write_batch_table",
]

log = logging.getLogger("coalign.batch")

#: Schedulers understood by `scheduler_map` and ``coalign batch --scheduler``.
SCHEDULERS = ("serial", "processes", "dask")
#: File name endings taken as FITS when a target is a folder (the ending is kept for the output).
FITS_ENDINGS = (".fits.gz", ".fts.gz", ".fit.gz", ".fits", ".fts", ".fit")
#: Phases run by a batch, as named in `~coalign.results.PhaseResult.name`.
PHASE_NAMES = ("binned", "one_map", "synthetic_raster")

#: Columns of the results table: ``(name, type, description)``, in table order. Floats are NaN and
#: strings empty where a value does not apply (failed files, errors not estimated).
COLUMNS = (
    ("file", str, "absolute path of the target file"),
    ("status", str, "ok, or error (see error_type and error_message)"),
    ("error_type", str, "exception type of a failed file"),
    ("error_message", str, "exception message of a failed file"),
    ("time", str, "mid-time of the target (ISO, UTC)"),
    ("reference", str, "reference file of the binned and one-map phases (nearest the mid-time)"),
    ("n_references", int, "reference frames found for the synthetic raster"),
    ("dx_arcsec", float, "correction added to the target pointing, x (arcsec)"),
    ("dy_arcsec", float, "correction added to the target pointing, y (arcsec)"),
    ("sx", float, "scale factor applied to CDELT1"),
    ("sy", float, "scale factor applied to CDELT2"),
    ("roll_deg", float, "roll added to the target's WCS (degrees)"),
    ("dx_pix", float, "shift part of the correction in target pixels, x"),
    ("dy_pix", float, "shift part of the correction in target pixels, y"),
    ("sigma_dx_arcsec", float, "1-sigma error of dx_arcsec (NaN: not estimated)"),
    ("sigma_dy_arcsec", float, "1-sigma error of dy_arcsec (NaN: not estimated)"),
    ("sigma_sx", float, "1-sigma error of sx (NaN: not estimated)"),
    ("sigma_sy", float, "1-sigma error of sy (NaN: not estimated)"),
    ("sigma_roll_deg", float, "1-sigma error of roll_deg (NaN: not estimated)"),
    ("score", float, "Pearson correlation of the final phase"),
    ("flags", str, "sanity flags of the final phase, comma-separated (see coalign.results.FLAGS)"),
    ("warnings", str, "warnings raised while aligning the file, '; '-separated"),
    ("elapsed_binned_s", float, "wall time of the binned phase (s)"),
    ("elapsed_one_map_s", float, "wall time of the one-map phase (s)"),
    ("elapsed_synthetic_raster_s", float, "wall time of the synthetic-raster phase (s)"),
    ("total_s", float, "wall time of the whole task, reading and writing included (s)"),
    ("output", str, "corrected FITS file written (empty: none)"),
)
_DEFAULTS = {str: "", float: float("nan"), int: 0}


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """Settings shared by every task of a batch (picklable, so it travels to workers).

    Parameters
    ----------
    sequence_dir : str
        Folder of reference frames (searched by time for each target).
    out_dir : str, optional
        Folder for the corrected FITS files (None: write none).
    window : int or str, optional
        SPICE window index or name (default: the first window); ignored for other files.
    time_margin_min : float
        Reference frames are searched within the target's column-time span widened by this (minutes).
    channel : str, optional
        Keep only reference files of this channel (WAVELNTH or a file-name token, e.g. ``"174"``).
    exclude : tuple of str
        Drop reference files whose name contains any of these tokens.
    phases : three `~coalign.params.PhaseParams`
        Settings of the binned, one-map and synthetic-raster phases.
    synthetic : `~coalign.params.SyntheticParams`
        Settings of the synthetic raster.
    suffix : str
        Appended to the target's file name stem to name its corrected copy.
    """

    sequence_dir: str
    out_dir: str | None = None
    window: int | str | None = None
    time_margin_min: float = 30.0
    channel: str | None = None
    exclude: tuple[str, ...] = ()
    phases: tuple[PhaseParams, PhaseParams, PhaseParams] = (BINNED, ONE_MAP, SYNTHETIC_RASTER)
    synthetic: SyntheticParams = SyntheticParams()
    suffix: str = "_coaligned"

    def __post_init__(self):
        margin = float(self.time_margin_min)
        if not np.isfinite(margin) or margin < 0:
            raise ValueError(
                f"time_margin_min must be a finite number of minutes >= 0, got {self.time_margin_min!r}"
            )
        object.__setattr__(self, "time_margin_min", margin)
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if not self.suffix or any(sep in self.suffix for sep in ("/", os.sep)):
            raise ValueError(f"suffix must be a non-empty file-name fragment, got suffix={self.suffix!r}")


# --------------------------------------------------------------------------------------------------
# One task
# --------------------------------------------------------------------------------------------------


def read_target(path, window=None):
    """Read a target: a SPICE L2 window, a 2-D FITS raster with a COLUMN_TIMES table, or a 2-D map.

    Parameters
    ----------
    path : path-like
        The target file.
    window : int or str, optional
        SPICE window index or name (default: the first); ignored for other files.

    Returns
    -------
    smap : `~sunpy.map.GenericMap`
        The 2-D target (a SPICE window integrated over wavelength).
    column_times : `~astropy.time.Time`
        One acquisition time per column (the map's date repeated for an imager map).
    """
    from astropy.io import fits

    from coalign.io.readers import column_times_of, read_map
    from coalign.io.spice import read_spice_raster, spice_windows

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such target file: {path}; check the path")
    if spice_windows(path):
        return read_spice_raster(path, window if window is not None else 0)
    smap = read_map(path)
    with fits.open(path) as hdul:
        has_times = "COLUMN_TIMES" in hdul
    return smap, column_times_of(path if has_times else smap, smap.data.shape[1])


def output_path_for(path, out_dir, suffix: str = "_coaligned") -> Path:
    """Name of the corrected copy of ``path`` in ``out_dir``: the stem plus ``suffix``, same ending.

    >>> output_path_for("/data/raster_001.fits.gz", "/out").as_posix()
    '/out/raster_001_coaligned.fits.gz'
    """
    name = Path(path).name
    ending = next((e for e in FITS_ENDINGS if name.lower().endswith(e)), Path(name).suffix)
    stem = name[: len(name) - len(ending)] if ending else name
    return Path(out_dir) / f"{stem}{suffix}{ending}"


def _time_window(column_times: Time, margin_min: float) -> tuple[Time, Time, Time]:
    """``(start, end, middle)`` of the column-time span, widened by the margin."""
    first, last = column_times.min(), column_times.max()
    margin = margin_min * u.min
    return first - margin, last + margin, first + (last - first) / 2


def nearest_index(dates: Sequence[Time], middle: Time) -> int:
    """Index of the date nearest ``middle`` (the first one on ties).

    >>> nearest_index(Time(["2020-01-01T00:00", "2020-01-01T00:10"]), Time("2020-01-01T00:06"))
    1
    """
    return int(np.argmin([abs((date - middle).to_value(u.s)) for date in dates]))


def _row_from_result(row: dict, result: AlignmentResult) -> dict:
    """Fill the alignment columns of ``row`` from the result (None becomes NaN or an empty string)."""
    final = result.phases[-1].as_dict()
    for name, kind, _ in COLUMNS:
        if name in final and name not in ("file", "status"):
            row[name] = _coerce(final[name], kind)
    for name in PHASE_NAMES:
        try:
            row[f"elapsed_{name}_s"] = float(result[name].elapsed_s)
        except KeyError:
            continue
    return row


def _coerce(value, kind):
    """``value`` as a plain ``kind`` (None and masked values become the column default)."""
    if value is None or value is np.ma.masked:
        return _DEFAULTS[kind]
    if kind is str:
        return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return kind(value)


def _one_line(text: str) -> str:
    """A message on one line, runs of white space collapsed (one table row per file)."""
    return " ".join(str(text).split())


def empty_row(path) -> dict:
    """A row for ``path`` with every other column at its default (status ``"error"``)."""
    row = {name: _DEFAULTS[kind] for name, kind, _ in COLUMNS}
    row.update(file=str(path), status="error")
    return row


def _align(path: Path, config: BatchConfig, row: dict) -> None:
    """Read, find references, align and write; fills ``row`` as it goes (so a failure keeps what is known)."""
    from coalign.io.fits import write_corrected
    from coalign.io.readers import check_sequence_coverage, find_reference_files, read_map, reference_times
    from coalign.pipelines.phases import three_phase_alignment

    target, column_times = read_target(path, config.window)
    start, end, middle = _time_window(Time(column_times), config.time_margin_min)
    row["time"] = middle.utc.isot
    files = find_reference_files(
        config.sequence_dir, start=start, end=end, channel=config.channel, exclude=config.exclude
    )
    if not files:
        raise TimeCoverageError(
            f"no reference frame in {config.sequence_dir} between {start.utc.isot} and {end.utc.isot} "
            f"(channel={config.channel!r}, exclude={list(config.exclude)}); check the target's times, "
            "widen --time-margin or add frames to the reference folder"
        )
    if len(files) > 1:  # a single frame is used whatever its time, as by the synthetic-raster phase
        check_sequence_coverage(
            column_times,
            reference_times(files),
            max_time_gap_s=config.synthetic.max_time_gap_s,
            target=path,
            window=(start, end),
        )
    row["n_references"] = len(files)
    pairs = sorted(zip((read_map(f) for f in files), files, strict=True), key=lambda pair: pair[0].date)
    sequence = [m for m, _ in pairs]
    nearest = nearest_index([m.date for m in sequence], middle)
    reference = sequence[nearest]
    row["reference"] = Path(pairs[nearest][1]).name
    result = three_phase_alignment(
        target,
        reference,
        sequence,
        column_times=column_times,
        phases=config.phases,
        synthetic=config.synthetic,
        map_fn=map,
    )
    _row_from_result(row, result)
    if config.out_dir is not None:
        output = output_path_for(path, config.out_dir, config.suffix)
        # Only outputs are ever replaced (a copy left by an interrupted run); write_corrected refuses
        # to write over its input.
        row["output"] = str(
            write_corrected(path, result.transform, output, references=[f for _, f in pairs], overwrite=True)
        )
    row["status"] = "ok"


def align_file(path, config: BatchConfig) -> dict:
    """Align one target file; never raises for a bad file: returns its row of the results table.

    Parameters
    ----------
    path : path-like
        The target (SPICE L2, 2-D FITS raster with COLUMN_TIMES, or 2-D map).
    config : BatchConfig
        Reference folder, time margin, phases, output folder...

    Returns
    -------
    dict
        One value per column of `COLUMNS`. ``status`` is ``"ok"``, or ``"error"`` with the exception's
        type and message. Warnings are recorded in ``warnings`` (never raised), so every scheduler gives
        the same row whatever its warning filters.

    Notes
    -----
    Run one task per process at a time (dask workers with one thread each): recording warnings swaps
    the process-wide warning filters, which concurrent threads would share.
    """
    started = time.perf_counter()
    row = empty_row(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _align(Path(path), config, row)
        except Exception as error:  # failure isolation: any bad file becomes an error row
            row.update(
                status="error",
                error_type=type(error).__name__,
                error_message=_one_line(str(error)),
                output="",
            )
    messages = (f"{w.category.__name__}: {w.message}" for w in caught)
    row["warnings"] = _one_line("; ".join(dict.fromkeys(messages)))
    row["total_s"] = time.perf_counter() - started
    return row


# --------------------------------------------------------------------------------------------------
# Map functions and schedulers
# --------------------------------------------------------------------------------------------------


def as_completed_map(pool, on_error: Callable | None = None) -> MapFn:
    """``map_fn`` over a `concurrent.futures.Executor` or a dask ``Client`` yielding results as they complete.

    Unlike the ordered adapters of `coalign.executors`, results come lazily in completion order, so the
    caller can record each one at once (`run_batch` keys rows by file, so order does not matter). When
    the consumer stops early (an interrupt), the tasks not yet started are cancelled.

    Parameters
    ----------
    pool : `~concurrent.futures.Executor` or ``distributed.Client``
        Owned by the caller (never shut down here).
    on_error : callable, optional
        ``on_error(item, exception)`` gives the result of a task whose future raised an `Exception` (e.g.
        a worker process that died); by default the exception propagates and ends the iteration.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(2) as ex:
    ...     sorted(as_completed_map(ex)(abs, [-1, 2, -3]))
    [1, 2, 3]
    """

    def result_of(future, item):
        if on_error is None:
            return future.result()
        try:
            return future.result()
        except Exception as error:
            return on_error(item, error)

    if isinstance(pool, Executor):

        def mapper(func, iterable):
            futures = {pool.submit(func, item): item for item in iterable}
            try:
                for future in futures_as_completed(futures):
                    yield result_of(future, futures[future])
            finally:
                for future in futures:
                    future.cancel()

        return mapper
    if not (hasattr(pool, "map") and hasattr(pool, "cancel")):
        raise TypeError(
            f"as_completed_map needs a concurrent.futures.Executor or a dask.distributed Client, got "
            f"{type(pool).__name__}"
        )

    def client_mapper(func, iterable):
        from distributed import as_completed

        items = list(iterable)
        futures = pool.map(func, items, pure=False)
        item_of = {future.key: item for future, item in zip(futures, items, strict=True)}
        try:
            for future in as_completed(futures):
                yield result_of(future, item_of[future.key])
        finally:
            pool.cancel(futures)

    return client_mapper


def crashed_row(path, error: BaseException) -> dict:
    """The error row of a file whose task did not return (its worker died, e.g. killed for memory)."""
    row = empty_row(path)
    row.update(
        error_type=type(error).__name__,
        error_message=_one_line(
            f"the worker running this file failed ({error}); rerun the batch to retry it, with fewer "
            "workers if memory ran out"
        ),
    )
    return row


def _import_distributed():
    try:
        import distributed
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the dask scheduler needs dask.distributed: pip install 'coalign[parallel]' "
            "(or choose --scheduler processes)"
        ) from error
    return distributed


@contextmanager
def scheduler_map(
    scheduler: str = "serial", *, workers: int | None = None, address: str | None = None
) -> Iterator[Callable]:
    """Start a scheduler, yield a ``map_fn`` over it, and shut it down on exit.

    Parameters
    ----------
    scheduler : {"serial", "processes", "dask"}
        ``"serial"``: builtin ``map`` in this process. ``"processes"``: a
        `~concurrent.futures.ProcessPoolExecutor` (spawned workers). ``"dask"``: a
        ``distributed.LocalCluster`` (one thread per worker process), or the cluster at ``address``.
    workers : int, optional
        Worker processes (default: the CPU count); ignored with ``address``.
    address : str, optional
        Scheduler address of a running dask cluster, e.g. ``"tcp://10.0.0.1:8786"`` (its workers must see
        the files at the same paths and have coalign installed).

    Yields
    ------
    map_fn
        Lazy: results come as tasks complete (`as_completed_map`), so each one is recorded at once. A
        task whose worker dies gives a `crashed_row` (the map_fn is meant for `align_file` tasks).

    Notes
    -----
    The process pool and the local cluster spawn fresh interpreters, so a script that uses them must
    guard its entry point with ``if __name__ == "__main__":``.
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if address is not None and scheduler != "dask":
        raise ValueError(f"an address ({address}) needs scheduler='dask' (--scheduler dask)")
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got workers={workers!r}")
    n_workers = int(workers) if workers is not None else os.cpu_count() or 1
    if scheduler == "serial":
        yield map
    elif scheduler == "processes":
        import multiprocessing

        # spawn: workers never inherit the threads of this process (a dask loop, tqdm's monitor)
        with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn")) as executor:
            yield as_completed_map(executor, on_error=crashed_row)
    else:
        distributed = _import_distributed()
        if address is not None:
            with distributed.Client(address) as client:
                yield as_completed_map(client, on_error=crashed_row)
        else:
            with (
                distributed.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                distributed.Client(cluster) as client,
            ):
                yield as_completed_map(client, on_error=crashed_row)


# --------------------------------------------------------------------------------------------------
# The results table
# --------------------------------------------------------------------------------------------------


def batch_table(rows: Iterable[dict], meta: dict | None = None) -> Table:
    """The results table of ``rows`` (columns of `COLUMNS`, missing values at the column default)."""
    rows = list(rows)
    table = Table(meta=dict(meta or {}))
    for name, kind, description in COLUMNS:
        dtype = {str: str, float: float, int: np.int64}[kind]
        table[name] = np.array([_coerce(row.get(name), kind) for row in rows], dtype=dtype)
        table[name].description = description
    return table


def write_batch_table(table: Table, path) -> Path:
    """Write a results table as ECSV atomically (temporary file in the same folder, synced, renamed).

    An interruption at any moment leaves either the previous table or the new one, never a partial file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_batch_table(path) -> list[dict]:
    """Rows of a results table written by `write_batch_table` (plain Python values, defaults filled).

    Raises
    ------
    ValueError
        The file is not a batch results table (no ``file`` or ``status`` column).
    """
    path = Path(path)
    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception as error:
        raise ValueError(
            f"cannot read the results table {path} as ECSV ({error}); choose another --table path or "
            "delete the file"
        ) from error
    missing = [name for name in ("file", "status") if name not in table.colnames]
    if missing:
        raise ValueError(
            f"{path} is not a coalign batch table (no column {missing}); choose another --table path"
        )
    kinds = {name: kind for name, kind, _ in COLUMNS}
    rows = []
    for record in table:
        row = empty_row("")
        for name, kind in kinds.items():
            if name in table.colnames:
                value = record[name]
                row[name] = _coerce(None if np.ma.is_masked(value) else value, kind)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------------


def expand_targets(targets) -> list[Path]:
    """Absolute target paths, in order, without duplicates; a folder stands for its FITS files (sorted).

    Raises
    ------
    EmptySequenceError
        No target was given, or the folders hold no FITS file.
    """
    if isinstance(targets, str | os.PathLike):
        targets = [targets]
    paths = []
    for target in targets:
        target = Path(target)
        if target.is_dir():
            paths.extend(sorted(p for p in target.iterdir() if p.name.lower().endswith(FITS_ENDINGS)))
        else:
            paths.append(target)  # a missing file becomes an error row, not a failed batch
    paths = list(dict.fromkeys(p.resolve() for p in paths))
    if not paths:
        raise EmptySequenceError(
            f"no target file to align in {list(map(str, targets))}; give FITS files or folders holding "
            "*.fits files"
        )
    return paths


def _check_paths(paths: list[Path], config: BatchConfig, table_path: Path) -> None:
    """Refuse a batch that could overwrite an input or mix outputs with references."""
    sequence_dir = Path(config.sequence_dir)
    if not sequence_dir.is_dir():
        raise FileNotFoundError(
            f"reference folder {sequence_dir} does not exist; pass the folder of reference frames "
            "(--sequence-dir)"
        )
    inputs = set(paths)
    if table_path in inputs:
        raise ValueError(
            f"the results table {table_path} is one of the targets; coalign never overwrites an input: "
            "choose another --table path"
        )
    if config.out_dir is None:
        return
    out_dir = Path(config.out_dir).resolve()
    if out_dir == sequence_dir.resolve():
        raise ValueError(
            f"the output folder {out_dir} is the reference folder; corrected files would be taken as "
            "references by later runs: choose another --out-dir"
        )
    outputs: dict[Path, Path] = {}
    for path in paths:
        output = output_path_for(path, out_dir, config.suffix)
        if output in inputs:
            raise ValueError(
                f"the corrected copy of {path} would be written over the target {output}; coalign never "
                "overwrites an input: choose another --out-dir"
            )
        if output == table_path:
            raise ValueError(f"the results table {table_path} would be overwritten by a corrected file")
        if output in outputs:
            raise ValueError(
                f"{outputs[output]} and {path} would both be written to {output}; rename one of them or "
                "run them in separate batches with different --out-dir"
            )
        outputs[output] = path


def _ordered(rows: dict[str, dict], keys: list[str]) -> list[dict]:
    """Rows of files outside this batch first (in their previous order), then the targets in order."""
    wanted = set(keys)
    return [row for key, row in rows.items() if key not in wanted] + [rows[k] for k in keys if k in rows]


class _Progress:
    """A tqdm bar when tqdm is importable (and enabled), and a log line per completed file."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.errors = total, 0, 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                log.debug("tqdm is not installed; progress goes to the log only")
            else:
                self.bar = tqdm(total=total, unit="raster", desc="coalign batch", dynamic_ncols=True)

    def redirect(self):
        """Context in which console logging goes through the bar (so lines do not break it)."""
        if self.bar is None:
            return nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm()

    def update(self, row: dict) -> None:
        self.done += 1
        self.errors += row["status"] != "ok"
        name = Path(row["file"]).name
        if row["status"] == "ok":
            log.info(
                "[%d/%d] %s: ok dx=%+.3f dy=%+.3f arcsec sx=%.5f sy=%.5f r=%.4f (%.1f s)",
                self.done,
                self.total,
                name,
                row["dx_arcsec"],
                row["dy_arcsec"],
                row["sx"],
                row["sy"],
                row["score"],
                row["total_s"],
            )
        else:
            log.warning(
                "[%d/%d] %s: %s: %s", self.done, self.total, name, row["error_type"], row["error_message"]
            )
        if self.bar is not None:
            self.bar.set_postfix(errors=self.errors, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch(
    targets,
    sequence_dir,
    table_path,
    *,
    out_dir=None,
    map_fn: Callable = map,
    window=None,
    time_margin=30 * u.min,
    channel: str | None = None,
    exclude: Sequence[str] = (),
    phases: tuple[PhaseParams, PhaseParams, PhaseParams] = (BINNED, ONE_MAP, SYNTHETIC_RASTER),
    synthetic: SyntheticParams = SyntheticParams(),
    progress: bool = True,
    checkpoint_interval_s: float = 0.0,
) -> Table:
    """Coalign many target files against a folder of reference frames; resumable.

    Each file is one task (`align_file`) mapped with ``map_fn``; its row is added to the results table
    as soon as it comes back, and the table is rewritten atomically (temporary file, then rename), so an
    interrupted batch loses nothing done. A rerun with the same table skips the files whose row has
    status ``"ok"`` and retries the others. A bad file (unreadable, no reference coverage, no overlap...)
    becomes an error row; the batch goes on. Input files are never written.

    Parameters
    ----------
    targets : path-like or sequence of path-like
        Target files (SPICE L2, 2-D FITS rasters with a COLUMN_TIMES table, 2-D maps) or folders of them.
    sequence_dir : path-like
        Folder of reference frames; each target uses those within its time span ± ``time_margin`` and
        the frame nearest its mid-time for the first two phases.
    table_path : path-like
        Results table (ECSV), created or resumed.
    out_dir : path-like, optional
        Write the corrected copy of each target here (``<stem>_coaligned.fits``); created if needed.
    map_fn : callable
        ``map_fn(func, iterable)`` returning an iterable of results: builtin ``map`` (serial), or
        `as_completed_map` of a process pool or a dask ``Client`` (see `scheduler_map`). A lazy
        ``map_fn`` lets each row be saved when it completes; one that returns a list (e.g.
        `~coalign.executors.executor_map`) saves the rows only when it returns.
    window : int or str, optional
        SPICE window index or name.
    time_margin : Quantity or float
        Margin of the reference time window (a time Quantity, or minutes).
    channel : str, optional
        Reference channel token (WAVELNTH or file-name token).
    exclude : sequence of str
        Reference file-name tokens to skip.
    phases, synthetic
        Settings of the three phases and of the synthetic raster.
    progress : bool
        Show a tqdm progress bar (when tqdm is installed); every file is logged on
        ``logging.getLogger("coalign.batch")`` either way.
    checkpoint_interval_s : float
        Minimum time between two table writes (0: after every file). The table is always written when
        the batch stops, interrupted or not; a larger interval only matters if the process is killed
        outright, and saves time with tables of many thousands of rows (each write rewrites the file).

    Returns
    -------
    `~astropy.table.Table`
        The results table as written (`COLUMNS`; rows of other files already in the table come first).

    Raises
    ------
    EmptySequenceError
        No target file.
    FileNotFoundError
        ``sequence_dir`` does not exist.
    ValueError
        The table or an output would overwrite a target, outputs collide, or ``table_path`` holds
        something other than a batch table.
    """
    margin = time_margin.to_value(u.min) if isinstance(time_margin, u.Quantity) else float(time_margin)
    config = BatchConfig(
        sequence_dir=str(Path(sequence_dir).resolve()),
        out_dir=None if out_dir is None else str(Path(out_dir).resolve()),
        window=window,
        time_margin_min=margin,
        channel=channel,
        exclude=tuple(exclude),
        phases=tuple(phases),
        synthetic=synthetic,
    )
    paths = expand_targets(targets)
    table_path = Path(table_path).resolve()
    _check_paths(paths, config, table_path)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    if config.out_dir is not None:
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    if table_path.exists():
        rows = {row["file"]: row for row in read_batch_table(table_path)}
    keys = [str(p) for p in paths]
    todo = [key for key in keys if rows.get(key, {}).get("status") != "ok"]
    meta = _table_meta(config)
    log.info(
        "coalign batch: %d targets, %d already done, %d to align; table %s",
        len(keys),
        len(keys) - len(todo),
        len(todo),
        table_path,
    )
    bar = _Progress(len(todo), progress)
    last_write, unsaved = -np.inf, False
    results = map_fn(partial(align_file, config=config), todo)
    try:
        with bar.redirect():
            for row in results:
                rows[row["file"]] = row
                unsaved = True
                bar.update(row)
                if time.monotonic() - last_write >= checkpoint_interval_s:
                    write_batch_table(batch_table(_ordered(rows, keys), meta), table_path)
                    last_write, unsaved = time.monotonic(), False
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # a lazy map_fn cancels the tasks not yet started
        bar.close()
        if unsaved or not table_path.exists():
            write_batch_table(batch_table(_ordered(rows, keys), meta), table_path)
    n_ok = sum(rows[k]["status"] == "ok" for k in keys if k in rows)
    log.info(
        "coalign batch: %d of %d targets ok, %d failed; table %s",
        n_ok,
        len(keys),
        len(keys) - n_ok,
        table_path,
    )
    return batch_table(_ordered(rows, keys), meta)


def _table_meta(config: BatchConfig) -> dict:
    from coalign import __version__

    return {
        "coalign_version": __version__,
        "sequence_dir": config.sequence_dir,
        "time_margin_min": config.time_margin_min,
        "channel": config.channel,
        "exclude": list(config.exclude),
        "window": config.window,
    }
