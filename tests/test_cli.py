"""`coalign demo` end to end on the bundled sample."""

import json

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
