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


def test_align_command_fits_the_roll_when_asked(tmp_path, capsys):
    """A 0.8 degree roll written into the sample raster's header is found by --fit-roll and undone in the
    corrected file's PC matrix (roll 0 without the flag)."""
    from astropy.io import fits

    from coalign import Transform, write_corrected
    from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR, sample_reference_files

    injected = write_corrected(SAMPLE_RASTER, Transform(roll=0.8), tmp_path / "target.fits")
    args = ["align", str(injected), "--reference", str(sample_reference_files()[12])]
    args += ["--sequence", str(SAMPLE_REFERENCE_DIR), "--out", str(tmp_path / "out.fits")]
    assert main([*args, "--json", str(tmp_path / "out.json"), "--fit-roll"]) == 0
    found = json.loads((tmp_path / "out.json").read_text())["transform"]
    assert abs(found["roll_deg"] + 0.8) < 0.1, found
    assert "roll=-0." in capsys.readouterr().out
    original, corrected = fits.getheader(SAMPLE_RASTER), fits.getheader(tmp_path / "out.fits")
    assert corrected["PC1_2"] == pytest.approx(original["PC1_2"], abs=0.1 * np.deg2rad(1) * 2.0)
    assert main([*args[:-1], str(tmp_path / "plain.fits"), "--json", str(tmp_path / "plain.json")]) == 0
    assert json.loads((tmp_path / "plain.json").read_text())["transform"]["roll_deg"] == 0.0


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


# --- a reference sequence that does not cover the target ------------------------------------------------


def _later_copy(source: Path, path: Path, days: int) -> Path:
    """A copy of a raster moved by whole days within the month (dates and the COLUMN_TIMES reference)."""
    from astropy.io import fits

    with fits.open(source) as hdul:
        header, table = hdul[0].header, hdul["COLUMN_TIMES"].header
        for hdr, key in [(header, k) for k in ("DATE-OBS", "DATE-AVG", "DATE-END") if k in header] + [
            (table, "DATEREF")
        ]:
            date = hdr[key]
            hdr[key] = f"{date[:8]}{int(date[8:10]) + days:02d}{date[10:]}"
        hdul.writeto(path)
    return path


def _align_args(target, sequence, out_dir):
    from coalign.data import sample_reference_files

    return [
        "align",
        str(target),
        "--reference",
        str(sample_reference_files()[0]),
        "--sequence",
        *map(str, sequence),
        "--out",
        str(out_dir / "out.fits"),
        "--json",
        str(out_dir / "out.json"),
    ]


def test_align_refuses_a_sequence_entirely_before_the_target(tmp_path):
    from coalign.data import SAMPLE_RASTER, SAMPLE_REFERENCE_DIR, sample_reference_files
    from coalign.exceptions import TimeCoverageError

    target = _later_copy(SAMPLE_RASTER, tmp_path / "next_day.fits", 1)
    files = sample_reference_files()
    with pytest.raises(TimeCoverageError) as error:
        main(_align_args(target, [SAMPLE_REFERENCE_DIR], tmp_path))
    message = str(error.value)
    assert (
        "do not cover the raster of next_day.fits: its columns were taken from 2014-03-30T14:15:08" in message
    )
    assert f"({files[0].name}) to 2014-03-29T17:49:59.326 ({files[-1].name})" in message
    assert "the whole raster is after the reference files" in message
    assert "Add reference files covering 2014-03-30T14:15:08.344 to 2014-03-30T17:07:38.344" in message
    assert message.endswith("or raise max_time_gap_s")
    assert not (tmp_path / "out.fits").exists() and not (tmp_path / "out.json").exists()


def test_align_refuses_a_sequence_that_ends_too_early(tmp_path):
    from coalign.data import SAMPLE_RASTER, sample_reference_files
    from coalign.exceptions import TimeCoverageError

    files = sample_reference_files()[:10]  # 14:09:43 to 15:25:56; the raster runs to 17:07:38
    with pytest.raises(TimeCoverageError) as error:
        main(_align_args(SAMPLE_RASTER, files, tmp_path))
    message = str(error.value)
    assert f"raster of {SAMPLE_RASTER.name}" in message
    assert f"({files[0].name}) to 2014-03-29T15:25:56.182 ({files[-1].name})" in message
    assert (
        f"its end is not covered: it ends 6102 s after the last reference file ({files[-1].name})" in message
    )
    assert "Add reference files covering 2014-03-29T15:57:38.344 to 2014-03-29T17:07:38.344" in message
    assert list(tmp_path.iterdir()) == []  # no output, no JSON, no temporary file


def test_align_with_a_covering_sequence_or_a_wider_gap_goes_on_to_align(tmp_path, monkeypatch):
    from coalign.data import SAMPLE_RASTER, sample_reference_files
    from coalign.facade import Coaligner

    seen = []

    def stop(aligner):
        seen.append(aligner.synthetic_kwargs["max_time_gap_s"])
        raise RuntimeError("alignment reached")

    monkeypatch.setattr(Coaligner, "run_all", stop)
    with pytest.raises(RuntimeError, match="alignment reached"):
        main(_align_args(SAMPLE_RASTER, sample_reference_files()[::2], tmp_path))
    with pytest.raises(RuntimeError, match="alignment reached"):
        main([*_align_args(SAMPLE_RASTER, sample_reference_files()[:10], tmp_path), "--max-time-gap", "6110"])
    assert seen == [1800.0, 6110.0]
