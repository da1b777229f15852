"""Masked normalized cross-correlation for every integer shift at once, by FFT (Padfield 2012).

The statistic is exactly the one `coalign.stages.correlate.pearson` computes for one shift: Pearson's r
over the pixels valid in both images, NaN below the minimum overlap. The synthetic-raster case, where the
reference seen by each target column comes from its own frame(s), is handled exactly too: the sums over
the overlap split into sums over column groups, each a correlation of a column-masked target with one
frame (or a product of two frames).

Each group is transformed only over the band of columns it can reach, but all bands share one FFT
shape, so their products add up in Fourier space and each of the six sums needs a single inverse FFT.
The target's spectra do not depend on the reference: `target_spectra` computes them once, and
`ncc_surface_from_spectra` scores any number of reference candidates (e.g. one per scale) against them.
Where a group's band of the reference is valid throughout (the usual case), the overlap of its columns is
the same at every offset: its sums over the mask are the target's own totals, with no transform at all
(the target's mask terms are transformed only once a band with holes needs them).
"""

from typing import NamedTuple

import numpy as np
import scipy.fft

from coalign.exceptions import ShapeError
from coalign.stages.sampling import FramePlan

__all__ = ["TargetSpectra", "ncc_surface", "ncc_surface_from_spectra", "target_spectra"]

#: Target images per column group; ``*_lo``/``*_hi`` carry the blending weights of the lower/upper frame.
TARGET_TERMS = ("m", "t", "tt", "m_lo", "t_lo", "m_lolo", "m_hi", "t_hi", "m_hihi", "m_lohi")
#: Reference images per column group: the valid mask, the centred frames and their products.
FRAME_TERMS = ("v", "lo", "lolo", "hi", "hihi", "lohi")
#: Each correlation sum as a sum of (target term, frame term) products.
SUM_TERMS = {
    "n": (("m", "v"),),
    "a": (("t", "v"),),
    "aa": (("tt", "v"),),
    "b": (("m_lo", "lo"), ("m_hi", "hi")),
    "ab": (("t_lo", "lo"), ("t_hi", "hi")),
    "bb": (("m_lolo", "lolo"), ("m_hihi", "hihi"), ("m_lohi", "lohi")),
}
#: Terms needed when no column blends two frames.
UNBLENDED = {"target": TARGET_TERMS[:6], "frame": FRAME_TERMS[:3]}
#: The target terms that pair with the reference's valid mask ``v`` (the sums n, a and aa).
MASK_TERMS = TARGET_TERMS[:3]


class TargetSpectra(NamedTuple):
    """The target's side of `ncc_surface`, reusable against any reference of the same shape and plan.

    Attributes
    ----------
    spectra : (n_groups, n_terms, fy, fx // 2 + 1) complex ndarray
        Conjugated spectra of the column-masked target images that pair with the reference's values
        (`TARGET_TERMS` after `MASK_TERMS`, or the unblended subset).
    groups : tuple of (lower frame, upper frame, first column, last column)
        Column groups and the target columns ``first..last`` each one spans.
    target_shape, frame_shape : tuple of int
        ``(ny, nx)`` and ``(my, mx)``.
    fft_shape : tuple of int
        Common FFT shape of every band.
    n_valid : int
        Number of valid target pixels.
    blended : bool
        Whether any column blends two frames.
    var_floor : float
        Below this target variance over the overlap, r is undefined.
    workers : int or None
        Threads used by `scipy.fft`.
    totals : (n_groups, 3) ndarray
        Sums of the images ``m``, ``t`` and ``tt`` (`MASK_TERMS`) of each group: its sums ``n``, ``a`` and
        ``aa`` at every offset when the reference is valid over its whole band.
    mask_images : tuple of (3, ny, width) ndarray
        Those images, per group, transformed when a reference band with holes needs them (see
        `mask_spectra`).
    mask_cache : dict
        Their conjugated spectra once computed, by group.
    """

    spectra: np.ndarray
    groups: tuple
    target_shape: tuple
    frame_shape: tuple
    fft_shape: tuple
    n_valid: int
    blended: bool
    var_floor: float
    workers: int | None
    totals: np.ndarray
    mask_images: tuple
    mask_cache: dict

    def mask_spectra(self, group: int) -> np.ndarray:
        """Conjugated spectra ``(3, fy, fx // 2 + 1)`` of one group's `MASK_TERMS`, computed on first use."""
        spectra = self.mask_cache.get(group)
        if spectra is None:
            images = self.mask_images[group].astype(self.spectra.real.dtype, copy=False)
            spectra = np.conj(scipy.fft.rfft2(images, s=self.fft_shape, workers=self.workers))
            self.mask_cache[group] = spectra
        return spectra


