"""Judges held against people: how far each judge's scores are from the scores people gave the same essays.

People's scores are labels (``store.labels``): one row per (essay, template, rater). Per essay and template the people
form one panel whose value is the mean of their scores, so a judge is measured against the people's consensus, and
the same two series (the judge's essay means over its replicates, the panel's means) feed every statistic:

* ``n``: essays scored by both the judge and at least one person under the template;
* ``mean_abs_difference``: the mean of |judge - people|, in points on the 0..10 scale;
* ``spearman_rho``: Spearman's rank correlation (``scipy.stats.spearmanr``); NaN below 3 essays or when either side
  gives every essay the same score (no ranking to compare);
* ``krippendorff_alpha``: Krippendorff's alpha (interval metric, :func:`agreement.krippendorff_alpha_interval`) with
  the judge and the panel as its two raters and the essays as units: 1 is perfect agreement, 0 is no better than
  chance.

A person's verdict on a gate is a label on the template ``gate:<name>``: 10 for pass, 0 for fail. With several people
the panel passes an essay when more said pass than fail; a tie is no verdict and the essay is left out. Against it,
the gate's own decisions give ``true_pass`` (both pass), ``false_pass`` (the gate passes what people fail),
``false_fail`` and ``true_fail``, ``precision`` = true_pass / (true_pass + false_pass) and ``recall`` = true_pass /
(true_pass + false_fail), NaN when their denominator is 0. A gate's row has ``judge`` = ``gate`` and ``template`` =
``gate:<name>``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import cast

import numpy as np
import pandas as pd
from scipy import stats

from daydream_luigi.analysis import agreement
from daydream_luigi.analysis.gates import PASS, scored_evaluations
from daydream_luigi.core.gates import GATE_LABEL_PREFIX
from daydream_luigi.core.parsers import SCORE_MAX, SCORE_MIN

JUDGE_VS_HUMAN_COLUMNS = [
    "judge",
    "template",
    "n",
    "mean_abs_difference",
    "spearman_rho",
    "krippendorff_alpha",
    "true_pass",
    "false_pass",
    "false_fail",
    "true_fail",
    "precision",
    "recall",
]
LABEL_COLUMNS = ["gen_id", "template", "score", "rater"]
GATE_JUDGE = "gate"
PASS_SCORE, FAIL_SCORE = SCORE_MAX, SCORE_MIN  # what a person's gate label says
MIN_RANKED = 3  # below this many essays a rank correlation says nothing


def panel_means(labels: pd.DataFrame) -> pd.Series:
    """The people's value per (gen_id, template): the mean of their scores."""
    scores = pd.to_numeric(labels["score"], errors="coerce")
    return scores.groupby([labels["gen_id"].astype(str), labels["template"].astype(str)]).mean()


def _spearman(judge: np.ndarray, people: np.ndarray) -> float:
    if len(judge) < MIN_RANKED or np.ptp(judge) == 0 or np.ptp(people) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(judge, people).statistic)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def judge_rows(scores: pd.DataFrame, labels: pd.DataFrame) -> list[dict]:
    scored = scored_evaluations(scores)
    panel = panel_means(labels)
    judges = scored.groupby(["evaluation_model", "evaluation_template", "parent_gen_id"], sort=True)["score"].mean()
    rows = []
    for key, values in judges.groupby(level=[0, 1], sort=True):
        judge, template = cast(tuple[str, str], key)
        essays = values.index.get_level_values("parent_gen_id").astype(str)
        people = panel.reindex(list(zip(essays, [str(template)] * len(essays)))).to_numpy()
        both = ~np.isnan(people)
        mine, theirs = values.to_numpy()[both], people[both]
        rows.append(
            {
                "judge": judge,
                "template": template,
                "n": int(both.sum()),
                "mean_abs_difference": float(np.mean(np.abs(mine - theirs))) if both.any() else math.nan,
                "spearman_rho": _spearman(mine, theirs),
                "krippendorff_alpha": agreement.krippendorff_alpha_interval(zip(mine, theirs)),
            }
        )
    return rows


def gate_row(name: str, decisions: pd.DataFrame, labels: pd.DataFrame) -> dict:
    """The gate's decisions against the people's pass/fail labels on ``gate:<name>``."""
    template = f"{GATE_LABEL_PREFIX}{name}"
    panel = panel_means(labels[labels["template"].astype(str) == template])
    people = {
        cast(tuple[str, str], key)[0]: value for key, value in panel.items() if value != (PASS_SCORE + FAIL_SCORE) / 2
    }
    gate = {str(g): d == PASS for g, d in zip(decisions["gen_id"], decisions["decision"]) if str(g) in people}
    counts = {"true_pass": 0, "false_pass": 0, "false_fail": 0, "true_fail": 0}
    for gen_id, passed in gate.items():
        said_pass = people[gen_id] > (PASS_SCORE + FAIL_SCORE) / 2
        key = ("true_pass" if said_pass else "false_pass") if passed else ("false_fail" if said_pass else "true_fail")
        counts[key] += 1
    return {
        "judge": GATE_JUDGE,
        "template": template,
        "n": len(gate),
        **counts,
        "precision": _ratio(counts["true_pass"], counts["true_pass"] + counts["false_pass"]),
        "recall": _ratio(counts["true_pass"], counts["true_pass"] + counts["false_fail"]),
    }


def judge_vs_human(
    scores: pd.DataFrame, labels: pd.DataFrame, gate_decisions: Mapping[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """One row per (judge, evaluation template) of ``scores``, then one per gate of ``gate_decisions`` (name ->
    :func:`analysis.gates.decide`), with :data:`JUDGE_VS_HUMAN_COLUMNS` (see the module docstring). ``labels`` has at
    least :data:`LABEL_COLUMNS`."""
    rows = judge_rows(scores, labels)
    rows += [gate_row(name, decisions, labels) for name, decisions in sorted((gate_decisions or {}).items())]
    out = pd.DataFrame(rows, columns=JUDGE_VS_HUMAN_COLUMNS)
    for column in ("true_pass", "false_pass", "false_fail", "true_fail"):
        out[column] = out[column].astype("Int64")
    return out
