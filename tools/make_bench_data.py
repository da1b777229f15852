"""Curate the benchmark reference image: the real EUI/FSI 174 image shipped in sunpy's test data.

sunpy ships it as JPEG2000 (Helioviewer, 8-bit, 3072 x 3040, 4.44 arcsec/pixel); reading that needs
OpenJPEG (Debian ``libopenjp2-7``) and ``glymur``. This script is run once, when curating, and writes a
1280 x 1280 crop around disk centre (the observation is off-pointed: disk centre is not mid-image) as a
tile-compressed FITS file, so the benchmark never needs OpenJPEG::

    python tools/make_bench_data.py benchmarks/data/fsi174_20220401_crop.fits
"""

import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import sunpy.data.test
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits

SOURCE = "2022_04_01__00_00_45__SOLO-EUI-FSI_EUI_FSI_174.jp2"
HALF_SIZE = 640


def main(output: str) -> None:
    source = Path(sunpy.data.test.__file__).parent / SOURCE
    full = sunpy.map.Map(source)
    disk_centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=full.coordinate_frame)
    centre = full.world_to_pixel(disk_centre)
    x0 = round(centre.x.to_value(u.pix)) - HALF_SIZE
    y0 = round(centre.y.to_value(u.pix)) - HALF_SIZE
    crop = full.submap([x0, y0] * u.pix, top_right=[x0 + 2 * HALF_SIZE - 1, y0 + 2 * HALF_SIZE - 1] * u.pix)
    header = crop.fits_header
    header["HISTORY"] = (
        f"Cropped to {crop.data.shape} from sunpy test file {SOURCE} by tools/make_bench_data.py"
    )
    hdu = fits.CompImageHDU(
        np.ascontiguousarray(crop.data, dtype=np.uint8), header, compression_type="RICE_1"
    )
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(output, overwrite=False)


if __name__ == "__main__":
    main(sys.argv[1])
