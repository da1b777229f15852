"""Resample a reference image onto the target's pixel grid, padded by the search range."""

from contextlib import nullcontext
from typing import Any, NamedTuple

import astropy.units as u
import numpy as np
from astropy.coordinates import BaseCoordinateFrame, SkyCoord, SphericalRepresentation
from astropy.time import Time
from astropy.wcs.utils import pixel_to_pixel, pixel_to_skycoord, wcs_to_celestial_frame
from reproject import reproject_adaptive
from scipy import ndimage
from scipy.interpolate import BSpline, RectBivariateSpline
from sunpy.coordinates import propagate_with_solar_surface

from coalign.exceptions import AllNaNError, NoOverlapError, ShapeError
from coalign.transform import Transform

__all__ = [
    "CONTROL_SPACING",
    "CONTROL_TOLERANCE",
    "frame_at_time",
    "observation_time",
    "pad_for_search",
    "padded_wcs",
    "reproject_frames",
    "reproject_image",
    "stacked_frame",
    "wcs_at_time",
]


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


#: Largest spacing (output pixels) between the control points where the exact coordinate transform is
#: evaluated; the mapping in between is interpolated by a bicubic spline.
CONTROL_SPACING = 16
#: Largest allowed error (input pixels) of the interpolated mapping, checked at the centres of the
#: control cells; a frame that exceeds it (e.g. near the limb across observers) is transformed exactly.
CONTROL_TOLERANCE = 1e-3


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
    """Resample a reference image onto the (padded) target grid.

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

    ``method="interp"`` is `reproject_frames` for one frame: bilinear, with the same edge and NaN rules
    as `reproject.reproject_interp`, which ``method="adaptive"`` calls (`reproject.reproject_adaptive`).

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
    if method not in ("interp", "adaptive"):
        raise ValueError(f"method must be 'interp' or 'adaptive', got method={method!r}")
    if method == "interp":
        return reproject_frames(
            [(reference, reference_wcs)],
            target_wcs,
            target_shape,
            pad=pad,
            columns=None if columns is None else [columns],
            rows=rows,
            rotate_to=[rotate_to],
        )[0]
    reference = _checked_reference(reference)
    out_wcs, out_shape = padded_wcs(target_wcs, target_shape, pad)
    band_wcs, (start, stop), (first_row, end_row) = _band(
        _grid_at_time(out_wcs, reference_wcs, rotate_to), out_shape, columns, rows
    )
    with propagate_with_solar_surface() if rotate_to is not None else nullcontext():
        band, footprint = reproject_adaptive(
            (reference, reference_wcs),
            band_wcs,
            shape_out=(end_row - first_row, stop - start),
            conserve_flux=False,
        )
    band[footprint <= 0] = np.nan
    resampled = np.full(out_shape, np.nan)
    resampled[first_row:end_row, start:stop] = band
    _check_overlap(resampled, reference, reference_wcs, out_wcs, out_shape)
    return resampled


def reproject_frames(
    references,
    target_wcs,
    target_shape,
    *,
    pad=(0, 0),
    columns=None,
    rows: tuple[int, int] | None = None,
    rotate_to=None,
) -> np.ndarray:
    """Resample several reference images onto the (padded) target grid, bilinearly, in one pass.

    Each frame follows the rules of `reproject_image` (observer change, ``rotate_to``, NaN off the disc
    and outside the reference; edges and NaN as in `reproject.reproject_interp`). The exact coordinate
    transform is evaluated only on a grid of control points (at most `CONTROL_SPACING` output pixels
    apart) for all frames in one vectorised astropy/sunpy call, and interpolated in between by bicubic
    splines; the interpolation error is checked at the centre of every control cell, and a frame whose
    error exceeds `CONTROL_TOLERANCE` input pixels (or whose control points leave the solar disc) is
    transformed exactly at every pixel. Only the part of each reference that the output needs is read
    and converted to float (references may be big-endian or memory-mapped).

    Parameters
    ----------
    references : sequence of (array_like, `~astropy.wcs.WCS`)
        Reference images (NaN = invalid) and their celestial WCS. Not modified.
    target_wcs : `~astropy.wcs.WCS`
        The target's 2-D celestial WCS.
    target_shape : (int, int)
        Target shape ``(ny, nx)``.
    pad : (int, int)
        Pixels ``(pad_y, pad_x)`` added on every side of the target grid.
    columns : sequence of (int, int), optional
        Padded-grid columns ``[start, stop)`` to resample, one pair per frame (default: all); an empty
        band gives an all-NaN frame.
    rows : (int, int), optional
        Padded-grid rows ``[start, stop)`` to resample, for every frame (default: all).
    rotate_to : sequence of `~astropy.time.Time` or None, optional
        Per frame, the time to carry its features to by differential rotation (None: no rotation).

    Returns
    -------
    (n_frames, ny + 2 pad_y, nx + 2 pad_x) ndarray
    """
    references = [(_checked_reference(data), wcs) for data, wcs in references]
    n_frames = len(references)
    out_wcs, out_shape = padded_wcs(target_wcs, target_shape, pad)
    columns = list(columns) if columns is not None else [None] * n_frames
    rotate_to = list(rotate_to) if rotate_to is not None else [None] * n_frames
    if not len(columns) == len(rotate_to) == n_frames:
        raise ValueError(
            f"columns and rotate_to need one entry per frame ({n_frames}), got {len(columns)} and "
            f"{len(rotate_to)}"
        )
    grids = [
        _TimedGrid(out_wcs, _comparison_time(out_wcs, wcs, when))
        for (_, wcs), when in zip(references, rotate_to, strict=True)
    ]
    bands = [_band_limits(out_shape, band, rows) for band in columns]
    rotating = any(when is not None for when in rotate_to)
    with propagate_with_solar_surface() if rotating else nullcontext():
        mappings = _control_mappings(grids, [wcs for _, wcs in references], bands)
        out = np.full((n_frames, *out_shape), np.nan)
        for k, ((data, wcs), grid, (cols, band_rows), mapping) in enumerate(
            zip(references, grids, bands, mappings, strict=True)
        ):
            if cols[1] <= cols[0] or band_rows[1] <= band_rows[0]:
                continue
            if mapping is None:
                mapping = _exact_mapping(grid.wcs_at_time(), wcs, cols, band_rows)
            band = (slice(*band_rows), slice(*cols))
            out[k][band] = _sample_bilinear(data, *mapping)
            _check_overlap(out[k][band], data, wcs, out_wcs, out_shape)
    return out


def _checked_reference(reference) -> np.ndarray:
    reference = np.asarray(reference)
    if reference.ndim != 2:
        raise ShapeError(f"reference must be a 2-D image, got shape {reference.shape}")
    return reference


def _check_overlap(resampled, reference, reference_wcs, out_wcs, out_shape) -> None:
    if np.isfinite(resampled).any():
        return
    if not np.isfinite(reference).any():
        raise AllNaNError("reference holds no finite pixel; check the file or the selected window")
    raise NoOverlapError(
        "the reference does not overlap the target grid: reference covers "
        f"{_corners(reference_wcs, reference.shape)}, "
        f"padded target covers {_corners(out_wcs, out_shape)}; "
        "check both pointings, the observation times and the observers"
    )


def _comparison_time(out_wcs, reference_wcs, rotate_to) -> Time | None:
    """The time at which the padded target grid is compared with the reference, or None to keep the
    grid's own (the reference has no time, or neither has and nothing is carried)."""
    reference_time = observation_time(reference_wcs)
    if rotate_to is not None and reference_time is None:
        raise ValueError("rotate_to needs the reference WCS's observation time (DATE-OBS or DATE-AVG)")
    frame_time = rotate_to if rotate_to is not None else reference_time
    if rotate_to is not None or (frame_time is not None and observation_time(out_wcs) is not None):
        # With rotate_to the grid must carry that time even if its WCS has none, else nothing is carried.
        return Time(frame_time)
    return None


