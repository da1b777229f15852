"""Frozen result records. They hold scalars, tuples, strings and `Transform` records, so they pickle and
serialise; only `PhaseResult.corrected_map` (set by map-level pipelines) holds a sunpy Map."""

from dataclasses import dataclass, field, replace
from typing import Any

from coalign.transform import Transform

__all__ = ["FLAGS", "NO_SIGMA", "AlignmentResult", "PhaseResult", "SearchResult"]

#: Sanity flags a search can raise, and what each means.
FLAGS = {
    "edge": "the correlation peak lies on the edge of the search window; widen shift_range_arcsec",
    "weak": "the correlation peak is weak (r below 0.3); the match may be spurious",
    "ambiguous": "a second, separate peak nearly as high as the best exists; the match may be ambiguous",
    "scale_edge": "a scale factor sits at the edge of scale_range; widen the range",
    "roll_edge": "the roll sits at the edge of roll_range_deg; widen the range",
}
#: 1-sigma errors when none were estimated.
NO_SIGMA = (float("nan"),) * 5
SIGMA_KEYS = ("dx_arcsec", "dy_arcsec", "sx", "sy", "roll_deg")


def _json_floats(values) -> list:
    """Floats with NaN replaced by None, for JSON and table rows."""
    return [None if value != value else float(value) for value in values]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Outcome of one search over an objective.

    Parameters
    ----------
    transform : Transform
        Best correction found.
    score : float
        Pearson correlation at ``transform``.
    n_evaluations : int
        Number of objective evaluations.
    history : tuple of (Transform, float)
        Every accepted best ``(transform, score)``, in order (the search trajectory).
    message : str
        Why the search stopped.
    sigma : (float, float, float, float)
        1-sigma errors of ``(dx, dy, sx, sy)`` (arcsec, arcsec, factor, factor); NaN where not estimated
        or not fitted.
    flags : tuple of str
        Sanity flags (keys of `FLAGS`) raised by the search.

    ``sigma`` is left out of equality (it holds NaN, which never equals itself).
    """

    transform: Transform
    score: float
    n_evaluations: int
    history: tuple[tuple[Transform, float], ...] = ()
    message: str = ""
    sigma: tuple[float, float, float, float, float] = field(default=NO_SIGMA, compare=False)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """Outcome of one phase (binned, one_map or synthetic_raster).

    ``transform`` is the full correction of the target pointing after this phase (not an increment).
    ``shift_pixels`` is its shift part in target pixels ``(x, y)``. ``sigma`` holds the 1-sigma errors
    of ``(dx, dy, sx, sy, roll)`` and ``flags`` the sanity flags (see `FLAGS`).
    """

    name: str
    transform: Transform
    score: float
    n_evaluations: int
    elapsed_s: float
    shift_pixels: tuple[float, float] = (0.0, 0.0)
    history: tuple[tuple[Transform, float], ...] = ()
    message: str = ""
    sigma: tuple[float, float, float, float, float] = field(default=NO_SIGMA, compare=False)
    flags: tuple[str, ...] = ()
    corrected_map: Any = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        """Plain dictionary for JSON/ECSV rows (no map, no history)."""
        return {
            "phase": self.name,
            **self.transform.as_dict(),
            "dx_pix": self.shift_pixels[0],
            "dy_pix": self.shift_pixels[1],
            **{
                f"sigma_{key}": value for key, value in zip(SIGMA_KEYS, _json_floats(self.sigma), strict=True)
            },
            "score": self.score,
            "flags": ",".join(self.flags),
            "n_evaluations": self.n_evaluations,
            "elapsed_s": self.elapsed_s,
            "message": self.message,
        }

    def with_map(self, corrected_map) -> "PhaseResult":
        """Return a copy carrying the corrected map."""
        return replace(self, corrected_map=corrected_map)


@dataclass(frozen=True, slots=True)
class AlignmentResult:
    """All phases of a pipeline run; the last phase's correction is the answer."""

    phases: tuple[PhaseResult, ...]

    @property
    def transform(self) -> Transform:
        """The final correction."""
        return self.phases[-1].transform

    @property
    def score(self) -> float:
        """The final correlation."""
        return self.phases[-1].score

    def __getitem__(self, name: str) -> PhaseResult:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(f"no phase named {name!r}; available: {[p.name for p in self.phases]}")

    def as_dict(self) -> dict:
        """Plain dictionary for JSON output."""
        last = self.phases[-1]
        return {
            "transform": self.transform.as_dict(),
            "shift_pixels": list(last.shift_pixels),
            "sigma": dict(zip(SIGMA_KEYS, _json_floats(last.sigma), strict=True)),
            "score": self.score,
            "flags": list(last.flags),
            "phases": [p.as_dict() for p in self.phases],
        }
