"""Images from spectral cubes: register dithered cubes, correct their WCS, shift and co-add.

Several spectral cubes of one field (IFU dithers such as JWST MIRI MRS, or repeated IRIS rasters) whose
WCS disagree slightly are registered in four steps:

1. `image_from_cube` takes one spectral slice, a spectral range or the whole cube and collapses it
   (NaN-aware) into a 2-D celestial image;
2. `common_grid` and `reproject_images` resample every image onto one grid (the reference cube's, or the
   optimal celestial grid of `reproject.mosaicking.find_optimal_celestial_wcs`), with footprints;
3. `register_cubes` measures each cube's offset from the reference cube on that grid with one of
   `METHODS` and turns it into a `~coalign.transform.Transform` per cube;
4. `correct_cube` / `correct_wcs` apply the corrections to the WCS (preferred: the data are not
   resampled); `shift_image` shifts an array when one is wanted; `coadd_cubes` co-adds the corrected
   images (or cubes) with `reproject.mosaicking.reproject_and_coadd`.

Conventions
-----------
*Pixel shifts.* ``shift_pixels = (x, y)`` of a cube is the shift, in common-grid pixels, that
``shift_image`` must apply to the cube's image on the common grid to align it with the reference image
(the convention of `skimage.registration.phase_cross_correlation`). If a feature seen at pixel ``q`` in
the reference appears at ``q + s`` in the cube's image, ``shift_pixels = -s``.

*Transforms.* As everywhere in coalign (DESIGN §2), ``Transform(dx, dy)`` is the correction of the cube's
pointing: arcsec **added** to CRVAL1 / CRVAL2 (the longitude and latitude axes of its WCS). For RA/Dec
cubes ``dx`` is a change of the **RA coordinate**, not an on-sky angle: it is *not* multiplied by
``cos(dec)``. At declination 60°, an on-sky offset of 0.1″ along RA is ``dx = 0.2″``. The conversion from
``shift_pixels`` goes through the WCS themselves (`~astropy.wcs.WCS.pixel_to_world`), so it holds for any
projection, rotation or frame.

*Inputs are never modified*; every function returns new arrays and WCS objects.
"""

import builtins
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import astropy.units as u
import numpy as np
from astropy.time import Time
from astropy.wcs import WCS, FITSFixedWarning
from reproject import reproject_interp
from reproject.mosaicking import find_optimal_celestial_wcs, reproject_and_coadd
from scipy import ndimage, optimize, signal

from coalign.exceptions import AllNaNError, NoOverlapError, ShapeError, WCSError
from coalign.io.maps import correct_header
from coalign.params import ONE_MAP
from coalign.pipelines.phases import ImageWithWCS, one_map_phase
from coalign.transform import Transform, grid_from_wcs

__all__ = [
    "COLLAPSE",
    "METHODS",
    "Coadd",
    "CubeRegistration",
    "DitherSet",
    "Reprojected",
    "coadd_cubes",
    "common_grid",
    "correct_cube",
    "correct_wcs",
    "image_from_cube",
    "make_dither_set",
    "register_cubes",
    "register_images",
    "reproject_images",
    "shift_image",
]

#: Registration methods accepted by `register_cubes`.
METHODS = ("ncc", "chi2", "dft")
#: Ways of collapsing a spectral range into an image.
COLLAPSE = ("mean", "sum", "median")
#: Upsampling factor of the "dft" method (1/100 pixel steps).
DFT_UPSAMPLE = 100
_CUBES_EXTRA = 'pip install "coalign[cubes]"'


# --------------------------------------------------------------------------------------------- cubes


def _cube_parts(cube, role: str = "cube") -> tuple[np.ndarray, WCS]:
    """Data ``(n_spectral, n_lat, n_lon)`` (NaN where masked) and the 3-D WCS of any accepted cube."""
    if isinstance(cube, tuple | list):
        if len(cube) != 2:
            raise TypeError(
                f"a {role} given as a tuple must be (data, WCS), got a tuple of {len(cube)} items"
            )
        data, wcs = cube
        mask = None
    elif hasattr(cube, "filled_data") and hasattr(cube, "spectral_axis"):  # spectral_cube.SpectralCube
        data, wcs, mask = cube.filled_data[:], cube.wcs, None
    elif hasattr(cube, "data") and hasattr(cube, "wcs"):  # ndcube.NDCube and other NDData
        data, wcs, mask = cube.data, cube.wcs, getattr(cube, "mask", None)
    else:
        raise TypeError(
            f"cannot read a {role} from {type(cube).__name__}; pass a (data, astropy.wcs.WCS) pair, an "
            "ndcube.NDCube or a spectral_cube.SpectralCube"
        )
    data = np.asarray(getattr(data, "value", data), dtype=float)
    if mask is not None and np.any(mask):
        data = np.where(np.broadcast_to(np.asarray(mask, dtype=bool), data.shape), np.nan, data)
    if data.ndim != 3:
        raise ShapeError(
            f"the {role} must be a 3-D cube (spectral, y, x), got data of shape {data.shape}; "
            "for a single image use coalign.pipelines.phases.ImageWithWCS(data, wcs) instead"
        )
    if not isinstance(wcs, WCS):
        raise WCSError(
            f"the {role} needs an astropy.wcs.WCS, got {type(wcs).__name__}; build the cube from a FITS "
            "header (astropy.wcs.WCS(header)) rather than from a sliced or gWCS object"
        )
    if wcs.naxis != 3 or not wcs.has_celestial:
        raise WCSError(
            f"the {role} needs a 3-D WCS with two celestial axes (RA/Dec or HPLN/HPLT) and one spectral "
            f"axis, got CTYPE={list(wcs.wcs.ctype)}"
        )
    if wcs.pixel_shape is not None and tuple(wcs.array_shape) != data.shape:
        raise ShapeError(
            f"the {role}'s data have shape {data.shape} but its WCS describes an array of shape "
            f"{tuple(wcs.array_shape)}; pass the WCS that belongs to these data"
        )
    return data, wcs


def _axes(wcs: WCS) -> tuple[int, int, int]:
    """WCS axis indices (0-based) of longitude, latitude and the spectral axis."""
    lng, lat = wcs.wcs.lng, wcs.wcs.lat
    spectral = ({0, 1, 2} - {lng, lat}).pop()
    return lng, lat, spectral


def _standard_cube(cube, role: str = "cube") -> tuple[np.ndarray, WCS]:
    """Data transposed to numpy ``(spectral, lat, lon)`` and the original 3-D WCS."""
    data, wcs = _cube_parts(cube, role)
    lng, lat, spectral = _axes(wcs)
    return np.transpose(data, (2 - spectral, 2 - lat, 2 - lng)), wcs


def _spectral_values(wcs: WCS, n: int) -> u.Quantity:
    """World values of the spectral pixels of a 3-D WCS."""
    spectral_wcs = wcs.sub([_axes(wcs)[2] + 1])
    values = np.asarray(spectral_wcs.pixel_to_world_values(np.arange(n)), dtype=float)
    unit = spectral_wcs.wcs.cunit[0]
    return values * (u.Unit(str(unit)) if str(unit) else u.one)


