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
