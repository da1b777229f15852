"""Bundled sample data (see README.md in this folder for provenance)."""

from pathlib import Path

__all__ = ["SAMPLE_RASTER", "SAMPLE_REFERENCE_DIR", "sample_reference_files"]

_HERE = Path(__file__).parent
#: Raster built column by column from the odd frames of the IRIS SJI 1400 sequence of 2014-03-29.
SAMPLE_RASTER = _HERE / "iris_sji1400_raster_20140329.fits"
#: Folder of the even frames of the same sequence: the reference sequence.
SAMPLE_REFERENCE_DIR = _HERE / "sji_1400"


def sample_reference_files() -> list[Path]:
    """The bundled reference frames, sorted by time."""
    return sorted(SAMPLE_REFERENCE_DIR.glob("*.fits"))
