"""coalign: sub-pixel coalignment of solar rasters and images by cross-correlation, with WCS correction.

The public API: records (`Transform`, `PhaseParams`, results), pure stages, phases, I/O and the
`Coaligner` facade. See the README for the correction convention.
"""

__version__ = "0.1.0"

from coalign.batch import (
    BatchConfig,
    align_file,
    as_completed_map,
    read_batch_table,
    read_target,
    run_batch,
    scheduler_map,
)
from coalign.cubes import (
    Coadd,
    CubeRegistration,
    DitherSet,
    coadd_cubes,
    correct_cube,
    correct_wcs,
    image_from_cube,
    make_dither_set,
    register_cubes,
    register_images,
    shift_image,
)
from coalign.exceptions import (
    AllNaNError,
    CoalignError,
    CoalignWarning,
    EmptySequenceError,
    NoOverlapError,
    ShapeError,
    TimeCoverageError,
    WCSError,
)
from coalign.executors import client_map, executor_map, pool_map, serial_map
from coalign.facade import Coaligner
from coalign.io.fits import write_corrected, write_map
from coalign.io.iris import iris_column_times, iris_windows, read_iris_raster, read_iris_sji
from coalign.io.maps import apply_transform, correct_header, make_corrected_wcs_map
from coalign.io.readers import (
    check_sequence_coverage,
    column_times_of,
    find_reference_files,
    read_map,
    read_raster,
    read_sequence,
    reference_times,
)
from coalign.io.spice import read_spice_raster, spice_column_times, spice_windows
from coalign.params import BINNED, ONE_MAP, SYNTHETIC_RASTER, PhaseParams, SyntheticParams
from coalign.pipelines.phases import (
    ImageWithWCS,
    binned_phase,
    one_map_phase,
    reproject_and_bin,
    run_phase,
    synthetic_raster_phase,
    three_phase_alignment,
)
from coalign.results import FLAGS, AlignmentResult, PhaseResult, SearchResult
from coalign.stages.binning import bin_image, bin_to_kernel, bin_wcs, clip_percentiles, square_bin_factor
from coalign.stages.correlate import correlate, correlation_for_params, pearson
from coalign.stages.fft_search import fft_search
from coalign.stages.refine import refine, uncertainty
from coalign.stages.reproject import reproject_frames, reproject_image
from coalign.stages.sampling import sample_reference
from coalign.stages.search import grid_search, population_search, search_step
from coalign.stages.synthetic import build_synthetic_raster, select_frames
from coalign.transform import TargetGrid, Transform, grid_from_wcs

__all__ = [
    "BINNED",
    "FLAGS",
    "ONE_MAP",
    "SYNTHETIC_RASTER",
    "AlignmentResult",
    "AllNaNError",
    "BatchConfig",
    "Coadd",
    "CoalignError",
    "CoalignWarning",
    "Coaligner",
    "CubeRegistration",
    "DitherSet",
    "EmptySequenceError",
    "ImageWithWCS",
    "NoOverlapError",
    "PhaseParams",
    "PhaseResult",
    "SearchResult",
    "ShapeError",
    "SyntheticParams",
    "TargetGrid",
    "TimeCoverageError",
    "Transform",
    "WCSError",
    "align_file",
    "apply_transform",
    "as_completed_map",
    "bin_image",
    "bin_to_kernel",
    "bin_wcs",
    "binned_phase",
    "build_synthetic_raster",
    "check_sequence_coverage",
    "client_map",
    "clip_percentiles",
    "coadd_cubes",
    "column_times_of",
    "correct_cube",
    "correct_header",
    "correct_wcs",
    "correlate",
    "correlation_for_params",
    "executor_map",
    "fft_search",
    "find_reference_files",
    "grid_from_wcs",
    "grid_search",
    "image_from_cube",
    "iris_column_times",
    "iris_windows",
    "make_corrected_wcs_map",
    "make_dither_set",
    "one_map_phase",
    "pearson",
    "pool_map",
    "population_search",
    "read_batch_table",
    "read_iris_raster",
    "read_iris_sji",
    "read_map",
    "read_raster",
    "read_sequence",
    "read_spice_raster",
    "read_target",
    "reference_times",
    "refine",
    "register_cubes",
    "register_images",
    "reproject_and_bin",
    "reproject_frames",
    "reproject_image",
    "run_batch",
    "run_phase",
    "sample_reference",
    "scheduler_map",
    "search_step",
    "select_frames",
    "serial_map",
    "shift_image",
    "spice_column_times",
    "spice_windows",
    "square_bin_factor",
    "synthetic_raster_phase",
    "three_phase_alignment",
    "uncertainty",
    "write_corrected",
    "write_map",
]
