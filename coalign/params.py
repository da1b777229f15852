"""Immutable parameter records for the search phases.

Derive variants with `dataclasses.replace`; never mutate a record::

    >>> from dataclasses import replace
    >>> wide = replace(BINNED, shift_range_arcsec=(200.0, 200.0))
    >>> wide.shift_range_arcsec
    (200.0, 200.0)
"""

from dataclasses import dataclass

import astropy.units as u
import numpy as np

__all__ = ["BINNED", "ONE_MAP", "SYNTHETIC_RASTER", "PhaseParams", "SyntheticParams"]

STRATEGIES = ("fft", "grid+population", "population")
AUTO_KERNEL_MAX_ARCSEC = 20.0
AUTO_KERNEL_MIN_BINS = 24


def _pair(value, name, unit=u.arcsec):
    """A pair of finite floats; a Quantity (or a pair of them) is converted to ``unit``."""
    if isinstance(value, list | tuple) and any(isinstance(v, u.Quantity) for v in value):
        value = u.Quantity(list(value))
    if isinstance(value, u.Quantity):
        value = value.to_value(unit)
    arr = np.broadcast_to(np.asarray(value, dtype=float), (2,))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    return (float(arr[0]), float(arr[1]))


@dataclass(frozen=True, slots=True)
class PhaseParams:
    """Parameters of one search phase. Angles are arcsec (Quantities are converted on construction).

    Parameters
    ----------
    shift_range_arcsec : (float, float)
        Half-width ``(x, y)`` of the shift search window around the phase's starting correction.
    step_arcsec : (float, float)
        Initial step ``(x, y)`` of the population search.
    min_step_arcsec : (float, float)
        The search stops refining a shift axis once its step falls below this.
    bin_kernel_arcsec : float, "auto" or None
        Block-mean kernel applied to target and reference before searching (None: full resolution).
        ``"auto"`` picks the largest kernel, at most `AUTO_KERNEL_MAX_ARCSEC`, that keeps at least
        `AUTO_KERNEL_MIN_BINS` bins across the target's smaller side.
    fit_scale : bool
        Search the scale factors ``sx, sy`` too.
    scale_range : (float, float)
        Allowed range of ``sx`` and ``sy``.
    scale_step, min_scale_step : float
        Initial and final step of the scale search.
    square_bins : bool
        Search on target rows binned towards square pixels, by `~coalign.stages.binning.square_bin_factor`
        (``floor(pixel_x / pixel_y)`` when that is at least 2, e.g. 3 for a SPICE raster of 4″ × 1.1″
        pixels): the references are resampled onto the binned grid, and the whole search (any
        strategy: scale grid, shift, refinement and its errors) runs there. Rows several times finer
        than the columns (and than the reference's pixels) add samples but little information, and the
        search costs about ``1 / factor`` as much. The correction is in world units, whatever the
        binning. Off by default; on in `ONE_MAP` and `SYNTHETIC_RASTER` (for a target with square
        pixels, or rows less than twice as fine as its columns, they change nothing).
    fit_roll : bool
        Search the roll too (``strategy="fft"`` only): a grid over ``roll_range_deg`` at
        ``roll_step_deg`` after the scale grid, then a joint refinement of shift, scale and roll.
    roll_range_deg : (float, float)
        Allowed range of the roll correction, in degrees.
    roll_step_deg : float
        Step of the roll grid, in degrees.
    plateau_iters : int
        Stop after this many consecutive iterations without improvement.
    max_iter : int
        Hard cap on population-search iterations.
    max_corr : float
        Stop as soon as the correlation reaches this value.
    min_overlap_fraction : float
        Minimum fraction of the target's valid pixels that must overlap valid reference pixels;
        below it the score is NaN (not a penalised value).
    min_overlap_pixels : int
        Minimum absolute number of overlapping valid pixels.
    interpolation_order : int
        Spline order used to sample the reference at non-integer positions (1 = bilinear).
    clip_percentiles : (float, float) or None
        Clip target and reference to these percentiles of their own values before correlating, so that a
        few transient pixels (flare kernels, cosmic rays) cannot drive the correlation. None disables it.
    strategy : {"fft", "grid+population", "population"}
        ``"fft"`` scores every integer shift at once by FFT (masked NCC), fits the peak and polishes it
        on the exact metric, with a grid over scale when ``fit_scale``; ``"grid+population"`` scores every
        step on the shift grid first and then refines with the population search; ``"population"`` starts
        the population search directly.
    """

    shift_range_arcsec: tuple[float, float] = (150.0, 150.0)
    step_arcsec: tuple[float, float] = (4.0, 4.0)
    min_step_arcsec: tuple[float, float] = (0.05, 0.05)
    bin_kernel_arcsec: float | str | None = None
    fit_scale: bool = False
    scale_range: tuple[float, float] = (0.95, 1.05)
    scale_step: float = 0.01
    min_scale_step: float = 2e-4
    square_bins: bool = False
    fit_roll: bool = False
    roll_range_deg: tuple[float, float] = (-1.0, 1.0)
    roll_step_deg: float = 0.1
    plateau_iters: int = 3
    max_iter: int = 200
    max_corr: float = 0.999
    min_overlap_fraction: float = 0.3
    min_overlap_pixels: int = 16
    interpolation_order: int = 1
    clip_percentiles: tuple[float, float] | None = (5.0, 95.0)
    strategy: str = "fft"

    def __post_init__(self):
        for name in ("shift_range_arcsec", "step_arcsec", "min_step_arcsec"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        if min(self.shift_range_arcsec) < 0:
            raise ValueError(f"shift_range_arcsec must be >= 0, got {self.shift_range_arcsec}")
        if min(self.step_arcsec) <= 0 or min(self.min_step_arcsec) <= 0:
            raise ValueError(
                f"step_arcsec and min_step_arcsec must be > 0, got {self.step_arcsec} and "
                f"{self.min_step_arcsec}; use e.g. step_arcsec=(2, 2)"
            )
        if self.bin_kernel_arcsec is not None and self.bin_kernel_arcsec != "auto":
            kernel = self.bin_kernel_arcsec
            kernel = float(kernel.to_value(u.arcsec) if isinstance(kernel, u.Quantity) else kernel)
            if not np.isfinite(kernel) or kernel <= 0:
                raise ValueError(
                    f"bin_kernel_arcsec must be a positive angle, got bin_kernel_arcsec={kernel!r}; "
                    "use e.g. 20 * u.arcsec, or None for no binning"
                )
            object.__setattr__(self, "bin_kernel_arcsec", kernel)
        low, high = _pair(self.scale_range, "scale_range")
        if not 0 < low <= 1 <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= 1 <= high, got scale_range={(low, high)}")
        object.__setattr__(self, "scale_range", (low, high))
        if self.scale_step <= 0 or self.min_scale_step <= 0:
            raise ValueError(
                f"scale_step and min_scale_step must be > 0, got {self.scale_step}, {self.min_scale_step}"
            )
        if not 0 < self.min_overlap_fraction <= 1:
            raise ValueError(f"min_overlap_fraction must be in (0, 1], got {self.min_overlap_fraction!r}")
        if self.min_overlap_pixels < 2:
            raise ValueError(f"min_overlap_pixels must be >= 2, got {self.min_overlap_pixels!r}")
        if self.plateau_iters < 1 or self.max_iter < 1:
            raise ValueError(
                f"plateau_iters and max_iter must be >= 1, got {self.plateau_iters}, {self.max_iter}"
            )
        if self.interpolation_order not in (0, 1, 3):
            raise ValueError(f"interpolation_order must be 0, 1 or 3, got {self.interpolation_order!r}")
        if self.clip_percentiles is not None:
            low, high = (float(v) for v in self.clip_percentiles)
            if not 0 <= low < high <= 100:
                raise ValueError(
                    f"clip_percentiles must satisfy 0 <= low < high <= 100, got {self.clip_percentiles!r}"
                )
            object.__setattr__(self, "clip_percentiles", (low, high))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got strategy={self.strategy!r}")
        roll_low, roll_high = _pair(self.roll_range_deg, "roll_range_deg", u.deg)
        if not roll_low <= 0 <= roll_high:
            raise ValueError(
                f"roll_range_deg must satisfy low <= 0 <= high, got roll_range_deg={(roll_low, roll_high)}"
            )
        object.__setattr__(self, "roll_range_deg", (roll_low, roll_high))
        step = self.roll_step_deg
        step = float(step.to_value(u.deg) if isinstance(step, u.Quantity) else step)
        if not step > 0:
            raise ValueError(f"roll_step_deg must be > 0, got {self.roll_step_deg!r}; use e.g. 0.1")
        object.__setattr__(self, "roll_step_deg", step)
        if self.fit_roll and self.strategy != "fft":
            raise ValueError(
                f"fit_roll needs strategy='fft' (got strategy={self.strategy!r}): the population search "
                "fits shift and scale only"
            )


@dataclass(frozen=True, slots=True)
class SyntheticParams:
    """How a synthetic raster picks reference frames for the target's columns.

    Parameters
    ----------
    max_time_gap_s : float
        Largest allowed gap between a column's acquisition time and the frame used for it; a larger gap
        raises `~coalign.exceptions.TimeCoverageError`.
    interpolate : bool
        Blend the two frames that bracket each column time linearly instead of taking the nearest frame.
    differential_rotation : bool
        In the synthetic-raster phase, carry the reference frames by solar differential rotation
        (`sunpy.coordinates.propagate_with_solar_surface`) to the times of the columns they serve before
        correlating: the columns using each frame (pair) are cut into chunks spanning at most
        ``rotation_chunk_s``, and each chunk gets its own copy of its frame(s), carried to the chunk's mean
        time (`~coalign.stages.synthetic.carried_frames`); a single reference map is carried to the
        target's DATE-OBS. Off the solar disc the carried frames are NaN. Off by default: features move
        ~9 arcsec/hour near disc centre, a fraction of a pixel for frames minutes from their columns. It
        pays off with sparse sequences (frames an hour or more apart) and with columns before the first
        or after the last frame. Each copy is one more reprojection.
    rotation_chunk_s : float
        Longest time span of the columns sharing one carried copy of a frame.
    """

    max_time_gap_s: float = 1800.0
    interpolate: bool = True
    differential_rotation: bool = False
    rotation_chunk_s: float = 600.0

    def __post_init__(self):
        gap = self.max_time_gap_s
        gap = float(gap.to_value(u.s) if isinstance(gap, u.Quantity) else gap)
        if not gap > 0:
            raise ValueError(f"max_time_gap_s must be > 0, got {gap!r}; use e.g. 30 * u.min")
        object.__setattr__(self, "max_time_gap_s", gap)
        chunk = self.rotation_chunk_s
        chunk = float(chunk.to_value(u.s) if isinstance(chunk, u.Quantity) else chunk)
        if not chunk > 0:
            raise ValueError(f"rotation_chunk_s must be > 0, got {chunk!r}; use e.g. 10 * u.min")
        object.__setattr__(self, "rotation_chunk_s", chunk)


#: Phase 1: coarse and wide, on binned maps. Raster pointing errors reach tens of arcsec.
BINNED = PhaseParams(
    shift_range_arcsec=(150.0, 150.0),
    step_arcsec=(20.0, 20.0),
    min_step_arcsec=(2.0, 2.0),
    bin_kernel_arcsec="auto",
    min_overlap_fraction=0.5,
)
#: Phase 2: unbinned (rows much finer than the columns binned towards square pixels), narrower window
#: around the binned result.
ONE_MAP = PhaseParams(
    shift_range_arcsec=(30.0, 30.0),
    step_arcsec=(2.0, 2.0),
    min_step_arcsec=(0.05, 0.05),
    min_overlap_fraction=0.5,
    square_bins=True,
)
#: Phase 3: shift and scale against the synthetic raster.
SYNTHETIC_RASTER = PhaseParams(
    shift_range_arcsec=(15.0, 15.0),
    step_arcsec=(1.0, 1.0),
    min_step_arcsec=(0.05, 0.05),
    fit_scale=True,
    scale_range=(0.95, 1.05),
    scale_step=0.02,
    min_scale_step=1e-4,
    min_overlap_fraction=0.5,
    plateau_iters=4,
    square_bins=True,
)