def _grid_at_time(out_wcs, reference_wcs, rotate_to):
    """The padded target WCS evaluated at the time its pixels are compared with the reference."""
    return _TimedGrid(out_wcs, _comparison_time(out_wcs, reference_wcs, rotate_to)).wcs_at_time()


class _TimedGrid(NamedTuple):
    """The padded target WCS and the time its pixels are compared at (None: its own)."""

    wcs: Any
    time: Time | None

    def wcs_at_time(self):
        """The WCS itself at that time (`wcs_at_time`)."""
        return self.wcs if self.time is None else wcs_at_time(self.wcs, self.time)


def frame_at_time(frame: BaseCoordinateFrame, time: Time) -> BaseCoordinateFrame:
    """A coordinate frame (without data) referred to ``time``, as `wcs_at_time` refers its WCS's frame.

    The frame's ``obstime`` becomes ``time``, and so does its observer's (the observer keeps its position
    as written); frames without these attributes are returned as they are. ``time`` may be an array of
    shape ``(n, 1)``: one frame then stands for ``n`` (see `stacked_frame`).

    Examples
    --------
    >>> from sunpy.coordinates import Helioprojective, HeliographicStonyhurst
    >>> observer = HeliographicStonyhurst(0 * u.deg, 0 * u.deg, 1 * u.AU, obstime="2022-04-01")
    >>> later = frame_at_time(Helioprojective(observer=observer, obstime="2022-04-01"), Time("2022-04-02"))
    >>> later.obstime.isot, later.observer.obstime.isot
    ('2022-04-02T00:00:00.000', '2022-04-02T00:00:00.000')
    """
    changes = {}
    if "obstime" in frame.frame_attributes:
        changes["obstime"] = time
    observer = getattr(frame, "observer", None)
    if isinstance(observer, BaseCoordinateFrame) and "obstime" in observer.frame_attributes:
        changes["observer"] = observer.replicate(obstime=time)
    return frame.replicate_without_data(**changes) if changes else frame


