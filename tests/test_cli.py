"""`coalign demo` end to end on the bundled sample."""

import json
from pathlib import Path

import numpy as np
import pytest

from coalign.cli import main, run_demo


def test_demo_writes_products_and_recovers_the_error(tmp_path):
    report = run_demo(tmp_path)
    assert max(np.abs(report["shift_error_pixels"])) <= 0.25
    assert max(np.abs(report["scale_error_percent"])) <= 0.5
    for name in ("raster_injected_error.fits", "raster_corrected.fits", "before_after.png", "result.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "result.json").read_text())["phases"][2]["phase"] == "synthetic_raster"
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(tmp_path)


def test_main_demo_exit_code_and_table(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--inject", "20", "-15", "1.02", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "recovered" in out and "synthetic_raster" in out


def test_align_command_on_the_sample(tmp_path, capsys):
    from coalign import Transform, write_corrected
    from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR, sample_reference_files

    injected = write_corrected(SAMPLE_RASTER, Transform(12.0, -9.0), tmp_path / "target.fits")
    reference = sample_reference_files()[12]
    args = [
        "align",
        str(injected),
        "--reference",
        str(reference),
        "--sequence",
        str(SAMPLE_REFERENCE_DIR),
        "--out",
        str(tmp_path / "out.fits"),
        "--json",
        str(tmp_path / "out.json"),
    ]
    assert main(args) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert (
        abs(result["transform"]["dx_arcsec"] + 12.0) < 0.6
        and abs(result["transform"]["dy_arcsec"] - 9.0) < 0.6
    )
    assert "correction:" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="overwrite"):
        main(args)
    with pytest.raises(ValueError, match="never overwrites an input"):
        main([*args[:-4], "--out", str(injected), "--overwrite"])


def test_batch_command(tmp_path, capsys):
    from coalign import Transform, write_corrected
    from coalign.batch import read_batch_table
    from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR

    good = write_corrected(SAMPLE_RASTER, Transform(-8.0, 6.0), tmp_path / "good.fits")
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(SAMPLE_RASTER.read_bytes()[:4000])
    table, out = tmp_path / "results.ecsv", tmp_path / "corrected"
    args = [
        "batch",
        str(good),
        str(corrupt),
        "--sequence-dir",
        str(SAMPLE_REFERENCE_DIR),
        "--table",
        str(table),
        "--out-dir",
        str(out),
        "--time-margin",
        "20",
        "--exclude",
        "nothing-matches",
        "--no-progress",
    ]
    assert main(args) == 1  # one file failed
    printed = capsys.readouterr().out
    assert "1 of 2 files ok, 1 failed" in printed and "corrupt.fits: OSError" in printed
    rows = {row["file"]: row for row in read_batch_table(table)}
    row = rows[str(good.resolve())]
    assert row["status"] == "ok" and abs(row["dx_arcsec"] - 8.0) < 0.6 and abs(row["dy_arcsec"] + 6.0) < 0.6
    assert row["output"] == str((out / "good_coaligned.fits").resolve()) and Path(row["output"]).is_file()
    assert rows[str(corrupt.resolve())]["status"] == "error"
    assert main(args[:2] + args[3:]) == 0  # the good file alone: already done, skipped
    assert "1 of 1 files ok" in capsys.readouterr().out
    assert read_batch_table(table)[0]["total_s"] == row["total_s"]
    with pytest.raises(ValueError, match="never overwrites an input"):
        main([*args[:5], "--table", str(good)])
    with pytest.raises(ValueError, match="needs scheduler='dask'"):
        main([*args, "--scheduler", "processes", "--address", "tcp://127.0.0.1:8786"])
