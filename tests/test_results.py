"""Tests for daydream_luigi.results (pure pandas result tables)."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from daydream_luigi import results as R
from daydream_luigi.results import (
    PARSED_SCORES_COLUMNS,
    agreement_alpha,
    aggregate_cross_experiment,
    judge_agreement,
    judge_template_means,
    krippendorff_alpha_interval,
    pivot_scores,
    select_top,
    summary_statistics,
    top_score_paths,
    variance_components,
    write_tables,
)

NaN = math.nan
JA, JB = "judge-a", "judge-b"
CRE, RIG = "creativity", "rigor"

ESSAYS = {
    # essay: (combo, draft_template, generation_template, generation_model)
    "E1": ("c1", "d1", "g1", "m1"),
    "E2": ("c1", "d1", "g2", "m1"),
    "E3": ("c2", "d1", "g1", "m2"),
}

# gen_id, essay, template, judge, replicate, score
EVALS = [
    ("ev01", "E1", CRE, JA, 1, 8.0),
    ("ev02", "E1", CRE, JA, 2, 10.0),
    ("ev03", "E1", CRE, JB, 1, 7.0),
    ("ev04", "E1", RIG, JA, 1, 6.0),
    ("ev05", "E1", RIG, JB, 1, 9.0),
    ("ev06", "E2", CRE, JA, 1, 5.0),
    ("ev07", "E2", CRE, JB, 1, 4.0),
    ("ev08", "E2", RIG, JA, 1, 2.0),
    ("ev09", "E2", RIG, JB, 1, 5.5),
    ("ev10", "E3", CRE, JA, 1, 9.0),
    ("ev11", "E3", CRE, JB, 1, 9.0),
    ("ev12", "E3", RIG, JA, 1, 1.0),
    ("ev13", "E3", RIG, JB, 1, NaN),  # the error row
]


def make_scores(evals=EVALS, cohort="coh-1", score_max=10.0) -> pd.DataFrame:
    rows = []
    for gen_id, essay, template, judge, rep, score in evals:
        combo, draft_t, gen_t, gen_m = ESSAYS[essay]
        rows.append(
            {
                "cohort_id": cohort,
                "gen_id": gen_id,
                "parent_gen_id": essay,
                "evaluation_template": template,
                "evaluation_model": judge,
                "evaluation_replicate": rep,
                "score": score,
                "score_max": score_max,
                "error": "" if not math.isnan(score) else "no score found",
                "combo_id": combo,
                "draft_gen_id": f"D-{essay}",
                "draft_template": draft_t,
                "generation_template": gen_t,
                "generation_model": gen_m,
                "evaluation_path": f"data/gens/evaluation/{gen_id}/parsed.txt",
                "essay_path": f"data/gens/essay/{essay}/parsed.txt",
                "draft_path": f"data/gens/draft/D-{essay}/parsed.txt",
            }
        )
    df = pd.DataFrame(rows, columns=PARSED_SCORES_COLUMNS)
    # Reverse the rows so that nothing can rely on the input order.
    return df.iloc[::-1].reset_index(drop=True)


@pytest.fixture()
def scores() -> pd.DataFrame:
    return make_scores()


def empty_scores() -> pd.DataFrame:
    return pd.DataFrame(columns=PARSED_SCORES_COLUMNS)


def all_nan_scores() -> pd.DataFrame:
    return make_scores([e[:5] + (NaN,) for e in EVALS])


def cell(df: pd.DataFrame, key: dict, column: str):
    mask = np.ones(len(df), dtype=bool)
    for k, v in key.items():
        mask &= (df[k] == v).to_numpy()
    assert mask.sum() == 1, (key, mask.sum())
    return df.loc[mask, column].iloc[0]


# ---------------------------------------------------------------- columns


def test_parsed_scores_columns_exact():
    assert PARSED_SCORES_COLUMNS == [
        "cohort_id", "gen_id", "parent_gen_id", "evaluation_template",
        "evaluation_model", "evaluation_replicate", "score", "score_max", "error",
        "combo_id", "draft_gen_id", "draft_template", "generation_template",
        "generation_model", "evaluation_path", "essay_path", "draft_path",
    ]


def test_missing_column_is_reported(scores):
    with pytest.raises(ValueError, match="missing columns: score_max"):
        pivot_scores(scores.drop(columns=["score_max"]))


# ---------------------------------------------------------------- pivot


def test_pivot_scores(scores):
    p = pivot_scores(scores)
    assert list(p.columns) == [
        "parent_gen_id", "combo_id", "draft_template", "generation_template",
        "generation_model",
        "creativity_judge-a", "creativity_judge-b", "rigor_judge-a", "rigor_judge-b",
        "sum",
    ]
    assert list(p["parent_gen_id"]) == ["E1", "E2", "E3"]
    assert list(p["combo_id"]) == ["c1", "c1", "c2"]
    assert list(p["generation_template"]) == ["g1", "g2", "g1"]
    assert list(p["generation_model"]) == ["m1", "m1", "m2"]
    # replicate pair 8 and 10 -> 9
    assert list(p["creativity_judge-a"]) == [9.0, 5.0, 9.0]
    assert list(p["creativity_judge-b"]) == [7.0, 4.0, 9.0]
    assert list(p["rigor_judge-a"]) == [6.0, 2.0, 1.0]
    rb = list(p["rigor_judge-b"])
    assert rb[:2] == [9.0, 5.5] and math.isnan(rb[2])  # error row -> NaN
    assert list(p["sum"]) == [31.0, 16.5, 19.0]


def test_pivot_drops_essays_without_any_score(scores):
    extra = make_scores([("ev99", "E3", CRE, JA, 1, NaN)])
    extra["parent_gen_id"] = "E4"
    p = pivot_scores(pd.concat([scores, extra], ignore_index=True))
    assert list(p["parent_gen_id"]) == ["E1", "E2", "E3"]


# ---------------------------------------------------------------- judge x template


def test_judge_template_means(scores):
    m = judge_template_means(scores)
    assert list(m.columns) == ["evaluation_model", CRE, RIG]
    assert list(m["evaluation_model"]) == [JA, JB]
    assert list(m[CRE]) == [8.0, 20.0 / 3.0]  # (8+10+5+9)/4, (7+4+9)/3
    assert list(m[RIG]) == [3.0, 7.25]  # (6+2+1)/3, (9+5.5)/2 (error skipped)


# ---------------------------------------------------------------- summary


def test_summary_statistics_layout(scores):
    s = summary_statistics(scores)
    assert list(s.columns) == [
        "grouping", "group", "count", "mean", "sd", "min", "max",
        "top_share", "high_share", "low_count",
    ]
    assert list(zip(s["grouping"], s["group"])) == [
        ("generation_template", "g1"),
        ("generation_template", "g2"),
        ("generation_model", "m1"),
        ("generation_model", "m2"),
        ("evaluation_model", JA),
        ("evaluation_model", JB),
        ("combo_id", "c1"),
        ("combo_id", "c2"),
        ("draft_template", "d1"),
        ("generation_template x generation_model", "g1 x m1"),
        ("generation_template x generation_model", "g1 x m2"),
        ("generation_template x generation_model", "g2 x m1"),
        ("generation_model x evaluation_model", f"m1 x {JA}"),
        ("generation_model x evaluation_model", f"m1 x {JB}"),
        ("generation_model x evaluation_model", f"m2 x {JA}"),
        ("generation_model x evaluation_model", f"m2 x {JB}"),
        ("overall", "all"),
    ]
    assert s["count"].dtype == np.int64 and s["low_count"].dtype == np.int64


def test_summary_statistics_values(scores):
    s = summary_statistics(scores)
    key = lambda grouping, group: {"grouping": grouping, "group": group}  # noqa: E731

    g1 = [8.0, 10.0, 7.0, 6.0, 9.0, 9.0, 9.0, 1.0]  # E1 + E3, error skipped
    k = key("generation_template", "g1")
    assert cell(s, k, "count") == 8
    assert cell(s, k, "mean") == 7.375
    assert cell(s, k, "sd") == pytest.approx(statistics.stdev(g1), rel=1e-12)
    assert cell(s, k, "min") == 1.0 and cell(s, k, "max") == 10.0
    assert cell(s, k, "top_share") == 0.5  # 10, 9, 9, 9 (9 == 0.9*10 counts)
    assert cell(s, k, "high_share") == 0.75  # 8, 10, 7, 9, 9, 9 (7 counts)
    assert cell(s, k, "low_count") == 1  # 1

    k = key("generation_template", "g2")  # 5, 4, 2, 5.5
    assert cell(s, k, "count") == 4
    assert cell(s, k, "mean") == 4.125
    assert cell(s, k, "top_share") == 0.0 and cell(s, k, "high_share") == 0.0
    assert cell(s, k, "low_count") == 1  # 2

    # single value -> sd NaN
    k = key("generation_model x evaluation_model", f"m2 x {JB}")
    assert cell(s, k, "count") == 1 and cell(s, k, "mean") == 9.0
    assert math.isnan(cell(s, k, "sd"))

    k = key("evaluation_model", JB)  # 7, 9, 4, 5.5, 9
    assert cell(s, k, "count") == 5
    assert cell(s, k, "mean") == 6.9
    assert cell(s, k, "top_share") == 0.4
    assert cell(s, k, "high_share") == 0.6  # 7, 9, 9
    assert cell(s, k, "low_count") == 0

    allv = g1 + [5.0, 4.0, 2.0, 5.5]
    k = key("overall", "all")
    assert cell(s, k, "count") == 12
    assert cell(s, k, "mean") == pytest.approx(75.5 / 12, rel=1e-12)
    assert cell(s, k, "sd") == pytest.approx(statistics.stdev(allv), rel=1e-12)
    assert cell(s, k, "top_share") == 4 / 12
    assert cell(s, k, "high_share") == 6 / 12
    assert cell(s, k, "low_count") == 2


def test_summary_thresholds_are_relative_to_score_max():
    # On a 1..5 scale: top >= 4.5, high >= 3.5, low <= 1.5
    ev = [
        ("x1", "E1", CRE, JA, 1, 4.5),
        ("x2", "E1", CRE, JB, 1, 4.4),
        ("x3", "E2", CRE, JA, 1, 3.5),
        ("x4", "E2", CRE, JB, 1, 1.5),
        ("x5", "E3", CRE, JA, 1, 1.6),
    ]
    s = summary_statistics(make_scores(ev, score_max=5.0))
    k = {"grouping": "overall", "group": "all"}
    assert cell(s, k, "top_share") == 0.2
    assert cell(s, k, "high_share") == 0.6
    assert cell(s, k, "low_count") == 1


def test_summary_boundary_three_of_ten_is_low():
    s = summary_statistics(make_scores([("x1", "E1", CRE, JA, 1, 3.0)]))
    assert cell(s, {"grouping": "overall"}, "low_count") == 1


# ---------------------------------------------------------------- top paths


def test_top_score_paths(scores):
    t = top_score_paths(scores, n=2)
    assert list(t.columns) == [
        "evaluation_template", "parent_gen_id", "mean_score", "essay_path",
        "draft_path", "evaluation_paths",
    ]
    assert list(zip(t["evaluation_template"], t["parent_gen_id"])) == [
        (CRE, "E3"), (CRE, "E1"), (RIG, "E1"), (RIG, "E2"),
    ]
    assert list(t["mean_score"]) == [9.0, 25.0 / 3.0, 7.5, 3.75]
    row = t.iloc[1]
    assert row["essay_path"] == "data/gens/essay/E1/parsed.txt"
    assert row["draft_path"] == "data/gens/draft/D-E1/parsed.txt"
    assert row["evaluation_paths"] == ";".join(
        f"data/gens/evaluation/{g}/parsed.txt" for g in ("ev01", "ev02", "ev03")
    )


def test_top_score_paths_default_n_and_ties(scores):
    t = top_score_paths(scores)
    assert len(t) == 6  # 3 essays x 2 templates, n=10
    tie = make_scores(
        [("a", "E3", CRE, JA, 1, 7.0), ("b", "E2", CRE, JA, 1, 7.0), ("c", "E1", CRE, JA, 1, 7.0)]
    )
    assert list(top_score_paths(tie, n=2)["parent_gen_id"]) == ["E1", "E2"]
    # the error row's path is not listed
    rig = t[(t["evaluation_template"] == RIG) & (t["parent_gen_id"] == "E3")].iloc[0]
    assert rig["evaluation_paths"] == "data/gens/evaluation/ev12/parsed.txt"


# ---------------------------------------------------------------- judge agreement


def test_judge_agreement(scores):
    a = judge_agreement(scores)
    assert list(a.columns) == [
        "parent_gen_id", "evaluation_template", "judge_count", "mean", "sd",
        "range", "cv", "agreement",
    ]
    assert list(zip(a["parent_gen_id"], a["evaluation_template"])) == [
        ("E1", CRE), ("E1", RIG), ("E2", CRE), ("E2", RIG), ("E3", CRE), ("E3", RIG),
    ]
    assert list(a["judge_count"]) == [2, 2, 2, 2, 2, 1]
    # E1/creativity: judge-a mean of replicates 9 vs judge-b 7 -> range 2
    assert list(a["range"]) == [2.0, 3.0, 1.0, 3.5, 0.0, 0.0]
    assert list(a["agreement"]) == ["moderate", "low", "high", "poor", "high", "single"]
    assert list(a["mean"]) == [8.0, 7.5, 4.5, 3.75, 9.0, 1.0]
    sd = list(a["sd"])
    assert sd[0] == pytest.approx(math.sqrt(2), rel=1e-12)
    assert sd[1] == pytest.approx(math.sqrt(4.5), rel=1e-12)
    assert sd[4] == 0.0 and math.isnan(sd[5])
    cv = list(a["cv"])
    assert cv[0] == pytest.approx(math.sqrt(2) / 8, rel=1e-12)
    assert cv[4] == 0.0 and math.isnan(cv[5])


def test_agreement_class_boundaries():
    c = R.agreement_class
    assert [c(r, 2) for r in (0, 1, 1.0000001, 2, 2.5, 3, 3.0001, 10)] == [
        "high", "high", "moderate", "moderate", "low", "low", "poor", "poor",
    ]
    assert c(0.0, 1) == "single" and c(5.0, 0) == "single"


def test_judge_agreement_cv_nan_when_mean_zero():
    z = make_scores([("a", "E1", CRE, JA, 1, 0.0), ("b", "E1", CRE, JB, 1, 0.0)])
    a = judge_agreement(z)
    assert a["sd"].iloc[0] == 0.0 and math.isnan(a["cv"].iloc[0])
    assert a["agreement"].iloc[0] == "high"


# ---------------------------------------------------------------- variance


def test_variance_components(scores):
    v = variance_components(scores)
    assert list(v.columns) == [
        "parent_gen_id", "template_variance", "judge_variance", "n_templates", "n_judges",
    ]
    assert list(v["parent_gen_id"]) == ["E1", "E2", "E3"]
    tv, jv = list(v["template_variance"]), list(v["judge_variance"])
    # E1: templates 25/3 vs 7.5; judges (8+10+6)/3=8 vs (7+9)/2=8
    assert tv[0] == pytest.approx(25 / 72, rel=1e-12)
    assert jv[0] == 0.0
    # E2: templates 4.5 vs 3.75; judges 3.5 vs 4.75
    assert tv[1] == 0.28125 and jv[1] == 0.78125
    # E3: templates 9 vs 1; judges 5 vs 9 (error row skipped)
    assert tv[2] == 32.0 and jv[2] == 8.0
    assert list(v["n_templates"]) == [2, 2, 2] and list(v["n_judges"]) == [2, 2, 2]


def test_variance_components_single_template_is_nan():
    v = variance_components(make_scores([("a", "E1", CRE, JA, 1, 4.0), ("b", "E1", CRE, JB, 1, 6.0)]))
    assert math.isnan(v["template_variance"].iloc[0]) and v["judge_variance"].iloc[0] == 2.0
    assert (v["n_templates"].iloc[0], v["n_judges"].iloc[0]) == (1, 2)


# ---------------------------------------------------------------- alpha


def alpha_by_coincidence_matrix(units) -> Fraction | None:
    """Independent textbook computation via the coincidence matrix, exact."""
    units = [[Fraction(v) for v in u if v is not None and not math.isnan(v)] for u in units]
    units = [u for u in units if len(u) >= 2]
    o: dict[tuple[Fraction, Fraction], Fraction] = defaultdict(Fraction)
    for u in units:
        m = len(u)
        for i in range(m):
            for j in range(m):
                if i != j:
                    o[(u[i], u[j])] += Fraction(1, m - 1)
    n_c: dict[Fraction, Fraction] = defaultdict(Fraction)
    for (c, _k), w in o.items():
        n_c[c] += w
    n = sum(n_c.values())
    if n < 2:
        return None
    observed = sum(w * (c - k) ** 2 for (c, k), w in o.items())
    expected = sum(n_c[c] * n_c[k] * (c - k) ** 2 for c in n_c for k in n_c)
    if expected == 0:
        return None
    return 1 - (n - 1) * observed / expected


# Krippendorff's reliability-data example: 4 observers x 12 units, with gaps.
_ = None
KRIPP_OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]
KRIPP_UNITS = [[obs[i] for obs in KRIPP_OBSERVERS] for i in range(12)]


def test_krippendorff_textbook_example():
    alpha = krippendorff_alpha_interval(KRIPP_UNITS)
    # Computed by hand from the coincidence matrix: n = 40 pairable values
    # (unit 12 has a single value), alpha_interval = 0.8491071428571...
    exact = alpha_by_coincidence_matrix(KRIPP_UNITS)
    assert exact == Fraction(951, 1120)
    assert alpha == pytest.approx(float(exact), rel=1e-12)
    assert round(alpha, 3) == 0.849


def test_agreement_alpha_on_fixture(scores):
    units = [
        [8.0, 10.0, 7.0],  # E1 creativity: (a,1), (a,2), (b,1)
        [6.0, 9.0],
        [5.0, 4.0],
        [2.0, 5.5],
        [9.0, 9.0],
        [1.0],  # E3 rigor: single value (the other is an error) -> not pairable
    ]
    expected = alpha_by_coincidence_matrix(units)
    assert agreement_alpha(scores) == pytest.approx(float(expected), rel=1e-12)
    assert agreement_alpha(scores) == pytest.approx(krippendorff_alpha_interval(units), rel=1e-15)


def test_alpha_undefined_cases():
    assert math.isnan(krippendorff_alpha_interval([]))
    assert math.isnan(krippendorff_alpha_interval([[1.0], [2.0]]))  # nothing pairable
    assert math.isnan(krippendorff_alpha_interval([[3.0, 3.0], [3.0, 3.0]]))  # no variation
    assert krippendorff_alpha_interval([[1.0, 1.0], [5.0, 5.0]]) == 1.0


# ---------------------------------------------------------------- select_top


def test_select_top_ranking_and_ties(scores):
    assert select_top(scores, [CRE]) == ["E1", "E3", "E2"]  # max 10, 9, 5
    assert select_top(scores, [CRE], top_n=2) == ["E1", "E3"]
    assert select_top(scores, [CRE], exclude_judge=JA) == ["E3", "E1", "E2"]  # 9, 7, 4
    # both templates without judge-a: E1 max 9, E3 max 9 (tie -> id), E2 5.5
    assert select_top(scores, [CRE, RIG], exclude_judge="*-a") == ["E1", "E3", "E2"]
    assert select_top(scores, [RIG], exclude_judge="judge-?") == []
    assert select_top(scores, [RIG], exclude_judge="judge") == ["E1", "E2", "E3"]  # glob, no partial
    assert select_top(scores, [RIG], top_n=0) == []


def test_select_top_tie_order_independent_of_input():
    tie = make_scores(
        [("a", "E3", CRE, JA, 1, 7.0), ("b", "E1", CRE, JA, 1, 7.0), ("c", "E2", CRE, JB, 1, 8.0)]
    )
    assert select_top(tie, [CRE]) == ["E2", "E1", "E3"]


def test_select_top_unknown_template(scores):
    with pytest.raises(ValueError) as exc:
        select_top(scores, [CRE, "novelty"])
    assert str(exc.value) == (
        "unknown evaluation template(s): 'novelty'; templates present: creativity, rigor"
    )


def test_select_top_template_known_only_through_error_row():
    s = make_scores([("a", "E1", CRE, JA, 1, 5.0), ("b", "E1", RIG, JA, 1, NaN)])
    assert select_top(s, [RIG]) == []


# ---------------------------------------------------------------- aggregate


def test_aggregate_cross_experiment_dedupes_by_gen_id(scores):
    b = scores.copy()
    b["cohort_id"] = "b-cohort"
    a = make_scores(EVALS[:2], cohort="a-cohort")  # ev01, ev02 shared
    a_extra = make_scores([("ev50", "E2", CRE, JA, 2, 6.0)], cohort="a-cohort")
    out = aggregate_cross_experiment([b, pd.concat([a, a_extra]), pd.DataFrame(columns=PARSED_SCORES_COLUMNS)])
    assert list(out.columns) == PARSED_SCORES_COLUMNS
    assert len(out) == 14 and out["gen_id"].is_unique
    cohort_of = dict(zip(out["gen_id"], out["cohort_id"]))
    assert cohort_of["ev01"] == cohort_of["ev02"] == cohort_of["ev50"] == "a-cohort"
    assert cohort_of["ev03"] == "b-cohort"
    # sorted: cohort, essay, template, judge, replicate, gen_id
    assert list(out["gen_id"][:3]) == ["ev01", "ev02", "ev50"]
    assert list(out["gen_id"][3:8]) == ["ev03", "ev04", "ev05", "ev06", "ev07"]
    # order of frames does not matter
    again = aggregate_cross_experiment([pd.concat([a, a_extra]), b])
    pd.testing.assert_frame_equal(out, again)


def test_aggregate_cross_experiment_empty():
    out = aggregate_cross_experiment([])
    assert list(out.columns) == PARSED_SCORES_COLUMNS and len(out) == 0


# ---------------------------------------------------------------- empty / all-NaN


@pytest.mark.parametrize("make", [empty_scores, all_nan_scores], ids=["empty", "all-nan"])
def test_degenerate_inputs(make):
    df = make()
    p = pivot_scores(df)
    assert list(p.columns) == [
        "parent_gen_id", "combo_id", "draft_template", "generation_template",
        "generation_model", "sum",
    ] and len(p) == 0
    m = judge_template_means(df)
    assert list(m.columns) == ["evaluation_model"] and len(m) == 0
    s = summary_statistics(df)
    assert list(s.columns) == R.SUMMARY_COLUMNS and len(s) == 0
    t = top_score_paths(df)
    assert list(t.columns) == R.TOP_SCORE_PATHS_COLUMNS and len(t) == 0
    a = judge_agreement(df)
    assert list(a.columns) == R.JUDGE_AGREEMENT_COLUMNS and len(a) == 0
    v = variance_components(df)
    assert list(v.columns) == R.VARIANCE_COMPONENTS_COLUMNS and len(v) == 0
    assert math.isnan(agreement_alpha(df))
    agg = aggregate_cross_experiment([df, df])
    assert list(agg.columns) == PARSED_SCORES_COLUMNS and len(agg) == len(df)


def test_select_top_degenerate():
    assert select_top(empty_scores(), [CRE]) == []
    assert select_top(all_nan_scores(), [CRE, RIG]) == []
    with pytest.raises(ValueError, match=r"^unknown evaluation template\(s\): 'x'; templates present: creativity, rigor$"):
        select_top(all_nan_scores(), ["x"])


# ---------------------------------------------------------------- write_tables


def test_write_tables(scores, tmp_path):
    out_dir = tmp_path / "reports" / "coh-1"
    paths = write_tables(scores, out_dir)
    expected = {
        "parsed_scores": "parsed_scores.csv",
        "pivot": "pivot.csv",
        "judge_template_means": "judge_template_means.csv",
        "summary_statistics": "summary_statistics.csv",
        "top_score_paths": "top_score_paths.csv",
        "judge_agreement": "judge_agreement.csv",
        "variance_components": "variance_components.csv",
        "agreement": "agreement.json",
    }
    assert {k: p.name for k, p in paths.items()} == expected
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected.values())  # no temp files

    def header(name):
        return paths[name].read_text().splitlines()[0]

    assert header("parsed_scores") == ",".join(PARSED_SCORES_COLUMNS)
    assert header("pivot") == (
        "parent_gen_id,combo_id,draft_template,generation_template,generation_model,"
        "creativity_judge-a,creativity_judge-b,rigor_judge-a,rigor_judge-b,sum"
    )
    assert header("judge_template_means") == "evaluation_model,creativity,rigor"
    assert header("summary_statistics") == (
        "grouping,group,count,mean,sd,min,max,top_share,high_share,low_count"
    )
    assert header("top_score_paths") == (
        "evaluation_template,parent_gen_id,mean_score,essay_path,draft_path,evaluation_paths"
    )
    assert header("judge_agreement") == (
        "parent_gen_id,evaluation_template,judge_count,mean,sd,range,cv,agreement"
    )
    assert header("variance_components") == (
        "parent_gen_id,template_variance,judge_variance,n_templates,n_judges"
    )
    parsed = pd.read_csv(paths["parsed_scores"])
    assert list(parsed["gen_id"]) == [f"ev{i:02d}" for i in range(1, 14)]
    pivot = pd.read_csv(paths["pivot"])
    assert list(pivot["sum"]) == [31.0, 16.5, 19.0]
    agreement = json.loads(paths["agreement"].read_text())
    assert agreement["alpha"] == pytest.approx(agreement_alpha(scores), rel=1e-12)
    assert agreement["metric"] == "interval"
    assert agreement["n_evaluations"] == 13
    assert agreement["n_scored"] == 12 and agreement["n_errors"] == 1
    assert agreement["n_essays"] == 3
    assert agreement["n_units"] == 6 and agreement["n_pairable_units"] == 5
    assert agreement["n_pairable_values"] == 11

    # rewriting replaces the files in place
    write_tables(scores.iloc[:0], out_dir)
    assert paths["pivot"].read_text().strip() == (
        "parent_gen_id,combo_id,draft_template,generation_template,generation_model,sum"
    )
    assert json.loads(paths["agreement"].read_text())["alpha"] is None
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected.values())


def test_write_tables_reads_back_round_trip(scores, tmp_path):
    paths = write_tables(scores, tmp_path)
    back = pd.read_csv(paths["parsed_scores"], keep_default_na=False, na_values=[""])
    assert agreement_alpha(back) == pytest.approx(agreement_alpha(scores), rel=1e-12)
    pd.testing.assert_frame_equal(
        pivot_scores(back), pivot_scores(scores), check_dtype=False
    )
