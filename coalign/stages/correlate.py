"""NaN-safe Pearson correlation between the target and the reference under a candidate correction."""

import numpy as np

from coalign.stages.sampling import FramePlan, sample_at, sample_reference
from coalign.transform import TargetGrid, Transform

__all__ = ["correlate", "correlation_for_params", "pearson"]


def pearson(a, b, *, min_overlap_fraction=0.3, min_overlap_pixels=16) -> float:
    """Pearson correlation of two images over the pixels valid (finite) in both.

    Parameters
    ----------
    a, b : (ny, nx) array_like
        Images on the same grid; NaN marks invalid pixels. ``a`` is the target: the overlap fraction is
        counted against its valid pixels.
    min_overlap_fraction : float
        Minimum overlap, as a fraction of ``a``'s valid pixels.
    min_overlap_pixels : int
        Minimum number of overlapping pixels.

    Returns
    -------
    r : float
        Correlation in [-1, 1]; NaN when the overlap is below either minimum or an image is constant
        over it (an explicit "no score", never a penalised value).

    Examples
    --------
    >>> x = np.arange(25.0).reshape(5, 5)
    >>> round(pearson(x, 2 * x + 1), 12)
    1.0
    >>> pearson(x, np.full((5, 5), np.nan))
    nan
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    valid_a = np.isfinite(a)
    both = valid_a & np.isfinite(b)
    n = int(both.sum())
    if n < max(min_overlap_pixels, 2) or n < min_overlap_fraction * valid_a.sum():
        return float("nan")
    x = a[both] - a[both].mean()
    y = b[both] - b[both].mean()
    denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if denom == 0:
        return float("nan")
    return float(np.dot(x, y) / denom)


def correlate(
    target,
    reference,
    transform: Transform,
    grid: TargetGrid,
    *,
    plan: FramePlan | None = None,
    order: int = 1,
    min_overlap_fraction: float = 0.3,
    min_overlap_pixels: int = 16,
) -> float:
    """Correlation between the target and the reference seen through the corrected target pointing.

    Parameters
    ----------
    target : (ny, nx) array_like
        Target image (e.g. a raster integrated over wavelength); NaN marks invalid pixels.
    reference : (ny + 2 pad_y, nx + 2 pad_x) or (k, ...) array_like
        Reference frame(s) resampled onto the target grid padded by ``grid.pad``.
    transform : Transform
        Candidate correction of the target's pointing.
    grid : TargetGrid
        Target grid geometry.
    plan : FramePlan, optional
        Frames used per target column (a synthetic raster); default: the single frame.
    order : int
        Interpolation order for sampling the reference.
    min_overlap_fraction, min_overlap_pixels
        See `pearson`.

    Returns
    -------
    r : float
        Pearson correlation, NaN below the minimum overlap.
    """
    sampled = sample_reference(reference, transform, grid, plan=plan, order=order)
    return pearson(
        target, sampled, min_overlap_fraction=min_overlap_fraction, min_overlap_pixels=min_overlap_pixels
    )


def correlation_for_params(ref_img, target_img, dx, dy, sx, sy, center=None) -> float:
    """Correlation of two images on one grid after scaling and shifting the target (pixel units).

    Compatibility alias of the classic objective: the target is scaled by ``(sx, sy)`` about ``center``
    (``(y, x)``, default the array centre) and shifted by ``(dx, dy)`` pixels, then correlated with
    ``ref_img`` over the valid overlap. Unlike the classic version shifts may be fractional (bilinear
    sampling) and an insufficient overlap gives NaN instead of a penalised score.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(40, 40))
    >>> target = np.roll(ref, (2, -3), axis=(0, 1))     # target[y, x] = ref[y - 2, x + 3]
    >>> round(correlation_for_params(ref, target, dx=3, dy=-2, sx=1, sy=1), 6)
    1.0
    """
    ref_img = np.asarray(ref_img, dtype=float)
    target_img = np.asarray(target_img, dtype=float)
    ny, nx = ref_img.shape
    cy, cx = ((ny - 1) / 2.0, (nx - 1) / 2.0) if center is None else center
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    # Output pixel p of the warped target takes target pixel ((p - shift) - c) / s + c.
    src_y = (yy - dy - cy) / sy + cy
    src_x = (xx - dx - cx) / sx + cx
    warped = sample_at(target_img, np.stack([src_y.ravel(), src_x.ravel()]), order=1).reshape(ny, nx)
    return pearson(ref_img, warped, min_overlap_fraction=0.0 + 1e-12, min_overlap_pixels=2)
