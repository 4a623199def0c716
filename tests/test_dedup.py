"""Dedup of essays by embedding similarity: planted near-duplicates, representatives, nearest similarities."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from daydream_luigi.analysis.dedup import DEDUP_COLUMNS, dedup_clusters
from daydream_luigi.core.errors import InputError


def _unit(*components: float) -> np.ndarray:
    v = np.array(components, dtype=float)
    return v / np.linalg.norm(v)


def _at(angle_from: np.ndarray, towards: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector at exactly `cosine` to the unit vector `angle_from`, in the plane towards `towards`."""
    orthogonal = towards - (towards @ angle_from) * angle_from
    orthogonal /= np.linalg.norm(orthogonal)
    return cosine * angle_from + math.sqrt(1 - cosine**2) * orthogonal


E = np.eye(5)
VECTORS = {
    "tide-a": E[0],
    "tide-b": _at(E[0], E[1], 0.95),  # planted near-duplicate of tide-a
    "tide-c": _at(E[0], E[2], 0.90),  # and another, at 0.95 * 0.90 to tide-b
    "ants-a": E[3],
    "ants-b": _at(E[3], E[4], 0.85),
    "bread": _unit(0, 0, 0, 0.5, -1.0),  # related to the ants by 0.447, to ants-b by below 0: alone
}
SCORES = {"tide-a": 6.0, "tide-b": 7.5, "tide-c": 7.5, "ants-a": 4.0, "bread": 9.0}  # ants-b has no score


def test_planted_near_duplicates_form_exact_clusters_with_the_best_scoring_representative():
    table = dedup_clusters(list(VECTORS), np.array(list(VECTORS.values())), SCORES)
    assert list(table.columns) == DEDUP_COLUMNS
    cos_bc = float(VECTORS["tide-b"] @ VECTORS["tide-c"])
    cos_bread_ants = float(VECTORS["bread"] @ VECTORS["ants-a"])
    expected = pd.DataFrame(
        [
            ["bread", 1, "bread", cos_bread_ants, "ants-a", 9.0],
            ["tide-b", 2, "tide-b", 0.95, "tide-a", 7.5],  # tied with tide-c at 7.5: gen_id decides
            ["tide-c", 2, "tide-b", 0.90, "tide-a", 7.5],
            ["tide-a", 2, "tide-b", 0.95, "tide-b", 6.0],
            ["ants-a", 3, "ants-a", 0.85, "ants-b", 4.0],
            ["ants-b", 3, "ants-a", 0.85, "ants-a", math.nan],
        ],
        columns=DEDUP_COLUMNS,
    )
    pd.testing.assert_frame_equal(table, expected, atol=1e-12)
    assert cos_bc == pytest.approx(0.855, abs=1e-3) and cos_bread_ants < 0.8


def test_clusters_do_not_chain_through_a_middle_essay():
    # left ~ middle ~ right at 0.9, but left and right only at 0.62: the best-scoring middle keeps both; if the
    # left essay scores best it keeps only the middle one, and right (not a near-duplicate of left) stays.
    middle = E[0]
    left, right = _at(middle, E[1], 0.9), _at(middle, -E[1], 0.9)
    ids, vectors = ["left", "middle", "right"], np.array([left, middle, right])
    assert dedup_clusters(ids, vectors, {"middle": 9})["representative"].tolist() == ["middle"] * 3
    by_left = dedup_clusters(ids, vectors, {"left": 9, "middle": 5, "right": 1})
    assert by_left[["gen_id", "cluster", "representative"]].values.tolist() == [
        ["left", 1, "left"],
        ["middle", 1, "left"],
        ["right", 2, "right"],
    ]


def test_the_threshold_is_inclusive_and_configurable():
    ids, vectors = ["x", "y"], np.array([[1.0, 0.0], [0.6, 0.8]])  # cosine exactly 0.6 in binary floats
    assert dedup_clusters(ids, vectors, {})["cluster"].tolist() == [1, 2]
    assert dedup_clusters(ids, vectors, {}, threshold=0.6)["cluster"].tolist() == [1, 1]


def test_vectors_need_not_be_normalised_and_unscored_essays_rank_by_gen_id():
    table = dedup_clusters(["b", "a"], np.array([[3.0, 0.0], [0.0, 0.5]]), {"a": float("nan")})
    assert table[["gen_id", "cluster", "representative", "nearest_similarity"]].values.tolist() == [
        ["a", 1, "a", 0.0],
        ["b", 2, "b", 0.0],
    ]


def test_one_essay_has_no_nearest_and_no_essay_gives_an_empty_table():
    single = dedup_clusters(["only"], np.array([[1.0, 2.0]]), {"only": 3})
    assert single.iloc[0][["gen_id", "cluster", "representative", "nearest"]].tolist() == ["only", 1, "only", ""]
    assert math.isnan(single.iloc[0]["nearest_similarity"])
    empty = dedup_clusters([], np.zeros((0, 4)), {})
    assert list(empty.columns) == DEDUP_COLUMNS and empty.empty


@pytest.mark.parametrize(
    "ids, vectors, threshold, message",
    [
        (["a", "b"], [[1.0, 0.0]], 0.8, "dedup: got 1 embedding vectors for 2 essays; embed every essay once"),
        (
            ["a", "b"],
            [[1.0, 0.0], [0.0, 0.0]],
            0.8,
            "dedup: the embedding of essay 'b' is zero or not finite; delete its embedding-*.json file and embed it again",
        ),
        (
            ["a", "b"],
            [[1.0, 0.0], [float("nan"), 1.0]],
            0.8,
            "dedup: the embedding of essay 'b' is zero or not finite; delete its embedding-*.json file and embed it again",
        ),
        (["a", "a"], [[1.0, 0.0], [0.0, 1.0]], 0.8, "dedup: essay 'a' is listed twice; list each essay once"),
        (["a"], [[1.0, 0.0]], 0.0, "dedup: --threshold must be above 0 and at most 1, got 0.0"),
        (["a"], [[1.0, 0.0]], 1.5, "dedup: --threshold must be above 0 and at most 1, got 1.5"),
    ],
)
def test_bad_inputs_are_input_errors_naming_the_essay(ids, vectors, threshold, message):
    with pytest.raises(InputError) as info:
        dedup_clusters(ids, np.array(vectors), {}, threshold=threshold)
    assert str(info.value) == message
