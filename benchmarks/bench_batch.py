"""Throughput (rasters per minute) and peak memory of `coalign.batch.run_batch` per scheduler.

Run from the repository root::

    python benchmarks/bench_batch.py [--rasters 8] [--workers 2] [--schedulers serial processes dask]

Makes ``--rasters`` copies of the bundled sample raster with different known pointing errors, then
aligns them all once per scheduler (builtin ``map``; a spawned ``ProcessPoolExecutor``; a dask
``LocalCluster`` with one thread per worker), each in a fresh subprocess. The wall time includes
starting and stopping the pool or cluster (and the workers' imports, paid on their first task); the
"after start-up" rate leaves out the pool or cluster start-up only. Peak memory is sampled every 50 ms
over the whole process tree (driver + workers), and ``ru_maxrss`` gives the largest single process.
Prints a markdown table and checks that every scheduler gives the same rows.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

#: Injected errors, cycled over the rasters (the correction to find is the inverse).
ERRORS = (
    (12.0, -9.0, 1.0, 1.0),
    (-20.0, 15.0, 1.02, 0.99),
    (6.0, 18.0, 0.99, 1.01),
    (-30.0, -12.0, 1.0, 1.03),
)


def make_rasters(folder: Path, n: int) -> list[Path]:
    """``n`` copies of the sample raster with known pointing errors."""
    from coalign.data import SAMPLE_RASTER
    from coalign.io.fits import write_corrected
    from coalign.transform import Transform

    return [
        write_corrected(SAMPLE_RASTER, Transform(*ERRORS[i % len(ERRORS)]), folder / f"raster_{i:03d}.fits")
        for i in range(n)
    ]


class TreeMemory(threading.Thread):
    """Samples the summed resident memory of this process and all its descendants (needs psutil)."""

    def __init__(self, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self.interval_s, self.peak, self.stop = interval_s, 0, threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # a worker ended between listing and reading
                    continue
            self.peak = max(self.peak, total)
            self.stop.wait(self.interval_s)


def run_child(scheduler: str, folder: Path, workers: int) -> dict:
    """One batch over the rasters of ``folder`` with ``scheduler``; timings and memory as a dict."""
    from coalign.batch import run_batch, scheduler_map
    from coalign.data import SAMPLE_REFERENCE_DIR

    try:
        sampler = TreeMemory()
        sampler.start()
    except ImportError:
        sampler = None
    paths = sorted(folder.glob("raster_*.fits"))
    table_path = folder / f"results_{scheduler}.ecsv"
    t0 = time.perf_counter()
    with scheduler_map(scheduler, workers=workers) as map_fn:
        t1 = time.perf_counter()
        table = run_batch(paths, SAMPLE_REFERENCE_DIR, table_path, map_fn=map_fn, progress=False)
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
    ok = [row for row in table if row["status"] == "ok"]
    return {
        "scheduler": scheduler,
        "workers": 1 if scheduler == "serial" else workers,
        "rasters": len(paths),
        "ok": len(ok),
        "startup_s": t1 - t0,
        "batch_s": t2 - t1,
        "wall_s": t3 - t0,
        "mean_task_s": sum(row["total_s"] for row in ok) / max(1, len(ok)),
        "peak_tree_mib": sampler.peak / 2**20 if sampler is not None else math.nan,
        "peak_parent_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_child_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "rows": [
            [
                row["file"],
                row["status"],
                row["dx_arcsec"],
                row["dy_arcsec"],
                row["sx"],
                row["sy"],
                row["score"],
            ]
            for row in table
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rasters", type=int, default=8, help="rasters in the batch (default: 8)")
    parser.add_argument(
        "--workers", type=int, default=2, help="workers of the parallel schedulers (default: 2)"
    )
    parser.add_argument("--schedulers", nargs="+", default=["serial", "processes", "dask"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, Path(args.folder), args.workers)))
        return
    load = os.getloadavg()[0]
    print(
        f"CPUs: {os.cpu_count()}  python: {sys.version.split()[0]}  rasters: {args.rasters}  "
        f"load average at start: {load:.2f}"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    results = []
    with tempfile.TemporaryDirectory(prefix="coalign-bench-batch-") as tmp:
        make_rasters(Path(tmp), args.rasters)
        for scheduler in args.schedulers:
            command = [sys.executable, __file__, "--child", scheduler, "--folder", tmp]
            command += ["--workers", str(args.workers)]
            done = subprocess.run(command, check=True, env=env, capture_output=True, text=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print()
    print(
        "| scheduler | workers | rasters ok | start-up | wall | rasters/min | rasters/min after start-up "
        "| mean task | peak RSS, all processes | peak RSS, largest process |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        largest = max(r["peak_parent_mib"], r["peak_child_mib"])
        print(
            f"| {r['scheduler']} | {r['workers']} | {r['ok']}/{r['rasters']} | {r['startup_s']:.1f} s "
            f"| {r['wall_s']:.1f} s | {60 * r['rasters'] / r['wall_s']:.1f} "
            f"| {60 * r['rasters'] / r['batch_s']:.1f} | {r['mean_task_s']:.2f} s "
            f"| {r['peak_tree_mib']:.0f} MiB | {largest:.0f} MiB |"
        )
    print()
    first = results[0]["scheduler"]
    for r in results[1:]:
        if r["rows"] == results[0]["rows"]:
            print(f"{r['scheduler']}: rows identical to {first}")
            continue
        diffs = [
            abs(a - b)
            for ra, rb in zip(r["rows"], results[0]["rows"], strict=True)
            for a, b in zip(ra[2:], rb[2:], strict=True)
        ]
        print(f"{r['scheduler']}: rows DIFFER from {first} (max |difference| {max(diffs):.3g})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
