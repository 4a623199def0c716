"""Paired comparisons: does A score higher than B on the same units, and by how much?

Comparing two groups' means (as the summary tables do) mixes in everything else that differs between them: other
combinations, other drafts, other essays. A paired comparison takes only the units that exist under both A and B and
looks at the difference within each unit.

The unit, per axis (``--by``), always under one evaluation template (scores of two templates are never pooled):

* a generation axis (``draft_template``, ``essay_template``, ``generation_model``): the combination with the two other
  generation axes fixed, e.g. for essay templates (combo_id, draft_template, generation_model). A side's value is the
  mean over the unit's essays made with it of each essay's mean score (every judge and replicate counts once), so
  replicated drafts or essays count as one unit, not as several independent ones. Imported essays (no combination)
  are never units.
* ``judge``: the essay; a side's value is that judge's mean over its replicates.
* ``evaluation_template``: the essay; a side's value is the essay's mean under that template (every judge and
  replicate). The two templates are then the two sides, so no single template is fixed.

Per template: ``n`` units with both sides, the mean paired difference A - B with its 95% paired t interval
(:func:`intervals.t_interval` of the differences), a two-sided sign test's p (``scipy.stats.binomtest`` over the
non-zero differences), and the units left out because only one side has them. With fewer than :data:`MIN_PAIRS` units
the verdict says the comparison is too small to tell: below 6 pairs even a clean sweep has a sign test p of 0.0625
or more (2 / 2^5), so no result could reach p < 0.05.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from daydream_luigi.analysis import intervals
from daydream_luigi.analysis.gates import scored_evaluations

#: --by name -> its column in the parsed-scores table.
GENERATION_AXES = {
    "draft_template": "draft_template",
    "essay_template": "generation_template",
    "generation_model": "generation_model",
}
AXES = {**GENERATION_AXES, "judge": "evaluation_model", "evaluation_template": "evaluation_template"}
#: The fewest pairs at which a two-sided sign test can reach p < 0.05 (a clean sweep of 6: p = 2 / 2^6 = 0.031).
MIN_PAIRS = 6

SUMMARY_COLUMNS = [
    "axis",
    "a",
    "b",
    "evaluation_template",
    "n",
    "mean_a",
    "mean_b",
    "mean_difference",
    "sd_difference",
    "ci_low",
    "ci_high",
    "a_higher",
    "b_higher",
    "ties",
    "sign_test_p",
    "only_a",
    "only_b",
    "verdict",
]
UNIT_COLUMNS = ["evaluation_template", "unit", "score_a", "score_b", "difference", "essays_a", "essays_b"]


def unit_keys(axis: str) -> list[str]:
    """The columns that name a unit on this axis (see the module docstring)."""
    if axis in GENERATION_AXES:
        return ["combo_id", *(column for name, column in GENERATION_AXES.items() if name != axis)]
    return ["parent_gen_id"]


def _side_values(scored: pd.DataFrame, axis: str) -> pd.DataFrame:
    """One value per (template, unit, side): the columns evaluation_template, the unit keys, side, score, essays."""
    column, keys = AXES[axis], unit_keys(axis)
    template = [] if axis == "evaluation_template" else ["evaluation_template"]
    if axis in GENERATION_AXES:
        scored = scored[scored["combo_id"].notna() & (scored["combo_id"].astype(str) != "")]
        meta = scored.groupby("parent_gen_id", sort=True)[[*keys, column]].first()
        essays = scored.groupby(["evaluation_template", "parent_gen_id"], sort=True)["score"].mean().reset_index()
        essays = essays.join(meta, on="parent_gen_id")
        values = essays.groupby([*template, *keys, column], sort=True, dropna=False)["score"].agg(["mean", "size"])
    else:
        values = scored.groupby([*template, *keys, column], sort=True, dropna=False)["score"].agg(["mean"])
        values["size"] = 1
    values = values.reset_index().rename(columns={"mean": "score", "size": "essays"})
    values["side"] = values[column].astype(str)
    if axis == "evaluation_template":
        values["evaluation_template"] = values["side"]
    return values


def _unit_label(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    return frame[keys].astype(str).agg(" / ".join, axis=1) if len(frame) else pd.Series([], dtype="object")


def _check(scored_all: pd.DataFrame, column: str, axis: str, a: str, b: str, template: str | None) -> None:
    present = sorted({str(v) for v in scored_all[column].dropna() if str(v)})
    unknown = [v for v in (a, b) if v not in present]
    if a == b:
        raise ValueError(f"A and B are both {a!r}; name two different {axis} values")
    if unknown:
        raise ValueError(
            f"{axis} {', '.join(map(repr, unknown))} has no score in this cohort; "
            f"present: {', '.join(present) or '(none)'}"
        )
    if template is not None:
        if axis == "evaluation_template":
            raise ValueError("--template does not apply to --by evaluation_template: A and B are the templates")
        templates = sorted({str(v) for v in scored_all["evaluation_template"].dropna()})
        if template not in templates:
            raise ValueError(f"evaluation template {template!r} has no score here; present: {', '.join(templates)}")


def verdict(row: dict) -> str:
    """One line: the difference and its interval, and what they say (a difference, none shown, or too few pairs)."""
    a, b, n = row["a"], row["b"], row["n"]
    where = f"{row['evaluation_template']}: " if row["axis"] != "evaluation_template" else ""
    if n == 0:
        return f"{where}no unit has both {a} and {b}; nothing to compare"
    interval = "no interval" if math.isnan(row["ci_low"]) else f"95% CI [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    p = "no sign test (every pair tied)" if math.isnan(row["sign_test_p"]) else f"sign test p={row['sign_test_p']:.3g}"
    numbers = f"{a} - {b} = {row['mean_difference']:+.2f}, {interval}, n={n}, {p}"
    if n < MIN_PAIRS:
        return f"{where}too few pairs to tell ({n} < {MIN_PAIRS}): {numbers}"
    if row["ci_low"] > 0 or row["ci_high"] < 0:
        higher, lower = (a, b) if row["mean_difference"] > 0 else (b, a)
        return f"{where}{higher} scores higher than {lower}: {numbers}"
    return f"{where}no difference shown (the interval holds 0): {numbers}"


def _summary(axis: str, a: str, b: str, template: str, units: pd.DataFrame) -> dict:
    """The summary row of one template's units (see :data:`SUMMARY_COLUMNS`)."""
    paired = units["difference"].dropna()
    n = len(paired)
    mean, sd = (paired.mean(), paired.std(ddof=1)) if n else (math.nan, math.nan)
    low, high = intervals.t_interval(n, mean, sd)
    above, below = int((paired > 0).sum()), int((paired < 0).sum())
    row = {
        "axis": axis,
        "a": a,
        "b": b,
        "evaluation_template": template,
        "n": n,
        "mean_a": units.loc[paired.index, "score_a"].mean() if n else math.nan,
        "mean_b": units.loc[paired.index, "score_b"].mean() if n else math.nan,
        "mean_difference": mean,
        "sd_difference": sd,
        "ci_low": float(low),
        "ci_high": float(high),
        "a_higher": above,
        "b_higher": below,
        "ties": n - above - below,
        "sign_test_p": float(stats.binomtest(above, above + below).pvalue) if above + below else math.nan,
        "only_a": int((units["score_a"].notna() & units["score_b"].isna()).sum()),
        "only_b": int((units["score_b"].notna() & units["score_a"].isna()).sum()),
    }
    row["verdict"] = verdict(row)
    return row