def _to_spectral_unit(value, unit) -> float:
    if isinstance(value, u.Quantity):
        return float(value.to_value(unit, equivalencies=u.spectral()))
    return float(value)


def _channels(wcs: WCS, n: int, slice, spectral_range) -> np.ndarray:
    """Indices of the spectral channels selected by ``slice`` or ``spectral_range``."""
    if slice is not None and spectral_range is not None:
        raise ValueError("give either slice= or spectral_range=, not both")
    if slice is None and spectral_range is None:
        return np.arange(n)
    if slice is not None:
        if isinstance(slice, builtins.slice):
            channels = np.arange(n)[slice]
        else:
            index = int(slice)
            if not -n <= index < n:
                raise ValueError(f"slice={index} is outside the cube's {n} spectral channels (0..{n - 1})")
            channels = np.array([index % n])
        if channels.size == 0:
            raise ValueError(f"slice={slice!r} selects no channel of the cube's {n} spectral channels")
        return channels
    values = _spectral_values(wcs, n)
    try:
        low, high = (_to_spectral_unit(v, values.unit) for v in spectral_range)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise ValueError(
            f"spectral_range must be (low, high) in units convertible to {values.unit} (e.g. "
            f"(6.98, 6.99) * u.um), got {spectral_range!r}"
        ) from exc
    low, high = min(low, high), max(low, high)
    channels = np.flatnonzero((values.value >= low) & (values.value <= high))
    if channels.size == 0:
        raise ValueError(
            f"spectral_range=({low:g}, {high:g}) {values.unit} selects no channel: the cube covers "
            f"{values.value.min():g}..{values.value.max():g} {values.unit} in {n} channels"
        )
    return channels


