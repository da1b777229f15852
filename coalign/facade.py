"""`Coaligner`: the familiar stateful facade over the functional core.

>>> from coalign import Coaligner                                              # doctest: +SKIP
>>> aligner = Coaligner(raster_map, fsi_map, fsi_sequence, column_times=times)  # doctest: +SKIP
>>> aligner.xcorr_binned_kwargs["shift_range"] = (100, 100)                     # doctest: +SKIP
>>> aligner.run_all()                                                          # doctest: +SKIP
>>> aligner.best_params, aligner.results["synthetic_raster"]["corrected_target_map"]  # doctest: +SKIP
"""

import logging
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, fields, replace

import astropy.units as u
from astropy.time import Time

from coalign.exceptions import TimeCoverageError
from coalign.executors import executor_map
from coalign.io.maps import apply_transform
from coalign.io.readers import check_sequence_coverage, find_reference_files, read_sequence, reference_times
from coalign.params import BINNED, ONE_MAP, SYNTHETIC_RASTER, PhaseParams, SyntheticParams
from coalign.pipelines.phases import binned_phase, one_map_phase, synthetic_raster_phase
from coalign.results import PhaseResult
from coalign.transform import Transform

__all__ = ["Coaligner"]

log = logging.getLogger("coalign")

#: Names used by the classic keyword dictionaries, mapped to `PhaseParams` fields.
ALIASES = {
    "shift_range": "shift_range_arcsec",
    "step": "step_arcsec",
    "min_step": "min_step_arcsec",
    "scale_step_x": "scale_step",
    "scale_step_y": "scale_step",
    "n_neighbors": None,
    "n_neighbours": None,
}


def _params_from_kwargs(base: PhaseParams, kwargs: dict, name: str) -> PhaseParams:
    fields = set(asdict(base))
    updates = {}
    for key, value in kwargs.items():
        field = ALIASES.get(key, key)
        if field is None:
            continue  # accepted for compatibility: the neighbourhood is fixed by the search
        if field not in fields:
            raise KeyError(f"{name} has no setting {key!r}; valid keys: {sorted(fields | set(ALIASES))}")
        updates[field] = value
    return replace(base, **updates)


