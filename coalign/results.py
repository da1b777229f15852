"""Frozen result records. They hold scalars, tuples, strings and `Transform` records, so they pickle and
serialise; only `PhaseResult.corrected_map` (set by map-level pipelines) holds a sunpy Map."""

from dataclasses import dataclass, field, replace
from typing import Any

from coalign.transform import Transform

__all__ = ["AlignmentResult", "PhaseResult", "SearchResult"]


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
    """

    transform: Transform
    score: float
    n_evaluations: int
    history: tuple[tuple[Transform, float], ...] = ()
    message: str = ""


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """Outcome of one phase (binned, one_map or synthetic_raster).

    ``transform`` is the full correction of the target pointing after this phase (not an increment).
    ``shift_pixels`` is its shift part in target pixels ``(x, y)``.
    """

    name: str
    transform: Transform
    score: float
    n_evaluations: int
    elapsed_s: float
    shift_pixels: tuple[float, float] = (0.0, 0.0)
    history: tuple[tuple[Transform, float], ...] = ()
    message: str = ""
    corrected_map: Any = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        """Plain dictionary for JSON/ECSV rows (no map, no history)."""
        return {
            "phase": self.name,
            **self.transform.as_dict(),
            "dx_pix": self.shift_pixels[0],
            "dy_pix": self.shift_pixels[1],
            "score": self.score,
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
        return {
            "transform": self.transform.as_dict(),
            "score": self.score,
            "phases": [p.as_dict() for p in self.phases],
        }