def _collapse(stack: np.ndarray, how: str) -> np.ndarray:
    """NaN-aware collapse along axis 0; a spectrum without any finite value gives NaN (never 0)."""
    if how not in COLLAPSE:
        raise ValueError(f"collapse must be one of {COLLAPSE}, got collapse={how!r}")
    stack = np.where(np.isfinite(stack), stack, np.nan)
    any_finite = np.isfinite(stack).any(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice", "All-NaN slice"
        if how == "mean":
            image = np.nanmean(stack, axis=0)
        elif how == "median":
            image = np.nanmedian(stack, axis=0)
        else:
            image = np.nansum(stack, axis=0)
    return np.where(any_finite, image, np.nan)


def _date(wcs: WCS) -> Time | None:
    dateobs = wcs.wcs.dateobs
    if not dateobs:
        return None
    try:
        return Time(dateobs)
    except ValueError:
        return None


def image_from_cube(
    cube, *, slice: int | builtins.slice | None = None, spectral_range=None, collapse: str = "mean"
) -> ImageWithWCS:
    """A 2-D celestial image from a spectral cube: one channel, or a NaN-aware collapse of several.

    Parameters
    ----------
    cube : (data, `~astropy.wcs.WCS`) pair, `ndcube.NDCube` or `spectral_cube.SpectralCube`
        A 3-D cube with two celestial axes and one spectral axis, in any order. Masked values (NDCube
        ``mask``, SpectralCube mask) count as NaN. Not modified.
    slice : int or slice, optional
        Spectral channel index, or a `slice` of channel indices to collapse.
    spectral_range : (low, high), optional
        Spectral interval to collapse, as Quantities (wavelength, frequency or energy; converted with
        `astropy.units.spectral`) or plain numbers in the WCS's spectral unit (SI after WCS parsing,
        e.g. metres). Channels whose centre lies inside ``[low, high]`` are used. Exclusive with ``slice``.
    collapse : {"mean", "sum", "median"}
        How channels are combined, ignoring NaN; a pixel with no finite value in the range is NaN.

    Returns
    -------
    ImageWithWCS
        ``data`` of shape ``(n_lat, n_lon)``, the 2-D celestial ``wcs`` (longitude first) and ``date``
        (from DATE-OBS, or None).

    Raises
    ------
    ShapeError
        The data are not 3-D or do not match the WCS.
    WCSError
        The WCS lacks two celestial axes.
    AllNaNError
        The selected channels hold no finite value.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.wcs import WCS
    >>> wcs = WCS(naxis=3)
    >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN", "WAVE"]
    >>> data = np.arange(24.0).reshape(2, 3, 4)
    >>> data[:, 0, 0] = np.nan
    >>> image = image_from_cube((data, wcs), collapse="sum")
    >>> image.data[0, :2]
    array([nan, 14.])
    >>> image_from_cube((data, wcs), slice=1).data[1, 1]
    np.float64(17.0)
    """
    data, wcs = _standard_cube(cube)
    channels = _channels(wcs, data.shape[0], slice, spectral_range)
    image = _collapse(data[channels], collapse)
    if not np.isfinite(image).any():
        raise AllNaNError(
            f"the selected spectral channels {channels.min()}..{channels.max()} hold no finite value; "
            "choose another slice or spectral_range, or check the cube's mask"
        )
    lng, lat, _ = _axes(wcs)
    return ImageWithWCS(image, wcs.sub([lng + 1, lat + 1]), _date(wcs))


def _images(cubes, slice, spectral_range, collapse) -> list[ImageWithWCS]:
    cubes = list(cubes)
    if len(cubes) < 2:
        raise ValueError(f"need at least two cubes to register or co-add, got {len(cubes)}")
    return [image_from_cube(c, slice=slice, spectral_range=spectral_range, collapse=collapse) for c in cubes]


# ------------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class Reprojected:
    """Images resampled onto one grid.

    Attributes
    ----------
    data : (n, ny, nx) ndarray
        The images, NaN outside each footprint.
    footprint : (n, ny, nx) ndarray
        Fraction of each output pixel covered by the input (0 outside it).
    wcs : `~astropy.wcs.WCS`
        The common 2-D celestial WCS.
    """

    data: np.ndarray
    footprint: np.ndarray
    wcs: Any


def common_grid(images, *, grid="reference", reference_index: int = 0) -> tuple[WCS, tuple[int, int]]:
    """The common celestial grid ``(wcs, (ny, nx))`` on which images are compared and co-added.

    Parameters
    ----------
    images : sequence of ImageWithWCS
        2-D images with celestial WCS (e.g. from `image_from_cube`).
    grid : "reference", "optimal" or (`~astropy.wcs.WCS`, (ny, nx))
        ``"reference"``: the grid of ``images[reference_index]``; ``"optimal"``: the north-up grid that
        covers all images at the finest input resolution (`find_optimal_celestial_wcs`); or an explicit
        WCS and shape.
    reference_index : int
        Which image is the reference.

    Returns
    -------
    wcs : `~astropy.wcs.WCS`
        The grid's 2-D celestial WCS (a copy).
    shape : (int, int)
        Its shape ``(ny, nx)``.
    """
    images = list(images)
    if isinstance(grid, tuple) and len(grid) == 2 and isinstance(grid[0], WCS):
        wcs, shape = grid
        return wcs.deepcopy(), (int(shape[0]), int(shape[1]))
    if grid == "reference":
        reference = images[reference_index]
        return reference.wcs.deepcopy(), tuple(int(n) for n in np.shape(reference.data))
    if grid == "optimal":
        wcs, shape = find_optimal_celestial_wcs([(np.asarray(im.data), im.wcs) for im in images])
        return wcs, (int(shape[0]), int(shape[1]))
    raise ValueError(f"grid must be 'reference', 'optimal' or a (WCS, shape) pair, got grid={grid!r}")


def _same_grid(wcs: WCS, shape, grid_wcs: WCS, grid_shape) -> bool:
    return tuple(shape) == tuple(grid_shape) and wcs.wcs.compare(grid_wcs.wcs, tolerance=1e-12)


def reproject_images(images, wcs: WCS, shape, *, order: str = "bicubic") -> Reprojected:
    """Resample every image onto the grid ``(wcs, shape)`` with `reproject.reproject_interp`.

    An image already on that grid is copied, not resampled. NaN input pixels stay invalid.

    Parameters
    ----------
    images : sequence of ImageWithWCS
        Images to resample. Not modified.
    wcs : `~astropy.wcs.WCS`
        Output celestial WCS.
    shape : (int, int)
        Output shape ``(ny, nx)``.
    order : {"bilinear", "bicubic", "nearest-neighbor"}
        Interpolation order passed to `reproject_interp`.

    Returns
    -------
    Reprojected
    """
    shape = (int(shape[0]), int(shape[1]))
    data, footprints = [], []
    for image in images:
        array = np.asarray(image.data, dtype=float)
        if _same_grid(image.wcs, array.shape, wcs, shape):
            resampled = array.copy()
            footprint = np.isfinite(resampled).astype(float)
        else:
            resampled, footprint = reproject_interp((array, image.wcs), wcs, shape_out=shape, order=order)
        resampled = np.where(footprint > 0, resampled, np.nan)
        data.append(resampled)
        footprints.append(np.where(np.isfinite(resampled), footprint, 0.0))
    return Reprojected(np.stack(data), np.stack(footprints), wcs)


# ------------------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class _Shift:
    """One measured shift on the common grid, ``(x, y)`` pixels, and its 1-sigma error (NaN: unknown)."""

    xy: tuple[float, float]
    sigma_xy: tuple[float, float]


def _check_overlap(target, reference, what: str, min_pixels: int = 16):
    both = np.isfinite(target) & np.isfinite(reference)
    if both.sum() < min_pixels:
        raise NoOverlapError(
            f"{what} share only {int(both.sum())} valid pixels (at least {min_pixels} needed); check that "
            "they observe the same field (their WCS), or pick another reference_index"
        )


def _measure_ncc(target, reference, wcs, max_shift) -> _Shift:
    """coalign's masked NCC by FFT with a sub-pixel polish (`one_map_phase`, strategy "fft")."""
    grid = grid_from_wcs(wcs)
    scale_x, scale_y = grid.pixel_scale
    params = replace(
        ONE_MAP,
        strategy="fft",
        fit_scale=False,
        bin_kernel_arcsec=None,
        clip_percentiles=None,
        shift_range_arcsec=(max_shift * scale_x, max_shift * scale_y),
        step_arcsec=(scale_x, scale_y),
        min_step_arcsec=(1e-3 * scale_x, 1e-3 * scale_y),
    )
    result = one_map_phase(ImageWithWCS(target, wcs), ImageWithWCS(reference, wcs), params)
    m_inv = np.linalg.inv(np.asarray(grid.matrix))
    sigma = np.sqrt((m_inv**2) @ np.asarray(result.sigma[:2], dtype=float) ** 2)
    return _Shift(tuple(float(v) for v in result.shift_pixels), (float(sigma[0]), float(sigma[1])))


def _fill_nearest(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Invalid pixels replaced by their nearest valid neighbour (keeps splines free of steps)."""
    if valid.all():
        return image
    index = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return image[tuple(index)]


def _chi2_surface(target, reference, pad: int, min_pixels: int):
    """Mean squared difference ``T(p) - R(p + s)`` over the overlap, for every integer shift ``|s| <= pad``.

    The sum expands into FFT cross-correlations: sum T^2 m_R(s) - 2 sum T R(s) + sum m_T R^2(s), divided
    by the overlap count sum m_T m_R(s). Element ``[pad + s_y, pad + s_x]`` holds shift ``s``.
    """
    valid_t, valid_r = np.isfinite(target), np.isfinite(reference)
    t = np.where(valid_t, target, 0.0)
    r = np.pad(np.where(valid_r, reference, 0.0), pad)
    m_r = np.pad(valid_r.astype(float), pad)
    m_t = valid_t.astype(float)

    def corr(big, small):
        return signal.correlate(big, small, mode="valid", method="fft")

    count = corr(m_r, m_t)
    total = corr(m_r, t * t) - 2.0 * corr(r, t) + corr(r * r, m_t)
    enough = count >= max(min_pixels, 0.5 * m_t.sum())
    return np.where(enough, total / np.maximum(count, 1.0), np.nan)


def _quadratic_hessian(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Hessian of the least-squares quadratic ``v = c + g.d + d.H.d / 2`` over 2-D offsets ``d``."""
    x, y = offsets.T
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    hxx, hxy, hyy = np.linalg.lstsq(design, values, rcond=None)[0][3:]
    return np.array([[2 * hxx, hxy], [hxy, 2 * hyy]])


def _measure_chi2(target, reference, max_shift, *, step: float = 0.02) -> _Shift:
    """Chi-square over shifts: integer minimum by FFT, then a cubic-spline model refined to the minimum.

    chi2(s) = sum over a fixed pixel set of (T(p) - R(p + s))^2 / sigma^2, with R sampled by a cubic
    spline and sigma^2 the residual variance at the minimum (reduced chi2 = 1). The minimum and the
    Hessian come from a quadratic fit on a 5 x 5 grid of shifts around it; 1-sigma errors are the
    projections of the Delta chi2 = 1 contour, ``sqrt(diag(2 H^-1))``.
    """
    pad = int(np.ceil(max_shift))
    surface = _chi2_surface(target, reference, pad, min_pixels=16)
    if not np.isfinite(surface).any():
        raise NoOverlapError(
            f"no shift within {max_shift} pixels leaves enough overlap for chi2; raise max_shift_pixels "
            "or check the pointing of the cubes"
        )
    iy, ix = np.unravel_index(np.nanargmin(surface), surface.shape)
    start = np.array([ix - pad, iy - pad], dtype=float)
    valid_t, valid_r = np.isfinite(target), np.isfinite(reference)
    coeffs = ndimage.spline_filter(_fill_nearest(reference, valid_r), order=3)
    # Pixels whose model stays on valid reference data for every shift within 2 pixels of the start.
    safe_r = ndimage.binary_erosion(valid_r, np.ones((7, 7), bool), border_value=0)
    safe = ndimage.shift(safe_r.astype(float), -start[::-1], order=0, mode="constant", cval=0.0) > 0.5
    use = valid_t & safe
    if use.sum() < 16:
        raise NoOverlapError("too few pixels overlap at the chi2 minimum to refine it; check the inputs")
    yy, xx = np.nonzero(use)
    values = target[use]

    def chi2(shift_xy):
        model = ndimage.map_coordinates(
            coeffs, [yy + shift_xy[1], xx + shift_xy[0]], order=3, prefilter=False, mode="nearest"
        )
        return float(np.sum((values - model) ** 2))

    simplex = start + np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]])
    res = optimize.minimize(
        chi2,
        start,
        method="Nelder-Mead",
        options={"initial_simplex": simplex, "xatol": 1e-5, "fatol": 1e-12, "maxiter": 400},
    )
    best = res.x
    if np.any(np.abs(best - start) > 2.0):
        raise NoOverlapError(
            f"the chi2 refinement left the neighbourhood of the FFT minimum {tuple(start)}; the images may "
            "not show the same field"
        )
    variance = res.fun / max(values.size - 2, 1)
    stencil = np.array([(i * step, j * step) for j in (-1, 0, 1) for i in (-1, 0, 1)])
    hessian = _quadratic_hessian(stencil, np.array([chi2(best + d) for d in stencil]) / variance)
    try:
        covariance = 2.0 * np.linalg.inv(hessian)
        sigma = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    except np.linalg.LinAlgError:
        sigma = np.full(2, np.nan)
    return _Shift((float(best[0]), float(best[1])), (float(sigma[0]), float(sigma[1])))


