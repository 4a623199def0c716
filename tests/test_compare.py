"""Paired comparisons against hand-computed numbers: the units, the paired t interval, the sign test, the units left
out and the one-line verdict."""

import math

import pandas as pd
import pytest

from daydream_luigi.analysis.compare import MIN_PAIRS, SUMMARY_COLUMNS, UNIT_COLUMNS, compare
from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS

# Student t quantiles t(0.975, df), from a printed table.
T_975 = {1: 12.7062047, 5: 2.5705818, 6: 2.4469119}


def evaluation(essay, score, *, combo, essay_template, template="t1", judge="j1", replicate=1, draft="ladder"):
    return {
        "cohort_id": "c",
        "gen_id": f"{essay}-{template}-{judge}-{replicate}",
        "parent_gen_id": essay,
        "evaluation_template": template,
        "evaluation_model": judge,
        "evaluation_replicate": replicate,
        "score": score,
        "score_max": 10.0,
        "error": "",
        "combo_id": combo,
        "draft_template": draft,
        "generation_template": essay_template,
        "generation_model": "gen",
    }


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=PARSED_SCORES_COLUMNS)


def essay_pairs(differences: list[float]) -> list[dict]:
    """One combination per difference: a polish essay scored 5 + d and a verbatim essay scored 5."""
    rows = []
    for i, d in enumerate(differences):
        rows.append(evaluation(f"p{i}", 5 + d, combo=f"c{i}", essay_template="polish"))
        rows.append(evaluation(f"v{i}", 5, combo=f"c{i}", essay_template="verbatim"))
    return rows


def test_essay_templates_compared_on_the_same_combinations_with_a_paired_t_interval_and_a_sign_test():
    rows = essay_pairs([1, 0, 3, 1, -1, 2])  # units c0..c5
    # c6: two polish essays, 6 and 8 (the second judged 7 and 9): the unit's polish value is their mean, 7; its
    # verbatim essay is judged 4 and 6: 5. The unit counts once, with 7 - 5 = 2
    rows += [
        evaluation("p6a", 6, combo="c6", essay_template="polish"),
        evaluation("p6b", 7, combo="c6", essay_template="polish", judge="j1"),
        evaluation("p6b", 9, combo="c6", essay_template="polish", judge="j2"),
        evaluation("v6", 4, combo="c6", essay_template="verbatim", judge="j1"),
        evaluation("v6", 6, combo="c6", essay_template="verbatim", judge="j2"),
    ]
    rows.append(evaluation("p7", 9, combo="c7", essay_template="polish"))  # left out: no verbatim essay
    rows += [evaluation(f"v{i}", 2, combo=f"c{i}", essay_template="verbatim") for i in (8, 9)]  # left out: no polish
    rows.append(evaluation("imported", 10, combo="", essay_template="polish"))  # no combination: never a unit
    rows.append(evaluation("p0", 0, combo="c0", essay_template="polish", template="t2"))  # another template
    summary, units = compare(table(rows), "essay_template", "polish", "verbatim", "t1")
    assert list(summary.columns) == SUMMARY_COLUMNS and list(units.columns) == UNIT_COLUMNS
    row = summary.iloc[0].to_dict()
    # differences 1, 0, 3, 1, -1, 2 and 2: n 7, mean 8/7, sum of squared deviations 76/7, sd sqrt(76/42)
    mean, sd = 8 / 7, math.sqrt(76 / 42)
    half = T_975[6] * sd / math.sqrt(7)
    assert (row["n"], row["mean_difference"], row["sd_difference"]) == (7, pytest.approx(mean), pytest.approx(sd))
    assert (row["ci_low"], row["ci_high"]) == (
        pytest.approx(mean - half, abs=1e-6),
        pytest.approx(mean + half, abs=1e-6),
    )
    # sign test: 5 above, 1 below, 1 tie; p = 2 * P(X <= 1 | n = 6, 1/2) = 2 * 7/64
    assert (row["a_higher"], row["b_higher"], row["ties"]) == (5, 1, 1)
    assert row["sign_test_p"] == pytest.approx(14 / 64)
    assert (row["only_a"], row["only_b"]) == (1, 2)
    assert (row["mean_a"], row["mean_b"]) == (pytest.approx((6 + 5 + 8 + 6 + 4 + 7 + 7) / 7), 5.0)
    assert row["verdict"] == (
        "t1: no difference shown (the interval holds 0): polish - verbatim = +1.14, 95% CI [-0.10, +2.39], n=7, "
        "sign test p=0.219"
    )
    assert units["unit"].tolist() == [f"c{i} / ladder / gen" for i in range(10)]  # combo / draft template / model
    c6 = units.set_index("unit").loc["c6 / ladder / gen"]
    assert (c6["score_a"], c6["score_b"], c6["difference"], c6["essays_a"], c6["essays_b"]) == (7.0, 5.0, 2.0, 2, 1)
    c8 = units.set_index("unit").loc["c8 / ladder / gen"]
    assert math.isnan(c8["score_a"]) and c8["score_b"] == 2 and (c8["essays_a"], c8["essays_b"]) == (0, 1)


