"""Resample a reference image onto the target's pixel grid, padded by the search range."""

from contextlib import nullcontext

import numpy as np
from astropy.time import Time
from astropy.wcs.utils import pixel_to_skycoord
from reproject import reproject_adaptive, reproject_interp
from sunpy.coordinates import propagate_with_solar_surface

from coalign.exceptions import AllNaNError, NoOverlapError, ShapeError
from coalign.transform import Transform

__all__ = ["observation_time", "pad_for_search", "padded_wcs", "reproject_image", "wcs_at_time"]


def pad_for_search(
    grid, shape, shift_range_arcsec, scale_range=(1.0, 1.0), roll_range=(0.0, 0.0), margin_pix=2
) -> tuple[int, int]:
    """Padding ``(pad_y, pad_x)`` in target pixels that keeps every searched correction inside the array.

    Parameters
    ----------
    grid : `~coalign.transform.TargetGrid`
        Target grid (its ``pad`` is ignored).
    shape : (int, int)
        Target shape ``(ny, nx)``.
    shift_range_arcsec : (float, float)
        Largest ``|dx|, |dy|`` that will be searched, including the starting correction.
    scale_range : (float, float)
        Range of scale factors that will be searched.
    roll_range : (float, float)
        Range of roll corrections (degrees) that will be searched.
    margin_pix : int
        Extra pixels on each side (interpolation support).
    """
    m = np.asarray(grid.matrix)
    m_inv = np.linalg.inv(m)
    rx, ry = shift_range_arcsec
    shift_corners = np.array([[rx, ry], [rx, -ry], [-rx, ry], [-rx, -ry]]).T
    shift_pix = np.abs(m_inv @ shift_corners).max(axis=1)
    ny, nx = shape
    cx, cy = grid.crpix
    corners = np.array(
        [[0 - cx, nx - 1 - cx, nx - 1 - cx, 0 - cx], [0 - cy, 0 - cy, ny - 1 - cy, ny - 1 - cy]]
    )
    scale_pix = np.zeros(2)
    for sx in scale_range:
        for sy in scale_range:
            for roll in roll_range:
                linear = m_inv @ Transform(sx=sx, sy=sy, roll=roll).linear @ m - np.eye(2)
                scale_pix = np.maximum(scale_pix, np.abs(linear @ corners).max(axis=1))
    pad_x, pad_y = shift_pix + scale_pix
    return int(np.ceil(pad_y)) + margin_pix, int(np.ceil(pad_x)) + margin_pix


def padded_wcs(wcs, shape, pad):
    """WCS and shape of the target grid enlarged by ``pad = (pad_y, pad_x)`` pixels on every side."""
    out = wcs.deepcopy()
    out.wcs.crpix = wcs.wcs.crpix + np.array([pad[1], pad[0]], dtype=float)
    new_shape = (shape[0] + 2 * pad[0], shape[1] + 2 * pad[1])
    out.array_shape = new_shape
    out.wcs.set()
    return out, new_shape


def observation_time(wcs) -> Time | None:
    """The time a WCS's coordinate frame refers to (``DATE-AVG``, else ``DATE-OBS``), or None."""
    for value in (wcs.wcs.dateavg, wcs.wcs.dateobs):
        if value:
            return Time(value)
    return None


def wcs_at_time(wcs, time: Time):
    """Copy of ``wcs`` whose coordinate frame refers to ``time`` (observer position kept as written)."""
    out = wcs.deepcopy()
    time = Time(time)
    out.wcs.dateobs = out.wcs.dateavg = time.isot
    out.wcs.mjdobs = out.wcs.mjdavg = time.mjd
    out.wcs.set()
    return out


def _corners(wcs, shape):
    ny, nx = shape
    corners = pixel_to_skycoord(np.array([0, nx - 1, nx - 1, 0]), np.array([0, 0, ny - 1, ny - 1]), wcs)
    lon = corners.spherical.lon.wrap_at("180d").arcsec
    lat = corners.spherical.lat.arcsec
    return f"lon {lon.min():.0f}..{lon.max():.0f} arcsec, lat {lat.min():.0f}..{lat.max():.0f} arcsec"