def _phase_cross_correlation():
    try:
        from skimage.registration import phase_cross_correlation
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f'method="dft" needs scikit-image; install it with {_CUBES_EXTRA} (or pip install scikit-image)'
        ) from exc
    return phase_cross_correlation


def _integer_shift(image: np.ndarray, shift_yx) -> np.ndarray:
    """``out(q) = image(q - shift)`` for an integer shift, NaN where ``q - shift`` leaves the array."""
    out = np.full_like(image, np.nan)
    (ny, nx), (dy, dx) = image.shape, (int(v) for v in shift_yx)
    out[max(dy, 0) : ny + min(dy, 0), max(dx, 0) : nx + min(dx, 0)] = image[
        max(-dy, 0) : ny + min(-dy, 0), max(-dx, 0) : nx + min(-dx, 0)
    ]
    return out


def _measure_dft(target, reference, max_shift, *, upsample_factor: int = DFT_UPSAMPLE) -> _Shift:
    """Upsampled-DFT cross-correlation (Guizar-Sicairos et al. 2008) with scikit-image.

    1. Integer shift by scikit-image's masked normalised cross-correlation (``reference_mask`` /
       ``moving_mask`` mark the finite pixels; scikit-image ignores ``upsample_factor`` with masks).
    2. The target is moved by that integer shift, both images are cropped to the bounding box of their
       common valid pixels, remaining invalid pixels are set to the image's mean, means are subtracted
       and a Tukey window (25 %) tapers the edges, since the DFT treats images as periodic.
    3. The upsampled DFT (``upsample_factor``, plain cross-correlation, ``normalization=None``) gives the
       residual sub-pixel shift.

    No 1-sigma error is available (NaN).
    """
    phase_cross_correlation = _phase_cross_correlation()
    valid_t, valid_r = np.isfinite(target), np.isfinite(reference)
    coarse, _, _ = phase_cross_correlation(
        np.where(valid_r, reference, 0.0),
        np.where(valid_t, target, 0.0),
        reference_mask=valid_r,
        moving_mask=valid_t,
    )
    coarse = np.round(coarse).astype(int)
    if np.any(np.abs(coarse) > np.ceil(max_shift)):
        raise NoOverlapError(
            f"the correlation peak lies at {tuple(int(v) for v in coarse[::-1])} pixels, beyond "
            f"max_shift_pixels={max_shift}; the images may not show the same field, or raise max_shift_pixels"
        )
    moved = _integer_shift(target, coarse)
    both = np.isfinite(moved) & valid_r
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    box = (builtins.slice(rows[0], rows[-1] + 1), builtins.slice(cols[0], cols[-1] + 1))
    valid = both[box]
    window = np.outer(signal.windows.tukey(valid.shape[0], 0.25), signal.windows.tukey(valid.shape[1], 0.25))

    def prepared(image):
        cut = image[box]
        mean = cut[valid].mean()
        return (np.where(valid, cut, mean) - mean) * window

    fine, _, _ = phase_cross_correlation(
        prepared(reference), prepared(moved), upsample_factor=upsample_factor, normalization=None
    )
    shift_yx = coarse + fine
    return _Shift((float(shift_yx[1]), float(shift_yx[0])), (float("nan"), float("nan")))


def register_images(target, reference, wcs=None, *, method: str = "ncc", max_shift_pixels: float = 8.0):
    """Shift ``(x, y)`` in pixels that aligns ``target`` with ``reference`` (two images on one grid).

    Parameters
    ----------
    target, reference : (ny, nx) array_like
        Images on the same grid; NaN marks invalid pixels. Not modified.
    wcs : `~astropy.wcs.WCS`, optional
        Their common celestial WCS; needed by ``method="ncc"`` (a plain pixel WCS is made if None).
    method : {"ncc", "chi2", "dft"}
        See `register_cubes`.
    max_shift_pixels : float
        Largest shift searched on each axis.

    Returns
    -------
    shift_xy : (float, float)
        Apply with ``shift_image(target, shift_xy)`` to align the target with the reference.
    sigma_xy : (float, float)
        1-sigma errors in pixels (NaN when the method gives none).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> yy, xx = np.mgrid[0:48, 0:48]
    >>> reference = np.exp(-((xx - 20.0) ** 2 + (yy - 25.0) ** 2) / 30.0)
    >>> target = ndimage.shift(reference, (-0.4, 1.3), order=3)  # content moved by dy=-0.4, dx=+1.3
    >>> shift, sigma = register_images(target, reference, method="chi2")
    >>> [round(v, 2) for v in shift]
    [-1.3, 0.4]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
    target = np.asarray(target, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if target.ndim != 2 or target.shape != reference.shape:
        raise ShapeError(
            f"target and reference must be 2-D images on one grid, got shapes {target.shape} and "
            f"{reference.shape}; resample them with reproject_images first"
        )
    for name, image in (("target", target), ("reference", reference)):
        if not np.isfinite(image).any():
            raise AllNaNError(f"the {name} image holds no finite pixel; check the cube or the spectral range")
    if not max_shift_pixels > 0:
        raise ValueError(f"max_shift_pixels must be > 0, got {max_shift_pixels!r}")
    _check_overlap(target, reference, "the target and the reference image")
    if method == "ncc":
        wcs = wcs if wcs is not None else _pixel_wcs()
        found = _measure_ncc(target, reference, wcs, max_shift_pixels)
    elif method == "chi2":
        found = _measure_chi2(target, reference, max_shift_pixels)
    else:
        found = _measure_dft(target, reference, max_shift_pixels)
    return found.xy, found.sigma_xy


def _pixel_wcs() -> WCS:
    """A celestial WCS of 1″ pixels at RA = Dec = 0, for registering bare arrays with the NCC stages."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.cdelt = [1 / 3600.0, 1 / 3600.0]
    wcs.wcs.set()
    return wcs