def test_a_clear_difference_over_enough_pairs_is_named_and_too_few_pairs_cannot_tell():
    summary, _ = compare(table(essay_pairs([1, 1, 2, 1, 2, 1])), "essay_template", "polish", "verbatim")
    # mean 4/3, squared deviations 4 x 1/9 + 2 x 4/9 = 12/9 over 5: sd sqrt(4/15); half-width t(0.975, 5) sd / sqrt(6)
    half = T_975[5] * math.sqrt(4 / 15) / math.sqrt(6)
    assert (summary.loc[0, "ci_low"], summary.loc[0, "ci_high"]) == (
        pytest.approx(4 / 3 - half, abs=1e-6),
        pytest.approx(4 / 3 + half, abs=1e-6),
    )
    assert summary.loc[0, "sign_test_p"] == pytest.approx(2 / 64)
    assert summary.loc[0, "verdict"] == (
        "t1: polish scores higher than verbatim: polish - verbatim = +1.33, 95% CI [+0.79, +1.88], n=6, "
        "sign test p=0.0312"
    )
    few, _ = compare(table(essay_pairs([2, 3, 2, 4, 3])), "essay_template", "verbatim", "polish")
    assert MIN_PAIRS == 6
    assert few.loc[0, "verdict"].startswith(
        "t1: too few pairs to tell (5 < 6): verbatim - polish = -2.80, 95% CI [-3.84, -1.76], n=5, sign test p=0.0625"
    )


def test_judges_are_compared_on_the_same_essays_their_replicates_averaged():
    rows = [
        evaluation("e1", 6, combo="c1", essay_template="polish", judge="j1", replicate=1),
        evaluation("e1", 8, combo="c1", essay_template="polish", judge="j1", replicate=2),
        evaluation("e1", 4, combo="c1", essay_template="polish", judge="j2"),
        evaluation("e2", 5, combo="c2", essay_template="polish", judge="j1"),
        evaluation("e2", 5, combo="c2", essay_template="polish", judge="j2"),
        evaluation("e3", 9, combo="c3", essay_template="polish", judge="j1"),
    ]
    summary, units = compare(table(rows), "judge", "j1", "j2")
    assert units[["unit", "score_a", "score_b"]].fillna(-1).values.tolist() == [
        ["e1", 7.0, 4.0],
        ["e2", 5.0, 5.0],
        ["e3", 9.0, -1],
    ]
    row = summary.iloc[0]
    # differences 3 and 0: mean 1.5, sd sqrt(4.5), half-width t(0.975, 1) * sd / sqrt(2)
    half = T_975[1] * math.sqrt(4.5) / math.sqrt(2)
    assert (row["n"], row["ci_low"], row["ci_high"]) == (2, pytest.approx(1.5 - half), pytest.approx(1.5 + half))
    assert (row["ties"], row["sign_test_p"], row["only_a"], row["only_b"]) == (1, 1.0, 1, 0)


def test_two_rubrics_are_compared_on_the_same_essays_and_no_template_is_fixed():
    rows = [evaluation(f"e{i}", s, combo=f"c{i}", essay_template="polish", template="v1") for i, s in enumerate([4, 6])]
    rows += [
        evaluation(f"e{i}", s, combo=f"c{i}", essay_template="polish", template="v2") for i, s in enumerate([5, 8])
    ]
    summary, units = compare(table(rows), "evaluation_template", "v2", "v1")
    assert summary[["evaluation_template", "n", "mean_difference"]].values.tolist() == [["v2 vs v1", 2, 1.5]]
    assert summary.loc[0, "verdict"].startswith("too few pairs to tell (2 < 6): v2 - v1 = +1.50")
    assert units["difference"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "axis, a, b, template, message",
    [
        ("judge", "j1", "j9", None, "judge 'j9' has no score in this cohort; present: j1"),
        ("judge", "j1", "j1", None, "A and B are both 'j1'; name two different judge values"),
        ("judge", "j1", "j2", "t9", "evaluation template 't9' has no score here; present: t1"),
        (
            "evaluation_template",
            "t1",
            "t2",
            "t1",
            "--template does not apply to --by evaluation_template: A and B are the templates",
        ),
    ],
)
def test_names_that_are_not_in_the_scores_are_refused_with_what_is_there(axis, a, b, template, message):
    rows = [evaluation("e1", 5, combo="c1", essay_template="polish")]
    if a == "t1":
        rows.append(evaluation("e1", 5, combo="c1", essay_template="polish", template="t2"))
    if b == "j2":
        rows.append(evaluation("e1", 5, combo="c1", essay_template="polish", judge="j2"))
    with pytest.raises(ValueError) as err:
        compare(table(rows), axis, a, b, template)
    assert str(err.value) == message