def _band_limits(out_shape, columns, rows):
    """The ``columns`` and ``rows`` ``[start, stop)`` of the padded grid to resample (default: all)."""
    return (
        tuple(columns) if columns is not None else (0, out_shape[1]),
        tuple(rows) if rows is not None else (0, out_shape[0]),
    )


def _band(out_wcs, out_shape, columns, rows):
    """WCS of the band ``rows x columns`` of the padded grid, and the band's ``columns`` and ``rows``."""
    (start, stop), (first_row, end_row) = _band_limits(out_shape, columns, rows)
    band_wcs = out_wcs.deepcopy()
    band_wcs.wcs.crpix = out_wcs.wcs.crpix - np.array([start, first_row], dtype=float)
    band_wcs.wcs.set()
    return band_wcs, (start, stop), (first_row, end_row)


def _control_mappings(grids, reference_wcs, bands):
    """Per frame, the input pixels ``(x, y)`` of its band interpolated from control points, or None where
    the control grid cannot serve (band under two pixels wide, a control point off the disc, or an
    interpolation error above `CONTROL_TOLERANCE` at a cell centre).

    All frames get the same number of control points, spread over their own bands, so that one
    coordinate transform serves them all.
    """
    usable = [k for k, (cols, rows) in enumerate(bands) if cols[1] - cols[0] >= 2 and rows[1] - rows[0] >= 2]
    mappings = [None] * len(grids)
    if not usable:
        return mappings
    n_x = max(_n_controls(*bands[k][0]) for k in usable)
    n_y = max(_n_controls(*bands[k][1]) for k in usable)
    nodes = {k: (_nodes(*bands[k][1], n_y), _nodes(*bands[k][0], n_x)) for k in usable}
    exact = _transform_pixels(
        [grids[k] for k in usable],
        [reference_wcs[k] for k in usable],
        np.stack([_nodes_and_centres(*nodes[k]) for k in usable]),
    )
    for k, pixels in zip(usable, exact, strict=True):
        mappings[k] = _interpolated_mapping(*nodes[k], pixels, bands[k])
    return mappings


def _n_controls(start: int, stop: int) -> int:
    return max(2, int(np.ceil((stop - 1 - start) / CONTROL_SPACING)) + 1)


def _nodes(start: int, stop: int, n: int) -> np.ndarray:
    """``n`` control coordinates from the first to the last pixel of ``[start, stop)``."""
    return np.linspace(start, stop - 1, n)


def _nodes_and_centres(y_nodes, x_nodes) -> np.ndarray:
    """Output pixels ``(y, x)``, shape ``(2, n)``: the control grid, then the centres of its cells."""
    y_centres, x_centres = (y_nodes[:-1] + y_nodes[1:]) / 2, (x_nodes[:-1] + x_nodes[1:]) / 2
    return np.concatenate([_mesh(y_nodes, x_nodes), _mesh(y_centres, x_centres)], axis=1)


def _mesh(y, x) -> np.ndarray:
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()])