# ------------------------------------------------------------------------------- shifts to Transforms


def _transform_from_shift(image_wcs: WCS, grid_wcs: WCS, shift_xy) -> Transform:
    """Correction of ``image_wcs`` equivalent to shifting its image by ``shift_xy`` on the common grid.

    The corrected WCS must give pixel ``p`` the world coordinates that the grid gives to
    ``grid^-1(W(p)) + shift``; at the reference pixel that is the new CRVAL.
    """
    crpix = image_wcs.wcs.crpix - 1.0
    sky = image_wcs.pixel_to_world(crpix[0], crpix[1])
    q = np.array(grid_wcs.world_to_pixel(sky), dtype=float)
    moved = grid_wcs.pixel_to_world(q[0] + shift_xy[0], q[1] + shift_xy[1])
    if not sky.is_equivalent_frame(moved):
        moved = moved.transform_to(sky.frame)
    old, new = sky.spherical, moved.spherical
    dlon = (new.lon - old.lon).wrap_at(180 * u.deg)
    return Transform(dlon.to(u.arcsec), (new.lat - old.lat).to(u.arcsec))


def _sigma_arcsec(image_wcs, grid_wcs, shift_xy, sigma_xy) -> tuple[float, float]:
    """Propagate pixel 1-sigma errors to (dx, dy) arcsec through the local Jacobian of the conversion."""
    sigma_xy = np.asarray(sigma_xy, dtype=float)
    if not np.isfinite(sigma_xy).any():
        return float("nan"), float("nan")
    base = _transform_from_shift(image_wcs, grid_wcs, shift_xy)
    columns = []
    for unit in ((1.0, 0.0), (0.0, 1.0)):
        moved = _transform_from_shift(image_wcs, grid_wcs, np.add(shift_xy, unit))
        columns.append((moved.dx - base.dx, moved.dy - base.dy))
    jacobian = np.array(columns).T
    sigma = np.sqrt((jacobian**2) @ (sigma_xy**2))
    return float(sigma[0]), float(sigma[1])


@dataclass(frozen=True)
class CubeRegistration:
    """Corrections of every cube relative to the reference cube.

    Attributes
    ----------
    method : str
        The registration method (one of `METHODS`).
    reference_index : int
        Index of the reference cube (its transform is the identity).
    transforms : tuple of Transform
        Correction of each cube's pointing: ``dx``/``dy`` arcsec added to CRVAL1/CRVAL2 (``dx`` is a
        change of the longitude coordinate, e.g. RA, not multiplied by ``cos(lat)``).
    sigmas : tuple of (float, float)
        1-sigma errors of ``(dx, dy)`` in arcsec; NaN where the method gives none.
    shift_pixels : tuple of (float, float)
        Measured shift ``(x, y)`` of each cube's image on the common grid (see the module docstring).
    sigma_pixels : tuple of (float, float)
        1-sigma errors of ``shift_pixels``.
    grid_wcs : `~astropy.wcs.WCS`
        The common grid's WCS.
    grid_shape : (int, int)
        The common grid's shape.
    """

    method: str
    reference_index: int
    transforms: tuple[Transform, ...]
    sigmas: tuple[tuple[float, float], ...] = field(compare=False)
    shift_pixels: tuple[tuple[float, float], ...]
    sigma_pixels: tuple[tuple[float, float], ...] = field(compare=False)
    grid_wcs: Any = field(compare=False, repr=False, default=None)
    grid_shape: tuple[int, int] = (0, 0)

    def as_rows(self) -> list[dict]:
        """One plain dictionary per cube (for tables)."""
        return [
            {
                "cube": i,
                "method": self.method,
                "dx_pix": shift[0],
                "dy_pix": shift[1],
                "sigma_dx_pix": sig_pix[0],
                "sigma_dy_pix": sig_pix[1],
                **transform.as_dict(),
                "sigma_dx_arcsec": sig[0],
                "sigma_dy_arcsec": sig[1],
            }
            for i, (shift, sig_pix, transform, sig) in enumerate(
                zip(self.shift_pixels, self.sigma_pixels, self.transforms, self.sigmas, strict=True)
            )
        ]


