"""Gates: the yes_no parser of binary rubrics, the gate file validated like every input, and the decision over a
parsed-scores table with planted scores (exact values, exact pass/fail and reason per essay)."""

import hashlib
import math

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO, daydream

from daydream_luigi.analysis.gates import decide, gate_columns
from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS
from daydream_luigi.cli import main
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.gates import Criterion, load_gate, parse_gate
from daydream_luigi.core.parsers import ParseError, parse_score
from daydream_luigi.core.settings import Paths

# Student t quantiles t(0.975, df), from a printed table: the 95% interval's half-width is t * sd / sqrt(n).
T_975 = {1: 12.7062047, 3: 3.1824463}

# ---------------------------------------------------------------------------------------------------- yes_no


@pytest.mark.parametrize(
    "answer, score",
    [
        ("The essay names a mechanism.\nVERDICT: YES", 10.0),
        ("No mechanism at all.\n\n**Verdict: no.**\n", 0.0),
        ("verdict:yes", 10.0),
    ],
)
def test_yes_no_reads_the_final_verdict_line_as_10_or_0(answer, score):
    assert parse_score("yes_no", answer) == score


@pytest.mark.parametrize(
    "answer, reason",
    [
        (
            "VERDICT: YES\nbut on reflection it is thin",
            "the answer does not end with a verdict ('but on reflection it "
            "is thin'); expected a last line 'VERDICT: YES' or 'VERDICT: NO'",
        ),
        ("VERDICT: MAYBE", "unknown verdict 'MAYBE'; expected YES or NO"),
        ("  \n", "the answer is empty; expected a last line 'VERDICT: YES' or 'VERDICT: NO'"),
    ],
)
def test_yes_no_without_a_final_verdict_is_a_parse_error_saying_what_was_expected(answer, reason):
    with pytest.raises(ParseError) as err:
        parse_score("yes_no", answer)
    assert str(err.value) == reason


# ------------------------------------------------------------------------------------------------ gate files

TEMPLATES = ["t-clear", "t-novel"]
STRICT = """criteria:
  - {template: t-novel, min: 7, by: lower-bound}
  - {template: t-clear, min: 6, by: mean}
min_judges: 2
max_judge_range: 3
"""


def gate(text: str = STRICT, name: str = "strict"):
    import yaml

    return parse_gate(name, f"config/gates/{name}.yaml", text, yaml.safe_load(text), TEMPLATES)


def test_a_gate_file_is_read_with_its_criteria_in_order_and_its_text_and_sha256():
    strict = gate()
    assert strict.criteria == (Criterion("t-novel", 7.0, "lower-bound"), Criterion("t-clear", 6.0, "mean"))
    assert (strict.min_judges, strict.max_judge_range) == (2, 3.0)
    assert strict.text == STRICT
    assert strict.sha256 == hashlib.sha256(STRICT.encode()).hexdigest()
    without_range = gate(STRICT.replace("max_judge_range: 3\n", ""))
    assert without_range.max_judge_range is None


@pytest.mark.parametrize(
    "edit, problems",
    [
        (
            ("template: t-novel", "template: novelty"),
            [
                "config/gates/strict.yaml: criterion 1: template 'novelty' is not an evaluation template; use one of: "
                "t-clear, t-novel"
            ],
        ),
        (
            ("min: 6", "min: six"),
            ["config/gates/strict.yaml: criterion 2: min must be a number from 0 to 10 (found 'six')"],
        ),
        (
            ("min: 7", "min: 11"),
            ["config/gates/strict.yaml: criterion 1: min must be a number from 0 to 10 (found 11)"],
        ),
        (
            ("by: mean", "by: median"),
            ["config/gates/strict.yaml: criterion 2: by must be mean or lower-bound (found 'median')"],
        ),
        (
            ("min_judges: 2", "min_judges: 0"),
            ["config/gates/strict.yaml: min_judges must be a whole number >= 1 (found 0)"],
        ),
        (
            ("max_judge_range: 3", "max_judge_range: -1"),
            ["config/gates/strict.yaml: max_judge_range must be a number >= 0 (found -1)"],
        ),
        (
            ("min_judges: 2\n", ""),
            ["config/gates/strict.yaml: min_judges is missing; add it (how many distinct judges a criterion needs)"],
        ),
        (
            ("template: t-clear", "template: t-novel"),
            [
                "config/gates/strict.yaml: criterion 2: template 't-novel' is already criterion 1; one criterion per "
                "template"
            ],
        ),
        (
            ("max_judge_range: 3", "max_range: 3"),
            [
                "config/gates/strict.yaml: unknown key 'max_range'; remove it (allowed: criteria, min_judges, "
                "max_judge_range)"
            ],
        ),
        (
            ("by: lower-bound}", "by: lower-bound, weight: 2}"),
            ["config/gates/strict.yaml: criterion 1: unknown key 'weight'; remove it (allowed: template, min, by)"],
        ),
        (
            ("min: 6, by: mean", "min: 6"),
            ["config/gates/strict.yaml: criterion 2: by is missing; add it"],
        ),
    ],
)
def test_every_problem_of_a_gate_file_is_one_line_naming_the_file_the_key_and_the_fix(edit, problems):
    with pytest.raises(InputError) as err:
        gate(STRICT.replace(*edit))
    assert err.value.problems == problems


