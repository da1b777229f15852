"""Write corrected FITS files: every HDU kept, data bytes untouched, WCS corrected, provenance added."""

import json
import os
import tempfile
from pathlib import Path

from astropy.io import fits

from coalign.exceptions import WCSError
from coalign.io.maps import correct_header
from coalign.transform import Transform

__all__ = ["celestial_axes", "write_corrected", "write_map"]


def celestial_axes(header) -> tuple[int, int] | None:
    """FITS axis numbers ``(lon, lat)`` of the helioprojective (or RA/Dec) axes of a header, or None."""
    lon = lat = None
    for axis in range(1, int(header.get("NAXIS", 0)) + 1):
        ctype = str(header.get(f"CTYPE{axis}", "")).upper()
        if ctype.startswith(("HPLN", "RA--", "GLON", "HGLN")):
            lon = axis
        elif ctype.startswith(("HPLT", "DEC-", "GLAT", "HGLT")):
            lat = axis
    return (lon, lat) if lon and lat else None


def _next_step(header) -> int:
    n = 1
    while f"PRSTEP{n}" in header:
        n += 1
    return n


def _provenance(header, transform: Transform, references, params_text: str):
    from coalign import __version__

    n = _next_step(header)
    header[f"PRSTEP{n}"] = ("SPATIAL-COORDINATE-CORRECTION", "Processing step type")
    header[f"PRPROC{n}"] = ("coalign", "Name of procedure performing PRSTEP")
    header[f"PRPVER{n}"] = (__version__, "Version of procedure PRPROC")
    header[f"PRPARA{n}"] = params_text  # long values continue on CONTINUE cards
    if references:
        header[f"PRREF{n}"] = ",".join(Path(ref).name for ref in references)


def _move_iris_pointing(hdul: fits.HDUList, pointing) -> None:
    """Put a `~coalign.io.iris.PointingUpdate` into the (in-memory) HDU list about to be written."""
    aux = hdul[pointing.aux_index]
    header, primary = aux.header.copy(), hdul[0].header.copy()
    for key, value in pointing.primary.items():
        primary[key] = value
    for line in pointing.history:
        header.add_history(line)
        primary.add_history(line)
    aux.data, aux.header = pointing.aux_data, header
    hdul[0].header = primary


def _scale_iris_fov(hdul: fits.HDUList, fov: dict, transform: Transform) -> None:
    """Put `~coalign.io.iris.corrected_iris_fov` values into the (in-memory) HDU list about to be written."""
    for index, values in fov.items():
        header = hdul[index].header.copy()
        for key, value in values.items():
            factor = transform.sx if key == "FOVX" else transform.sy
            header[key] = value
            header.add_history(f"coalign: {key} x {factor:.6f} with the plate-scale correction")
        hdul[index].header = header


def _atomic_write(hdul: fits.HDUList, output: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        hdul.writeto(tmp, overwrite=True, output_verify="silentfix")
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_output(input_path: Path | None, output: Path, overwrite: bool) -> None:
    if input_path is not None and output.resolve() == input_path.resolve():
        raise ValueError(
            f"output path {output} is the input file; coalign never overwrites an input: "
            "choose another output path"
        )
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist; create it first")


def write_corrected(input_path, transform: Transform, output_path, *, references=(), overwrite=False) -> Path:
    """Copy a FITS file with the pointing correction applied to every HDU that has a celestial WCS.

    Data are copied byte for byte (scaled integers stay scaled), all HDUs and keys are kept, and each
    corrected HDU gets HISTORY and SOLARNET provenance keys (``PRSTEPn``, ``PRPROCn``, ``PRPVERn``,
    ``PRPARAn``, ``PRREFn``). The file is written to a temporary name in the output folder and renamed,
    so no partial output is ever left.

    IRIS level-2 files also give their pointing outside the WCS, in ``XCEN``/``YCEN`` of the primary
    header and per exposure in the ``XCENIX``/``YCENIX`` columns of the auxiliary extension: these move
    with the correction too (`~coalign.io.iris.corrected_iris_pointing`; HISTORY lines say how), and
    only those values of that extension change. Their field of view, ``FOVX``/``FOVY``, is multiplied by
    ``sx``/``sy`` (`~coalign.io.iris.corrected_iris_fov`), so a scale-corrected file still reads back as
    consistent, not as a resampled one.

    Parameters
    ----------
    input_path : path-like
        FITS file to correct. Never modified.
    transform : Transform
        The correction.
    output_path : path-like
        Where to write; must differ from ``input_path``.
    references : sequence of path-like
        Reference files, recorded in the provenance.
    overwrite : bool
        Replace an existing output file.

    Returns
    -------
    Path
        The output path.
    """
    from coalign.io.iris import corrected_iris_fov, corrected_iris_pointing  # iris imports this module

    input_path, output = Path(input_path), Path(output_path)
    _check_output(input_path, output, overwrite)
    params_text = json.dumps(transform.as_dict(), separators=(",", ":"))
    with fits.open(input_path, do_not_scale_image_data=True, mode="readonly") as hdul:
        pointing = corrected_iris_pointing(hdul, transform, name=input_path.name)
        fov = corrected_iris_fov(hdul, transform)
        corrected = 0
        for hdu in hdul:
            axes = celestial_axes(hdu.header) if hdu.is_image else None
            if axes is None:
                continue
            hdu.header = correct_header(
                hdu.header,
                transform,
                lon_axis=axes[0],
                lat_axis=axes[1],
                history=f"coalign: pointing corrected {params_text}",
            )
            _provenance(hdu.header, transform, references, params_text)
            corrected += 1
        if corrected == 0:
            raise WCSError(
                f"{input_path} has no image HDU with a celestial WCS (HPLN/HPLT or RA/DEC CTYPE); "
                "nothing to correct"
            )
        if pointing is not None:
            _move_iris_pointing(hdul, pointing)
        _scale_iris_fov(hdul, fov, transform)
        _atomic_write(hdul, output)
    return output


def write_map(smap, output_path, *, overwrite=False) -> Path:
    """Write a sunpy Map to FITS atomically (temporary file, then rename)."""
    output = Path(output_path)
    _check_output(None, output, overwrite)
    header = fits.Header()
    for key, value in smap.fits_header.items():
        if key not in ("COMMENT", "HISTORY"):
            header[key] = value
    for line in str(smap.meta.get("history", "")).splitlines():
        header.add_history(line)
    _atomic_write(fits.HDUList([fits.PrimaryHDU(smap.data, header)]), output)
    return output