def register_cubes(
    cubes,
    *,
    method: str = "ncc",
    reference_index: int = 0,
    slice: int | builtins.slice | None = None,
    spectral_range=None,
    collapse: str = "mean",
    grid="reference",
    max_shift_pixels: float = 8.0,
) -> CubeRegistration:
    """Register spectral cubes of one field against a reference cube; one `Transform` per cube.

    Each cube is collapsed into an image (`image_from_cube`), every image is resampled onto the common
    grid (`common_grid`, `reproject_images`), and each image's shift from the reference image is
    measured there and converted into a correction of the cube's WCS.

    Parameters
    ----------
    cubes : sequence of cubes
        (data, WCS) pairs, `ndcube.NDCube` or `spectral_cube.SpectralCube` (see `image_from_cube`).
        Not modified.
    method : {"ncc", "chi2", "dft"}
        ``"ncc"``: coalign's masked normalised cross-correlation by FFT with a sub-pixel polish on the
        exact metric (`~coalign.pipelines.phases.one_map_phase`, strategy "fft"); 1-sigma errors as
        that phase reports them (NaN when it estimates none). ``"chi2"``: chi-square of the pixel
        differences over shifts (FFT for integer shifts, cubic-spline model for the sub-pixel minimum),
        with 1-sigma errors from the Delta chi2 = 1 contour. ``"dft"``: upsampled DFT cross-correlation
        (Guizar-Sicairos et al. 2008) by `skimage.registration.phase_cross_correlation` with
        ``upsample_factor=100``; needs scikit-image; no errors.
    reference_index : int
        The cube the others are registered to; its transform is the identity.
    slice, spectral_range, collapse
        Which channels make each image, and how they are combined (see `image_from_cube`).
    grid : "reference", "optimal" or (WCS, shape)
        The common grid (see `common_grid`).
    max_shift_pixels : float
        Largest offset searched, in common-grid pixels, on each axis.

    Returns
    -------
    CubeRegistration

    Raises
    ------
    ValueError
        Unknown method, fewer than two cubes, or a bad channel selection.
    NoOverlapError
        A cube does not overlap the reference cube on the common grid.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
    images = _images(cubes, slice, spectral_range, collapse)
    if not -len(images) <= reference_index < len(images):
        raise ValueError(f"reference_index={reference_index} is out of range for {len(images)} cubes")
    reference_index %= len(images)
    grid_wcs, grid_shape = common_grid(images, grid=grid, reference_index=reference_index)
    stack = reproject_images(images, grid_wcs, grid_shape)
    reference = stack.data[reference_index]
    transforms, sigmas, shifts, sigma_pixels = [], [], [], []
    for index, (image, target) in enumerate(zip(images, stack.data, strict=True)):
        if index == reference_index:
            shift, sigma_pix = (0.0, 0.0), (0.0, 0.0)
        else:
            if not np.isfinite(target).any():
                raise NoOverlapError(
                    f"cube {index} does not overlap the common grid at all; check its WCS, or use "
                    "grid='optimal' to cover every cube"
                )
            _check_overlap(target, reference, f"cube {index} and the reference cube on the common grid")
            shift, sigma_pix = register_images(
                target, reference, grid_wcs, method=method, max_shift_pixels=max_shift_pixels
            )
        transforms.append(_transform_from_shift(image.wcs, grid_wcs, shift))
        sigmas.append(_sigma_arcsec(image.wcs, grid_wcs, shift, sigma_pix))
        shifts.append(tuple(float(v) for v in shift))
        sigma_pixels.append(tuple(float(v) for v in sigma_pix))
    return CubeRegistration(
        method=method,
        reference_index=reference_index,
        transforms=tuple(transforms),
        sigmas=tuple(sigmas),
        shift_pixels=tuple(shifts),
        sigma_pixels=tuple(sigma_pixels),
        grid_wcs=grid_wcs,
        grid_shape=grid_shape,
    )


# -------------------------------------------------------------------------------- applying corrections


def correct_wcs(wcs: WCS, transform: Transform) -> WCS:
    """A corrected copy of a celestial WCS (2-D image or 3-D cube), through `correct_header`.

    CRVAL of the longitude and latitude axes get ``dx`` and ``dy`` arcsec (``dx`` is a change of the
    longitude coordinate: for RA it is not multiplied by ``cos(dec)``); CDELT are multiplied by
    ``sx``/``sy``. Other axes are kept.

    Examples
    --------
    >>> from astropy.wcs import WCS
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> wcs.wcs.crval = [150.0, 60.0]
    >>> corrected = correct_wcs(wcs, Transform(dx=3.6, dy=-7.2))
    >>> corrected.wcs.crval.round(6).tolist()
    [150.001, 59.998]
    """
    if not wcs.has_celestial:
        raise WCSError(f"the WCS has no celestial axes (CTYPE={list(wcs.wcs.ctype)}); nothing to correct")
    header = correct_header(
        wcs.to_header(relax=True), transform, lon_axis=wcs.wcs.lng + 1, lat_axis=wcs.wcs.lat + 1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        out = WCS(header, relax=True)
    if wcs.pixel_shape is not None:
        out.pixel_shape = wcs.pixel_shape
    return out


def correct_cube(cube, transform: Transform):
    """A new cube of the same kind whose WCS is corrected by ``transform``; the data are copied, not moved.

    Parameters
    ----------
    cube : (data, WCS) pair, `ndcube.NDCube` or `spectral_cube.SpectralCube`
        The cube. Not modified.
    transform : Transform
        Its correction, e.g. ``register_cubes(...).transforms[i]``.

    Returns
    -------
    cube
        (data, WCS) pairs give a new pair; an NDCube gives an NDCube (mask, uncertainty, unit and meta
        kept); a SpectralCube gives a SpectralCube with masked values as NaN and the meta kept (a beam is
        not carried over).
    """
    if isinstance(cube, tuple | list):
        data, wcs = _cube_parts(cube)
        return np.array(data, copy=True), correct_wcs(wcs, transform)
    if hasattr(cube, "filled_data") and hasattr(cube, "spectral_axis"):
        return type(cube)(
            data=cube.filled_data[:].copy(), wcs=correct_wcs(cube.wcs, transform), meta=dict(cube.meta)
        )
    _cube_parts(cube)
    return type(cube)(
        np.array(cube.data, copy=True),
        wcs=correct_wcs(cube.wcs, transform),
        uncertainty=cube.uncertainty,
        mask=None if cube.mask is None else np.array(cube.mask, copy=True),
        meta=cube.meta,
        unit=cube.unit,
    )


SHIFT_METHODS = ("spline", "fourier")


def shift_image(data, shift_xy_pixels, *, method: str = "spline", order: int = 3) -> np.ndarray:
    """A copy of an image (or of every channel of a cube) shifted by ``(x, y)`` pixels.

    Prefer correcting the WCS (`correct_wcs`): it does not resample the data. Pixels whose
    interpolation reaches outside the array or a NaN pixel are NaN in the result.

    Parameters
    ----------
    data : (ny, nx) or (n, ny, nx) array_like
        Image or cube (spectral axis first). Not modified.
    shift_xy_pixels : (float, float)
        Shift ``(x, y)``: the value at pixel ``p`` moves to ``p + shift``.
    method : {"spline", "fourier"}
        `scipy.ndimage.shift` (spline of ``order``), or `scipy.ndimage.fourier_shift` (sinc
        interpolation; the image is treated as periodic and the wrapped edge is set to NaN).
    order : int
        Spline order for ``method="spline"``.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((5, 5))
    >>> image[2, 2] = 1.0
    >>> shifted = shift_image(image, (1, 0), order=1)
    >>> shifted[2, 3], bool(np.isnan(shifted[2, 0]))
    (np.float64(1.0), True)
    """
    if method not in SHIFT_METHODS:
        raise ValueError(f"method must be one of {SHIFT_METHODS}, got method={method!r}")
    data = np.asarray(data, dtype=float)
    if data.ndim not in (2, 3):
        raise ShapeError(f"data must be an image (ny, nx) or a cube (n, ny, nx), got shape {data.shape}")
    sx, sy = (float(v) for v in shift_xy_pixels)
    shift = (sy, sx) if data.ndim == 2 else (0.0, sy, sx)
    valid = np.isfinite(data)
    filled = np.where(valid, data, np.nanmean(data) if valid.any() else 0.0)
    if method == "spline":
        out = ndimage.shift(filled, shift, order=order, mode="nearest")
    else:
        axes = tuple(range(data.ndim))[-2:]
        spectrum = ndimage.fourier_shift(np.fft.fftn(filled, axes=axes), shift)
        out = np.fft.ifftn(spectrum, axes=axes).real
    outside = ndimage.shift(np.ones(data.shape), shift, order=1, mode="constant", cval=0.0) < 1 - 1e-6
    near_nan = ndimage.shift((~valid).astype(float), shift, order=1, mode="constant", cval=0.0) > 1e-6
    if near_nan.any() and (method == "fourier" or order > 1):
        near_nan = ndimage.binary_dilation(near_nan, np.ones((1, 3, 3) if data.ndim == 3 else (3, 3), bool))
    return np.where(outside | near_nan, np.nan, out)


@dataclass(frozen=True)
class Coadd:
    """A co-added image (or cube) on a common grid.

    Attributes
    ----------
    data : ndarray
        ``(ny, nx)`` image or ``(n_spectral, ny, nx)`` cube; NaN where no input covers a pixel.
    wcs : `~astropy.wcs.WCS`
        Its WCS (2-D celestial, or 3-D with the reference cube's spectral axis last).
    footprint : ndarray
        Summed coverage of the inputs (same shape as ``data``).
    """

    data: np.ndarray
    wcs: Any
    footprint: np.ndarray


def _coadd_planes(planes, wcs_list, grid_wcs, grid_shape, order):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        data, footprint = reproject_and_coadd(
            list(zip(planes, wcs_list, strict=True)),
            grid_wcs,
            shape_out=grid_shape,
            reproject_function=reproject_interp,
            combine_function="mean",
            blank_pixel_value=np.nan,
            order=order,
        )
    return np.where(footprint > 0, data, np.nan), footprint


def _cube_wcs(celestial: WCS, spectral: WCS) -> WCS:
    """3-D WCS: the 2-D celestial grid, then the 1-D spectral axis."""
    out = WCS(naxis=3)
    for key in ("ctype", "cunit", "crval", "crpix", "cdelt"):
        setattr(out.wcs, key, [*getattr(celestial.wcs, key), *getattr(spectral.wcs, key)])
    pc = np.eye(3)
    pc[:2, :2] = celestial.wcs.get_pc()
    out.wcs.pc = pc
    for key in ("dateobs", "radesys", "specsys"):
        value = getattr(celestial.wcs, key) or getattr(spectral.wcs, key, "")
        if value:
            setattr(out.wcs, key, value)
    if np.isfinite(celestial.wcs.equinox):
        out.wcs.equinox = celestial.wcs.equinox
    for key in ("hgln_obs", "hglt_obs", "dsun_obs", "rsun_ref", "crln_obs"):
        value = getattr(celestial.wcs.aux, key)
        if value is not None:
            setattr(out.wcs.aux, key, value)
    out.wcs.set()
    return out


def coadd_cubes(
    cubes,
    transforms=None,
    *,
    slice: int | builtins.slice | None = None,
    spectral_range=None,
    collapse: str = "mean",
    grid="reference",
    reference_index: int = 0,
    output: str = "image",
    order: str = "bicubic",
) -> Coadd:
    """Co-add cubes on a common grid after correcting their WCS (`reproject_and_coadd`, mean).

    Parameters
    ----------
    cubes : sequence of cubes
        As for `register_cubes`. Not modified.
    transforms : sequence of Transform or CubeRegistration, optional
        One correction per cube (e.g. ``register_cubes(...)``); None co-adds the nominal WCS
        (reprojection only).
    slice, spectral_range, collapse
        Channel selection for ``output="image"`` (see `image_from_cube`).
    grid : "reference", "optimal" or (WCS, shape)
        Output celestial grid (see `common_grid`), built from the corrected WCS.
    reference_index : int
        Cube whose grid is the ``"reference"`` grid.
    output : {"image", "cube"}
        Co-add the collapsed images, or every spectral channel (the cubes must share the spectral axis).
    order : {"bicubic", "bilinear", "nearest-neighbor"}
        Interpolation of `reproject_interp` (bilinear visibly blurs sub-pixel shifted inputs).

    Returns
    -------
    Coadd
    """
    if output not in ("image", "cube"):
        raise ValueError(f"output must be 'image' or 'cube', got output={output!r}")
    cubes = list(cubes)
    transforms = getattr(transforms, "transforms", transforms)
    transforms = [Transform()] * len(cubes) if transforms is None else list(transforms)
    if len(transforms) != len(cubes):
        raise ValueError(f"got {len(transforms)} transforms for {len(cubes)} cubes; pass one per cube")
    images = _images(cubes, slice, spectral_range, collapse)
    corrected = [
        ImageWithWCS(image.data, correct_wcs(image.wcs, transform), image.date)
        for image, transform in zip(images, transforms, strict=True)
    ]
    grid_wcs, grid_shape = common_grid(corrected, grid=grid, reference_index=reference_index)
    wcs_list = [image.wcs for image in corrected]
    if output == "image":
        data, footprint = _coadd_planes(
            [image.data for image in corrected], wcs_list, grid_wcs, grid_shape, order
        )
        return Coadd(data, grid_wcs, footprint)
    standard = [_standard_cube(cube) for cube in cubes]
    reference_data, reference_wcs = standard[reference_index]
    spectrum = _spectral_values(reference_wcs, reference_data.shape[0])
    for index, (data, wcs) in enumerate(standard):
        if data.shape[0] != reference_data.shape[0] or not u.allclose(
            _spectral_values(wcs, data.shape[0]), spectrum, rtol=1e-9
        ):
            raise ShapeError(
                f"cube {index} has a different spectral axis than the reference cube; co-add images "
                "(output='image') or resample the cubes onto one spectral grid first"
            )
    planes = [
        _coadd_planes([data[k] for data, _ in standard], wcs_list, grid_wcs, grid_shape, order)
        for k in range(reference_data.shape[0])
    ]
    cube_wcs = _cube_wcs(grid_wcs, reference_wcs.sub([_axes(reference_wcs)[2] + 1]))
    return Coadd(np.stack([p[0] for p in planes]), cube_wcs, np.stack([p[1] for p in planes]))


# ------------------------------------------------------------------------------------ simulated data


@dataclass(frozen=True)
class DitherSet:
    """Simulated dithered cubes of one field with known pointing errors (see `make_dither_set`).

    Attributes
    ----------
    cubes : tuple of (data, WCS)
        The cubes, data ``(n_channels, ny, nx)`` and a 3-D WCS (RA, Dec, wavelength).
    offsets_pixels : tuple of (float, float)
        True displacement ``(x, y)`` of the scene in each cube, in pixels, that its WCS does not know.
        The correct ``shift_pixels`` of `register_cubes` is its negative (relative to cube 0).
    truth : (ny, nx) ndarray
        The noise-free scene on the grid of cube 0 (the spatial image every channel is made of).
    wcs : `~astropy.wcs.WCS`
        2-D celestial WCS of cube 0, the grid of ``truth``.
    wavelengths : `~astropy.units.Quantity`
        Channel wavelengths.
    """

    cubes: tuple[tuple[np.ndarray, Any], ...]
    offsets_pixels: tuple[tuple[float, float], ...]
    truth: np.ndarray
    wcs: Any
    wavelengths: u.Quantity

    @property
    def true_shift_pixels(self) -> tuple[tuple[float, float], ...]:
        """The shifts `register_cubes` should find with cube 0 as reference."""
        x0, y0 = self.offsets_pixels[0]
        return tuple((-(x - x0), -(y - y0)) for x, y in self.offsets_pixels)


#: Default true scene displacements of `make_dither_set`: two aligned cubes and two offset ones.
DITHER_OFFSETS = ((0.0, 0.0), (0.0, 0.0), (0.37, -0.62), (-1.28, 0.45))
_SAMPLE_FRAME = "iris_sji_1400_20140329T150910.fits"


def _sample_scene() -> np.ndarray:
    """The real solar scene: an IRIS SJI 1400 frame shipped with coalign, NaN filled, median 1."""
    from astropy.io import fits

    from coalign.data import SAMPLE_REFERENCE_DIR

    image = fits.getdata(SAMPLE_REFERENCE_DIR / _SAMPLE_FRAME).astype(float)
    invalid = ~np.isfinite(image)
    top, bottom, left, right = 0, image.shape[0], 0, image.shape[1]
    while True:  # trim the border line with the most invalid pixels until the border is clean
        box = invalid[top:bottom, left:right]
        counts = (box[0].sum(), box[-1].sum(), box[:, 0].sum(), box[:, -1].sum())
        if max(counts) == 0:
            break
        worst = int(np.argmax(counts))
        top, bottom = top + (worst == 0), bottom - (worst == 1)
        left, right = left + (worst == 2), right - (worst == 3)
    image = image[top:bottom, left:right]
    image = _fill_nearest(image, np.isfinite(image))
    return image / np.median(image)


def _celestial_cube_wcs(shape, n_channels, pixel_arcsec, center_deg, wavelengths, crpix_shift):
    wcs = WCS(naxis=3)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN", "WAVE"]
    wcs.wcs.cunit = ["deg", "deg", "um"]
    wcs.wcs.cdelt = [-pixel_arcsec / 3600.0, pixel_arcsec / 3600.0, float(np.diff(wavelengths.value)[0])]
    wcs.wcs.crpix = [(shape[1] + 1) / 2.0 - crpix_shift[0], (shape[0] + 1) / 2.0 - crpix_shift[1], 1.0]
    wcs.wcs.crval = [float(center_deg[0]), float(center_deg[1]), float(wavelengths[0].value)]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.specsys = "BARYCENT"
    wcs.wcs.dateobs = "2024-03-29T14:00:00"
    wcs.wcs.set()
    wcs.pixel_shape = (shape[1], shape[0], n_channels)
    return wcs


def make_dither_set(
    *,
    offsets_pixels=DITHER_OFFSETS,
    dithers_pixels=None,
    shape: tuple[int, int] = (64, 64),
    n_channels: int = 30,
    pixel_arcsec: float = 0.13,
    center_deg: tuple[float, float] = (150.0, 60.0),
    line_um: float = 6.985,
    channel_um: float = 0.0008,
    line_sigma_channels: float = 2.5,
    continuum: float = 0.2,
    psf_fwhm_pixels: float = 2.0,
    noise: float = 0.05,
    seed: int = 0,
) -> DitherSet:
    """Simulated IFU dithers of one field built from a real image, with known sub-pixel pointing errors.

    The scene is a real solar image (an IRIS slit-jaw 1400 Å frame shipped with coalign, see
    ``coalign/data/README.md``) relabelled as a MIRI-like field of ``pixel_arcsec`` pixels at
    ``center_deg`` (RA, Dec). Every channel is ``(continuum + line(λ)) · scene + noise`` with a Gaussian
    emission line of peak 1 at ``line_um``. Cube ``k`` shows the scene displaced by
    ``offsets_pixels[k]``, which its WCS does **not** know; the displaced scene is resampled with a cubic
    spline from an oversized cutout, so the edges are real data.

    Parameters
    ----------
    offsets_pixels : sequence of (float, float)
        True scene displacement ``(x, y)`` in each cube, pixels (one entry per cube).
    dithers_pixels : sequence of (float, float), optional
        Known nominal dither ``(x, y)`` of each cube, recorded in its WCS (CRPIX) and applied to the
        data; default: no dither.
    shape : (int, int)
        Spatial shape ``(ny, nx)`` of every cube.
    n_channels : int
        Number of spectral channels.
    pixel_arcsec : float
        Spatial pixel size.
    center_deg : (float, float)
        RA and Dec of the field centre, degrees.
    line_um, channel_um, line_sigma_channels, continuum : float
        Line centre, channel width (µm), line width (channels) and continuum level relative to the line
        peak.
    psf_fwhm_pixels : float
        FWHM of the Gaussian PSF the scene is observed through (MIRI's is ~2 pixels at 7 µm); 0 keeps
        the scene as sharp as the sample image.
    noise : float
        Standard deviation of the Gaussian noise per voxel, as a fraction of the scene's standard
        deviation.
    seed : int
        Seed of the noise generator.

    Returns
    -------
    DitherSet
    """
    offsets = np.asarray(offsets_pixels, dtype=float).reshape(-1, 2)
    dithers = np.zeros_like(offsets) if dithers_pixels is None else np.asarray(dithers_pixels, float)
    if dithers.shape != offsets.shape:
        raise ValueError(f"give one dither per offset, got {len(dithers)} dithers for {len(offsets)} offsets")
    scene = _sample_scene()
    if psf_fwhm_pixels > 0:
        scene = ndimage.gaussian_filter(scene, psf_fwhm_pixels / np.sqrt(8 * np.log(2)), mode="nearest")
    ny, nx = (int(n) for n in shape)
    margin = int(np.ceil(np.abs(offsets - dithers).max())) + 4
    big_y, big_x = ny + 2 * margin, nx + 2 * margin
    if big_y > scene.shape[0] or big_x > scene.shape[1]:
        raise ValueError(
            f"shape={shape} with offsets up to {np.abs(offsets - dithers).max():.1f} pixels needs a "
            f"{big_y} x {big_x} cutout, but the sample scene is only {scene.shape}; use a smaller shape"
        )
    y0, x0 = (scene.shape[0] - big_y) // 2, (scene.shape[1] - big_x) // 2
    cutout = scene[y0 : y0 + big_y, x0 : x0 + big_x]
    channels = np.arange(n_channels, dtype=float)
    wavelengths = (line_um + (channels - (n_channels - 1) / 2.0) * channel_um) * u.um
    profile = continuum + np.exp(-0.5 * ((channels - (n_channels - 1) / 2.0) / line_sigma_channels) ** 2)
    sigma = noise * float(np.std(cutout))
    rng = np.random.default_rng(seed)
    cubes = []
    for offset, dither in zip(offsets, dithers, strict=True):
        moved = ndimage.shift(cutout, (offset[1] - dither[1], offset[0] - dither[0]), order=3, mode="nearest")
        image = moved[margin : margin + ny, margin : margin + nx]
        data = profile[:, None, None] * image[None] + rng.normal(0.0, sigma, (n_channels, ny, nx))
        wcs = _celestial_cube_wcs((ny, nx), n_channels, pixel_arcsec, center_deg, wavelengths, dither)
        cubes.append((data, wcs))
    truth = ndimage.shift(cutout, (-dithers[0][1], -dithers[0][0]), order=3, mode="nearest")
    return DitherSet(
        cubes=tuple(cubes),
        offsets_pixels=tuple((float(x), float(y)) for x, y in offsets),
        truth=truth[margin : margin + ny, margin : margin + nx],
        wcs=cubes[0][1].sub([1, 2]),
        wavelengths=wavelengths,
    )