def _interpolated_mapping(y_nodes, x_nodes, pixels, band):
    """Input pixels ``(x, y)`` of every pixel of ``band`` from bicubic splines through the control
    points, or None when a control point has no input pixel or the splines miss a cell centre by more
    than `CONTROL_TOLERANCE`.

    Off-disc output pixels (NaN) need no special care: the disc seen by the output's observer is convex
    in the output pixel plane, so a cell whose corners are all on the disc lies wholly on it.
    """
    if not np.isfinite(pixels).all():
        return None
    n_y, n_x = y_nodes.size, x_nodes.size
    n_nodes = n_y * n_x
    y_centres, x_centres = (y_nodes[:-1] + y_nodes[1:]) / 2, (x_nodes[:-1] + x_nodes[1:]) / 2
    splines = []
    for values in pixels:
        spline = RectBivariateSpline(
            y_nodes, x_nodes, values[:n_nodes].reshape(n_y, n_x), kx=min(3, n_y - 1), ky=min(3, n_x - 1)
        )
        error = np.abs(spline(y_centres, x_centres) - values[n_nodes:].reshape(n_y - 1, n_x - 1)).max()
        if not error <= CONTROL_TOLERANCE:
            return None
        splines.append(spline)
    (c0, c1), (r0, r1) = band
    rows, cols = np.arange(r0, r1, dtype=float), np.arange(c0, c1, dtype=float)
    return tuple(_spline_on_grid(spline, rows, cols) for spline in splines)


def _spline_on_grid(spline: RectBivariateSpline, rows, cols) -> np.ndarray:
    """``spline(rows, cols)`` as the product of the B-spline bases along each axis with the coefficients
    (`scipy.interpolate.BSpline.design_matrix`): one pass per axis instead of fitpack's sum over the
    whole support at every grid point, several times faster on the bands resampled here."""
    (t_rows, t_cols, coefficients), (k_rows, k_cols) = spline.tck, spline.degrees
    coefficients = coefficients.reshape(t_rows.size - k_rows - 1, t_cols.size - k_cols - 1)
    along_rows = BSpline.design_matrix(rows, t_rows, k_rows).toarray() @ coefficients
    return along_rows @ BSpline.design_matrix(cols, t_cols, k_cols).toarray().T


def _transform_pixels(grids, reference_wcs, points):
    """Input pixels ``(x, y)`` of the output pixels ``points[k] = (y, x)`` of each `_TimedGrid`, frame by
    frame.

    One vectorised coordinate transform when the reference frames can be stacked (`stacked_frame`) and
    each is compared at its own time (sunpy cannot broadcast a change of time over stacked frames, as
    ``rotate_to`` makes): the grids then differ only in time, and one frame of the target grid referred
    to every time (`frame_at_time`) stands for them all. Otherwise one
    `~astropy.wcs.utils.pixel_to_pixel` per frame.
    """
    grid_wcs = grids[0].wcs
    base = wcs_to_celestial_frame(grid_wcs)
    destinations = [wcs_to_celestial_frame(w) for w in reference_wcs]
    times = [grid.time for grid in grids]
    same_times = all(grid.wcs is grid_wcs for grid in grids) and all(
        _equal(getattr(base, "obstime", None) if t is None else t, getattr(d, "obstime", None))
        for t, d in zip(times, destinations, strict=True)
    )
    destination = stacked_frame(destinations)
    if not same_times or destination is None or len({t is None for t in times}) > 1:
        return [
            np.asarray(pixel_to_pixel(grid.wcs_at_time(), wcs, p[1], p[0]))
            for grid, wcs, p in zip(grids, reference_wcs, points, strict=True)
        ]
    source = base if times[0] is None else frame_at_time(base, Time(times).reshape(-1, 1))
    lon, lat = _lon_lat(grid_wcs, points[:, 1], points[:, 0])
    moved = SkyCoord(lon * u.deg, lat * u.deg, frame=source).transform_to(destination)
    lon = moved.spherical.lon.to_value(u.deg)
    lat = moved.spherical.lat.to_value(u.deg)
    return [_pixel(wcs, lon[k], lat[k]) for k, wcs in enumerate(reference_wcs)]


def _lon_lat(wcs, x, y):
    """Longitude and latitude (degrees) of pixels ``(x, y)`` of a 2-D celestial WCS (no frame change)."""
    world = wcs.pixel_to_world_values(x, y)
    units = wcs.world_axis_units
    return tuple(u.Quantity(world[i], units[i]).to_value(u.deg) for i in (wcs.wcs.lng, wcs.wcs.lat))