def test_a_gate_that_is_not_a_mapping_or_has_no_criteria_says_what_it_must_be():
    with pytest.raises(InputError) as err:
        gate("- t-novel\n")
    assert err.value.problems == [
        "config/gates/strict.yaml: a gate must be a mapping with the keys criteria, min_judges, max_judge_range "
        "(found a list); see config/gates/reinvention.yaml"
    ]
    with pytest.raises(InputError) as err:
        gate("criteria: []\nmin_judges: 1\n")
    assert err.value.problems == [
        "config/gates/strict.yaml: criteria must be a list of {template, min, by} mappings (found a list)"
    ]


def test_the_shipped_example_gate_is_valid_against_the_shipped_templates():
    paths = Paths(REPO / "data", REPO / "config")
    example = load_gate(paths, "reinvention", ["novelty-judge", "coherence-judge"])
    assert [c.template for c in example.criteria] == ["novelty-judge", "coherence-judge"]


def write_gate(project, name: str, text: str):
    path = project / "config" / "gates" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_daydream_gate_with_an_unknown_template_or_a_bad_number_exits_2_with_one_line_and_no_traceback(project):
    path = write_gate(project, "strict", STRICT.replace("t-novel", "judge-a").replace("t-clear", "judge-z"))
    result = daydream("gate", "strict", "--cohort", "anything")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {path}: criterion 2: template 'judge-z' is not an evaluation template; use one of: judge-a, judge-b\n"
    )
    write_gate(
        project,
        "strict",
        STRICT.replace("t-novel", "judge-a").replace("t-clear", "judge-b").replace("min: 7", "min: 7..5"),
    )
    result = CliRunner().invoke(main, ["gate", "strict", "--cohort", "anything"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == f"error: {path}: criterion 1: min must be a number from 0 to 10 (found '7..5')\n"


def test_a_missing_gate_file_names_the_gates_there_are(project):
    write_gate(project, "lenient", "criteria:\n  - {template: judge-a, min: 5, by: mean}\nmin_judges: 1\n")
    result = CliRunner().invoke(main, ["gate", "strcit", "--cohort", "anything"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {project / 'config' / 'gates' / 'strcit.yaml'}: gate file not found; write it (like "
        f"config/gates/reinvention.yaml) or name one of: lenient, reinvention\n"
    )


# -------------------------------------------------------------------------------------------- the decision


def scores_table(planted: dict) -> pd.DataFrame:
    """A parsed-scores table: {essay: {template: {judge: [scores, one per replicate]}}}; None is an unscored row."""
    rows = []
    for essay, templates in planted.items():
        for template, judges in templates.items():
            for judge, values in judges.items():
                for replicate, score in enumerate(values, start=1):
                    rows.append(
                        {
                            "cohort_id": "c",
                            "gen_id": f"{essay}-{template}-{judge}-{replicate}",
                            "parent_gen_id": essay,
                            "evaluation_template": template,
                            "evaluation_model": judge,
                            "evaluation_replicate": replicate,
                            "score": math.nan if score is None else score,
                            "score_max": 10.0,
                            "error": "no score found" if score is None else "",
                        }
                    )
    return pd.DataFrame(rows).reindex(columns=PARSED_SCORES_COLUMNS)


PLANTED = {
    "e-low": {"t-novel": {"j1": [7, 9], "j2": [8, 8]}, "t-clear": {"j1": [3], "j2": [3]}},
    "e-mean": {"t-novel": {"j1": [9, 9], "j2": [9, 9]}, "t-clear": {"j1": [5], "j2": [6]}},
    "e-none": {"t-novel": {"j1": [9, 9], "j2": [9, 9]}, "t-clear": {"j1": [None], "j2": [None]}},
    "e-one-judge": {"t-novel": {"j1": [3, 3, 3]}, "t-clear": {"j1": [9], "j2": [9]}},
    "e-pass": {"t-novel": {"j1": [8, 9], "j2": [8, 9]}, "t-clear": {"j1": [6], "j2": [7]}},
    "e-spread": {"t-novel": {"j1": [9, 9], "j2": [9, 9]}, "t-clear": {"j1": [9], "j2": [2]}},
}


def test_each_essay_passes_or_gets_its_first_failing_reason_with_the_values_behind_it():
    decisions = decide(scores_table(PLANTED), gate(), essays=[*sorted(PLANTED), "e-unscored"])
    assert (
        list(decisions.columns)
        == gate_columns(gate())
        == [
            "gen_id",
            "decision",
            "t-novel:value",
            "t-novel:ci_low",
            "t-novel:ci_high",
            "t-novel:n",
            "t-novel:judges",
            "t-novel:judge_range",
            "t-clear:value",
            "t-clear:ci_low",
            "t-clear:ci_high",
            "t-clear:n",
            "t-clear:judges",
            "t-clear:judge_range",
        ]
    )
    assert dict(zip(decisions["gen_id"], decisions["decision"])) == {
        "e-low": "t-novel: lower bound 6.70 < 7",  # the first criterion's failure, though t-clear fails too
        "e-mean": "t-clear: mean 5.50 < 6",
        "e-none": "t-clear: no scores",  # its two evaluations have no score
        "e-one-judge": "t-novel: 1 judge(s), needs 2",  # the judge check comes before the value check
        "e-pass": "pass",
        "e-spread": "t-clear: judges' means differ by 7.00 > 3",
        "e-unscored": "t-novel: no scores",  # an essay of the cohort without any evaluation is decided too
    }
    row = decisions.set_index("gen_id").loc["e-pass"]
    # t-novel over 8, 9, 8, 9: mean 8.5, sd sqrt(1/3), half-width t(0.975, 3) * sd / sqrt(4)
    half = T_975[3] * math.sqrt(1 / 3) / 2
    assert row["t-novel:value"] == pytest.approx(8.5 - half, abs=1e-6)
    assert (row["t-novel:ci_low"], row["t-novel:ci_high"]) == pytest.approx((8.5 - half, 8.5 + half), abs=1e-6)
    assert (row["t-novel:n"], row["t-novel:judges"], row["t-novel:judge_range"]) == (4, 2, 0.0)
    # t-clear by mean: 6 and 7, one replicate each: n 2, mean 6.5, judges 1 point apart; its interval t(0.975, 1)
    assert row["t-clear:value"] == 6.5
    assert row["t-clear:ci_low"] == pytest.approx(6.5 - T_975[1] * math.sqrt(0.5) / math.sqrt(2), abs=1e-6)
    assert (row["t-clear:n"], row["t-clear:judges"], row["t-clear:judge_range"]) == (2, 2, 1.0)
    low = decisions.set_index("gen_id").loc["e-low"]
    assert low["t-novel:value"] == pytest.approx(8 - T_975[3] * math.sqrt(2 / 3) / 2, abs=1e-6)  # 6.70
    unscored = decisions.set_index("gen_id").loc["e-unscored"]
    assert (unscored["t-novel:n"], unscored["t-novel:judges"]) == (0, 0) and math.isnan(unscored["t-novel:value"])


def test_a_lower_bound_needs_two_scores_and_an_evaluation_listed_under_two_cohorts_counts_once():
    lenient = gate("criteria:\n  - {template: t-novel, min: 5, by: lower-bound}\nmin_judges: 1\n", "lenient")
    scores = scores_table({"e-1": {"t-novel": {"j1": [9]}}, "e-2": {"t-novel": {"j1": [8, 8]}}})
    twice = pd.concat([scores, scores.assign(cohort_id="other")], ignore_index=True)
    decisions = decide(twice, lenient)
    assert decisions["decision"].tolist() == [
        "t-novel: no interval (n=1); a lower bound needs 2 scores or more",
        "pass",
    ]
    assert decisions["t-novel:n"].tolist() == [1, 2]


def test_min_is_inclusive_whatever_the_float_rounding_of_the_mean():
    scores = scores_table({"e-1": {"t-clear": {"j1": [0.0, 0.1, 4.1]}}})
    assert scores["score"].mean() < 1.4  # 1.3999999999999997: a plain >= would fail the essay
    edge = gate("criteria:\n  - {template: t-clear, min: 1.4, by: mean}\nmin_judges: 1\n", "edge")
    assert decide(scores, edge)["decision"].tolist() == ["pass"]