def compare(
    scores: pd.DataFrame, axis: str, a: str, b: str, template: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, units) of A against B on ``axis`` (see the module docstring): the summary has one row per evaluation
    template (only ``template`` when given; one row for ``evaluation_template``) with :data:`SUMMARY_COLUMNS`; units
    has one row per unit and template with :data:`UNIT_COLUMNS` (a side without the unit has an empty score). Raises
    ValueError naming the problem when ``axis``, A, B or ``template`` are not in the scores."""
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; use one of: {', '.join(AXES)}")
    column = AXES[axis]
    scored = scored_evaluations(scores)
    _check(scored, column, axis, a, b, template)
    if template is not None:
        scored = scored[scored["evaluation_template"] == template]
    keys = unit_keys(axis)
    values = _side_values(scored[scored[column].astype(str).isin([a, b])], axis)
    index = keys if axis == "evaluation_template" else ["evaluation_template", *keys]
    sides = {
        side: values[values["side"] == side].set_index(index)[["score", "essays"]].add_suffix(f"_{name}")
        for side, name in ((a, "a"), (b, "b"))
    }
    units = sides[a].join(sides[b], how="outer").sort_index().reset_index()
    units["difference"] = units["score_a"] - units["score_b"]
    units["unit"] = _unit_label(units, keys)
    if axis == "evaluation_template":
        templates = [f"{a} vs {b}"]
        units["evaluation_template"] = templates[0]
    else:
        templates = [template] if template else sorted({str(t) for t in scored["evaluation_template"].dropna()})
    rows = [_summary(axis, a, b, name, units[units["evaluation_template"] == name]) for name in templates]
    for side in ("essays_a", "essays_b"):
        units[side] = units[side].fillna(0).astype("int64")
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), units[UNIT_COLUMNS].reset_index(drop=True)
