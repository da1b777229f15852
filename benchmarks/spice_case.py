"""A realistic SPICE-sized known-truth case built from the real EUI/FSI 174 image.

- **Reference sequence:** the FSI 174 crop (1280 x 1280, 4.44 arcsec/pixel, Solar Orbiter at 0.34 au),
  differentially rotated to 21 times at a 10-minute cadence (sunpy's ``propagate_with_solar_surface``).
- **Raster:** 192 steps x 800 rows, 4 x 1.1 arcsec pixels, 60 s per step (3.2 h), later columns
  earlier as in SPICE (negative ``PC3_1``). Column *i* samples the FSI image rotated to that column's own
  time (not the 10-minute frames), plus 3 % noise and NaN rows at the top and bottom (dumbbells).
- **Header error:** CRVAL shifted and CDELT scaled so that the correction to find is `TRUTH`.

The raster file has a 2-D image with a third (time) WCS axis coupled to x, as SPICE-derived maps do,
and a ``COLUMN_TIMES`` table, so both coalign and other tools read the column times from it.
"""

import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from scipy import ndimage
from sunpy.coordinates import Helioprojective, propagate_with_solar_surface

from coalign import Transform

FSI_FILE = Path(__file__).parent / "data" / "fsi174_20220401_crop.fits"
N_FRAMES = 21
CADENCE = 10 * u.min
N_STEPS, N_ROWS = 192, 800
STEP = (4.0, 1.1)  # arcsec: slit step (x), along slit (y)
STEP_TIME = 60 * u.s
RASTER_CENTRE = (-150.0, -1100.0)  # arcsec, true pointing of the raster centre
HEADER_ERROR = (85.0, 72.0, 1.015, 0.988)  # added to CRVAL1/2 (arcsec), factors on CDELT1/2
#: The correction coalign must find: the inverse of the header error.
TRUTH = Transform(-HEADER_ERROR[0], -HEADER_ERROR[1], 1 / HEADER_ERROR[2], 1 / HEADER_ERROR[3])
NOISE = 0.03
DUMBBELL_ROWS = 40


def _base_map():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sunpy.map.Map(FSI_FILE)


def frame_times(base) -> Time:
    """Times of the reference frames: every 10 minutes from 5 minutes before the raster starts."""
    return base.date + np.arange(N_FRAMES) * CADENCE


def column_times(base) -> Time:
    """Mid-exposure time of each raster column (later columns earlier)."""
    start = base.date + 5 * u.min
    return start + (N_STEPS - 1 - np.arange(N_STEPS)) * STEP_TIME


