"""Command line: ``coalign demo`` runs the three phases on the bundled sample with a known error,
``coalign align`` corrects one file and ``coalign batch`` many (resumable, on local pools or dask)."""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "run_align", "run_batch_command", "run_demo"]

DEFAULT_INJECTED = (-35.0, 25.0, 1.03, 0.98)


def run_demo(out_dir, injected=DEFAULT_INJECTED, *, overwrite=False, n_jobs=1) -> dict:
    """Inject a known pointing error into the sample raster, recover it and write the products.

    Writes into ``out_dir``: the raster with the injected error, the corrected raster (FITS), a
    before/after PNG and a JSON result. Returns the JSON content as a dict.
    """
    from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR
    from coalign.facade import Coaligner
    from coalign.io.fits import write_corrected
    from coalign.io.readers import read_raster
    from coalign.plotting import plot_before_after
    from coalign.transform import Transform, grid_from_wcs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    error = Transform(*injected)
    truth = error.inverse()
    injected_path = write_corrected(
        SAMPLE_RASTER, error, out / "raster_injected_error.fits", overwrite=overwrite
    )
    target, column_times = read_raster(injected_path)
    aligner = Coaligner.from_folder(target, SAMPLE_REFERENCE_DIR, column_times=column_times, n_jobs=n_jobs)
    t0 = time.perf_counter()
    aligner.run_binned_xcorr()
    aligner.run_one_map_xcorr()
    final = aligner.run_synthetic_raster_xcorr()
    total = time.perf_counter() - t0
    found = final.transform
    grid = grid_from_wcs(target.wcs)
    err_x, err_y = grid.shift_in_pixels(Transform(found.dx - truth.dx, found.dy - truth.dy))
    corrected_path = write_corrected(
        injected_path,
        found,
        out / "raster_corrected.fits",
        overwrite=overwrite,
        references=aligner.reference_files,
    )
    fig = plot_before_after(target, final.corrected_map, aligner.reference_map)
    fig.savefig(out / "before_after.png", dpi=90)
    report = {
        "injected_error": error.as_dict(),
        "true_correction": truth.as_dict(),
        "recovered_correction": found.as_dict(),
        "shift_error_pixels": [err_x, err_y],
        "scale_error_percent": [100 * (found.sx / truth.sx - 1), 100 * (found.sy / truth.sy - 1)],
        "phases": [
            aligner.results[name]["result"].as_dict() for name in ("binned", "one_map", "synthetic_raster")
        ],
        "total_s": total,
        "outputs": [str(injected_path), str(corrected_path), str(out / "before_after.png")],
    }
    (out / "result.json").write_text(json.dumps(report, indent=2))
    return report


def run_align(
    target_path,
    reference_path,
    out_path,
    *,
    sequence=(),
    window=None,
    json_path=None,
    overwrite=False,
    n_jobs=1,
    max_time_gap_s=None,
    fit_roll=False,
) -> dict:
    """Align one target file against a reference (and optionally a sequence); write the corrected FITS.

    A sequence of several files is first checked to cover the target's column times
    (`~coalign.io.readers.check_sequence_coverage`), so a sequence that does not raises
    `~coalign.exceptions.TimeCoverageError` naming the files before any alignment and writes nothing.

    Parameters
    ----------
    target_path : path-like
        SPICE L2 file (choose the window with ``window``) or 2-D FITS map.
    reference_path : path-like
        Reference map for the binned and one-map phases.
    out_path : path-like
        Corrected copy of ``target_path`` (never the input itself).
    sequence : sequence of path-like
        Reference files (or one folder) for the synthetic raster; default: the reference alone.
    window : int or str, optional
        SPICE window index or name.
    json_path : path-like, optional
        Where to write the result as JSON.
    fit_roll : bool
        Fit the roll too in the synthetic-raster phase (`~coalign.params.PhaseParams.fit_roll`).
    max_time_gap_s : float, optional
        Largest allowed gap between a target column and its nearest sequence file (seconds); default
        that of `~coalign.params.SyntheticParams`.
    """
    from coalign.batch import read_target
    from coalign.facade import Coaligner
    from coalign.io.fits import write_corrected
    from coalign.io.readers import (
        DEFAULT_MAX_TIME_GAP_S,
        check_sequence_coverage,
        find_reference_files,
        read_map,
        read_sequence,
        reference_times,
    )

    gap = DEFAULT_MAX_TIME_GAP_S if max_time_gap_s is None else max_time_gap_s
    target, column_times = read_target(Path(target_path), window)
    files = list(sequence)
    if len(files) == 1 and Path(files[0]).is_dir():
        files = find_reference_files(files[0])
    if len(files) > 1:  # a single map is used whatever its time, as by the synthetic-raster phase
        check_sequence_coverage(column_times, reference_times(files), max_time_gap_s=gap, target=target_path)
    reference = read_map(reference_path)
    maps = read_sequence(files) if files else None
    aligner = Coaligner(target, reference, maps, column_times=column_times if maps else None, n_jobs=n_jobs)
    aligner.synthetic_kwargs["max_time_gap_s"] = gap
    aligner.synthetic_kwargs["fit_roll"] = fit_roll
    t0 = time.perf_counter()
    aligner.run_all()
    found = aligner.best_params
    references = [Path(reference_path).name, *(Path(f).name for f in files)]
    output = write_corrected(target_path, found, out_path, references=references, overwrite=overwrite)
    report = {
        "target": str(target_path),
        "output": str(output),
        "transform": found.as_dict(),
        "shift_pixels": list(aligner.results["synthetic_raster"]["result"].shift_pixels),
        "score": aligner.results["synthetic_raster"]["score"],
        "phases": [
            aligner.results[name]["result"].as_dict() for name in ("binned", "one_map", "synthetic_raster")
        ],
        "total_s": time.perf_counter() - t0,
    }
    if json_path is not None:
        Path(json_path).write_text(json.dumps(report, indent=2))
    return report


