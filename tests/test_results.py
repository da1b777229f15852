"""Tests for coalign.results: lookup by phase name, dictionaries and pickling."""

import json
import pickle

import pytest

from coalign.results import AlignmentResult, PhaseResult, SearchResult
from coalign.transform import Transform


@pytest.fixture
def result():
    binned = PhaseResult(
        name="binned",
        transform=Transform(10.0, -4.0),
        score=0.8,
        n_evaluations=120,
        elapsed_s=1.5,
        shift_pixels=(5.0, -2.0),
        message="best of 121 grid points",
    )
    one_map = PhaseResult(
        name="one_map",
        transform=Transform(11.25, -3.5),
        score=0.93,
        n_evaluations=80,
        elapsed_s=2.0,
        shift_pixels=(5.625, -1.75),
        history=((Transform(10.0, -4.0), 0.8), (Transform(11.25, -3.5), 0.93)),
        message="converged: no better neighbour at the minimum step",
    )
    synthetic = PhaseResult(
        name="synthetic_raster",
        transform=Transform(11.3, -3.45, 1.004, 0.998),
        score=0.95,
        n_evaluations=200,
        elapsed_s=4.0,
        shift_pixels=(5.65, -1.725),
    )
    return AlignmentResult((binned, one_map, synthetic))


def test_getitem_by_phase_name(result):
    assert result["one_map"] is result.phases[1]
    assert result["binned"].transform == Transform(10.0, -4.0)
    assert result["synthetic_raster"].score == 0.95


def test_getitem_unknown_name(result):
    with pytest.raises(
        KeyError, match=r"no phase named 'bined'; available: \['binned', 'one_map', 'synthetic_raster'\]"
    ):
        result["bined"]


def test_final_transform_and_score_are_last_phase(result):
    assert result.transform == Transform(11.3, -3.45, 1.004, 0.998)
    assert result.score == 0.95


def test_phase_as_dict(result):
    d = result["one_map"].as_dict()
    assert d == {
        "phase": "one_map",
        "dx_arcsec": 11.25,
        "dy_arcsec": -3.5,
        "sx": 1.0,
        "sy": 1.0,
        "roll_deg": 0.0,
        "dx_pix": 5.625,
        "dy_pix": -1.75,
        "sigma_dx_arcsec": None,
        "sigma_dy_arcsec": None,
        "sigma_sx": None,
        "sigma_sy": None,
        "sigma_roll_deg": None,
        "score": 0.93,
        "flags": "",
        "n_evaluations": 80,
        "elapsed_s": 2.0,
        "message": "converged: no better neighbour at the minimum step",
    }


def test_as_dict_json_round_trip(result):
    d = result.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["transform"] == {
        "dx_arcsec": 11.3,
        "dy_arcsec": -3.45,
        "sx": 1.004,
        "sy": 0.998,
        "roll_deg": 0.0,
    }
    assert d["score"] == 0.95
    assert [p["phase"] for p in d["phases"]] == ["binned", "one_map", "synthetic_raster"]


def test_alignment_result_pickle(result):
    clone = pickle.loads(pickle.dumps(result))
    assert clone == result
    assert clone["one_map"].history == result["one_map"].history


def test_with_map_copies_and_map_is_not_compared(result):
    phase = result["binned"]
    with_map = phase.with_map("a map")
    assert with_map.corrected_map == "a map"
    assert phase.corrected_map is None
    assert with_map == phase  # corrected_map has compare=False


def test_search_result_pickle():
    r = SearchResult(Transform(1.0, 2.0), 0.5, 10, ((Transform(), 0.1), (Transform(1.0, 2.0), 0.5)), "done")
    assert pickle.loads(pickle.dumps(r)) == r
