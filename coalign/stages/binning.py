"""NaN-aware block-mean binning of an image and of its WCS."""

import astropy.units as u
import numpy as np

from coalign.exceptions import ShapeError
from coalign.transform import grid_from_wcs

__all__ = [
    "MIN_SQUARE_BIN_ROWS",
    "auto_kernel_arcsec",
    "bin_factors",
    "bin_image",
    "bin_to_kernel",
    "bin_wcs",
    "clip_percentiles",
    "square_bin_factor",
]

#: Binning rows towards square pixels (`square_bin_factor`) keeps at least this many rows.
MIN_SQUARE_BIN_ROWS = 32


def _factor_pair(factor) -> tuple[int, int]:
    fy, fx = np.broadcast_to(np.asarray(factor), (2,))
    if fy < 1 or fx < 1 or int(fy) != fy or int(fx) != fx:
        raise ValueError(
            f"factor must be a positive integer or a pair of them (fy, fx), got factor={factor!r}"
        )
    return int(fy), int(fx)


def bin_image(image, factor) -> np.ndarray:
    """Mean-bin a 2-D image by integer block sizes, ignoring NaN.

    Parameters
    ----------
    image : (ny, nx) array_like
        Image to bin. It is not modified. NaN marks invalid pixels.
    factor : int or (int, int)
        Block size, the same on both axes or ``(fy, fx)``. Trailing rows and columns that do not fill a
        block are dropped.

    Returns
    -------
    binned : (ny // fy, nx // fx) ndarray
        Mean of the finite pixels of each block; NaN where a block holds none.

    Examples
    --------
    >>> bin_image(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> bin_image([[1.0, np.nan], [3.0, np.nan]], (1, 2))
    array([[1.],
           [3.]])
    """
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ShapeError(
            f"image must be 2-D, got shape {image.shape}; "
            "select one spectral window or integrate over wavelength first"
        )
    fy, fx = _factor_pair(factor)
    ny, nx = image.shape[0] // fy * fy, image.shape[1] // fx * fx
    if ny == 0 or nx == 0:
        raise ShapeError(
            f"image of shape {image.shape} is smaller than one block {(fy, fx)}; use a smaller kernel"
        )
    blocks = image[:ny, :nx].reshape(ny // fy, fy, nx // fx, fx)
    valid = np.isfinite(blocks)
    total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
    count = valid.sum(axis=(1, 3))
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def bin_wcs(wcs, factor):
    """WCS of an image binned by `bin_image` with the same ``factor``.

    The reference pixel moves to the block-centre frame, ``CRPIX' = (CRPIX - 0.5) / f + 0.5``;
    ``CDELT'`` is ``CDELT * f``; and for unequal factors the PC matrix becomes
    ``PC'_ij = PC_ij f_j / f_i`` so that ``diag(CDELT') PC'`` equals ``diag(CDELT) PC diag(f)`` exactly
    (non-square pixels and rotation stay right).

    Returns
    -------
    wcs : `~astropy.wcs.WCS`
        A new object; the input is not modified.
    """
    fy, fx = _factor_pair(factor)
    f = np.array([fx, fy], dtype=float)
    out = wcs.deepcopy()
    pc, cdelt = wcs.wcs.get_pc(), wcs.wcs.get_cdelt()
    if out.wcs.has_cd():
        del out.wcs.cd  # re-expressed as PC + CDELT below
    out.wcs.pc = pc * f[None, :] / f[:, None]
    out.wcs.cdelt = cdelt * f
    out.wcs.crpix = (wcs.wcs.crpix - 0.5) / f + 0.5
    if out.array_shape is not None:
        out.array_shape = (wcs.array_shape[0] // fy, wcs.array_shape[1] // fx)
    out.wcs.set()
    return out


def bin_factors(wcs, kernel_arcsec) -> tuple[int, int]:
    """Integer block sizes ``(fy, fx)`` closest to a kernel in arcsec on a WCS's pixels (at least 1).

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2); w.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]; w.wcs.cunit = ["arcsec"] * 2
    >>> w.wcs.cdelt = [4.0, 1.1]
    >>> bin_factors(w, 20)
    (18, 5)
    """
    if isinstance(kernel_arcsec, u.Quantity):
        kernel_arcsec = kernel_arcsec.to_value(u.arcsec)
    kernel_arcsec = float(kernel_arcsec)
    if not np.isfinite(kernel_arcsec) or kernel_arcsec <= 0:
        raise ValueError(
            f"kernel_arcsec must be a positive angle, got kernel_arcsec={kernel_arcsec!r}; "
            "use e.g. 20 * u.arcsec"
        )
    scale_x, scale_y = grid_from_wcs(wcs).pixel_scale
    return max(1, round(kernel_arcsec / scale_y)), max(1, round(kernel_arcsec / scale_x))


def bin_to_kernel(image, wcs, kernel_arcsec):
    """Bin an image and its WCS to a kernel given in arcsec (the ``bin`` stage).

    Parameters
    ----------
    image : (ny, nx) array_like
        Image; NaN marks invalid pixels. Not modified.
    wcs : `~astropy.wcs.WCS`
        Its 2-D celestial WCS.
    kernel_arcsec : float or `~astropy.units.Quantity`
        Block size on the sky; rounded to whole pixels on each axis (non-square pixels get different factors).

    Returns
    -------
    binned : ndarray
    binned_wcs : `~astropy.wcs.WCS`
    """
    factor = bin_factors(wcs, kernel_arcsec)
    return bin_image(image, factor), bin_wcs(wcs, factor)


def square_bin_factor(wcs, n_rows: int) -> int:
    """Rows per bin that make a WCS's pixels about square: ``floor(pixel_x / pixel_y)``, or 1.

    1 when rows are not at least twice finer than columns, or when fewer than `MIN_SQUARE_BIN_ROWS`
    binned rows would remain. Pixel sizes are the norms of the pixel-to-world matrix's columns, so a
    rotated grid is measured along its own axes.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2); w.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]; w.wcs.cunit = ["arcsec"] * 2
    >>> w.wcs.cdelt = [4.0, 1.1]  # a SPICE raster: 4" steps, 1.1" rows
    >>> square_bin_factor(w, 800)
    3
    """
    pixel_x, pixel_y = grid_from_wcs(wcs).pixel_scale
    factor = int(np.floor(pixel_x / pixel_y + 1e-9))
    return factor if factor >= 2 and n_rows // factor >= MIN_SQUARE_BIN_ROWS else 1


def auto_kernel_arcsec(wcs, shape, *, max_kernel_arcsec=20.0, min_bins=24) -> float:
    """Largest kernel (at most ``max_kernel_arcsec``) leaving ``min_bins`` bins across the smaller side.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> w = WCS(naxis=2); w.wcs.ctype = ["HPLN-TAN", "HPLT-TAN"]; w.wcs.cunit = ["arcsec"] * 2
    >>> w.wcs.cdelt = [2.0, 2.0]
    >>> auto_kernel_arcsec(w, (100, 96))
    8.0
    >>> auto_kernel_arcsec(w, (1000, 1000))
    20.0
    """
    scale_x, scale_y = grid_from_wcs(wcs).pixel_scale
    extent = min(shape[0] * scale_y, shape[1] * scale_x)
    return float(max(min(max_kernel_arcsec, extent / min_bins), max(scale_x, scale_y)))


def clip_percentiles(image, percentiles=(1.0, 99.5), *, out: np.ndarray | None = None) -> np.ndarray:
    """Clip an image to two of its own percentiles (NaN ignored and kept).

    Flare kernels, cosmic rays and hot pixels hold a handful of values far above the rest; the Pearson
    correlation of unclipped images is then driven by those few pixels instead of the scene.

    Parameters
    ----------
    image : array_like
        Image or stack of images; its percentiles are taken over all finite values. Not modified unless
        it is ``out``.
    percentiles : (float, float)
        Lower and upper percentiles.
    out : ndarray, optional
        Float array of ``image``'s shape to write the result to; ``out=image`` clips a float array in
        place (a stack the caller owns, without allocating a second one).

    Examples
    --------
    >>> clip_percentiles(np.array([0.0, 1.0, 2.0, np.nan, 1000.0]), (0, 75))
    array([  0. ,   1. ,   2. ,   nan, 251.5])
    """
    image = np.asarray(image, dtype=float)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        if out is None:
            return image.copy()
        out[...] = image
        return out
    low, high = np.percentile(finite, percentiles)  # as nanpercentile, ~20x faster on mostly-NaN stacks
    return np.clip(image, low, high, out=out)
