"""Wall time and peak memory of the three phases on the bundled sample, serial vs. parallel map_fn.

Run from the repository root::

    python benchmarks/bench_phases.py [--repeats 3]

Each configuration runs in a fresh subprocess so that peak memory (``ru_maxrss``) is its own.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def run_once(map_kind: str) -> dict:
    """One three-phase run with the given map function; returns timings, accuracy and peak memory."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from coalign import Transform, apply_transform, executor_map, grid_from_wcs, three_phase_alignment
    from tests.sample import sample

    raster, times, sequence, reference = sample()
    error = Transform(-35.0, 25.0, 1.03, 0.98)
    target, truth = apply_transform(raster, error), error.inverse()
    t0 = time.perf_counter()
    if map_kind == "serial":
        result = three_phase_alignment(target, reference, sequence, column_times=times)
    else:
        pool_type = ProcessPoolExecutor if map_kind == "processes" else ThreadPoolExecutor
        with pool_type(2) as pool:
            result = three_phase_alignment(
                target, reference, sequence, column_times=times, map_fn=executor_map(pool)
            )
    total = time.perf_counter() - t0
    found = result.transform
    err = grid_from_wcs(target.wcs).shift_in_pixels(Transform(found.dx - truth.dx, found.dy - truth.dy))
    return {
        "map_fn": map_kind,
        "total_s": total,
        "phases_s": {p.name: p.elapsed_s for p in result.phases},
        "evaluations": {p.name: p.n_evaluations for p in result.phases},
        "shift_error_pix": err,
        "scale_error_percent": [100 * (found.sx / truth.sx - 1), 100 * (found.sy / truth.sy - 1)],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_once(args.child)))
        return
    print(f"CPUs: {os.cpu_count()}  python: {sys.version.split()[0]}")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    rows = []
    for kind in ("serial", "threads", "processes"):
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--child", kind],
                    check=True,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(args.repeats)
        ]
        best = min(runs, key=lambda r: r["total_s"])
        rows.append(best)
        phases = "  ".join(f"{k} {v:.2f}s" for k, v in best["phases_s"].items())
        print(
            f"{kind:10s} best of {args.repeats}: {best['total_s']:.2f} s ({phases}); peak RSS "
            f"{best['peak_rss_mib']:.0f} MiB; shift error {best['shift_error_pix'][0]:+.3f},"
            f"{best['shift_error_pix'][1]:+.3f} px; scale error {best['scale_error_percent'][0]:+.3f},"
            f"{best['scale_error_percent'][1]:+.3f} %"
        )
    serial = rows[0]["total_s"]
    for row in rows[1:]:
        print(f"speed-up of {row['map_fn']} over serial: {serial / row['total_s']:.2f}x")


if __name__ == "__main__":
    main()