class Coaligner:
    """Three-phase coalignment of a raster (or image) against a reference imager, seed-style.

    Parameters
    ----------
    map_to_coalign : `~sunpy.map.GenericMap`
        The target (e.g. a raster integrated over wavelength). Never modified.
    reference_map : `~sunpy.map.GenericMap`
        The reference for phases 1 and 2 (e.g. the frame nearest the raster's mid-time).
    list_of_reference_maps : list of `~sunpy.map.GenericMap`, optional
        Time sequence for the synthetic raster (default: ``[reference_map]``, which solves shift and
        scale against that single map).
    verbose : int
        0: quiet; 1: log each phase at INFO level to stderr.
    n_jobs : int
        Worker processes used to score candidates (1 = serial). The pool lives for one ``run_*`` call.
    column_times : `~astropy.time.Time`, optional
        One acquisition time per target column. Required with several reference maps.

    Attributes
    ----------
    xcorr_binned_kwargs, xcorr_one_map_kwargs, synthetic_kwargs : dict
        Editable settings of the three phases (`~coalign.params.PhaseParams` field names, or the classic
        names ``shift_range``, ``scale_step_x``...). ``synthetic_kwargs`` also takes the
        `~coalign.params.SyntheticParams` fields ``max_time_gap_s``, ``interpolate`` and
        ``differential_rotation``.
    bin_kernel_arcsec : Quantity or "auto"
        Block size of the binned phase.
    results : dict
        Per phase name: ``{"result": PhaseResult, "best_params": Transform, "corrected_target_map": Map}``.
    """

    def __init__(
        self,
        map_to_coalign,
        reference_map,
        list_of_reference_maps=None,
        verbose=0,
        n_jobs=1,
        column_times=None,
    ):
        self.map_to_coalign = map_to_coalign
        self.reference_map = reference_map
        self.list_of_reference_maps = (
            list(list_of_reference_maps) if list_of_reference_maps else [reference_map]
        )
        self.column_times = Time(column_times) if column_times is not None else None
        self.verbose = verbose
        self.n_jobs = int(n_jobs)
        if self.n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1, got n_jobs={n_jobs!r}")
        self.xcorr_binned_kwargs = {}
        self.xcorr_one_map_kwargs = {}
        self.synthetic_kwargs = {}
        self.bin_kernel_arcsec = BINNED.bin_kernel_arcsec
        self.results = {}
        self.reference_files = []
        if verbose and not log.handlers:
            log.addHandler(logging.StreamHandler())
        if verbose:
            log.setLevel(logging.INFO)

    @classmethod
    def from_folder(
        cls,
        map_to_coalign,
        folder,
        *,
        column_times=None,
        time_margin=30 * u.min,
        channel=None,
        exclude=(),
        **kwargs,
    ) -> "Coaligner":
        """Build a Coaligner whose references are discovered in a local folder.

        Files whose DATE-OBS lies within the target's time span (``column_times``, or the map's date)
        widened by ``time_margin`` are kept, filtered by ``channel`` and ``exclude`` tokens; the frame
        nearest the target's mid-time becomes ``reference_map``. Files that do not cover the target's
        column times (within the default ``max_time_gap_s``) raise `~coalign.exceptions.TimeCoverageError`
        naming them, before any map is read.
        """
        times = Time(column_times) if column_times is not None else Time([map_to_coalign.date])
        window = (times.min() - time_margin, times.max() + time_margin)
        files = find_reference_files(
            folder, start=window[0], end=window[1], channel=channel, exclude=tuple(exclude)
        )
        if column_times is not None and len(files) > 1:  # before any map is read
            check_sequence_coverage(
                times,
                reference_times(files),
                target=str(getattr(map_to_coalign, "name", "")).strip() or "the target",
                window=window,
            )
        sequence = read_sequence(files)
        middle = times.min() + (times.max() - times.min()) / 2
        reference = min(sequence, key=lambda m: abs((m.date - middle).to_value(u.s)))
        aligner = cls(map_to_coalign, reference, sequence, column_times=column_times, **kwargs)
        aligner.reference_files = files
        return aligner

    @contextmanager
    def _map_fn(self):
        if self.n_jobs == 1:
            yield map
            return
        with ProcessPoolExecutor(self.n_jobs) as executor:
            yield executor_map(executor, self.n_jobs)

    @property
    def best_params(self) -> Transform:
        """The correction found by the latest phase run (identity before any run)."""
        for name in ("synthetic_raster", "one_map", "binned"):
            if name in self.results:
                return self.results[name]["best_params"]
        return Transform()

    def _store(self, result: PhaseResult) -> PhaseResult:
        corrected = apply_transform(self.map_to_coalign, result.transform)
        result = result.with_map(corrected)
        self.results[result.name] = {
            "result": result,
            "best_params": result.transform,
            "corrected_target_map": corrected,
            "score": result.score,
        }
        return result

    def run_binned_xcorr(self) -> PhaseResult:
        """Phase 1: coarse search on binned maps, from no correction."""
        params = _params_from_kwargs(
            replace(BINNED, bin_kernel_arcsec=self.bin_kernel_arcsec),
            self.xcorr_binned_kwargs,
            "xcorr_binned_kwargs",
        )
        with self._map_fn() as map_fn:
            return self._store(binned_phase(self.map_to_coalign, self.reference_map, params, map_fn=map_fn))

    def run_one_map_xcorr(self, seed_shift=None) -> PhaseResult:
        """Phase 2: unbinned refinement against the reference map, from ``seed_shift`` or the binned result.

        ``seed_shift`` is a `Transform`, or ``(dx, dy)`` in arcsec (numbers or Quantities).
        """
        if seed_shift is None:
            start = self.results["binned"]["best_params"] if "binned" in self.results else Transform()
        elif isinstance(seed_shift, Transform):
            start = seed_shift
        else:
            start = Transform(*seed_shift)
        params = _params_from_kwargs(ONE_MAP, self.xcorr_one_map_kwargs, "xcorr_one_map_kwargs")
        with self._map_fn() as map_fn:
            return self._store(
                one_map_phase(self.map_to_coalign, self.reference_map, params, start=start, map_fn=map_fn)
            )

    def run_synthetic_raster_xcorr(self) -> PhaseResult:
        """Phase 3: shift and scale against the synthetic raster, from the best correction so far."""
        kwargs = dict(self.synthetic_kwargs)
        synthetic = SyntheticParams(
            **{f.name: kwargs.pop(f.name) for f in fields(SyntheticParams) if f.name in kwargs}
        )
        params = _params_from_kwargs(SYNTHETIC_RASTER, kwargs, "synthetic_kwargs")
        column_times = self.column_times
        if len(self.list_of_reference_maps) > 1 and column_times is None:
            raise TimeCoverageError(
                "several reference maps need the target's per-column times: pass column_times= "
                "to Coaligner (coalign.io.readers.read_raster returns them for raster files)"
            )
        with self._map_fn() as map_fn:
            return self._store(
                synthetic_raster_phase(
                    self.map_to_coalign,
                    self.list_of_reference_maps,
                    params,
                    column_times=column_times,
                    start=self.best_params,
                    synthetic=synthetic,
                    map_fn=map_fn,
                )
            )

    def run_all(self) -> PhaseResult:
        """Run the three phases in order and return the last result."""
        self.run_binned_xcorr()
        self.run_one_map_xcorr()
        return self.run_synthetic_raster_xcorr()
