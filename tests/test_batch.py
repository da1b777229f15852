"""Batch coalignment: serial, process-pool and dask runs agree; bad files become error rows; resumable.

A few rasters are made from the bundled sample with known pointing errors, plus a truncated file, a file
whose times lie days away from the references and a missing path. Each scheduler aligns the batch once
(module-scoped fixtures) and the tests compare the tables.
"""

import hashlib
import math
import multiprocessing
import operator
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from coalign.batch import (
    COLUMNS,
    BatchConfig,
    align_file,
    as_completed_map,
    crashed_row,
    expand_targets,
    read_batch_table,
    run_batch,
    scheduler_map,
)
from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR
from coalign.exceptions import EmptySequenceError
from coalign.io.fits import write_corrected
from coalign.io.readers import read_map
from coalign.params import SyntheticParams
from coalign.transform import Transform, grid_from_wcs

#: Pointing errors injected into copies of the sample (the correction to find is the inverse).
INJECTED = {
    "good_1.fits": Transform(12.0, -9.0),
    "good_2.fits": Transform(-20.0, 15.0, 1.02, 0.99),
    "good_3.fits": Transform(6.0, 18.0, 0.99, 1.01),
}
#: Target order: the interrupted run stops after the first two rows (one good, one corrupt).
ORDER = ("good_1.fits", "corrupt.fits", "good_2.fits", "late.fits", "good_3.fits", "missing.fits")
EXPECTED_ERRORS = {
    "corrupt.fits": "OSError",
    "late.fits": "TimeCoverageError",
    "missing.fits": "FileNotFoundError",
}
TIMING = tuple(name for name, _, _ in COLUMNS if name.endswith("_s"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shift_days(path: Path, days: int) -> None:
    """Move the observation (its dates and the COLUMN_TIMES reference) by whole days within the month."""
    with fits.open(path, mode="update") as hdul:
        header, table = hdul[0].header, hdul["COLUMN_TIMES"].header
        for hdr, key in [(header, k) for k in ("DATE-OBS", "DATE-AVG", "DATE-END") if k in header] + [
            (table, "DATEREF")
        ]:
            date = hdr[key]
            hdr[key] = f"{date[:8]}{int(date[8:10]) + days:02d}{date[10:]}"


def make_inputs(folder: Path) -> list[Path]:
    """The test batch, in `ORDER`: three good rasters, a truncated file, a late raster, a missing path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, error in INJECTED.items():
        write_corrected(SAMPLE_RASTER, error, folder / name)
    (folder / "corrupt.fits").write_bytes(SAMPLE_RASTER.read_bytes()[:5000])
    _shift_days(write_corrected(SAMPLE_RASTER, Transform(5.0, 5.0), folder / "late.fits"), -5)
    return [folder / name for name in ORDER]


def comparable(rows) -> list[dict]:
    """Rows without timings, outputs by name, NaN as a string (so equal rows compare equal)."""

    def value(name, v):
        if name == "output":
            return Path(v).name if v else ""
        if isinstance(v, float | np.floating) and math.isnan(v):
            return "nan"
        return v.item() if isinstance(v, np.generic) else v

    return [{name: value(name, row[name]) for name, _, _ in COLUMNS if name not in TIMING} for row in rows]


def by_name(rows) -> dict:
    return {Path(row["file"]).name: row for row in rows}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    paths = make_inputs(tmp_path_factory.mktemp("inputs"))
    return paths, {p.name: _sha256(p) for p in paths if p.exists()}


def _run(folder: Path, paths, map_fn):
    table = run_batch(
        paths, SAMPLE_REFERENCE_DIR, folder / "results.ecsv", out_dir=folder / "out", map_fn=map_fn
    )
    return table, folder


@pytest.fixture(scope="module")
def serial_run(inputs, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("serial"), inputs[0], map)


@pytest.fixture(scope="module")
def processes_run(inputs, tmp_path_factory):
    with scheduler_map("processes", workers=2) as map_fn:
        return _run(tmp_path_factory.mktemp("processes"), inputs[0], map_fn)


@pytest.fixture(scope="module")
def dask_run(inputs, tmp_path_factory):
    pytest.importorskip("distributed", reason="dask.distributed is an optional dependency")
    with scheduler_map("dask", workers=2) as map_fn:  # LocalCluster(n_workers=2, threads_per_worker=1)
        return _run(tmp_path_factory.mktemp("dask"), inputs[0], map_fn)


def test_serial_batch_recovers_the_injected_errors(serial_run):
    table, _ = serial_run
    rows = by_name(table)
    assert list(rows) == list(ORDER)
    for name, error in INJECTED.items():
        row, truth = rows[name], error.inverse()
        assert row["status"] == "ok", row["error_message"]
        grid = grid_from_wcs(read_map(row["file"]).wcs)
        err_x, err_y = grid.shift_in_pixels(
            Transform(row["dx_arcsec"] - truth.dx, row["dy_arcsec"] - truth.dy)
        )
        assert max(abs(err_x), abs(err_y)) < 0.3, (name, err_x, err_y)
        # scale accuracy is the pipeline's business (tests/pipelines, the demo); here: the right columns
        assert abs(row["sx"] / truth.sx - 1) < 0.02 and abs(row["sy"] / truth.sy - 1) < 0.02
        assert row["score"] > 0.8 and row["n_references"] > 10 and row["reference"].endswith(".fits")
        assert row["error_type"] == "" and row["time"].startswith("2014-03-29T15:4")
        assert 0 < row["elapsed_synthetic_raster_s"] < row["total_s"]


def test_bad_files_become_error_rows(serial_run):
    rows = by_name(serial_run[0])
    for name, error_type in EXPECTED_ERRORS.items():
        row = rows[name]
        assert (row["status"], row["error_type"]) == ("error", error_type), row
        assert row["error_message"] and row["output"] == "" and math.isnan(row["dx_arcsec"])
    assert "no reference frame" in rows["late.fits"]["error_message"]
    assert "--time-margin" in rows["late.fits"]["error_message"]


def test_table_on_disk_is_the_returned_table(serial_run):
    table, folder = serial_run
    assert comparable(read_batch_table(folder / "results.ecsv")) == comparable(table)
    assert [row["total_s"] for row in read_batch_table(folder / "results.ecsv")] == list(table["total_s"])


def test_corrected_files_carry_the_correction(serial_run):
    table, folder = serial_run
    for row in table:
        if row["status"] != "ok":
            continue
        output = Path(row["output"])
        assert output.parent == folder / "out" and output.name.endswith("_coaligned.fits")
        with fits.open(row["file"]) as before, fits.open(output) as after:
            shift = after[0].header["CRVAL1"] - before[0].header["CRVAL1"]
            assert shift * 3600 == pytest.approx(row["dx_arcsec"], abs=1e-6)  # CRVAL in degrees
            step = max(int(key[6:]) for key in after[0].header if key.startswith("PRSTEP"))
            assert step == 2  # the injection by write_corrected was step 1
            assert after[0].header[f"PRSTEP{step}"] == "SPATIAL-COORDINATE-CORRECTION"
            assert row["reference"] in after[0].header[f"PRREF{step}"]
            np.testing.assert_array_equal(after[0].data, before[0].data)
    assert len(list((folder / "out").iterdir())) == len(INJECTED)


@pytest.mark.parametrize("scheduler", ["processes", "dask"])
def test_parallel_schedulers_give_identical_rows(scheduler, serial_run, request):
    table, _ = request.getfixturevalue(f"{scheduler}_run")
    assert comparable(table) == comparable(serial_run[0])


def test_rerun_skips_ok_files_and_retries_errors(serial_run, inputs):
    table, folder = serial_run
    calls = []

    def recording_map(func, items):
        calls.extend(Path(item).name for item in items)
        return map(func, items)

    again = run_batch(
        inputs[0], SAMPLE_REFERENCE_DIR, folder / "results.ecsv", out_dir=folder / "out", map_fn=recording_map
    )
    assert sorted(calls) == sorted(EXPECTED_ERRORS)
    assert comparable(again) == comparable(table)
    ok = [name for name, row in by_name(table).items() if row["status"] == "ok"]
    assert [by_name(again)[name]["total_s"] for name in ok] == [
        by_name(table)[name]["total_s"] for name in ok
    ]


def test_interrupted_batch_resumes_to_the_same_table(serial_run, inputs, tmp_path):
    paths = [
        inputs[0][ORDER.index(name)] for name in ("good_1.fits", "corrupt.fits", "late.fits", "good_2.fits")
    ]
    expected = [by_name(serial_run[0])[p.name] for p in paths]  # the uninterrupted batch's rows
    table_path = tmp_path / "results.ecsv"
    rows_on_disk = []

    def interrupted_map(func, items):
        for done, row in enumerate(map(func, items), start=1):
            yield row
            rows_on_disk.append(len(read_batch_table(table_path)))  # written after each file
            if done == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(paths, SAMPLE_REFERENCE_DIR, table_path, out_dir=tmp_path / "out", map_fn=interrupted_map)
    assert rows_on_disk == [1, 2]
    assert [Path(row["file"]).name for row in read_batch_table(table_path)] == ["good_1.fits", "corrupt.fits"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good_1_coaligned.fits"]
    resumed = run_batch(paths, SAMPLE_REFERENCE_DIR, table_path, out_dir=tmp_path / "out", progress=False)
    assert comparable(resumed) == comparable(expected)
    assert comparable(read_batch_table(table_path)) == comparable(expected)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "good_1_coaligned.fits",
        "good_2_coaligned.fits",
    ]


def test_rows_of_other_files_are_kept(serial_run, inputs, tmp_path):
    table_path = tmp_path / "results.ecsv"
    corrupt, missing = inputs[0][1], inputs[0][5]
    run_batch([corrupt], SAMPLE_REFERENCE_DIR, table_path, progress=False)
    table = run_batch([missing], SAMPLE_REFERENCE_DIR, table_path, progress=False)
    assert [Path(name).name for name in table["file"]] == ["corrupt.fits", "missing.fits"]
    assert list(table["error_type"]) == ["OSError", "FileNotFoundError"]


def test_progress_falls_back_to_logging_without_tqdm(inputs, tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # import tqdm now fails
    corrupt, late = (inputs[0][ORDER.index(name)] for name in ("corrupt.fits", "late.fits"))
    with caplog.at_level("INFO", logger="coalign.batch"):
        table = run_batch([corrupt, late], SAMPLE_REFERENCE_DIR, tmp_path / "t.ecsv", time_margin=600 * u.s)
    messages = [r.getMessage() for r in caplog.records if r.name == "coalign.batch"]
    assert any("[1/2] corrupt.fits: OSError" in m for m in messages)
    assert any("0 of 2 targets ok" in m for m in messages)
    assert "between 2014-03-24T14:05:08.344 and" in table["error_message"][1]  # a 10-minute margin


def test_align_file_is_a_pure_task_with_a_frozen_config(inputs):
    config = BatchConfig(sequence_dir=str(SAMPLE_REFERENCE_DIR))
    with pytest.raises(AttributeError):
        config.time_margin_min = 10  # frozen
    row = align_file(inputs[0][1], config)
    assert set(row) == {name for name, _, _ in COLUMNS}
    assert (row["status"], row["error_type"]) == ("error", "OSError")
    with pytest.raises(ValueError, match="time_margin_min"):
        BatchConfig(sequence_dir=".", time_margin_min=-1)


def test_a_sequence_folder_that_ends_too_early_is_an_error_row_naming_the_files(tmp_path, monkeypatch):
    import coalign.pipelines.phases
    from coalign.data import sample_reference_files

    folder = tmp_path / "sji_until_1526"
    folder.mkdir()
    files = sample_reference_files()[:10]  # 14:09:43 to 15:25:56; the raster runs to 17:07:38
    for path in files:
        (folder / path.name).write_bytes(path.read_bytes())
    target = tmp_path / "raster.fits"
    target.write_bytes(SAMPLE_RASTER.read_bytes())
    config = BatchConfig(sequence_dir=str(folder), out_dir=str(tmp_path / "out"))
    row = align_file(target, config)
    assert (row["status"], row["error_type"], row["output"]) == ("error", "TimeCoverageError", "")
    message = row["error_message"]
    assert "do not cover the raster of raster.fits" in message
    assert f"({files[0].name}) to 2014-03-29T15:25:56.182 ({files[-1].name})" in message
    assert (
        f"its end is not covered: it ends 6102 s after the last reference file ({files[-1].name})" in message
    )
    # The files were those of the target's span +- 30 min: the message says so and how to widen it.
    assert (
        "widen the time window the files were selected in (now 2014-03-29T13:45:08.344 to "
        "2014-03-29T17:37:38.344)" in message
    )
    assert message.endswith("or raise max_time_gap_s")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []

    # A larger allowed gap lets the same files through to the alignment.
    def reached(*args, **kwargs):
        raise RuntimeError("alignment reached")

    monkeypatch.setattr(coalign.pipelines.phases, "three_phase_alignment", reached)
    wide = BatchConfig(sequence_dir=str(folder), synthetic=SyntheticParams(max_time_gap_s=6110))
    row = align_file(target, wide)
    assert (row["error_type"], row["error_message"], row["n_references"]) == (
        "RuntimeError",
        "alignment reached",
        10,
    )


def test_expand_targets_takes_folders_and_drops_duplicates(inputs):
    paths, _ = inputs
    folder = paths[0].parent
    expanded = expand_targets([folder, paths[0], folder / "good_1.fits"])
    assert [p.name for p in expanded] == sorted(p.name for p in paths if p.exists())
    with pytest.raises(EmptySequenceError, match="no target file"):
        expand_targets([])


def test_invalid_batches_are_refused_before_any_work(inputs, tmp_path):
    paths, _ = inputs
    with pytest.raises(FileNotFoundError, match="--sequence-dir"):
        run_batch(paths, tmp_path / "nowhere", tmp_path / "t.ecsv")
    with pytest.raises(ValueError, match="never overwrites an input"):
        run_batch(paths, SAMPLE_REFERENCE_DIR, paths[0])
    with pytest.raises(ValueError, match="reference folder"):
        run_batch(paths, SAMPLE_REFERENCE_DIR, tmp_path / "t.ecsv", out_dir=SAMPLE_REFERENCE_DIR)
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "good_1.fits").write_bytes(paths[0].read_bytes())
    with pytest.raises(ValueError, match="would both be written"):
        run_batch(
            [paths[0], twin / "good_1.fits"], SAMPLE_REFERENCE_DIR, tmp_path / "t.ecsv", out_dir=tmp_path
        )
    (twin / "good_1_coaligned.fits").write_bytes(b"")
    with pytest.raises(ValueError, match="would be written over the target"):
        run_batch(list(twin.iterdir()), SAMPLE_REFERENCE_DIR, tmp_path / "t.ecsv", out_dir=twin)
    (tmp_path / "other.ecsv").write_text(
        "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: a, datatype: int64}\na\n1\n"
    )
    with pytest.raises(ValueError, match="not a coalign batch table"):
        run_batch(paths, SAMPLE_REFERENCE_DIR, tmp_path / "other.ecsv")
    assert not (tmp_path / "t.ecsv").exists()


def test_scheduler_map_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown scheduler"):
        with scheduler_map("threads"):
            pass
    with pytest.raises(ValueError, match="needs scheduler='dask'"):
        with scheduler_map("processes", address="tcp://127.0.0.1:8786"):
            pass
    with pytest.raises(ValueError, match="workers must be >= 1"):
        with scheduler_map("processes", workers=0):
            pass
    with scheduler_map("serial") as map_fn:
        assert map_fn is map


def test_as_completed_map_cancels_what_is_left_when_stopped():
    with ThreadPoolExecutor(1) as executor:
        results = as_completed_map(executor)(abs, range(-50, 0))
        first = next(results)
        results.close()
        assert first in range(1, 51)
    with pytest.raises(TypeError, match="Executor or a dask"):
        as_completed_map(object())


def test_a_dead_worker_becomes_an_error_row():
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as executor:
        rows = list(as_completed_map(executor, on_error=crashed_row)(os._exit, [3]))  # the worker exits
    assert [(row["file"], row["status"], row["error_type"]) for row in rows] == [
        ("3", "error", "BrokenProcessPool")
    ]
    assert "rerun the batch" in rows[0]["error_message"]
    with ThreadPoolExecutor(1) as executor:
        with pytest.raises(ZeroDivisionError):
            list(as_completed_map(executor)(partial(operator.truediv, 1), [0]))


def test_inputs_are_never_modified(inputs, serial_run, processes_run, dask_run):
    paths, digests = inputs
    assert {p.name: _sha256(p) for p in paths if p.exists()} == digests


def test_ok_rows_feed_the_batch_summary_plot(serial_run):
    from coalign.plotting import plot_batch_summary

    table, _ = serial_run
    fig = plot_batch_summary(table[table["status"] == "ok"])
    scores = table["score"][table["status"] == "ok"]
    np.testing.assert_allclose(np.sort(fig.axes[2].lines[0].get_ydata()), np.sort(scores))  # same times
