"""Tests for the result tables of daydream_luigi.analysis (pure pandas) and report.tables.write_tables."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from daydream_luigi.analysis.aggregate import CROSS_EXPERIMENT_COLUMNS, aggregate_cross_experiment
from daydream_luigi.analysis.agreement import (
    JUDGE_AGREEMENT_COLUMNS,
    VARIANCE_COMPONENTS_COLUMNS,
    agreement_alpha,
    agreement_class,
    agreement_summary,
    judge_agreement,
    krippendorff_alpha_interval,
    variance_components,
)
from daydream_luigi.analysis.effects import CONCEPT_EFFECT_COLUMNS, concept_effects, concept_pair_effects
from daydream_luigi.analysis.intervals import t_interval, welch_interval
from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS, ConceptMap
from daydream_luigi.analysis.selection import SELECT_TOP_COLUMNS, select_top
from daydream_luigi.analysis.tables import (
    SUMMARY_COLUMNS,
    TOP_SCORE_PATHS_COLUMNS,
    judge_template_means,
    pivot_scores,
    summary_statistics,
    top_score_paths,
)
from daydream_luigi.report.tables import write_tables

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
        "cohort_id",
        "gen_id",
        "parent_gen_id",
        "evaluation_template",
        "evaluation_model",
        "evaluation_replicate",
        "score",
        "score_max",
        "error",
        "combo_id",
        "draft_gen_id",
        "draft_template",
        "generation_template",
        "generation_model",
        "evaluation_path",
        "essay_path",
        "draft_path",
    ]


def test_missing_column_is_reported(scores):
    with pytest.raises(ValueError, match="missing columns: score_max"):
        pivot_scores(scores.drop(columns=["score_max"]))


# ---------------------------------------------------------------- pivot


def test_pivot_scores(scores):
    concepts = ConceptMap({"c1": ["tides", "ants"], "c2": ["ants"]}, {"tides": "Tidal power", "ants": "Ant trails"})
    p = pivot_scores(scores, concepts)
    assert list(p.columns) == [
        "parent_gen_id",
        "combo_id",
        "concepts",
        "draft_template",
        "generation_template",
        "generation_model",
        "creativity_judge-a",
        "creativity_judge-b",
        "rigor_judge-a",
        "rigor_judge-b",
        "creativity:n",
        "creativity:mean",
        "creativity:ci_low",
        "creativity:ci_high",
        "rigor:n",
        "rigor:mean",
        "rigor:ci_low",
        "rigor:ci_high",
    ]
    assert list(p["parent_gen_id"]) == ["E1", "E2", "E3"]
    assert list(p["combo_id"]) == ["c1", "c1", "c2"]
    assert list(p["concepts"]) == ["Ant trails + Tidal power", "Ant trails + Tidal power", "Ant trails"]
    assert list(p["generation_template"]) == ["g1", "g2", "g1"]
    assert list(p["generation_model"]) == ["m1", "m1", "m2"]
    # replicate pair 8 and 10 -> 9
    assert list(p["creativity_judge-a"]) == [9.0, 5.0, 9.0]
    assert list(p["creativity_judge-b"]) == [7.0, 4.0, 9.0]
    assert list(p["rigor_judge-a"]) == [6.0, 2.0, 1.0]
    rb = list(p["rigor_judge-b"])
    assert rb[:2] == [9.0, 5.5] and math.isnan(rb[2])  # error row -> NaN
    # the aggregate counts every judge x replicate once: E1 creativity is 8, 10, 7 (not the judges' 9 and 7)
    assert list(p["creativity:n"]) == [3, 2, 2] and list(p["rigor:n"]) == [2, 2, 1]
    assert list(p["creativity:mean"]) == [25 / 3, 4.5, 9.0]
    assert list(p["rigor:mean"]) == [7.5, 3.75, 1.0]
    # E1 creativity: sd of 8, 10, 7 is sqrt(7/3); t(0.975, 2) = 4.302653 -> 25/3 -+ 4.302653 * sqrt(7/9)
    half = 4.302652729749464 * math.sqrt(7 / 9)
    assert p["creativity:ci_low"][0] == pytest.approx(25 / 3 - half, rel=1e-12)
    assert p["creativity:ci_high"][0] == pytest.approx(25 / 3 + half, rel=1e-12)
    assert (p["creativity:ci_low"][2], p["creativity:ci_high"][2]) == (9.0, 9.0)  # 9 and 9: no spread
    assert math.isnan(p["rigor:ci_low"][2]) and math.isnan(p["rigor:ci_high"][2])  # one evaluation


def test_pivot_without_concept_map_leaves_names_empty(scores):
    assert list(pivot_scores(scores)["concepts"]) == ["", "", ""]


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


GROUP_ROWS = [
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


def test_summary_statistics_layout(scores):
    s = summary_statistics(scores)
    assert list(s.columns) == [
        "evaluation_template",
        "grouping",
        "group",
        "n",
        "n_evaluations",
        "mean",
        "sd",
        "ci_low",
        "ci_high",
        "min",
        "max",
        "top_share",
        "high_share",
        "low_count",
    ]
    # one block per evaluation template: two templates' scores are never pooled
    rigor_rows = [row for row in GROUP_ROWS if row[1] != f"m2 x {JB}"]  # judge-b's only m2 rigor row is the error
    assert list(zip(s["evaluation_template"], s["grouping"], s["group"])) == (
        [(CRE, *row) for row in GROUP_ROWS] + [(RIG, *row) for row in rigor_rows]
    )
    for column in ("n", "n_evaluations", "low_count"):
        assert s[column].dtype == np.int64


def test_summary_statistics_values(scores):
    s = summary_statistics(scores)
    key = lambda template, grouping, group: {  # noqa: E731
        "evaluation_template": template,
        "grouping": grouping,
        "group": group,
    }

    # creativity, essays E1 (8, 10, 7 -> 25/3), E2 (5, 4 -> 4.5), E3 (9, 9 -> 9)
    k = key(CRE, "overall", "all")
    essays = [25 / 3, 4.5, 9.0]
    assert cell(s, k, "n") == 3 and cell(s, k, "n_evaluations") == 7
    assert cell(s, k, "mean") == pytest.approx(statistics.mean(essays), rel=1e-12)
    assert cell(s, k, "sd") == pytest.approx(statistics.stdev(essays), rel=1e-12)
    half = 4.302652729749464 * statistics.stdev(essays) / math.sqrt(3)  # t(0.975, 2)
    assert cell(s, k, "ci_low") == pytest.approx(statistics.mean(essays) - half, rel=1e-12)
    assert cell(s, k, "ci_high") == pytest.approx(statistics.mean(essays) + half, rel=1e-12)
    assert cell(s, k, "min") == 4.5 and cell(s, k, "max") == 9.0
    assert cell(s, k, "top_share") == pytest.approx(1 / 3)  # 9 (== 0.9 * 10 counts)
    assert cell(s, k, "high_share") == pytest.approx(2 / 3)  # 25/3 and 9
    assert cell(s, k, "low_count") == 0

    # a judge grouping: each essay's score is that judge's mean over replicates (E1: 8 and 10 -> 9)
    k = key(CRE, "evaluation_model", JA)
    assert cell(s, k, "n") == 3 and cell(s, k, "n_evaluations") == 4
    assert cell(s, k, "mean") == pytest.approx((9 + 5 + 9) / 3, rel=1e-12)

    # rigor, essays E1 (6, 9 -> 7.5), E2 (2, 5.5 -> 3.75), E3 (1; its error row skipped)
    k = key(RIG, "generation_template", "g1")  # E1 and E3
    assert cell(s, k, "n") == 2 and cell(s, k, "n_evaluations") == 3
    assert cell(s, k, "mean") == 4.25
    assert cell(s, k, "low_count") == 1  # E3's 1
    assert cell(s, k, "high_share") == 0.5  # E1's 7.5

    # a single essay: no spread, no interval
    k = key(RIG, "generation_template", "g2")
    assert cell(s, k, "n") == 1 and cell(s, k, "mean") == 3.75
    assert all(math.isnan(cell(s, k, c)) for c in ("sd", "ci_low", "ci_high"))


def test_summary_thresholds_are_relative_to_score_max():
    # On a 1..5 scale: top >= 4.5, high >= 3.5, low <= 1.5 (one evaluation per essay: essay score = the score)
    ev = [
        ("x1", "E1", CRE, JA, 1, 4.5),
        ("x2", "E2", CRE, JA, 1, 4.4),
        ("x3", "E3", CRE, JA, 1, 1.5),
    ]
    s = summary_statistics(make_scores(ev, score_max=5.0))
    k = {"evaluation_template": CRE, "grouping": "overall", "group": "all"}
    assert cell(s, k, "top_share") == pytest.approx(1 / 3)
    assert cell(s, k, "high_share") == pytest.approx(2 / 3)
    assert cell(s, k, "low_count") == 1


def test_summary_boundary_three_of_ten_is_low():
    s = summary_statistics(make_scores([("x1", "E1", CRE, JA, 1, 3.0)]))
    assert cell(s, {"grouping": "overall"}, "low_count") == 1


# ---------------------------------------------------------------- intervals


def test_t_interval_against_a_hand_computed_case():
    # Scores 4, 6, 8: mean 6, sd = sqrt(((-2)^2 + 0 + 2^2) / 2) = 2, se = 2 / sqrt(3).
    # With 2 degrees of freedom the t CDF has a closed form, F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so the 0.975
    # quantile is t = u sqrt(2 / (1 - u^2)) with u = 2 * 0.975 - 1 = 0.95: 0.95 * sqrt(2 / 0.0975) = 4.302653.
    # Half width 4.302653 * 2 / sqrt(3) = 4.968275 -> [1.031725, 10.968275].
    t2 = 0.95 * math.sqrt(2 / 0.0975)
    low, high = t_interval([3], [6.0], [2.0])
    assert low[0] == pytest.approx(6 - t2 * 2 / math.sqrt(3), rel=1e-12)
    assert high[0] == pytest.approx(6 + t2 * 2 / math.sqrt(3), rel=1e-12)
    assert (round(low[0], 6), round(high[0], 6)) == (1.031725, 10.968275)
    low, high = t_interval([1, 2], [5.0, 5.0], [NaN, 0.0])
    assert math.isnan(low[0]) and math.isnan(high[0])  # one value: no interval
    assert (low[1], high[1]) == (5.0, 5.0)  # no spread


def test_welch_interval_against_a_hand_computed_case():
    # Groups 7, 9 (mean 8, sd sqrt 2) and 3, 5 (mean 4, sd sqrt 2): difference 4, se = sqrt(2/2 + 2/2) = sqrt 2,
    # Welch df = (1 + 1)^2 / (1^2 / 1 + 1^2 / 1) = 2, so t = 4.302653 as above:
    # 4 -+ 4.302653 * 1.414214 = 4 -+ 6.084870 -> [-2.084870, 10.084870].
    t2 = 0.95 * math.sqrt(2 / 0.0975)
    low, high = welch_interval([2], [8.0], [math.sqrt(2)], [2], [4.0], [math.sqrt(2)])
    assert low[0] == pytest.approx(4 - t2 * math.sqrt(2), rel=1e-12)
    assert high[0] == pytest.approx(4 + t2 * math.sqrt(2), rel=1e-12)
    assert (round(low[0], 6), round(high[0], 6)) == (-2.08487, 10.08487)
    # one side with a single essay: undefined; no spread on either side: the point difference
    low, high = welch_interval([1, 3], [8.0, 6.0], [NaN, 0.0], [3, 2], [4.0, 5.0], [1.0, 0.0])
    assert math.isnan(low[0]) and math.isnan(high[0])
    assert (low[1], high[1]) == (1.0, 1.0)


# ---------------------------------------------------------------- top paths


def test_top_score_paths(scores):
    t = top_score_paths(scores, n=2)
    assert list(t.columns) == [
        "evaluation_template",
        "parent_gen_id",
        "mean_score",
        "essay_path",
        "draft_path",
        "evaluation_paths",
    ]
    assert list(zip(t["evaluation_template"], t["parent_gen_id"])) == [
        (CRE, "E3"),
        (CRE, "E1"),
        (RIG, "E1"),
        (RIG, "E2"),
    ]
    assert list(t["mean_score"]) == [9.0, 25.0 / 3.0, 7.5, 3.75]
    row = t.iloc[1]
    assert row["essay_path"] == "data/gens/essay/E1/parsed.txt"
    assert row["draft_path"] == "data/gens/draft/D-E1/parsed.txt"
    assert row["evaluation_paths"] == ";".join(f"data/gens/evaluation/{g}/parsed.txt" for g in ("ev01", "ev02", "ev03"))


def test_top_score_paths_default_n_and_ties(scores):
    t = top_score_paths(scores)
    assert len(t) == 6  # 3 essays x 2 templates, n=10
    tie = make_scores([("a", "E3", CRE, JA, 1, 7.0), ("b", "E2", CRE, JA, 1, 7.0), ("c", "E1", CRE, JA, 1, 7.0)])
    assert list(top_score_paths(tie, n=2)["parent_gen_id"]) == ["E1", "E2"]
    # the error row's path is not listed
    rig = t[(t["evaluation_template"] == RIG) & (t["parent_gen_id"] == "E3")].iloc[0]
    assert rig["evaluation_paths"] == "data/gens/evaluation/ev12/parsed.txt"


# ---------------------------------------------------------------- judge agreement


def test_judge_agreement(scores):
    a = judge_agreement(scores)
    assert list(a.columns) == [
        "parent_gen_id",
        "evaluation_template",
        "judge_count",
        "mean",
        "sd",
        "range",
        "cv",
        "agreement",
    ]
    assert list(zip(a["parent_gen_id"], a["evaluation_template"])) == [
        ("E1", CRE),
        ("E1", RIG),
        ("E2", CRE),
        ("E2", RIG),
        ("E3", CRE),
        ("E3", RIG),
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
    c = agreement_class
    assert [c(r, 2) for r in (0, 1, 1.0000001, 2, 2.5, 3, 3.0001, 10)] == [
        "high",
        "high",
        "moderate",
        "moderate",
        "low",
        "low",
        "poor",
        "poor",
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
        "parent_gen_id",
        "template_variance",
        "judge_variance",
        "n_templates",
        "n_judges",
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
        [9.0, 7.0],  # E1 creativity: judge-a's replicates 8 and 10 averaged, judge-b 7
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


def test_one_judge_has_no_agreement_even_with_replicates():
    # Two replicates that agree perfectly used to count as two raters and give alpha = 1 ("good reliability").
    one_judge = make_scores(
        [
            ("a", "E1", CRE, JA, 1, 8.0),
            ("b", "E1", CRE, JA, 2, 8.0),
            ("c", "E2", CRE, JA, 1, 3.0),
            ("d", "E2", CRE, JA, 2, 3.0),
        ]
    )
    summary = agreement_summary(one_judge)
    assert summary["alpha"] is None and summary["n_judges"] == 1
    assert summary["undefined_reason"] == (
        "one judge scored these essays; agreement between judges needs two judges or more"
    )
    assert summary["n_pairable_units"] == 0


def test_agreement_reasons_when_two_judges_never_meet_or_never_vary():
    apart = make_scores([("a", "E1", CRE, JA, 1, 8.0), ("b", "E2", CRE, JB, 1, 3.0)])
    assert agreement_summary(apart)["undefined_reason"] == (
        "no essay was scored by two judges with the same evaluation template"
    )
    flat = make_scores([("a", "E1", CRE, JA, 1, 5.0), ("b", "E1", CRE, JB, 1, 5.0)])
    assert agreement_summary(flat)["undefined_reason"] == (
        "the judges' scores do not vary at all, so agreement beyond chance cannot be measured"
    )
    assert agreement_summary(make_scores())["undefined_reason"] is None


# ---------------------------------------------------------------- select_top


def ranked(table: pd.DataFrame) -> list[str]:
    return list(table["gen_id"])


def test_select_top_ranks_by_the_mean_not_the_luckiest_draw(scores):
    # creativity means: E1 (8, 10, 7) 25/3, E2 (5, 4) 4.5, E3 (9, 9) 9; the maximum would put E1 (10) first
    top = select_top(scores, [CRE])
    assert list(top.columns) == ["gen_id", "mean", "ci_low", "ci_high", "n_judges", "n", "judge_range"]
    assert ranked(top) == ["E3", "E1", "E2"]
    assert list(top["mean"]) == [9.0, 25 / 3, 4.5]
    assert list(top["n"]) == [2, 3, 2] and list(top["n_judges"]) == [2, 2, 2]
    assert list(top["judge_range"]) == [0.0, 2.0, 1.0]  # E1: judge-a (8+10)/2 = 9 vs judge-b 7
    assert list(top["ci_low"][:1]) == [9.0] and top["ci_low"][1] == pytest.approx(
        25 / 3 - 4.302652729749464 * math.sqrt(7 / 9), rel=1e-12
    )
    assert ranked(select_top(scores, [CRE], top_n=2)) == ["E3", "E1"]
    assert ranked(select_top(scores, [CRE], exclude_judge=JA)) == ["E3", "E1", "E2"]  # 9, 7, 4
    # both templates without judge-a: E1 (7, 9) 8, E3 (9) 9, E2 (4, 5.5) 4.75
    assert ranked(select_top(scores, [CRE, RIG], exclude_judge="*-a")) == ["E3", "E1", "E2"]
    assert ranked(select_top(scores, [RIG], exclude_judge="judge-?")) == []
    assert ranked(select_top(scores, [RIG], exclude_judge="judge")) == ["E1", "E2", "E3"]  # glob, no partial
    assert ranked(select_top(scores, [RIG], top_n=0)) == []


def test_select_top_by_lower_bound_prefers_the_consistent_essay():
    steady = [
        ("s1", "E1", CRE, JA, 1, 7.0),
        ("s2", "E1", CRE, JA, 2, 7.5),
        ("s3", "E1", CRE, JB, 1, 7.0),
        ("s4", "E1", CRE, JB, 2, 7.5),
    ]  # mean 7.25, sd sqrt(1/12), se sqrt(1/48): interval [6.79, 7.71]
    erratic = [
        ("e1", "E2", CRE, JA, 1, 10.0),
        ("e2", "E2", CRE, JA, 2, 4.0),
        ("e3", "E2", CRE, JB, 1, 10.0),
        ("e4", "E2", CRE, JB, 2, 6.0),
    ]  # mean 7.5, sd 3, se 1.5: interval [2.73, 12.27]
    single = [("o1", "E3", CRE, JA, 1, 9.0)]  # one evaluation: no interval
    table = make_scores(steady + erratic + single)
    assert ranked(select_top(table, [CRE])) == ["E3", "E2", "E1"]
    by_bound = select_top(table, [CRE], by="lower-bound")
    assert ranked(by_bound) == ["E1", "E2", "E3"]  # no interval ranks last
    assert by_bound["ci_low"][0] == pytest.approx(7.25 - 3.182446305284263 * math.sqrt(1 / 48), rel=1e-12)
    assert by_bound["ci_low"][1] == pytest.approx(7.5 - 3.182446305284263 * 1.5, rel=1e-12)  # t(0.975, 3)


def test_select_top_min_judges_and_agreement_filter():
    table = make_scores(
        [
            ("a", "E1", CRE, JA, 1, 9.0),
            ("b", "E1", CRE, JB, 1, 3.0),  # range 6
            ("c", "E2", CRE, JA, 1, 6.0),
            ("d", "E2", CRE, JB, 1, 7.0),  # range 1
            ("e", "E3", CRE, JA, 1, 8.0),
        ]
    )  # one judge
    assert ranked(select_top(table, [CRE])) == ["E3", "E2", "E1"]
    assert ranked(select_top(table, [CRE], min_judges=2)) == ["E2", "E1"]
    assert ranked(select_top(table, [CRE], max_judge_range=1)) == ["E3", "E2"]
    assert ranked(select_top(table, [CRE], min_judges=2, max_judge_range=0.5)) == []
    with pytest.raises(ValueError, match=r"^by must be one of mean, lower-bound, got 'max'$"):
        select_top(table, [CRE], by="max")
    with pytest.raises(ValueError, match=r"^min_judges must be >= 1, got 0$"):
        select_top(table, [CRE], min_judges=0)


def test_select_top_counts_an_evaluation_shared_by_cohorts_once():
    a = make_scores([("a", "E1", CRE, JA, 1, 9.0), ("b", "E1", CRE, JA, 2, 1.0)], cohort="a")
    b = make_scores([("a", "E1", CRE, JA, 1, 9.0)], cohort="b")
    top = select_top(aggregate_cross_experiment([a, b]), [CRE])
    assert list(top["n"]) == [2] and list(top["mean"]) == [5.0]


def test_select_top_tie_order_independent_of_input():
    tie = make_scores([("a", "E3", CRE, JA, 1, 7.0), ("b", "E1", CRE, JA, 1, 7.0), ("c", "E2", CRE, JB, 1, 8.0)])
    assert ranked(select_top(tie, [CRE])) == ["E2", "E1", "E3"]
    assert ranked(select_top(tie, [CRE], by="lower-bound")) == ["E2", "E1", "E3"]


def test_select_top_unknown_template(scores):
    with pytest.raises(ValueError) as exc:
        select_top(scores, [CRE, "novelty"])
    assert str(exc.value) == ("unknown evaluation template(s): 'novelty'; templates present: creativity, rigor")


def test_select_top_template_known_only_through_error_row():
    s = make_scores([("a", "E1", CRE, JA, 1, 5.0), ("b", "E1", RIG, JA, 1, NaN)])
    assert ranked(select_top(s, [RIG])) == []


# ---------------------------------------------------------------- aggregate


def test_aggregate_cross_experiment_lists_a_shared_evaluation_under_every_cohort(scores):
    b = scores.copy()
    b["cohort_id"] = "b-cohort"
    a = make_scores(EVALS[:2], cohort="a-cohort")  # ev01, ev02 shared
    a_extra = make_scores([("ev50", "E2", CRE, JA, 2, 6.0)], cohort="a-cohort")
    out = aggregate_cross_experiment([b, pd.concat([a, a_extra, a]), pd.DataFrame(columns=PARSED_SCORES_COLUMNS)])
    assert list(out.columns) == CROSS_EXPERIMENT_COLUMNS == [*PARSED_SCORES_COLUMNS, "cohorts"]
    assert len(out) == 13 + 3  # every b row, and a's three (its repeated copy of ev01 and ev02 once)
    assert sorted(out.loc[out["gen_id"] == "ev01", "cohort_id"]) == ["a-cohort", "b-cohort"]
    assert (out.groupby("cohort_id").size().to_dict()) == {"a-cohort": 3, "b-cohort": 13}
    cohorts = out.drop_duplicates("gen_id").set_index("gen_id")["cohorts"]
    assert cohorts["ev01"] == cohorts["ev02"] == "a-cohort;b-cohort"
    assert cohorts["ev50"] == "a-cohort" and cohorts["ev03"] == "b-cohort"
    # sorted: cohort, essay, template, judge, replicate, gen_id
    assert list(out["gen_id"][:3]) == ["ev01", "ev02", "ev50"]
    assert list(out["gen_id"][3:8]) == ["ev01", "ev02", "ev03", "ev04", "ev05"]
    # order of frames does not matter
    again = aggregate_cross_experiment([pd.concat([a, a_extra]), b])
    pd.testing.assert_frame_equal(out, again)


def test_aggregate_cross_experiment_empty():
    out = aggregate_cross_experiment([])
    assert list(out.columns) == CROSS_EXPERIMENT_COLUMNS and len(out) == 0


# ---------------------------------------------------------------- empty / all-NaN


@pytest.mark.parametrize("make", [empty_scores, all_nan_scores], ids=["empty", "all-nan"])
def test_degenerate_inputs(make):
    df = make()
    p = pivot_scores(df)
    assert (
        list(p.columns)
        == [
            "parent_gen_id",
            "combo_id",
            "concepts",
            "draft_template",
            "generation_template",
            "generation_model",
        ]
        and len(p) == 0
    )
    m = judge_template_means(df)
    assert list(m.columns) == ["evaluation_model"] and len(m) == 0
    s = summary_statistics(df)
    assert list(s.columns) == SUMMARY_COLUMNS and len(s) == 0
    t = top_score_paths(df)
    assert list(t.columns) == TOP_SCORE_PATHS_COLUMNS and len(t) == 0
    a = judge_agreement(df)
    assert list(a.columns) == JUDGE_AGREEMENT_COLUMNS and len(a) == 0
    v = variance_components(df)
    assert list(v.columns) == VARIANCE_COMPONENTS_COLUMNS and len(v) == 0
    assert math.isnan(agreement_alpha(df))
    agg = aggregate_cross_experiment([df, df])
    assert list(agg.columns) == CROSS_EXPERIMENT_COLUMNS and len(agg) == len(df)
    concepts = ConceptMap({"c1": ["x"], "c2": ["y"]}, {})
    assert list(concept_effects(df, concepts).columns) == CONCEPT_EFFECT_COLUMNS
    assert len(concept_effects(df, concepts)) == len(concept_pair_effects(df, concepts)) == 0


def test_select_top_degenerate():
    assert ranked(select_top(empty_scores(), [CRE])) == []
    assert list(select_top(empty_scores(), [CRE]).columns) == SELECT_TOP_COLUMNS
    assert ranked(select_top(all_nan_scores(), [CRE, RIG])) == []
    with pytest.raises(
        ValueError, match=r"^unknown evaluation template\(s\): 'x'; templates present: creativity, rigor$"
    ):
        select_top(all_nan_scores(), ["x"])


# ---------------------------------------------------------------- write_tables


def test_write_tables(scores, tmp_path):
    out_dir = tmp_path / "reports" / "coh-1"
    concepts = ConceptMap(
        {"c1": ["tides", "ants"], "c2": ["ants", "bread"]},
        {"tides": "Tidal power", "ants": "Ant trails", "bread": "Sourdough"},
    )
    paths = write_tables(scores, out_dir, concepts)
    expected = {
        "parsed_scores": "parsed_scores.csv",
        "pivot": "pivot.csv",
        "judge_template_means": "judge_template_means.csv",
        "summary_statistics": "summary_statistics.csv",
        "top_score_paths": "top_score_paths.csv",
        "judge_agreement": "judge_agreement.csv",
        "variance_components": "variance_components.csv",
        "concept_effects": "concept_effects.csv",
        "concept_pair_effects": "concept_pair_effects.csv",
        "agreement": "agreement.json",
    }
    assert {k: p.name for k, p in paths.items()} == expected
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected.values())  # no temp files

    def header(name):
        return paths[name].read_text().splitlines()[0]

    assert header("parsed_scores") == ",".join(PARSED_SCORES_COLUMNS)
    assert header("pivot") == (
        "parent_gen_id,combo_id,concepts,draft_template,generation_template,generation_model,"
        "creativity_judge-a,creativity_judge-b,rigor_judge-a,rigor_judge-b,"
        "creativity:n,creativity:mean,creativity:ci_low,creativity:ci_high,"
        "rigor:n,rigor:mean,rigor:ci_low,rigor:ci_high"
    )
    assert header("judge_template_means") == "evaluation_model,creativity,rigor"
    assert header("summary_statistics") == (
        "evaluation_template,grouping,group,n,n_evaluations,mean,sd,ci_low,ci_high,min,max,top_share,high_share,"
        "low_count"
    )
    assert header("top_score_paths") == (
        "evaluation_template,parent_gen_id,mean_score,essay_path,draft_path,evaluation_paths"
    )
    assert header("judge_agreement") == ("parent_gen_id,evaluation_template,judge_count,mean,sd,range,cv,agreement")
    assert header("variance_components") == ("parent_gen_id,template_variance,judge_variance,n_templates,n_judges")
    assert header("concept_effects") == (
        "evaluation_template,concept_id,concept,n_with,mean_with,n_without,mean_without,difference,ci_low,ci_high"
    )
    assert header("concept_pair_effects") == (
        "evaluation_template,concept_id_a,concept_a,concept_id_b,concept_b,n_with,mean_with,n_without,"
        "mean_without,difference,ci_low,ci_high"
    )
    parsed = pd.read_csv(paths["parsed_scores"])
    assert list(parsed["gen_id"]) == [f"ev{i:02d}" for i in range(1, 14)]
    pivot = pd.read_csv(paths["pivot"])
    assert list(pivot["concepts"]) == ["Ant trails + Tidal power", "Ant trails + Tidal power", "Ant trails + Sourdough"]
    assert list(pivot["creativity:n"]) == [3, 2, 2]
    assert paths["pivot"].read_text().splitlines()[3].endswith(",2,9.0,9.0,9.0,1,1.0,,")  # E3: rigor n=1
    effects = pd.read_csv(paths["concept_effects"])
    assert list(zip(effects["evaluation_template"], effects["concept"])) == [
        (CRE, "Ant trails"),
        (CRE, "Sourdough"),
        (CRE, "Tidal power"),
        (RIG, "Ant trails"),
        (RIG, "Sourdough"),
        (RIG, "Tidal power"),
    ]
    agreement = json.loads(paths["agreement"].read_text())
    assert agreement["alpha"] == pytest.approx(agreement_alpha(scores), rel=1e-12)
    assert agreement["metric"] == "interval" and agreement["undefined_reason"] is None
    assert agreement["n_evaluations"] == 13 and agreement["n_judges"] == 2
    assert agreement["n_scored"] == 12 and agreement["n_errors"] == 1
    assert agreement["n_essays"] == 3
    assert agreement["n_units"] == 6 and agreement["n_pairable_units"] == 5
    assert agreement["n_pairable_values"] == 10  # one value per judge and unit

    # rewriting replaces the files in place
    write_tables(scores.iloc[:0], out_dir)
    assert paths["pivot"].read_text().strip() == (
        "parent_gen_id,combo_id,concepts,draft_template,generation_template,generation_model"
    )
    assert paths["concept_effects"].read_text().strip() == header("concept_effects")
    assert json.loads(paths["agreement"].read_text())["alpha"] is None
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(expected.values())


def test_write_tables_reads_back_round_trip(scores, tmp_path):
    paths = write_tables(scores, tmp_path)
    back = pd.read_csv(paths["parsed_scores"], keep_default_na=False, na_values=[""])
    assert agreement_alpha(back) == pytest.approx(agreement_alpha(scores), rel=1e-12)
    pd.testing.assert_frame_equal(pivot_scores(back), pivot_scores(scores), check_dtype=False)


# ---------------------------------------------------------------- concept effects

PLANTED = ["anchor", "bees", "clouds", "dunes"]


def planted_cohort() -> tuple[pd.DataFrame, ConceptMap]:
    """Every non-empty subset of four concepts as a combo, two essays each, judged by two judges.

    An essay scores 4, plus 3 when its combo holds "anchor", plus 1 for its first copy and -1 for its second;
    the judges add +0.5 and -0.5 (so an essay's mean is its own score).  Each other concept occurs with and
    without "anchor" about equally often, so only "anchor" has an effect.
    """
    combos, rows = {}, []
    subsets = [s for k in range(1, 5) for s in itertools.combinations(PLANTED, k)]
    for number, subset in enumerate(subsets):
        combo = f"combo{number:02d}"
        combos[combo] = list(subset)
        for copy, noise in enumerate((1.0, -1.0)):
            essay = f"{combo}-e{copy}"
            for judge, offset in ((JA, 0.5), (JB, -0.5)):
                score = 4.0 + (3.0 if "anchor" in subset else 0.0) + noise + offset
                rows.append(
                    {
                        "cohort_id": "planted",
                        "gen_id": f"{essay}-{judge}",
                        "parent_gen_id": essay,
                        "evaluation_template": CRE,
                        "evaluation_model": judge,
                        "evaluation_replicate": 1,
                        "score": score,
                        "score_max": 10.0,
                        "error": "",
                        "combo_id": combo,
                        "draft_gen_id": f"D-{essay}",
                        "draft_template": "d1",
                        "generation_template": "g1",
                        "generation_model": "m1",
                        "evaluation_path": "",
                        "essay_path": "",
                        "draft_path": "",
                    }
                )
    return pd.DataFrame(rows, columns=PARSED_SCORES_COLUMNS), ConceptMap(combos, {c: c.title() for c in PLANTED})


def test_concept_effects_find_the_planted_concept():
    table, concepts = planted_cohort()
    effects = concept_effects(table, concepts).set_index("concept_id")
    assert list(effects.index) == PLANTED and list(effects["concept"]) == ["Anchor", "Bees", "Clouds", "Dunes"]
    # anchor: 8 of the 15 subsets hold it -> 16 essays at 7 -+ 1 against 14 at 4 -+ 1: difference exactly 3
    anchor = effects.loc["anchor"]
    assert (anchor["n_with"], anchor["n_without"]) == (16, 14)
    assert (anchor["mean_with"], anchor["mean_without"]) == (pytest.approx(7.0), pytest.approx(4.0))
    assert anchor["difference"] == pytest.approx(3.0, rel=1e-12)
    # each combination is one cluster: its two essays (noise +1 and -1) average to the combination's 7 or 4, so no
    # combination differs from another on either side and the interval is the point (the essays' noise, which the
    # Welch interval over essays read as evidence, cancels within each combination)
    assert (anchor["ci_low"], anchor["ci_high"]) == (pytest.approx(3.0, abs=1e-6), pytest.approx(3.0, abs=1e-6))
    # bees (and each other concept): with it 8 combos, half with anchor -> mean 5.5; without it 7 combos, 4 with
    # anchor -> mean (4*7 + 3*4) / 7 = 40/7; difference -3/14, and its interval includes 0
    for concept in PLANTED[1:]:
        other = effects.loc[concept]
        assert (other["n_with"], other["n_without"]) == (16, 14)
        assert other["difference"] == pytest.approx(5.5 - 40 / 7, rel=1e-12)
        assert other["ci_low"] < 0 < other["ci_high"], concept
    # by hand, the cluster-robust interval of bees: each combination's sum S_c over its 2 essays is 14 (anchor) or 8
    # with: 8 combinations, S_c - 2 * 5.5 = +-3: V = 8/7 * 8 * 9 / 16^2; without: 4 at 14 and 3 at 8 about 2 * 40/7:
    # V = 7/6 * (4 * (18/7)^2 + 3 * (24/7)^2) / 14^2; Welch-Satterthwaite df over 8 - 1 and 7 - 1 combinations
    v_with, v_without = 8 / 7 * 72 / 256, 7 / 6 * (4 * (18 / 7) ** 2 + 3 * (24 / 7) ** 2) / 196
    df = (v_with + v_without) ** 2 / (v_with**2 / 7 + v_without**2 / 6)
    half = stats.t.ppf(0.975, df) * math.sqrt(v_with + v_without)
    bees = effects.loc["bees"]
    assert (bees["ci_low"], bees["ci_high"]) == (
        pytest.approx(5.5 - 40 / 7 - half, rel=1e-9),
        pytest.approx(5.5 - 40 / 7 + half, rel=1e-9),
    )


def test_essays_of_one_combination_are_one_cluster_so_the_concept_interval_widens():
    """Four combinations of four essays each: the essays of a combination agree closely, the combinations do not. The
    essays are 16 values but only 4 independent pieces of evidence about the concept, so its interval must be wider
    than the Welch interval over essays, and exactly the one computed by hand over the 4 combinations."""
    rows, combos = [], {}
    by_combo = {
        "c1": (["topic", "x"], 8.0),
        "c2": (["topic", "y"], 5.0),
        "c3": (["x", "y"], 6.0),
        "c4": (["y", "z"], 4.0),
    }
    for combo, (held, level) in by_combo.items():
        combos[combo] = held
        for copy, wobble in enumerate((0.1, -0.1, 0.2, -0.2)):
            essay = f"{combo}-e{copy}"
            rows.append(
                {
                    **dict.fromkeys(PARSED_SCORES_COLUMNS, ""),
                    "cohort_id": "clustered",
                    "gen_id": f"{essay}-j",
                    "parent_gen_id": essay,
                    "evaluation_template": CRE,
                    "evaluation_model": JA,
                    "evaluation_replicate": 1,
                    "score": level + wobble,
                    "score_max": 10.0,
                    "combo_id": combo,
                }
            )
    table = pd.DataFrame(rows, columns=PARSED_SCORES_COLUMNS)
    topic = concept_effects(table, ConceptMap(combos, {})).set_index("concept_id").loc["topic"]
    assert (topic["n_with"], topic["n_without"], topic["difference"]) == (8, 8, pytest.approx(6.5 - 5.0))
    # the combinations with "topic" average 8 and 5 (sums 32 and 20 over 4 essays each), those without 6 and 4:
    # V_with = 2/1 * ((32 - 26)^2 + (20 - 26)^2) / 8^2 = 2.25, V_without = 2 * (4^2 + 4^2) / 64 = 1, df over 1 and 1
    v_with, v_without = 2 * (36 + 36) / 64, 2 * (16 + 16) / 64
    df = (v_with + v_without) ** 2 / (v_with**2 + v_without**2)
    half = stats.t.ppf(0.975, df) * math.sqrt(v_with + v_without)
    assert (topic["ci_low"], topic["ci_high"]) == (pytest.approx(1.5 - half), pytest.approx(1.5 + half))
    essays = table.set_index("parent_gen_id")["score"]
    has_topic = essays.index.str[:2].isin(["c1", "c2"])
    low, high = welch_interval(8, 6.5, essays[has_topic].std(), 8, 5.0, essays[~has_topic].std())
    assert half > 4 * (float(high) - float(low)) / 2  # 16 essays taken as independent: far too narrow
    # one essay per combination: the clustered interval is the Welch interval over essays
    single = table[table["parent_gen_id"].str.endswith("-e0")]
    alone = concept_effects(single, ConceptMap(combos, {})).set_index("concept_id").loc["topic"]
    means = single.set_index("parent_gen_id")["score"]
    low, high = welch_interval(2, means[:2].mean(), means[:2].std(), 2, means[2:].mean(), means[2:].std())
    assert (alone["ci_low"], alone["ci_high"]) == (pytest.approx(float(low)), pytest.approx(float(high)))


def test_concept_pair_effects_cover_every_pair_that_occurs():
    table, concepts = planted_cohort()
    pairs = concept_pair_effects(table, concepts)
    assert list(zip(pairs["concept_a"], pairs["concept_b"])) == [
        ("Anchor", "Bees"),
        ("Anchor", "Clouds"),
        ("Anchor", "Dunes"),
        ("Bees", "Clouds"),
        ("Bees", "Dunes"),
        ("Clouds", "Dunes"),
    ]
    # each pair is held by 4 subsets (8 essays); the other 11 subsets (22 essays) are "without"
    assert set(pairs["n_with"]) == {8} and set(pairs["n_without"]) == {22}
    # anchor + bees: all 8 at 7 -+ 1; the rest: 4 subsets with anchor, 7 without -> (8*7 + 14*4) / 22 = 56/11
    first = pairs.iloc[0]
    assert first["difference"] == pytest.approx(7 - 112 / 22, rel=1e-12) and first["ci_low"] > 0
    # bees + clouds: 2 of its 4 subsets hold anchor -> 5.5; the rest: 6 of 11 -> (12*7 + 10*4) / 22 = 62/11
    second = pairs.iloc[3]
    assert second["difference"] == pytest.approx(5.5 - 124 / 22, rel=1e-12)
    assert second["ci_low"] < 0 < second["ci_high"]


def test_concept_effects_leave_out_unknown_combos_and_name_unknown_concepts_by_id(scores):
    effects = concept_effects(scores, ConceptMap({"c1": ["x", "y"]}, {"x": "Ex"}))
    creativity = effects[effects["evaluation_template"] == CRE]
    assert list(creativity["concept"]) == ["Ex", "y"]
    # only E1 and E2 (combo c1) take part; both hold x and y, so nobody is "without"
    assert list(creativity["n_with"]) == [2, 2] and list(creativity["n_without"]) == [0, 0]
    assert creativity["difference"].isna().all() and creativity["ci_low"].isna().all()
