"""Curate the bundled sample data (coalign/data) from the irispy-lmsal 0.5.0 wheel's real IRIS test files.

Run once, by a maintainer, with network access to PyPI::

    pip download irispy-lmsal==0.5.0 --no-deps -d /tmp/irispy && unzip -q -o /tmp/irispy/*.whl -d /tmp/irispy
    python tools/make_sample_data.py /tmp/irispy/irispy/data/test/raster

It writes one 2-D FITS map per IRIS slit-jaw 1400 frame (the reference sequence) and a raster built
from the other half of the frames (the target). See coalign/data/README.md for what is
repaired and why.
"""

import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS
from sunpy.coordinates import get_earth

from coalign.io.iris import read_iris_sji
from coalign.params import SyntheticParams
from coalign.stages.reproject import reproject_image
from coalign.stages.sampling import sample_reference
from coalign.stages.synthetic import select_frames
from coalign.transform import Transform, grid_from_wcs

RASTER_NAME = "iris_sji1400_raster_20140329.fits"
STEM = "iris_l2_20140329_140938_3860258481_SJI_{}"
OUT = Path(__file__).resolve().parents[1] / "coalign" / "data"
# Gaussian noise added to the raster, as a fraction of its robust (MAD) standard deviation.
NOISE_FRACTION = 0.1
# A few shrunk frames are (almost) entirely missing; they are dropped.
MIN_VALID_FRACTION = 0.5

# Raster geometry of the demo target: IRIS-like coarse steps, slit pixel = the repaired SJI row size.
RASTER_NX, RASTER_NY = 70, 100
RASTER_STEP_ARCSEC = 2.0
RASTER_STEP_S = 150.0


def repaired_frames(path: Path):
    """Frames (float32) and 2-D headers of one shrunk IRIS SJI file, and their times.

    `coalign.io.iris.read_iris_sji` with ``repair_plate_scale=True`` does every repair: the WCS of the
    ``scipy.ndimage.zoom`` resampling (true plate scale), each frame's time, pointing and roll from its
    (fractional) row of the auxiliary table, missing pixels as NaN and Earth as observer.
    """
    unit = fits.getheader(path)["BUNIT"]
    maps = read_iris_sji(path, repair_plate_scale=True)
    frames = []
    for m in maps:
        if np.isfinite(m.data).mean() < MIN_VALID_FRACTION:
            continue
        header = m.fits_header
        header["BUNIT"] = unit
        header["HISTORY"] = (
            f"coalign sample: frame {m.meta['frame']} of {path.name} (irispy-lmsal 0.5.0 test data), "
            "read by coalign.io.iris.read_iris_sji(repair_plate_scale=True): plate scale of the zoom, "
            "per-frame pointing XCENIX/YCENIX and roll PC*IX from the auxiliary table"
        )
        frames.append((m.data.astype(np.float32), header))
    print(f"{path.name}: kept {len(frames)} of {len(maps)} frames (others are mostly missing)")
    return frames, Time([h["DATE-OBS"] for _, h in frames])


def raster_from_sequence(frames, times):
    """A raster (x = slit steps) sampled column by column from a frame sequence at the column times.

    It is pointed, rolled and sized along the slit like the frame nearest its mid time.
    """
    start = times[0] + 60 * u.s
    column_times = start + np.arange(RASTER_NX) * RASTER_STEP_S * u.s
    middle = column_times[RASTER_NX // 2]
    centre = frames[int(np.argmin(np.abs((times - middle).to_value(u.s))))][1]
    # The repaired PC is the native rotation conjugated by the (slightly unequal) zoom factors of the two
    # axes; the raster gets that rotation.
    roll = np.arctan2(centre["PC1_2"] - centre["PC2_1"], centre["PC1_1"] + centre["PC2_2"])
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]
    wcs.wcs.cunit = ["arcsec", "arcsec"]
    wcs.wcs.cdelt = [RASTER_STEP_ARCSEC, centre["CDELT2"]]
    wcs.wcs.crpix = [(RASTER_NX + 1) / 2, (RASTER_NY + 1) / 2]
    wcs.wcs.crval = [centre["CRVAL1"], centre["CRVAL2"]]
    wcs.wcs.pc = [[np.cos(roll), np.sin(roll)], [-np.sin(roll), np.cos(roll)]]
    wcs.wcs.dateobs = middle.isot
    wcs.wcs.aux.hgln_obs = 0.0
    wcs.wcs.aux.hglt_obs = get_earth(middle).lat.to_value(u.deg)
    wcs.wcs.aux.dsun_obs = centre["DSUN_OBS"]
    wcs.wcs.aux.rsun_ref = centre["RSUN_REF"]
    wcs.wcs.set()
    resampled = np.stack([reproject_image(data, WCS(h), wcs, (RASTER_NY, RASTER_NX)) for data, h in frames])
    plan = select_frames(times, column_times, SyntheticParams(max_time_gap_s=600.0))
    raster = sample_reference(resampled, Transform(), grid_from_wcs(wcs), plan=plan).astype(np.float32)
    return raster, wcs, column_times


def main(source: str) -> None:
    source = Path(source)
    frames, times = repaired_frames(source / (STEM.format("1400_t000") + ".fits"))
    # Even frames are the reference sequence; the target raster is built from the odd frames only, so no
    # reference frame ever enters the target and the scene evolves between them (~4 min).
    reference, ref_times = frames[0::2], times[0::2]
    target, target_times = frames[1::2], times[1::2]
    folder = OUT / "sji_1400"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.fits"):
        old.unlink()
    for (data, header), t in zip(reference, ref_times, strict=True):
        stamp = t.strftime("%Y%m%dT%H%M%S")
        fits.PrimaryHDU(data, header).writeto(folder / f"iris_sji_1400_{stamp}.fits", overwrite=True)
    raster, wcs, column_times = raster_from_sequence(target, target_times)
    noise = np.random.default_rng(20140329).normal(size=raster.shape)
    robust_std = 1.4826 * np.nanmedian(np.abs(raster - np.nanmedian(raster)))
    raster = (raster + NOISE_FRACTION * robust_std * noise).astype(np.float32)
    header = wcs.to_header()
    header["TELESCOP"], header["INSTRUME"] = "IRIS", "RASTER FROM SJI"
    header["WAVELNTH"], header["WAVEUNIT"] = 1400, "Angstrom"
    header["DATE-OBS"], header["DATE-END"] = column_times[0].isot, column_times[-1].isot
    header["DATE-AVG"] = column_times[RASTER_NX // 2].isot
    header["BUNIT"] = "Corrected DN"
    header["HISTORY"] = (
        "coalign sample: raster built column by column from the odd frames of the IRIS SJI 1400 "
        "sequence (irispy-lmsal 0.5.0 test data, read with read_iris_sji(repair_plate_scale=True)), "
        "blended linearly in time between the two frames bracketing each column, "
        f"plus Gaussian noise of {NOISE_FRACTION} x its robust standard deviation"
    )
    table = Table({"COLUMN": np.arange(RASTER_NX), "TIME_S": (column_times - column_times[0]).to_value(u.s)})
    times_hdu = fits.table_to_hdu(table)
    times_hdu.name = "COLUMN_TIMES"
    times_hdu.header["DATEREF"] = column_times[0].isot
    fits.HDUList([fits.PrimaryHDU(raster, header), times_hdu]).writeto(OUT / RASTER_NAME, overwrite=True)


if __name__ == "__main__":
    main(sys.argv[1])