def _pixel(wcs, lon, lat) -> np.ndarray:
    """Pixels ``(x, y)`` of a 2-D celestial WCS at longitude and latitude in degrees (same frame)."""
    world = [None, None]
    units = wcs.world_axis_units
    world[wcs.wcs.lng] = u.Quantity(lon, u.deg).to_value(units[wcs.wcs.lng])
    world[wcs.wcs.lat] = u.Quantity(lat, u.deg).to_value(units[wcs.wcs.lat])
    return np.asarray(wcs.world_to_pixel_values(*world))


def stacked_frame(frames):
    """One coordinate frame standing for several, with each differing attribute an ``(n, 1)`` array.

    Coordinates of shape ``(n, m)`` in the stacked frame then hold ``m`` points in each of the ``n``
    frames, so one transform serves them all. Returns the first frame when all are equivalent, and None
    when the frames cannot be stacked (different classes, or attributes that are neither times,
    quantities nor coordinate frames).
    """
    first = frames[0]
    if all(_equal(f, first) for f in frames[1:]):
        return first
    if any(type(f) is not type(first) for f in frames):
        return None
    attributes = {}
    for name in first.frame_attributes:
        value = _stacked_attribute([getattr(f, name) for f in frames])
        if value is _UNSTACKABLE:
            return None
        attributes[name] = value
    if not first.has_data:
        return type(first)(**attributes)
    spherical = [f.represent_as(SphericalRepresentation) for f in frames]
    data = SphericalRepresentation(
        *(u.Quantity([getattr(s, c) for s in spherical])[:, None] for c in ("lon", "lat", "distance"))
    )
    return type(first)(data, **attributes)


_UNSTACKABLE = object()


def _stacked_attribute(values):
    if all(_equal(v, values[0]) for v in values[1:]):
        return values[0]
    if all(isinstance(v, Time) for v in values):
        return Time(values).reshape(-1, 1)
    if all(isinstance(v, u.Quantity) for v in values):
        return u.Quantity(values)[:, None]
    if all(isinstance(v, BaseCoordinateFrame) for v in values):
        stacked = stacked_frame(values)
        return _UNSTACKABLE if stacked is None else stacked
    return _UNSTACKABLE


def _equal(a, b) -> bool:
    if isinstance(a, BaseCoordinateFrame) or isinstance(b, BaseCoordinateFrame):
        if not (isinstance(a, BaseCoordinateFrame) and isinstance(b, BaseCoordinateFrame)):
            return False
        if not a.is_equivalent_frame(b) or a.has_data != b.has_data:
            return False
        return not a.has_data or bool(np.all(a == b))
    try:
        return bool(np.all(a == b))
    except (TypeError, ValueError):
        return False


def _exact_mapping(grid, reference_wcs, columns, rows):
    """Input pixels ``(x, y)`` of every pixel of the band ``rows x columns``, transformed exactly."""
    y, x = np.mgrid[rows[0] : rows[1], columns[0] : columns[1]].astype(float)
    x_in, y_in = pixel_to_pixel(grid, reference_wcs, x, y)
    return np.asarray(x_in), np.asarray(y_in)


def _sample_bilinear(reference, x, y) -> np.ndarray:
    """Bilinear samples of ``reference`` at input pixels ``(x, y)``, as `reproject.reproject_interp` takes
    them: NaN beyond half a pixel outside the image, edge pixels held over their outer half; only the
    rows and columns the samples touch are read and converted to float."""
    ny, nx = reference.shape
    inside = (x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)
    out = np.full(x.shape, np.nan)
    if not inside.any():
        return out
    xs, ys = np.clip(x[inside], 0, nx - 1), np.clip(y[inside], 0, ny - 1)
    x0, y0 = int(np.floor(xs.min())), int(np.floor(ys.min()))
    x1, y1 = min(nx, int(np.floor(xs.max())) + 2), min(ny, int(np.floor(ys.max())) + 2)
    cutout = np.asarray(reference[y0:y1, x0:x1], dtype=float)
    out[inside] = ndimage.map_coordinates(cutout, [ys - y0, xs - x0], order=1, mode="constant", cval=np.nan)
    return out