def reproject_image(
    reference,
    reference_wcs,
    target_wcs,
    target_shape,
    *,
    pad=(0, 0),
    method="interp",
    rotate_to: Time | None = None,
    columns: tuple[int, int] | None = None,
    rows: tuple[int, int] | None = None,
):
    """Resample a reference image onto the (padded) target grid with the ``reproject`` package.

    Frames are converted through astropy/sunpy coordinates, so different observers (e.g. SDO and Solar
    Orbiter) are handled when the WCS carry observer metadata (sunpy Map ``.wcs`` does).

    Solar features move with the Sun, not with the sky: by default the target grid is evaluated at the
    reference's own observation time, so only the change of observer is applied (a plain transform
    between two times would hold features fixed in inertial space and shift them by the Earth's orbital
    motion, ~0.7 arcsec/hour from 1 au). With ``rotate_to``, features are instead carried by solar
    differential rotation from the reference's time to ``rotate_to``
    (`sunpy.coordinates.propagate_with_solar_surface`): the target grid is evaluated at ``rotate_to``
    and its sky positions are followed on the rotating solar surface back to the reference's time.

    Sky positions off the solar disc have no surface point to follow: they come out NaN with
    ``rotate_to``, and also whenever the target's observer differs from the reference's (sunpy changes
    observer through the solar surface), so the corona above the limb is then lost.

    Parameters
    ----------
    reference : (my, mx) array_like
        Reference image; NaN marks invalid pixels. Not modified.
    reference_wcs : `~astropy.wcs.WCS`
        Its celestial WCS.
    target_wcs : `~astropy.wcs.WCS`
        The target's 2-D celestial WCS.
    target_shape : (int, int)
        Target shape ``(ny, nx)``.
    pad : (int, int)
        Pixels ``(pad_y, pad_x)`` added on every side of the target grid.
    method : {"interp", "adaptive"}
        ``"interp"`` (bilinear, fast) or ``"adaptive"`` (anti-aliased; use it when the reference is much
        finer than the target).
    rotate_to : `~astropy.time.Time`, optional
        Time to carry the reference's features to by solar differential rotation (default: none, the
        grid is evaluated at the reference's time). Needs the reference WCS's DATE-OBS or DATE-AVG; the
        target's observer position is kept as its WCS writes it. Off-disc pixels become NaN.
    columns : (int, int), optional
        Resample only padded-grid columns ``start:stop`` (the rest is NaN): a frame of a synthetic raster
        serves only the columns observed near its time.
    rows : (int, int), optional
        Resample only padded-grid rows ``start:stop`` (the rest is NaN), e.g. those a search can reach.

    Returns
    -------
    resampled : (ny + 2 pad_y, nx + 2 pad_x) ndarray
        NaN outside the reference, outside ``columns``, and off the solar disc with ``rotate_to`` or a
        change of observer.
    """
    reference = np.asarray(reference, dtype=float)
    if reference.ndim != 2:
        raise ShapeError(f"reference must be a 2-D image, got shape {reference.shape}")
    if not np.isfinite(reference).any():
        raise AllNaNError("reference holds no finite pixel; check the file or the selected window")
    if method not in ("interp", "adaptive"):
        raise ValueError(f"method must be 'interp' or 'adaptive', got method={method!r}")
    out_wcs, out_shape = padded_wcs(target_wcs, target_shape, pad)
    reference_time = observation_time(reference_wcs)
    if rotate_to is not None and reference_time is None:
        raise ValueError("rotate_to needs the reference WCS's observation time (DATE-OBS or DATE-AVG)")
    frame_time = rotate_to if rotate_to is not None else reference_time
    if rotate_to is not None or (frame_time is not None and observation_time(out_wcs) is not None):
        # With rotate_to the grid must carry that time even if its WCS has none, else nothing is carried.
        out_wcs = wcs_at_time(out_wcs, frame_time)
    start, stop = columns if columns is not None else (0, out_shape[1])
    first_row, end_row = rows if rows is not None else (0, out_shape[0])
    band_wcs = out_wcs.deepcopy()
    band_wcs.wcs.crpix = out_wcs.wcs.crpix - np.array([start, first_row], dtype=float)
    band_wcs.wcs.set()
    band_shape = (end_row - first_row, stop - start)
    with propagate_with_solar_surface() if rotate_to is not None else nullcontext():
        if method == "interp":
            band, footprint = reproject_interp(
                (reference, reference_wcs), band_wcs, shape_out=band_shape, roundtrip_coords=False
            )
        else:
            band, footprint = reproject_adaptive(
                (reference, reference_wcs), band_wcs, shape_out=band_shape, conserve_flux=False
            )
    band[footprint <= 0] = np.nan
    resampled = np.full(out_shape, np.nan)
    resampled[first_row:end_row, start:stop] = band
    if not np.isfinite(resampled).any():
        raise NoOverlapError(
            "the reference does not overlap the target grid: reference covers "
            f"{_corners(reference_wcs, reference.shape)}, "
            f"padded target covers {_corners(out_wcs, out_shape)}; "
            "check both pointings, the observation times and the observers"
        )
    return resampled