def _rotated_frame(base, time: Time):
    header = base.fits_header.copy()
    header["DATE-OBS"] = time.isot
    header.pop("DATE-AVG", None)
    header.pop("DATE-BEG", None)
    header.pop("DATE-END", None)
    target_wcs = sunpy.map.Map(np.zeros(base.data.shape, dtype=np.float32), header).wcs
    with propagate_with_solar_surface(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rotated = base.reproject_to(target_wcs, shape_out=base.data.shape)
    return sunpy.map.Map(rotated.data.astype(np.float32), header)


def _raster_header(base, times: Time, error=(0.0, 0.0, 1.0, 1.0)) -> fits.Header:
    mid = times.min() + (times.max() - times.min()) / 2
    dx, dy, fx, fy = error
    seconds = (times - times[0]).to_value(u.s)
    header = fits.Header()
    header["WCSAXES"] = 3
    for key, value in (
        ("CTYPE1", "HPLN-TAN"),
        ("CTYPE2", "HPLT-TAN"),
        ("CTYPE3", "UTC"),
        ("CUNIT1", "arcsec"),
        ("CUNIT2", "arcsec"),
        ("CUNIT3", "s"),
        ("CRPIX1", (N_STEPS + 1) / 2),
        ("CRPIX2", (N_ROWS + 1) / 2),
        ("CRPIX3", 1.0),
        ("CRVAL1", RASTER_CENTRE[0] + dx),
        ("CRVAL2", RASTER_CENTRE[1] + dy),
        ("CRVAL3", float(np.interp((N_STEPS - 1) / 2, np.arange(N_STEPS), seconds))),
        ("CDELT1", STEP[0] * fx),
        ("CDELT2", STEP[1] * fy),
        ("CDELT3", float(seconds[1] - seconds[0])),
        ("PC1_1", 1.0),
        ("PC2_2", 1.0),
        ("PC3_1", 1.0),
        ("PC3_3", 1.0),
        ("DATEREF", times[0].isot),
        ("DATE-OBS", mid.isot),
        ("DATE-BEG", times.min().isot),
        ("DATE-END", times.max().isot),
        ("HGLN_OBS", base.observer_coordinate.lon.to_value(u.deg)),
        ("HGLT_OBS", base.observer_coordinate.lat.to_value(u.deg)),
        ("DSUN_OBS", base.observer_coordinate.radius.to_value(u.m)),
        ("RSUN_REF", base.meta.get("rsun_ref", 695700000.0)),
        ("TELESCOP", "SOLO/SPICE-LIKE"),
        ("OBJECT", "known-truth benchmark raster made from EUI/FSI 174"),
    ):
        header[key] = value
    return header


def _raster_data(base, times: Time, seed: int) -> np.ndarray:
    """Each column samples the FSI image rotated to that column's time, at the true raster pointing."""
    header = _raster_header(base, times)
    ny, nx = N_ROWS, N_STEPS
    yy = np.arange(ny, dtype=float)
    data = np.empty((ny, nx))
    image = np.asarray(base.data, dtype=float)
    coefficients = ndimage.spline_filter(image, order=3)
    for i in range(nx):
        lon = header["CRVAL1"] + header["CDELT1"] * (i + 1 - header["CRPIX1"])
        lat = header["CRVAL2"] + header["CDELT2"] * (yy + 1 - header["CRPIX2"])
        observer = base.observer_coordinate.frame.replicate(obstime=times[i])
        frame = Helioprojective(obstime=times[i], observer=observer, rsun=base.coordinate_frame.rsun)
        column = SkyCoord(np.full(ny, lon) * u.arcsec, lat * u.arcsec, frame=frame)
        with propagate_with_solar_surface():
            px, py = base.world_to_pixel(column.transform_to(base.coordinate_frame))
        coords = np.stack([py.to_value(u.pix), px.to_value(u.pix)])
        data[:, i] = ndimage.map_coordinates(coefficients, coords, order=3, prefilter=False, cval=np.nan)
    rng = np.random.default_rng(seed)
    data += NOISE * np.nanstd(data) * rng.normal(size=data.shape)
    data[:DUMBBELL_ROWS] = np.nan
    data[-DUMBBELL_ROWS:] = np.nan
    return data


def celestial_wcs(header):
    """2-D celestial WCS of a raster header whose time axis (3) is coupled to x (``.celestial`` refuses)."""
    from astropy.wcs import WCS

    header = fits.Header(header).copy()
    for key in list(header):
        if key.endswith("3") or key.startswith(("PC3_", "CD3_")) or key in ("PC1_3", "PC2_3"):
            del header[key]
    header["WCSAXES"] = 2
    header["NAXIS"] = 2
    return WCS(header)


def true_wcs():
    """The raster's true celestial WCS (no header error)."""
    base = _base_map()
    return celestial_wcs(_raster_header(base, column_times(base)))


def make_case(folder, *, seed: int = 0) -> dict:
    """Write the reference frames and the raster with its header error into ``folder`` (reused if there).

    Returns
    -------
    dict
        ``raster`` (path), ``frames`` (paths), ``truth`` (Transform).
    """
    folder = Path(folder)
    frames_dir = folder / "fsi174"
    frames_dir.mkdir(parents=True, exist_ok=True)
    base = _base_map()
    paths = []
    for k, time in enumerate(frame_times(base)):
        path = frames_dir / f"fsi174_rotated_{k:02d}.fits"
        if not path.exists():
            _rotated_frame(base, time).save(path, overwrite=False)
        paths.append(path)
    raster = folder / "spice_like_raster.fits"
    if not raster.exists():
        times = column_times(base)
        data = _raster_data(base, times, seed).astype(np.float32)
        primary = fits.PrimaryHDU(data, _raster_header(base, times, HEADER_ERROR))
        table = fits.BinTableHDU.from_columns(
            [fits.Column(name="TIME_S", format="D", array=(times - times[0]).to_value(u.s))],
            name="COLUMN_TIMES",
        )
        table.header["DATEREF"] = times[0].isot
        fits.HDUList([primary, table]).writeto(raster)
    return {"raster": raster, "frames": paths, "truth": TRUTH}
