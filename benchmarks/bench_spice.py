"""SPICE-sized benchmark: coalign (FFT and population strategies) against sunxcorr, on the same files.

Builds the known-truth case of `spice_case` (a 192 x 800 raster from 21 rotated FSI 174 frames of
1280 x 1280) once into a work folder, then runs each method in its own subprocess and reports its run
time (reading the files and aligning, after its packages are imported; the import time is reported
apart; the case builder has already imported sunpy and coalign), peak resident memory (of that process)
and the error against the truth::

    python benchmarks/bench_spice.py [--workdir DIR] [--methods fft fft-threads population sunxcorr]
                                     [--repeats N]

``fft-threads`` is the default strategy with its candidates scored on a 2-thread pool (``map_fn``), as
sunxcorr runs with 2 workers. ``floor`` is no alignment: sunpy reading the 22 files and building their
maps' WCS, the library work that any tool working on sunpy maps pays before aligning; the ratio of
sunxcorr's run time to it bounds the speed-up any such tool can reach on this case.

sunxcorr is optional (``pip install ".[bench]"``); it is skipped when not importable.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from spice_case import N_ROWS, N_STEPS, STEP, celestial_wcs, make_case, true_wcs  # noqa: E402

METHODS = ("fft", "fft-threads", "population", "sunxcorr", "floor")


def run_coalign(case: dict, strategy: str, map_fn=map) -> dict:
    """coalign's three phases on the case files, with the given search strategy and ``map_fn``."""
    from dataclasses import replace

    import astropy.units as u

    from coalign import (
        BINNED,
        ONE_MAP,
        SYNTHETIC_RASTER,
        apply_transform,
        read_raster,
        read_sequence,
        three_phase_alignment,
    )

    raster, times = read_raster(case["raster"])
    sequence = read_sequence(case["frames"])
    middle = times.min() + (times.max() - times.min()) / 2
    reference = min(sequence, key=lambda m: abs((m.date - middle).to_value(u.s)))
    phases = (BINNED, ONE_MAP, SYNTHETIC_RASTER)
    if strategy != "fft":
        phases = tuple(replace(p, strategy="population") for p in phases)
    result = three_phase_alignment(
        raster, reference, sequence, column_times=times, phases=phases, map_fn=map_fn
    )
    t = result.transform
    return {
        "transform": [t.dx, t.dy, t.sx, t.sy],
        "corrected_header": apply_transform(raster, t).fits_header,
        "sigma_arcsec": list(result.phases[-1].sigma[:2]),
        "flags": list(result.phases[-1].flags),
        "phase_s": [round(p.elapsed_s, 2) for p in result.phases],
    }


def run_sunxcorr(case: dict) -> dict:
    """sunxcorr's own pipeline on the same files: coarse and fine single-map search, then its
    synthetic-raster process with scale, as in its README, with 2 workers."""
    import astropy.units as u
    import sunpy.map
    from sunxcorr import Orchestrator, SingleMapProcess, SyntheticRasterProcess

    raster = sunpy.map.Map(case["raster"])
    sequence = [sunpy.map.Map(p) for p in case["frames"]]
    middle = raster.date
    reference = min(sequence, key=lambda m: abs((m.date - middle).to_value(u.s)))
    root = Orchestrator(n_workers=2)
    root.add_child(SingleMapProcess(max_shift=150 * u.arcsec, bin_kernel=20 * u.arcsec, n_neighbors=8))
    root.add_child(SingleMapProcess(max_shift=30 * u.arcsec, bin_kernel=1 * u.arcsec, n_neighbors=8))
    root.add_child(
        SyntheticRasterProcess(max_shift=15 * u.arcsec, scale_step=0.01, n_neighbors=8, plateau_iters=2)
    )
    root.base_target_map = raster
    root.reference_map = reference
    root.reference_sequence = sequence
    root.verbose = 0
    root.output_directory = Path(tempfile.mkdtemp())
    root.execute()
    final = root.get_final_result()
    root.cleanup()
    return {"corrected_header": final.output_map.fits_header, "phase_s": []}


def run_floor(case: dict) -> dict:
    """sunpy reading the raster and the frames and building each map's WCS (observer included)."""
    import sunpy.map

    maps = [sunpy.map.Map(path) for path in [case["raster"], *case["frames"]]]
    return {"phase_s": [], "n_celestial": sum(m.wcs.has_celestial for m in maps)}


def _import_tool(method: str) -> None:
    """Import the tool's packages (sunpy, astropy, reproject...) before timing its run."""
    import sunpy.map  # noqa: F401

    if method == "sunxcorr":
        import sunxcorr  # noqa: F401
    else:
        import coalign  # noqa: F401