def _window(value):
    """A SPICE window given on the command line: an index when all digits, else a name."""
    return int(value) if value is not None and value.isdigit() else value


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``coalign batch`` from parsed arguments; 0 when every target is ok, 1 when some failed."""
    from coalign.batch import expand_targets, run_batch, scheduler_map
    from coalign.params import SyntheticParams

    if args.scheduler == "dask":
        try:
            import distributed  # noqa: F401 -- sets its log levels on import; lowered below
        except ImportError:
            pass  # scheduler_map explains what to install
    # One log line per file: not the per-phase lines of each alignment, nor dask's cluster chatter.
    for name in ("coalign.pipelines", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with scheduler_map(args.scheduler, workers=args.workers, address=args.address) as map_fn:
            table = run_batch(
                args.targets,
                args.sequence_dir,
                args.table,
                out_dir=args.out_dir,
                map_fn=map_fn,
                window=_window(args.window),
                time_margin=args.time_margin,
                channel=args.channel,
                exclude=tuple(args.exclude),
                synthetic=SyntheticParams(max_time_gap_s=args.max_time_gap),
                progress=not args.no_progress,
                checkpoint_interval_s=args.checkpoint_seconds,
            )
    except KeyboardInterrupt:
        print(f"interrupted; the rows done are in {args.table}: rerun the same command to resume")
        return 130
    mine = {str(path) for path in expand_targets(args.targets)}
    rows = [row for row in table if row["file"] in mine]
    failed = [row for row in rows if row["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} files ok, {len(failed)} failed; table {args.table}")
    for row in failed:
        print(f"  {Path(row['file']).name}: {row['error_type']}: {row['error_message']}")
    return 1 if failed else 0


def _print_report(report) -> None:
    truth, found = report["true_correction"], report["recovered_correction"]
    print(f"{'':10s}{'dx [arcsec]':>12s}{'dy [arcsec]':>12s}{'sx':>10s}{'sy':>10s}")
    for name, t in (("true", truth), ("recovered", found)):
        print(f"{name:10s}{t['dx_arcsec']:12.3f}{t['dy_arcsec']:12.3f}{t['sx']:10.5f}{t['sy']:10.5f}")
    ex, ey = report["shift_error_pixels"]
    sx, sy = report["scale_error_percent"]
    print(f"error: shift ({ex:+.3f}, {ey:+.3f}) target pixels, scale ({sx:+.3f}, {sy:+.3f}) %")
    for phase in report["phases"]:
        print(
            f"  {phase['phase']:17s} score {phase['score']:.4f}  {phase['n_evaluations']:5d} evaluations "
            f"{phase['elapsed_s']:7.2f} s"
        )
    print("wrote:", *report["outputs"], sep="\n  ")


def main(argv=None) -> int:
    """Entry point of the ``coalign`` command."""
    from coalign.params import SyntheticParams

    max_time_gap = dict(
        type=float,
        default=SyntheticParams().max_time_gap_s,
        metavar="S",
        help="largest gap between a target column and its nearest sequence frame (default: %(default)s s)",
    )
    parser = argparse.ArgumentParser(prog="coalign", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="recover a known pointing error injected into the bundled IRIS sample")
    demo.add_argument("--out", default="coalign-demo-output", help="output folder (default: %(default)s)")
    demo.add_argument(
        "--inject",
        nargs=4,
        type=float,
        metavar=("DX", "DY", "SX", "SY"),
        default=DEFAULT_INJECTED,
        help="error added to the header: arcsec on CRVAL1/2, factors on CDELT1/2 (default: %(default)s)",
    )
    demo.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    demo.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    align = sub.add_parser("align", help="correct the pointing of one raster or image file")
    align.add_argument("target", help="SPICE L2 file or 2-D FITS map")
    align.add_argument("--reference", required=True, help="reference map (FITS) for the first two phases")
    align.add_argument(
        "--sequence", nargs="+", default=(), help="reference files or one folder (synthetic raster)"
    )
    align.add_argument("--window", help="SPICE window index or name (default: the first)")
    align.add_argument("--out", required=True, help="corrected FITS file to write")
    align.add_argument("--json", help="write the result as JSON here")
    align.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    align.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    align.add_argument("--max-time-gap", **max_time_gap)
    align.add_argument("--fit-roll", action="store_true", help="fit the roll too (synthetic-raster phase)")
    batch = sub.add_parser(
        "batch",
        help="correct the pointing of many files (resumable table; serial, process pool or dask)",
        description="Align each target against the frames of --sequence-dir within its time span; write one "
        "row per file to --table (ECSV, updated after every file: rerun to resume) and, with --out-dir, "
        "the corrected FITS files. Exit code 1 when any file failed.",
    )
    batch.add_argument("targets", nargs="+", help="SPICE L2 files, 2-D FITS rasters or maps, or folders")
    batch.add_argument("--sequence-dir", required=True, help="folder of reference frames")
    batch.add_argument("--table", required=True, help="results table (ECSV) to create or resume")
    batch.add_argument("--out-dir", help="write corrected FITS files here (<name>_coaligned.fits)")
    batch.add_argument(
        "--scheduler", choices=("serial", "processes", "dask"), default="serial", help="(default: serial)"
    )
    batch.add_argument("--workers", type=int, help="worker processes (default: the CPU count)")
    batch.add_argument("--address", help="scheduler address of a running dask cluster (tcp://host:8786)")
    batch.add_argument("--window", help="SPICE window index or name (default: the first)")
    batch.add_argument(
        "--time-margin",
        type=float,
        default=30.0,
        metavar="MIN",
        help="reference frames within the target's time span +- MIN minutes (default: %(default)s)",
    )
    batch.add_argument("--channel", help="reference channel: WAVELNTH or a file-name token, e.g. 174")
    batch.add_argument(
        "--exclude", nargs="+", default=(), metavar="TOKEN", help="skip reference files containing these"
    )
    batch.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="minimum time between table writes (default: 0, after every file)",
    )
    batch.add_argument("--max-time-gap", **max_time_gap)
    batch.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "demo":
        report = run_demo(args.out, tuple(args.inject), overwrite=args.overwrite, n_jobs=args.jobs)
        _print_report(report)
        ok = (
            max(np.abs(report["shift_error_pixels"])) <= 0.25
            and max(np.abs(report["scale_error_percent"])) <= 0.5
        )
        return 0 if ok else 1
    if args.command == "batch":
        return run_batch_command(args)
    if args.command == "align":
        window = _window(args.window)
        report = run_align(
            args.target,
            args.reference,
            args.out,
            sequence=args.sequence,
            window=window,
            json_path=args.json,
            overwrite=args.overwrite,
            n_jobs=args.jobs,
            max_time_gap_s=args.max_time_gap,
            fit_roll=args.fit_roll,
        )
        t = report["transform"]
        print(
            f"correction: dx={t['dx_arcsec']:+.3f} arcsec dy={t['dy_arcsec']:+.3f} arcsec sx={t['sx']:.5f} "
            f"sy={t['sy']:.5f} roll={t['roll_deg']:+.4f} deg (r={report['score']:.4f}, "
            f"{report['total_s']:.1f} s)\nwrote {report['output']}"
        )
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