def _column_groups(plan: FramePlan, nx: int):
    """Columns grouped by the frame pair they use, with each column's weight on the upper frame."""
    groups = {}
    for col, (lo, hi, w) in enumerate(zip(plan.lower, plan.upper, plan.weight, strict=True)):
        key = (int(lo), int(hi)) if w > 0 and lo != hi else (int(lo), int(lo))
        groups.setdefault(key, []).append((col, 0.0 if key[0] == key[1] else float(w)))
    return groups


def _target_images(t, m_t, columns, weights, width, names, padded=None, dtype=float):
    """The target terms ``names`` of one group, on its band of ``width`` columns from its first column
    (zero-padded to the shape ``padded``, in ``dtype``, if given).

    A term ``base_suffix`` is the image ``m``, ``t`` or ``tt`` (``t * t``) times a column weight: 1 in the
    group (no suffix), the lower frame's weight ``lo``, the upper's ``hi``, or their products.
    """
    c0 = int(columns.min())
    local = columns - c0
    in_group = np.zeros(width)
    in_group[local] = 1.0
    a_hi = np.zeros(width)
    a_hi[local] = weights
    a_lo = in_group - a_hi
    t, m_t = t[:, c0 : c0 + width], m_t[:, c0 : c0 + width]
    column_weights = {
        "": in_group,
        "lo": a_lo,
        "lolo": a_lo**2,
        "hi": a_hi,
        "hihi": a_hi**2,
        "lohi": 2 * a_lo * a_hi,
    }
    bases = {"m": m_t, "t": t}
    full = np.zeros((len(names), *padded), dtype) if padded is not None else np.empty((len(names), *t.shape))
    out = full[:, : t.shape[0], : t.shape[1]]
    for image, name in zip(out, names, strict=True):
        base, _, suffix = name.partition("_")
        if base not in bases:
            bases[base] = t * t
        np.multiply(bases[base], column_weights[suffix], out=image)
    return full


