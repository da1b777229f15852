"""Masked normalized cross-correlation for every integer shift at once, by FFT (Padfield 2012).

The statistic is exactly the one `coalign.stages.correlate.pearson` computes for one shift: Pearson's r
over the pixels valid in both images, NaN below the minimum overlap. The synthetic-raster case, where the
reference seen by each target column comes from its own frame(s), is handled exactly too: the sums over
the overlap split into sums over column groups, each a correlation of a column-masked target with one
frame (or a product of two frames), and those are accumulated in Fourier space.
"""

import numpy as np
import scipy.fft

from coalign.exceptions import ShapeError
from coalign.stages.sampling import FramePlan

__all__ = ["ncc_surface"]


def _fft_shape(shape):
    return tuple(scipy.fft.next_fast_len(int(n), real=True) for n in shape)


class _Correlator:
    """Accumulates valid-mode correlations ``out[s] = sum_p f(p) g(p + s)`` in Fourier space."""

    def __init__(self, small_shape, big_shape, workers):
        self.small_shape, self.big_shape = small_shape, big_shape
        self.fshape = _fft_shape(big_shape)
        self.workers = workers

    def spectrum(self, image):
        return scipy.fft.rfft2(image, s=self.fshape, workers=self.workers)

    def result(self, accumulated):
        full = scipy.fft.irfft2(accumulated, s=self.fshape, workers=self.workers)
        (ny, nx), (my, mx) = self.small_shape, self.big_shape
        return full[: my - ny + 1, : mx - nx + 1]


def _group_sums(t, m_t, frame_lo, frame_hi, columns, weights, centre, workers) -> dict:
    """The six correlation sums contributed by the target columns that use frames ``(lo, hi)``.

    Only the band of columns the group can reach is transformed: target columns ``c0..c1`` and reference
    columns ``c0..c1 + (mx - nx)``.
    """
    nx, mx = t.shape[1], frame_lo.shape[1]
    c0, c1 = int(columns.min()), int(columns.max())
    band = slice(c0, c1 + 1 + mx - nx)
    t, m_t = t[:, c0 : c1 + 1], m_t[:, c0 : c1 + 1]
    frame_lo, frame_hi = frame_lo[:, band], frame_hi[:, band]
    local = columns - c0
    in_group = np.zeros(t.shape[1])
    in_group[local] = 1.0
    weight_hi = np.zeros(t.shape[1])
    weight_hi[local] = weights
    corr = _Correlator(t.shape, frame_lo.shape, workers)
    valid_r = np.isfinite(frame_lo) & np.isfinite(frame_hi)
    f_lo = np.where(valid_r, frame_lo - centre, 0.0)
    f_hi = np.where(valid_r, frame_hi - centre, 0.0)
    spec_m_r = corr.spectrum(valid_r.astype(float))
    mt_g = m_t * in_group
    conj = {
        name: np.conj(corr.spectrum(img))
        for name, img in (("m", mt_g), ("t", t * in_group), ("tt", t * t * in_group))
    }
    acc = {"n": conj["m"] * spec_m_r, "a": conj["t"] * spec_m_r, "aa": conj["tt"] * spec_m_r}
    if weight_hi.max() == 0:
        spec_f = corr.spectrum(f_lo)
        acc["b"] = conj["m"] * spec_f
        acc["ab"] = conj["t"] * spec_f
        acc["bb"] = conj["m"] * corr.spectrum(f_lo * f_lo)
        return {key: corr.result(value) for key, value in acc.items()}
    a_lo, a_hi = (1.0 - weight_hi) * in_group, weight_hi
    acc["b"] = acc["ab"] = acc["bb"] = 0.0
    for alpha, image in ((a_lo, f_lo), (a_hi, f_hi)):
        spec_f = corr.spectrum(image)
        acc["b"] = acc["b"] + np.conj(corr.spectrum(m_t * alpha)) * spec_f
        acc["ab"] = acc["ab"] + np.conj(corr.spectrum(t * alpha)) * spec_f
    for alpha, image in (
        (a_lo * a_lo, f_lo * f_lo),
        (a_hi * a_hi, f_hi * f_hi),
        (2 * a_lo * a_hi, f_lo * f_hi),
    ):
        acc["bb"] = acc["bb"] + np.conj(corr.spectrum(m_t * alpha)) * corr.spectrum(image)
    return {key: corr.result(value) for key, value in acc.items()}


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
    target = np.asarray(target, dtype=float)
    frames = np.asarray(frames, dtype=float)
    frames = frames[None] if frames.ndim == 2 else frames
    ny, nx = target.shape
    my, mx = frames.shape[1:]
    if my < ny or mx < nx:
        raise ShapeError(
            f"reference frames {frames.shape[1:]} must be at least as large as the target {target.shape}"
        )
    plan = plan if plan is not None else FramePlan(np.zeros(nx, int), np.zeros(nx, int), np.zeros(nx))
    valid_t = np.isfinite(target)
    t = np.where(valid_t, target - target[valid_t].mean(), 0.0)
    m_t = valid_t.astype(float)
    groups = {}
    for col, (lo, hi, w) in enumerate(zip(plan.lower, plan.upper, plan.weight, strict=True)):
        key = (int(lo), int(hi)) if w > 0 and lo != hi else (int(lo), int(lo))
        groups.setdefault(key, []).append((col, 0.0 if key[0] == key[1] else float(w)))
    centre = np.nanmean(frames)
    sums = {key: 0.0 for key in ("n", "a", "aa", "b", "ab", "bb")}
    for (lo, hi), members in groups.items():
        columns = np.array([c for c, _ in members])
        weights = np.array([w for _, w in members])
        group_sums = _group_sums(t, m_t, frames[lo], frames[hi], columns, weights, centre, workers)
        for key, value in group_sums.items():
            sums[key] = sums[key] + value
    n = np.rint(sums["n"])
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sums["ab"] - sums["a"] * sums["b"] / n
        var_a = sums["aa"] - sums["a"] ** 2 / n
        var_b = sums["bb"] - sums["b"] ** 2 / n
        r = cov / np.sqrt(var_a * var_b)
    scale = max(1.0, float(np.max(np.abs(sums["aa"]))) * 1e-12)
    bad = (
        (n < max(min_overlap_pixels, 2))
        | (n < min_overlap_fraction * valid_t.sum())
        | (var_a <= scale * 1e-3)
    )
    bad |= var_b <= 1e-12 * np.maximum(1.0, np.abs(sums["bb"]))
    r[bad] = np.nan
    return np.clip(r, -1.0, 1.0)