def _child(method: str, workdir: str) -> None:
    case = make_case(workdir)
    start = time.perf_counter()
    _import_tool(method)
    imported = time.perf_counter()
    if method == "sunxcorr":
        out = run_sunxcorr(case)
    elif method == "floor":
        out = run_floor(case)
    elif method == "fft-threads":  # as sunxcorr's 2 workers: the scale candidates on 2 threads
        from concurrent.futures import ThreadPoolExecutor

        from coalign import executor_map

        with ThreadPoolExecutor(2) as pool:
            out = run_coalign(case, "fft", map_fn=executor_map(pool))
    else:
        out = run_coalign(case, method)
    out["run_s"] = time.perf_counter() - imported  # reading and alignment; not the evaluation
    out["import_s"] = imported - start
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if "corrected_header" in out:
        out["errors"] = wcs_errors(celestial_wcs(out.pop("corrected_header")))
    print("RESULT " + json.dumps(out))


def _measure(method: str, workdir: str) -> dict | None:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, "--workdir", workdir],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"{method}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT ") :])


def wcs_errors(corrected_wcs) -> list[float]:
    """Errors of a corrected WCS against the true pointing, whatever the tool's own convention.

    World coordinates of the raster's centre and of the mid-points of its edges are compared with the
    truth: the centre's offset in true pixels (x, y), and the scale error (%) from the edge-to-edge
    distances along x and y.
    """
    import astropy.units as u

    truth_wcs = true_wcs()
    ny, nx = N_ROWS, N_STEPS
    px = np.array([(nx - 1) / 2, 0, nx - 1, (nx - 1) / 2, (nx - 1) / 2])
    py = np.array([(ny - 1) / 2, (ny - 1) / 2, (ny - 1) / 2, 0, ny - 1])

    def world(wcs):
        coords = wcs.pixel_to_world(px, py)
        return coords.Tx.to_value(u.arcsec), coords.Ty.to_value(u.arcsec)

    (tx, ty), (cx, cy) = world(truth_wcs), world(corrected_wcs)
    return [
        float((cx[0] - tx[0]) / STEP[0]),
        float((cy[0] - ty[0]) / STEP[1]),
        float(100 * ((cx[2] - cx[1]) / (tx[2] - tx[1]) - 1)),
        float(100 * ((cy[4] - cy[3]) / (ty[4] - ty[3]) - 1)),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "coalign-bench-spice"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs per method, interleaved (method by method, round after round) so that every method "
        "meets the same changes of machine speed; the best and the median run times are reported",
    )
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.workdir)
        return
    case = make_case(args.workdir)
    print(f"CPUs: {os.cpu_count()}; truth: {case['truth']}; runs per method: {args.repeats}")
    runs = {method: [] for method in args.methods}
    for _ in range(max(1, args.repeats)):
        for method in args.methods:
            out = _measure(method, args.workdir)
            if out is not None:
                runs[method].append(out)
    _report({method: outs for method, outs in runs.items() if outs})


def _report(runs: dict) -> None:
    """One table row per method (best and median run time over its runs; the rest from its best run), then
    the speed-ups of the FFT strategy from the best and from the median run times."""
    columns = (
        "method",
        "best run [s]",
        "median run [s]",
        "imports [s]",
        "peak RSS [MiB]",
        "dx err [px]",
        "dy err [px]",
        "sx err [%]",
        "sy err [%]",
        "phases [s]",
    )
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    best, median = {}, {}
    for method, outs in runs.items():
        times = [out["run_s"] for out in outs]
        best[method], median[method] = min(times), float(np.median(times))
        out = outs[int(np.argmin(times))]
        errors = " | ".join(f"{e:+.3f}" for e in out["errors"]) if "errors" in out else "– | – | – | –"
        print(
            f"| {method} | {best[method]:.2f} | {median[method]:.2f} | {out['import_s']:.2f} | "
            f"{max(o['peak_rss_mib'] for o in outs):.0f} | {errors} | {out.get('phase_s', '')} |"
        )
    for fast in ("fft", "fft-threads"):
        for other in ("population", "sunxcorr"):
            if fast in runs and other in runs:
                print(
                    f"speed-up of {fast} over {other}: {best[other] / best[fast]:.1f}x (best runs), "
                    f"{median[other] / median[fast]:.1f}x (median runs)"
                )
    if "floor" in runs and "sunxcorr" in runs:
        print(
            "sunxcorr over the sunpy floor (the largest speed-up a tool on sunpy maps can reach here): "
            f"{best['sunxcorr'] / best['floor']:.1f}x (best runs), "
            f"{median['sunxcorr'] / median['floor']:.1f}x (median runs)"
        )


if __name__ == "__main__":
    main()