def target_spectra(
    target, frame_shape, *, plan: FramePlan | None = None, workers: int | None = None, dtype=np.float64
):
    """Prepare the target's spectra for `ncc_surface_from_spectra`.

    Parameters
    ----------
    target : (ny, nx) array_like
        Target image; NaN marks invalid pixels. Not modified.
    frame_shape : tuple of int
        ``(my, mx)`` of the reference frames it will be correlated with (``my >= ny``, ``mx >= nx``).
    plan : FramePlan, optional
        Frames used by each target column (synthetic raster); default: frame 0 everywhere.
    workers : int, optional
        Threads used by `scipy.fft`.
    dtype : {numpy.float64, numpy.float32}
        Precision of the transforms (target's and references'). Single precision saves about a quarter of
        the time for surfaces good to ~1e-6 in r; variances below ~1e-4 of their sums then count as zero.

    Returns
    -------
    TargetSpectra
    """
    target = np.asarray(target, dtype=float)
    ny, nx = target.shape
    my, mx = (int(n) for n in frame_shape)
    if my < ny or mx < nx:
        raise ShapeError(
            f"reference frames {(my, mx)} must be at least as large as the target {target.shape}"
        )
    plan = plan if plan is not None else FramePlan(np.zeros(nx, int), np.zeros(nx, int), np.zeros(nx))
    valid_t = np.isfinite(target)
    t = np.where(valid_t, target - target[valid_t].mean(), 0.0) if valid_t.any() else np.zeros_like(target)
    m_t = valid_t.astype(float)
    grouped = _column_groups(plan, nx)
    blended = any(lo != hi for lo, hi in grouped)
    names = (TARGET_TERMS if blended else UNBLENDED["target"])[len(MASK_TERMS) :]
    groups, stacks, masks = [], [], []
    width = max(max(c for c, _ in members) - min(c for c, _ in members) + 1 for members in grouped.values())
    fft_shape = tuple(scipy.fft.next_fast_len(n, real=True) for n in (my, width + mx - nx))
    for (lo, hi), members in grouped.items():
        columns = np.array([c for c, _ in members])
        weights = np.array([w for _, w in members])
        band = int(columns.max() - columns.min()) + 1
        stacks.append(_target_images(t, m_t, columns, weights, band, names, fft_shape, dtype))
        masks.append(_target_images(t, m_t, columns, weights, band, MASK_TERMS))
        groups.append((lo, hi, int(columns.min()), int(columns.max())))
    complex_dtype = np.complex64 if np.dtype(dtype) == np.float32 else np.complex128
    spectra = np.empty((len(stacks), len(names), fft_shape[0], fft_shape[1] // 2 + 1), dtype=complex_dtype)
    for g, stack in enumerate(stacks):
        spectra[g] = scipy.fft.rfft2(stack, workers=workers)
    np.conjugate(spectra, out=spectra)
    var_floor = max(1.0, float(np.sum(t * t)) * 1e-12) * 1e-3
    return TargetSpectra(
        spectra,
        tuple(groups),
        (ny, nx),
        (my, mx),
        fft_shape,
        int(valid_t.sum()),
        blended,
        var_floor,
        workers,
        np.array([mask.sum(axis=(1, 2)) for mask in masks]).reshape(-1, len(MASK_TERMS)),
        tuple(masks),
        {},
    )


def _frame_images(frame_lo, frame_hi, valid, centre, blended, dtype, shape):
    """The frame terms but the valid mask ``v`` (`FRAME_TERMS`, or the unblended subset) of one group's
    band, in ``dtype``, zero-padded to ``shape``."""
    padded = np.zeros((5 if blended else 2, *shape), dtype=dtype)
    images = padded[:, : valid.shape[0], : valid.shape[1]]
    invalid = ~valid
    for i, frame in enumerate((frame_lo, frame_hi) if blended else (frame_lo,)):
        np.subtract(frame, centre, out=images[2 * i])
        images[2 * i][invalid] = 0.0
        np.multiply(images[2 * i], images[2 * i], out=images[2 * i + 1])
    if blended:
        np.multiply(images[0], images[2], out=images[4])
    return padded


def ncc_surface_from_spectra(
    prepared: TargetSpectra, frames, *, min_overlap_fraction: float = 0.3, min_overlap_pixels: int = 16
):
    """Pearson correlation at every integer offset, from the target's prepared spectra.

    Parameters
    ----------
    prepared : TargetSpectra
        From `target_spectra`.
    frames : (my, mx) or (k, my, mx) array_like
        Reference frame(s) on the padded target grid, of the shape ``prepared`` was made for.
    min_overlap_fraction, min_overlap_pixels
        As in `coalign.stages.correlate.pearson`; offsets below them get NaN.

    Returns
    -------
    r : (my - ny + 1, mx - nx + 1) ndarray
        As `ncc_surface`.
    """
    frames = np.asarray(frames, dtype=float)
    frames = frames[None] if frames.ndim == 2 else frames
    if frames.shape[1:] != prepared.frame_shape:
        raise ShapeError(
            f"reference frames {frames.shape[1:]} differ from the {prepared.frame_shape} the target spectra "
            "were prepared for; call target_spectra again with the frames' shape"
        )
    (ny, nx), (my, mx) = prepared.target_shape, prepared.frame_shape
    fft_shape = prepared.fft_shape
    target_names = (TARGET_TERMS if prepared.blended else UNBLENDED["target"])[len(MASK_TERMS) :]
    frame_names = (FRAME_TERMS if prepared.blended else UNBLENDED["frame"])[1:]
    t_index = {name: i for i, name in enumerate(target_names)}
    f_index = {name: i for i, name in enumerate(frame_names)}
    dtype = prepared.spectra.real.dtype
    bands = []
    for lo, hi, c0, c1 in prepared.groups:
        band = slice(c0, c1 + 1 + mx - nx)
        frame_lo, frame_hi = frames[lo][:, band], frames[hi][:, band]
        bands.append((frame_lo, frame_hi, np.isfinite(frame_lo) & np.isfinite(frame_hi)))
    # Any common value centres the frames (r does not depend on it); the mean keeps the sums well
    # conditioned. Only the bands are read: scaled frames are NaN elsewhere.
    count = sum(int(np.count_nonzero(valid)) for _, _, valid in bands)
    centre = sum(float(np.sum(f_lo, where=valid)) for f_lo, _, valid in bands) / count if count else 0.0
    # Without holes anywhere, n, a and aa are the constants alone: only b, ab and bb are accumulated and
    # transformed back.
    first = 0 if any(not valid.all() for _, _, valid in bands) else len(MASK_TERMS)
    spectrum_shape = (fft_shape[0], fft_shape[1] // 2 + 1)
    accumulated = np.zeros((len(SUM_TERMS) - first, *spectrum_shape), dtype=prepared.spectra.dtype)
    product = np.empty(spectrum_shape, dtype=prepared.spectra.dtype)
    constant = np.zeros(len(SUM_TERMS))  # the sums n, a, aa of the groups valid over their whole band
    for g, (frame_lo, frame_hi, valid) in enumerate(bands):
        images = _frame_images(frame_lo, frame_hi, valid, centre, prepared.blended, dtype, fft_shape)
        spectra = scipy.fft.rfft2(images, workers=prepared.workers)
        for s, products in enumerate(SUM_TERMS.values()):
            for t_name, f_name in products:
                if s >= first and t_name in t_index and f_name in f_index:
                    np.multiply(prepared.spectra[g, t_index[t_name]], spectra[f_index[f_name]], out=product)
                    accumulated[s - first] += product
        if valid.all():
            constant[: len(MASK_TERMS)] += prepared.totals[g]
        else:  # the sums over the overlap, n, a and aa: the mask terms times the band's valid mask
            mask = scipy.fft.rfft2(valid.astype(dtype), s=fft_shape, workers=prepared.workers)
            accumulated[: len(MASK_TERMS)] += prepared.mask_spectra(g) * mask
    # The inverse transform runs along y first, then along x for the rows of the offsets only.
    columns = scipy.fft.ifft(accumulated, axis=1, workers=prepared.workers)[:, : my - ny + 1]
    full = np.zeros((len(SUM_TERMS), my - ny + 1, mx - nx + 1))  # in double
    full[first:] = scipy.fft.irfft(columns, n=fft_shape[1], axis=2, workers=prepared.workers)[
        :, :, : mx - nx + 1
    ]
    full += constant[:, None, None]
    sums = dict(zip(SUM_TERMS, full, strict=True))
    n = np.rint(sums["n"])
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sums["ab"] - sums["a"] * sums["b"] / n
        var_a = sums["aa"] - sums["a"] ** 2 / n
        var_b = sums["bb"] - sums["b"] ** 2 / n
        r = cov / np.sqrt(var_a * var_b)
    # Variances within the sums' rounding are zero (r undefined); single-precision sums round far sooner.
    single = prepared.spectra.dtype == np.complex64
    rtol = 1e-4 if single else 1e-12
    floor_a = np.maximum(prepared.var_floor, rtol * np.abs(sums["aa"])) if single else prepared.var_floor
    bad = (
        (n < max(min_overlap_pixels, 2))
        | (n < min_overlap_fraction * prepared.n_valid)
        | (var_a <= floor_a)
        | (var_b <= rtol * np.maximum(1.0, np.abs(sums["bb"])))
    )
    r[bad] = np.nan
    return np.clip(r, -1.0, 1.0)


def ncc_surface(
    target,
    frames,
    *,
    plan: FramePlan | None = None,
    min_overlap_fraction: float = 0.3,
    min_overlap_pixels: int = 16,
    workers: int | None = None,
):
    """Pearson correlation of the target with the reference at every integer offset.

    Parameters
    ----------
    target : (ny, nx) array_like
        Target image; NaN marks invalid pixels. Not modified.
    frames : (my, mx) or (k, my, mx) array_like
        Reference frame(s) on the target grid padded by ``(pad_y, pad_x)``, so ``my = ny + 2 pad_y``.
    plan : FramePlan, optional
        Frames used by each target column (synthetic raster); default: frame 0 everywhere.
    min_overlap_fraction, min_overlap_pixels
        As in `coalign.stages.correlate.pearson`; offsets below them get NaN.
    workers : int, optional
        Threads used by `scipy.fft`.

    Returns
    -------
    r : (my - ny + 1, mx - nx + 1) ndarray
        ``r[oy, ox]`` is the correlation when target pixel ``(y, x)`` sees reference pixel
        ``(y + oy, x + ox)``; the unshifted position is ``(pad_y, pad_x)``.
    """
    frames = np.asarray(frames, dtype=float)
    prepared = target_spectra(target, frames.shape[-2:], plan=plan, workers=workers)
    return ncc_surface_from_spectra(
        prepared, frames, min_overlap_fraction=min_overlap_fraction, min_overlap_pixels=min_overlap_pixels
    )
