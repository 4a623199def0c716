"""Result tables computed from the parsed-scores table.

Everything here is a pure function of a pandas DataFrame (only
:func:`write_tables` touches the file system).  The input is the *parsed
scores* table: one row per evaluation generation found on disk, with exactly
the columns listed in :data:`PARSED_SCORES_COLUMNS`.

Conventions shared by all functions
-----------------------------------
* A row is *scored* when its ``score`` is not NaN; error rows (``score`` NaN)
  never contribute to statistics.  ``score`` and ``score_max`` are coerced to
  float, so a table read back from CSV works as well.
* ``parent_gen_id`` is the essay gen_id and is the canonical essay key.  Rows
  without a ``parent_gen_id`` are ignored by the per-essay tables.
* Every returned table has a fixed column order and is sorted by its key
  columns, so output does not depend on the input row order.
* Every function accepts an empty frame (right columns, zero rows) and a frame
  whose scores are all NaN; it then returns a table with the right columns and
  zero rows (``agreement_alpha`` returns NaN).

Aggregation and intervals
-------------------------
Replicates and judges are combined by one named rule, :data:`AGGREGATION`: an
essay's score for an evaluation template is the *mean* of its scored
evaluations (every judge x replicate counts once).  Statistics over groups of
essays (summaries, concept effects) take the essay as the unit, so repeated
judgments of one essay never pass for independent observations.  Intervals are
95% Student t intervals of a mean (:func:`t_interval`) and Welch t intervals of
a difference of two means (:func:`welch_interval`): closed-form, deterministic,
and honest for the small n an essay has (two judges x two replicates is n=4,
where a bootstrap interval is far too narrow).  Intervals are not clipped to the
0..10 scale; they are NaN when n < 2.  Scores of different evaluation templates
are never pooled into one statistic.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from daydream_luigi.store.files import atomic_write_text

PARSED_SCORES_COLUMNS: list[str] = [
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

#: Essay-level descriptive columns carried into :func:`pivot_scores`.
ESSAY_META_COLUMNS: list[str] = [
    "combo_id",
    "draft_template",
    "generation_template",
    "generation_model",
]

#: Columns of :func:`pivot_scores` before the score columns.
PIVOT_KEY_COLUMNS: list[str] = ["parent_gen_id", "combo_id", "concepts", *ESSAY_META_COLUMNS[1:]]

#: Sort order of the parsed-scores table itself.
PARSED_SCORES_SORT: list[str] = [
    "cohort_id",
    "parent_gen_id",
    "evaluation_template",
    "evaluation_model",
    "evaluation_replicate",
    "gen_id",
]

#: How an essay's evaluations for one template (every judge x replicate) become its score.
AGGREGATION = "mean"
#: Coverage of every interval in these tables.
CONFIDENCE = 0.95

# Thresholds relative to the row's score_max (see summary_statistics).
TOP_FRACTION = 0.9
HIGH_FRACTION = 0.7
LOW_FRACTION = 0.3

# Tolerance used for threshold comparisons on floats.
_EPS = 1e-9

SUMMARY_GROUPINGS: list[tuple[str, tuple[str, ...]]] = [
    ("generation_template", ("generation_template",)),
    ("generation_model", ("generation_model",)),
    ("evaluation_model", ("evaluation_model",)),
    ("combo_id", ("combo_id",)),
    ("draft_template", ("draft_template",)),
    ("generation_template x generation_model", ("generation_template", "generation_model")),
    ("generation_model x evaluation_model", ("generation_model", "evaluation_model")),
    ("overall", ()),
]

SUMMARY_COLUMNS: list[str] = [
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

TOP_SCORE_PATHS_COLUMNS: list[str] = [
    "evaluation_template",
    "parent_gen_id",
    "mean_score",
    "essay_path",
    "draft_path",
    "evaluation_paths",
]

JUDGE_AGREEMENT_COLUMNS: list[str] = [
    "parent_gen_id",
    "evaluation_template",
    "judge_count",
    "mean",
    "sd",
    "range",
    "cv",
    "agreement",
]

VARIANCE_COMPONENTS_COLUMNS: list[str] = [
    "parent_gen_id",
    "template_variance",
    "judge_variance",
    "n_templates",
    "n_judges",
]

SELECT_TOP_COLUMNS: list[str] = ["gen_id", "mean", "ci_low", "ci_high", "n_judges", "n", "judge_range"]
SELECT_TOP_ORDERS = ("mean", "lower-bound")

_EFFECT_STATISTICS: list[str] = [
    "n_with",
    "mean_with",
    "n_without",
    "mean_without",
    "difference",
    "ci_low",
    "ci_high",
]
CONCEPT_EFFECT_COLUMNS: list[str] = ["evaluation_template", "concept_id", "concept", *_EFFECT_STATISTICS]
CONCEPT_PAIR_EFFECT_COLUMNS: list[str] = [
    "evaluation_template",
    "concept_id_a",
    "concept_a",
    "concept_id_b",
    "concept_b",
    *_EFFECT_STATISTICS,
]

#: :data:`PARSED_SCORES_COLUMNS` plus ``cohorts``: every cohort holding the evaluation, sorted, joined with ";".
CROSS_EXPERIMENT_COLUMNS: list[str] = [*PARSED_SCORES_COLUMNS, "cohorts"]

#: Label used in summary_statistics for a missing group value.
MISSING_GROUP = "(missing)"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _prepare(scores: pd.DataFrame) -> pd.DataFrame:
    """Validate columns and return a copy restricted to PARSED_SCORES_COLUMNS."""
    missing = [c for c in PARSED_SCORES_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError("parsed scores table is missing columns: " + ", ".join(missing))
    df = scores.loc[:, PARSED_SCORES_COLUMNS].copy()
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype("float64")
    df["score_max"] = pd.to_numeric(df["score_max"], errors="coerce").astype("float64")
    df = df.reset_index(drop=True)
    return df


def _scored(scores: pd.DataFrame) -> pd.DataFrame:
    """Prepared rows that have a score and an essay key."""
    df = _prepare(scores)
    return df[df["score"].notna() & df["parent_gen_id"].notna()].reset_index(drop=True)


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="object") for c in columns})


def _group_label(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING_GROUP
    return str(value)


def t_interval(n, mean, sd, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Student t interval of a mean, elementwise: ``mean -+ t(1 - (1 - confidence) / 2, n - 1) * sd / sqrt(n)``.

    NaN where ``n < 2`` (no spread to estimate); a zero ``sd`` gives the point ``[mean, mean]``.
    """
    n, mean, sd = (np.asarray(v, dtype="float64") for v in (n, mean, sd))
    defined = n >= 2
    df = np.where(defined, n - 1, 1.0)
    half = stats.t.ppf(0.5 + confidence / 2, df) * sd / np.sqrt(np.where(defined, n, 1.0))
    half = np.where(defined, half, math.nan)
    return mean - half, mean + half


def welch_interval(n1, mean1, sd1, n2, mean2, sd2, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Welch t interval of ``mean1 - mean2``, elementwise (no equal-variance assumption).

    ``se = sqrt(sd1^2/n1 + sd2^2/n2)`` with Welch-Satterthwaite degrees of freedom
    ``se^4 / ((sd1^2/n1)^2/(n1-1) + (sd2^2/n2)^2/(n2-1))``.  NaN unless both groups have ``n >= 2``;
    when both spreads are zero the interval is the point difference.
    """
    n1, mean1, sd1, n2, mean2, sd2 = (np.asarray(v, dtype="float64") for v in (n1, mean1, sd1, n2, mean2, sd2))
    defined = (n1 >= 2) & (n2 >= 2)
    safe1, safe2 = np.where(defined, n1, 2.0), np.where(defined, n2, 2.0)
    v1, v2 = sd1**2 / safe1, sd2**2 / safe2
    se = np.sqrt(v1 + v2)
    spread = se > 0
    df = np.where(spread, (v1 + v2) ** 2 / np.where(spread, v1**2 / (safe1 - 1) + v2**2 / (safe2 - 1), 1.0), 1.0)
    half = np.where(spread, stats.t.ppf(0.5 + confidence / 2, df) * se, 0.0)
    half = np.where(defined, half, math.nan)
    difference = mean1 - mean2
    return difference - half, difference + half


@dataclass(frozen=True)
class ConceptMap:
    """Which concepts each combo holds and what they are called (``data/combo_mappings.csv`` and the catalog).

    Result tables name concepts, not only ids; the caller reads the files, so everything here stays testable
    without them.
    """

    combo_concepts: Mapping[str, Sequence[str]]  # combo_id -> concept ids
    concept_names: Mapping[str, str]  # concept_id -> display name

    def concept_ids(self, combo_id: object) -> tuple[str, ...]:
        """The combo's concept ids, sorted; empty for an unknown combo."""
        return tuple(sorted(self.combo_concepts.get(combo_id, ()))) if isinstance(combo_id, str) else ()

    def name(self, concept_id: str) -> str:
        return self.concept_names.get(concept_id, concept_id)

    def label(self, combo_id: object) -> str:
        """The combo's concept names joined with " + " ("" for an unknown combo)."""
        return " + ".join(self.name(c) for c in self.concept_ids(combo_id))


NO_CONCEPTS = ConceptMap({}, {})


def _essay_means(df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (evaluation template, *by, essay): the AGGREGATION of its scored rows, with their count."""
    keys = ["evaluation_template", *by, "parent_gen_id"]
    g = df.groupby(keys, sort=True, dropna=False)
    return pd.DataFrame(
        {"score": g["score"].mean(), "score_max": g["score_max"].mean(), "n_evaluations": g.size()}
    ).reset_index()


def _moments(values: pd.core.groupby.SeriesGroupBy) -> pd.DataFrame:
    """n, mean, sd and the t interval of each group."""
    out = pd.DataFrame({"n": values.size(), "mean": values.mean(), "sd": values.std(ddof=1)})
    out["ci_low"], out["ci_high"] = t_interval(out["n"], out["mean"], out["sd"])
    return out


def sort_parsed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the parsed-scores table in canonical column and row order.

    Rows are sorted by ``cohort_id, parent_gen_id, evaluation_template,
    evaluation_model, evaluation_replicate, gen_id`` (missing values last).
    """
    df = _prepare(scores)
    if df.empty:
        return df
    return df.sort_values(PARSED_SCORES_SORT, kind="mergesort", na_position="last").reset_index(drop=True)


# --------------------------------------------------------------------------
# 2. pivot
# --------------------------------------------------------------------------


def pivot_columns(template: str) -> list[str]:
    """The aggregate columns :func:`pivot_scores` adds for one evaluation template."""
    return [f"{template}:{name}" for name in ("n", "mean", "ci_low", "ci_high")]


def pivot_scores(scores: pd.DataFrame, concepts: ConceptMap = NO_CONCEPTS) -> pd.DataFrame:
    """One row per essay: its scores per (evaluation template, judge) and, per template, their aggregate.

    Columns: :data:`PIVOT_KEY_COLUMNS` (``concepts`` is the combo's concept names joined with " + ", empty when
    ``concepts`` does not know the combo), then one column ``"<evaluation_template>_<evaluation_model>"`` per pair
    present (sorted by template, then judge) holding the judge's mean over replicates (NaN when the essay has no
    score for that pair), then per template (sorted) :func:`pivot_columns`: ``"<template>:n"`` (scored
    evaluations), ``":mean"`` (the :data:`AGGREGATION` over every judge and replicate) and ``":ci_low"`` /
    ``":ci_high"`` (:func:`t_interval`).  Templates are never combined: there is no cross-template total.
    Essay metadata is the first non-missing value among the essay's rows.  Only scored rows count: an essay
    whose evaluations all failed has no row.  Rows are sorted by ``parent_gen_id``.
    """
    df = _scored(scores)
    if df.empty:
        return _empty(PIVOT_KEY_COLUMNS)

    meta = (
        _prepare(scores)
        .dropna(subset=["parent_gen_id"])
        .groupby("parent_gen_id", sort=True)[ESSAY_META_COLUMNS]
        .first()
    )
    meta.insert(1, "concepts", [concepts.label(c) for c in meta["combo_id"]])
    cells = (
        df.groupby(["parent_gen_id", "evaluation_template", "evaluation_model"], sort=True)["score"]
        .mean()
        .reset_index()
    )
    cells["column"] = cells["evaluation_template"].astype(str) + "_" + cells["evaluation_model"].astype(str)
    pairs = (
        cells[["evaluation_template", "evaluation_model", "column"]]
        .drop_duplicates()
        .sort_values(["evaluation_template", "evaluation_model"], kind="mergesort")
    )
    score_cols = list(pairs["column"])
    if len(set(score_cols)) != len(score_cols):
        raise ValueError(
            "pivot column names collide after joining template and judge with '_': "
            + ", ".join(sorted({c for c in score_cols if score_cols.count(c) > 1}))
        )
    wide = cells.pivot(index="parent_gen_id", columns="column", values="score")
    wide = wide.reindex(columns=score_cols).sort_index()
    wide.columns = list(wide.columns)
    parts = [meta.reindex(wide.index), wide]
    for template, rows in df.groupby("evaluation_template", sort=True):
        aggregate = _moments(rows.groupby("parent_gen_id", sort=True)["score"])
        aggregate = aggregate[["n", "mean", "ci_low", "ci_high"]].reindex(wide.index)
        aggregate.columns = pivot_columns(str(template))
        parts.append(aggregate)
    out = pd.concat(parts, axis=1).reset_index()
    for column in out.columns:
        if column.endswith(":n"):
            out[column] = out[column].astype("Int64")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------
# 3. judge x template means
# --------------------------------------------------------------------------


def judge_template_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean score per judge (rows) and evaluation template (columns).

    The first column is ``evaluation_model``; the remaining columns are the
    evaluation templates in sorted order.  Each cell is the plain mean of that
    judge's scored rows for that template (every replicate counts once); NaN
    when the judge never scored the template.  Rows are sorted by judge.
    """
    df = _scored(scores)
    if df.empty:
        return _empty(["evaluation_model"])
    table = df.pivot_table(
        index="evaluation_model",
        columns="evaluation_template",
        values="score",
        aggfunc="mean",
        sort=True,
    )
    templates = sorted(table.columns)
    table = table.reindex(columns=templates).sort_index()
    table.columns = list(table.columns)
    out = table.reset_index()
    return out[["evaluation_model", *templates]].reset_index(drop=True)


# --------------------------------------------------------------------------
# 4. summary statistics
# --------------------------------------------------------------------------


def summary_statistics(scores: pd.DataFrame) -> pd.DataFrame:
    """Statistics of essay scores per evaluation template, for several groupings, in one table.

    Columns: :data:`SUMMARY_COLUMNS`.  For each evaluation template separately (never pooling two templates'
    scores), and within it for each grouping of :data:`SUMMARY_GROUPINGS` in that order -
    ``generation_template``, ``generation_model``, ``evaluation_model`` (the judge), ``combo_id``,
    ``draft_template``, ``generation_template x generation_model``, ``generation_model x evaluation_model``
    and ``overall``.  ``group`` is the group's value; for pairs the two values joined with ``" x "``;
    ``"all"`` for ``overall``; a missing value is shown as ``"(missing)"``.  Rows are sorted by template,
    grouping (in that order), then ``group``.

    The unit is the essay: each essay contributes one score per group, the :data:`AGGREGATION` of its scored
    evaluations in the group (for a judge grouping, that judge's replicates).  ``n`` counts those essays,
    ``n_evaluations`` the evaluations behind them; ``mean``, ``sd`` (ddof=1, NaN for one essay), ``min`` and
    ``max`` are over essay scores, and ``ci_low`` / ``ci_high`` the :func:`t_interval` of the mean.

    Thresholds are relative to the template's ``score_max``, over essay scores:

    * top:  ``score >= 0.9 * score_max``  -> ``top_share`` = share of essays
    * high: ``score >= 0.7 * score_max``  -> ``high_share`` = share of essays
    * low:  ``score <= 0.3 * score_max``  -> ``low_count`` = number of essays

    The comparisons are made on ``score / score_max`` with a 1e-9 tolerance,
    so e.g. 3 out of 10 counts as low despite float rounding.  An essay whose
    ``score_max`` is missing or not positive is never top, high or low (it
    still counts in ``n`` and the moments).  Groups with no scored rows do
    not appear; with no scored rows at all the table is empty.
    """
    df = _scored(scores)
    if df.empty:
        return _empty(SUMMARY_COLUMNS)
    df = df[df["evaluation_template"].notna()]
    # One two-stage groupby per grouping (a mask per group would cost O(groups x rows): 10,000 combos x 100,000 rows).
    parts: list[pd.DataFrame] = []
    for order, (grouping, cols) in enumerate(SUMMARY_GROUPINGS):
        labelled = df.assign(
            _group=[" x ".join(values) for values in zip(*[[_group_label(v) for v in df[c]] for c in cols])]
            if cols
            else "all"
        )
        essays = _essay_means(labelled, by=["_group"])
        ratio = essays["score"] / essays["score_max"].where(essays["score_max"] > 0)
        essays["_top"] = (ratio >= TOP_FRACTION - _EPS).astype("int64")
        essays["_high"] = (ratio >= HIGH_FRACTION - _EPS).astype("int64")
        essays["_low"] = (ratio <= LOW_FRACTION + _EPS).astype("int64")
        g = essays.groupby(["evaluation_template", "_group"], sort=True)
        part = _moments(g["score"])
        part["n_evaluations"] = g["n_evaluations"].sum()
        part["min"], part["max"] = g["score"].min(), g["score"].max()
        part["top_share"] = g["_top"].sum() / part["n"]
        part["high_share"] = g["_high"].sum() / part["n"]
        part["low_count"] = g["_low"].sum()
        part = part.reset_index().rename(columns={"_group": "group"})
        part["grouping"], part["_order"] = grouping, order
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["evaluation_template", "_order", "group"], kind="mergesort")[SUMMARY_COLUMNS]
    for c in ("n", "n_evaluations", "low_count"):
        out[c] = out[c].astype("int64")
    for c in ("mean", "sd", "ci_low", "ci_high", "min", "max", "top_share", "high_share"):
        out[c] = out[c].astype("float64")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------
# 5. top scoring essays with their paths
# --------------------------------------------------------------------------


def _first_valid(values: pd.Series) -> object:
    v = values.dropna()
    return v.iloc[0] if len(v) else np.nan


def top_score_paths(scores: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` essays with the highest mean score for each evaluation template.

    Columns: ``evaluation_template, parent_gen_id, mean_score, essay_path,
    draft_path, evaluation_paths``.  ``mean_score`` is the mean over all
    scored rows of the essay for that template (all judges and replicates);
    ``evaluation_paths`` joins the ``evaluation_path`` of those rows with
    ``";"`` in sorted order.  ``essay_path`` / ``draft_path`` are the first
    non-missing values among the essay's rows.  Rows are sorted by template,
    then mean score descending, ties by ``parent_gen_id`` ascending.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    df = _scored(scores)
    if df.empty or n == 0:
        return _empty(TOP_SCORE_PATHS_COLUMNS)
    keys = ["evaluation_template", "parent_gen_id"]
    # Rank every (template, essay) by its mean in one groupby, then gather paths for the n winners per template only.
    means = df.groupby(keys, sort=True)["score"].mean().rename("mean_score").reset_index()
    means = means.sort_values(
        ["evaluation_template", "mean_score", "parent_gen_id"],
        ascending=[True, False, True],
        kind="mergesort",
    )
    top = means.groupby("evaluation_template", sort=False).head(n)
    chosen = df.merge(top[keys], on=keys, how="inner").sort_values(
        ["evaluation_template", "parent_gen_id", "evaluation_path"],
        kind="mergesort",
        na_position="last",
    )
    details = {}
    for (template, essay), g in chosen.groupby(keys, sort=True):
        details[(template, essay)] = (
            _first_valid(g["essay_path"]),
            _first_valid(g["draft_path"]),
            ";".join(sorted(str(p) for p in g["evaluation_path"].dropna())),
        )
    rows = [
        {
            "evaluation_template": template,
            "parent_gen_id": essay,
            "mean_score": float(mean),
            "essay_path": details[(template, essay)][0],
            "draft_path": details[(template, essay)][1],
            "evaluation_paths": details[(template, essay)][2],
        }
        for template, essay, mean in zip(top["evaluation_template"], top["parent_gen_id"], top["mean_score"])
    ]
    return pd.DataFrame(rows, columns=TOP_SCORE_PATHS_COLUMNS)


# --------------------------------------------------------------------------
# 6. judge agreement per essay and template
# --------------------------------------------------------------------------


def agreement_class(value_range: float, judge_count: int) -> str:
    """Agreement class from the range of judge scores.

    ``"single"`` when fewer than 2 judges; otherwise range ``<= 1`` ->
    ``"high"``, ``<= 2`` -> ``"moderate"``, ``<= 3`` -> ``"low"``, larger ->
    ``"poor"`` (boundaries inclusive, 1e-9 tolerance).
    """
    if judge_count < 2:
        return "single"
    if value_range <= 1 + _EPS:
        return "high"
    if value_range <= 2 + _EPS:
        return "moderate"
    if value_range <= 3 + _EPS:
        return "low"
    return "poor"


def judge_agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """How much the judges agree on each essay, per evaluation template.

    Each judge (``evaluation_model``) first contributes one value per essay and
    template: the mean over its replicates.  Across those judge values:

    * ``judge_count`` - number of judges with a score,
    * ``mean``, ``sd`` (sample, ddof=1; NaN for one judge),
    * ``range`` = max - min (0 for one judge),
    * ``cv`` = sd / mean (NaN when mean == 0 or sd is NaN),
    * ``agreement`` - see :func:`agreement_class` (``"single"`` for one judge).

    Rows are sorted by ``parent_gen_id, evaluation_template``.
    """
    df = _scored(scores)
    if df.empty:
        return _empty(JUDGE_AGREEMENT_COLUMNS)
    per_judge = (
        df.groupby(["parent_gen_id", "evaluation_template", "evaluation_model"], sort=True)["score"]
        .mean()
        .reset_index()
    )
    g = per_judge.groupby(["parent_gen_id", "evaluation_template"], sort=True)["score"]
    out = pd.DataFrame(
        {
            "judge_count": g.size(),
            "mean": g.mean(),
            "sd": g.std(ddof=1),
            "range": g.max() - g.min(),
        }
    ).reset_index()
    mean, sd, rng, k = out["mean"], out["sd"], out["range"], out["judge_count"]
    out["cv"] = (sd / mean).where((mean != 0) & sd.notna(), math.nan)
    # agreement_class, on whole columns
    out["agreement"] = np.select(
        [k < 2, rng <= 1 + _EPS, rng <= 2 + _EPS, rng <= 3 + _EPS],
        ["single", "high", "moderate", "low"],
        default="poor",
    )
    out["judge_count"] = out["judge_count"].astype("int64")
    return out[JUDGE_AGREEMENT_COLUMNS]


# --------------------------------------------------------------------------
# 7. variance components per essay
# --------------------------------------------------------------------------


def variance_components(scores: pd.DataFrame) -> pd.DataFrame:
    """Per essay: how much its score varies across templates and across judges.

    * ``template_variance`` - sample variance (ddof=1) of the per-template
      means, each the mean of all the essay's scored rows for that template;
    * ``judge_variance`` - sample variance (ddof=1) of the per-judge means,
      each the mean of all the essay's scored rows by that judge;
    * ``n_templates`` / ``n_judges`` - how many means went in.

    A variance is NaN when fewer than 2 means exist.  Sorted by
    ``parent_gen_id``.
    """
    df = _scored(scores)
    if df.empty:
        return _empty(VARIANCE_COMPONENTS_COLUMNS)
    t_means = df.groupby(["parent_gen_id", "evaluation_template"], sort=True)["score"].mean()
    j_means = df.groupby(["parent_gen_id", "evaluation_model"], sort=True)["score"].mean()
    t = t_means.groupby(level=0, sort=True)
    j = j_means.groupby(level=0, sort=True)
    essays = pd.Index(sorted(df["parent_gen_id"].unique()), name="parent_gen_id")  # also those without any template
    out = pd.DataFrame(
        {
            "template_variance": t.var(ddof=1).reindex(essays),
            "judge_variance": j.var(ddof=1).reindex(essays),
            "n_templates": t.size().reindex(essays, fill_value=0),
            "n_judges": j.size().reindex(essays, fill_value=0),
        },
        index=essays,
    )
    out = out.reset_index()[VARIANCE_COMPONENTS_COLUMNS]
    out["n_templates"] = out["n_templates"].astype("int64")
    out["n_judges"] = out["n_judges"].astype("int64")
    return out


# --------------------------------------------------------------------------
# 8. Krippendorff's alpha
# --------------------------------------------------------------------------


def krippendorff_alpha_interval(units: Iterable[Iterable[float]]) -> float:
    """Krippendorff's alpha with the interval metric.

    ``units`` holds, per unit, the values the raters gave (missing values may
    be given as NaN/None and are dropped).  Only units with at least two
    values are pairable.  With ``n`` pairable values in total, ``m_u`` values
    in unit ``u``::

        D_o = 1/n          * sum_u  1/(m_u - 1) * sum_{i != j in u} (v_i - v_j)^2
        D_e = 1/(n (n-1))  * sum_{i != j over all pairable values} (v_i - v_j)^2
        alpha = 1 - D_o / D_e

    using ``sum_{i != j} (v_i - v_j)^2 = 2 m * sum (v - mean)^2``.  Returns NaN
    when fewer than 2 pairable values exist or when all pairable values are
    equal (``D_e == 0``: no variation, alpha undefined).
    """
    pairable: list[np.ndarray] = []
    for unit in units:
        vals = np.array([float(v) for v in unit if v is not None and not pd.isna(v)], dtype="float64")
        if len(vals) >= 2:
            pairable.append(vals)
    n = sum(len(v) for v in pairable)
    if n < 2:
        return math.nan
    all_vals = np.concatenate(pairable)
    ss_total = float(np.sum((all_vals - all_vals.mean()) ** 2))
    if ss_total == 0.0:
        return math.nan
    within = 0.0
    for vals in pairable:
        m = len(vals)
        within += m * float(np.sum((vals - vals.mean()) ** 2)) / (m - 1)
    return 1.0 - (n - 1) * within / (n * ss_total)


def _alpha_units(scores: pd.DataFrame) -> list[list[float]]:
    """Values per unit (essay, template), one per rater: a judge, its replicates averaged."""
    df = _scored(scores)
    if df.empty:
        return []
    per_rater = (
        df.groupby(
            ["parent_gen_id", "evaluation_template", "evaluation_model"],
            sort=True,
            dropna=False,
        )["score"]
        .mean()
        .reset_index()
    )
    # The groups of per_rater.groupby([essay, template], sort=True), in that order and each in row order, taken with
    # one stable sort instead of a Python-level loop over (essay, template) groups.
    per_rater = per_rater[per_rater["evaluation_template"].notna()]
    if per_rater.empty:
        return []
    codes = per_rater.groupby(["parent_gen_id", "evaluation_template"], sort=True).ngroup().to_numpy()
    values = per_rater["score"].to_numpy(dtype="float64")[np.argsort(codes, kind="stable")]
    bounds = np.cumsum(np.bincount(codes))[:-1]
    return [unit.tolist() for unit in np.split(values, bounds)]


def agreement_alpha(scores: pd.DataFrame) -> float:
    """Krippendorff's alpha (interval metric) between judges over the whole scores table.

    Units are (``parent_gen_id``, ``evaluation_template``); raters are the
    judges (``evaluation_model``), each giving one value per unit: the mean of
    its replicates (replicates of one judge are not independent raters, and one
    judge cannot agree or disagree with anyone).  NaN when fewer than 2
    pairable values exist or the pairable values do not vary.  See
    :func:`krippendorff_alpha_interval`.
    """
    return krippendorff_alpha_interval(_alpha_units(scores))


def agreement_summary(scores: pd.DataFrame) -> dict:
    """Alpha plus the counts behind it (the content of ``agreement.json``).

    Keys: ``alpha`` (None when undefined), ``undefined_reason`` (None when
    alpha is defined, else why not, as a sentence for the report),
    ``metric`` (``"interval"``), ``n_judges`` (judges with a score),
    ``n_evaluations`` (rows), ``n_scored``, ``n_errors`` (rows without a
    score), ``n_essays`` (essays with a score), ``n_units`` (units with a
    score), ``n_pairable_units`` (units scored by >= 2 judges) and
    ``n_pairable_values``.
    """
    df = _prepare(scores)
    units = _alpha_units(df)
    pairable = [u for u in units if len(u) >= 2]
    alpha = krippendorff_alpha_interval(units)
    scored = df["score"].notna()
    n_judges = int(df.loc[scored, "evaluation_model"].dropna().nunique())
    if not math.isnan(alpha):
        reason = None
    elif n_judges < 2:
        reason = (
            f"{'one judge' if n_judges else 'no judge'} scored these essays; agreement between judges "
            "needs two judges or more"
        )
    elif not pairable:
        reason = "no essay was scored by two judges with the same evaluation template"
    else:
        reason = "the judges' scores do not vary at all, so agreement beyond chance cannot be measured"
    return {
        "alpha": None if math.isnan(alpha) else float(alpha),
        "undefined_reason": reason,
        "metric": "interval",
        "n_judges": n_judges,
        "n_evaluations": int(len(df)),
        "n_scored": int(scored.sum()),
        "n_errors": int((~scored).sum()),
        "n_essays": int(df.loc[scored, "parent_gen_id"].dropna().nunique()),
        "n_units": len(units),
        "n_pairable_units": len(pairable),
        "n_pairable_values": int(sum(len(u) for u in pairable)),
    }


# --------------------------------------------------------------------------
# 9. selection of top essays
# --------------------------------------------------------------------------


def select_top(
    scores: pd.DataFrame,
    templates: list[str],
    exclude_judge: str | None = None,
    top_n: int = 10,
    *,
    by: str = "mean",
    min_judges: int = 1,
    max_judge_range: float | None = None,
) -> pd.DataFrame:
    """The best essays on the chosen templates, with the scores they were ranked by.

    Considers scored rows whose ``evaluation_template`` is in ``templates`` and,
    when ``exclude_judge`` is given, whose ``evaluation_model`` does NOT match
    that shell-style glob pattern (``fnmatch.fnmatchcase``: case-sensitive,
    ``*``, ``?``, ``[seq]``; e.g. ``"openai/*"``; a plain name matches only
    itself).  An evaluation listed under several cohorts (same ``gen_id``, see
    :func:`aggregate_cross_experiment`) counts once.

    Per essay: ``n`` scored evaluations, ``mean`` (the :data:`AGGREGATION` over
    every judge, replicate and chosen template), ``ci_low`` / ``ci_high``
    (:func:`t_interval`), ``n_judges`` (distinct judges) and ``judge_range``
    (max - min of the judges' own means; 0 for one judge).  Essays with fewer
    than ``min_judges`` judges, or (when ``max_judge_range`` is given) whose
    judges disagree by more than it, are left out.  ``by="mean"`` ranks by the
    mean, highest first; ``by="lower-bound"`` by ``ci_low`` (an essay without an
    interval, n=1, ranks after every essay with one), then the mean; ties by
    ``gen_id`` ascending.  Returns at most ``top_n`` rows with
    :data:`SELECT_TOP_COLUMNS` (``gen_id`` is the essay's gen_id).

    Every requested template must occur in ``scores`` (in any row, error rows
    included), otherwise::

        ValueError("unknown evaluation template(s): 'x'; templates present: a, b")

    (unknown names in request order, quoted with ``repr``; present templates
    sorted, comma-separated, ``(none)`` when there are none).  An empty scores
    table has nothing to check against or select, and returns no rows.
    """
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise ValueError("templates must name at least one evaluation template")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    if by not in SELECT_TOP_ORDERS:
        raise ValueError(f"by must be one of {', '.join(SELECT_TOP_ORDERS)}, got {by!r}")
    if min_judges < 1:
        raise ValueError(f"min_judges must be >= 1, got {min_judges}")
    if max_judge_range is not None and max_judge_range < 0:
        raise ValueError(f"max_judge_range must be >= 0, got {max_judge_range:g}")
    df = _prepare(scores)
    if df.empty:
        return _empty(SELECT_TOP_COLUMNS)
    present = sorted({str(t) for t in df["evaluation_template"].dropna()})
    unknown = [t for t in templates if t not in present]
    if unknown:
        raise ValueError(
            "unknown evaluation template(s): "
            + ", ".join(repr(t) for t in unknown)
            + "; templates present: "
            + (", ".join(present) if present else "(none)")
        )
    mask = df["evaluation_template"].isin(templates) & df["score"].notna()
    mask &= df["parent_gen_id"].notna()
    if exclude_judge is not None:
        mask &= ~df["evaluation_model"].map(
            lambda m: isinstance(m, str) and fnmatch.fnmatchcase(m, exclude_judge)
        ).astype(bool)
    chosen = df[mask]
    chosen = pd.concat([chosen[chosen["gen_id"].notna()].drop_duplicates("gen_id"), chosen[chosen["gen_id"].isna()]])
    if chosen.empty or top_n == 0:
        return _empty(SELECT_TOP_COLUMNS)
    chosen = chosen.assign(parent_gen_id=chosen["parent_gen_id"].astype(str))
    ranked = _moments(chosen.groupby("parent_gen_id", sort=True)["score"])
    judge_means = chosen.groupby(["parent_gen_id", "evaluation_model"], sort=True)["score"].mean()
    per_essay = judge_means.groupby(level=0, sort=True)
    ranked["n_judges"] = per_essay.size()
    ranked["judge_range"] = per_essay.max() - per_essay.min()
    ranked = ranked[ranked["n_judges"] >= min_judges]
    if max_judge_range is not None:
        ranked = ranked[ranked["judge_range"] <= max_judge_range + _EPS]
    ranked = ranked.rename_axis("gen_id").reset_index()
    keys = ["mean", "gen_id"] if by == "mean" else ["ci_low", "mean", "gen_id"]
    ranked = ranked.sort_values(
        keys, ascending=[False] * (len(keys) - 1) + [True], kind="mergesort", na_position="last"
    )
    out = ranked[SELECT_TOP_COLUMNS].head(top_n).reset_index(drop=True)
    out["n"] = out["n"].astype("int64")
    out["n_judges"] = out["n_judges"].astype("int64")
    return out


# --------------------------------------------------------------------------
# 10. cross-experiment aggregation
# --------------------------------------------------------------------------


def aggregate_cross_experiment(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate several cohorts' parsed-scores tables, each evaluation under every cohort that holds it.

    An evaluation (``gen_id``) shared by several cohorts has one row per cohort, and its ``cohorts`` column
    lists them all (sorted, joined with ``";"``) so a reader can count it once (``drop_duplicates("gen_id")``;
    :func:`select_top` does).  A row repeated within one cohort appears once; rows without a ``gen_id`` are
    all kept (their ``cohorts`` is their own ``cohort_id``).  The result has :data:`CROSS_EXPERIMENT_COLUMNS`
    and is sorted as in :func:`sort_parsed_scores`.
    """
    prepared = [_prepare(f) for f in frames]
    non_empty = [f for f in prepared if not f.empty]
    if not non_empty:
        return _prepare(_empty(PARSED_SCORES_COLUMNS)).assign(cohorts=pd.Series([], dtype="object"))
    df = pd.concat(non_empty, ignore_index=True)
    has_id = df["gen_id"].notna()
    df = pd.concat([df[has_id].drop_duplicates(subset=["cohort_id", "gen_id"]), df[~has_id]], ignore_index=True)
    df = sort_parsed_scores(df)
    holders = (
        df[df["gen_id"].notna()]
        .groupby("gen_id")["cohort_id"]
        .agg(lambda c: ";".join(sorted({_group_label(v) for v in c})))
    )
    df["cohorts"] = df["gen_id"].map(holders)
    df.loc[df["gen_id"].isna(), "cohorts"] = df.loc[df["gen_id"].isna(), "cohort_id"].map(_group_label)
    return df[CROSS_EXPERIMENT_COLUMNS]


# --------------------------------------------------------------------------
# 11. concept effects
# --------------------------------------------------------------------------


def _concept_essays(scores: pd.DataFrame, concepts: ConceptMap) -> tuple[pd.DataFrame, list[str]]:
    """Essay scores per template whose combo is known, with the indices (into the returned ids) of its concepts."""
    df = _scored(scores)
    df = df[df["evaluation_template"].notna()]
    combos = df.groupby("parent_gen_id", sort=True)["combo_id"].first()
    essays = _essay_means(df)
    held = essays["parent_gen_id"].map(lambda e: concepts.concept_ids(combos.get(e)))
    essays, held = essays[held.map(len) > 0].reset_index(drop=True), held[held.map(len) > 0].reset_index(drop=True)
    ids = sorted({c for concept_ids in held for c in concept_ids})
    index = {c: i for i, c in enumerate(ids)}
    essays["concepts"] = [[index[c] for c in concept_ids] for concept_ids in held]
    return essays, ids


def _sd(sum_sq: np.ndarray, n: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Sample sd from a sum of squares about zero, its count and its mean; NaN below two values."""
    out = np.full(len(n), math.nan)
    two = n >= 2
    out[two] = np.sqrt(np.maximum(sum_sq[two] - n[two] * mean[two] ** 2, 0) / (n[two] - 1))
    return out


def _effects(scores: np.ndarray, keys: Sequence[Sequence[int]]) -> pd.DataFrame:
    """With / without statistics per key, over essays (aligned with ``scores``) that each hold some keys.

    Works from per-key counts and sums (one row per essay and key it holds), so the cost follows what the
    essays hold, not essays x keys (100 concepts: 4,950 pairs over 20,000 essays in a fraction of a second).
    """
    # Sums of centred scores keep the variances exact enough for scores on a 0..10 scale.
    x = scores - scores.mean()
    long = pd.DataFrame({"key": list(keys), "x": x}).explode("key")
    long["sq"] = long["x"] ** 2
    sums = long.groupby("key", sort=True)[["x", "sq"]].agg(["size", "sum"])
    n_with = sums[("x", "size")].to_numpy(dtype="float64")
    sum_with, sq_with = sums[("x", "sum")].to_numpy(), sums[("sq", "sum")].to_numpy()
    n_without = len(scores) - n_with
    sum_without, sq_without = x.sum() - sum_with, (x**2).sum() - sq_with
    with np.errstate(invalid="ignore", divide="ignore"):  # a side without essays has no mean
        mean_with, mean_without = sum_with / n_with, sum_without / n_without
    low, high = welch_interval(
        n_with,
        mean_with,
        _sd(sq_with, n_with, mean_with),
        n_without,
        mean_without,
        _sd(sq_without, n_without, mean_without),
    )
    return pd.DataFrame(
        {
            "n_with": n_with.astype("int64"),
            "mean_with": mean_with + scores.mean(),
            "n_without": n_without.astype("int64"),
            "mean_without": mean_without + scores.mean(),
            "difference": mean_with - mean_without,
            "ci_low": low,
            "ci_high": high,
        },
        index=sums.index.astype("int64"),
    )


def concept_effects(scores: pd.DataFrame, concepts: ConceptMap) -> pd.DataFrame:
    """Per evaluation template and concept: how essays whose combo holds the concept score against the others.

    The unit is the essay: its score for a template is the :data:`AGGREGATION` of its evaluations.  Only
    essays whose ``combo_id`` ``concepts`` knows take part.  ``n_with`` / ``mean_with`` are over essays with
    the concept, ``n_without`` / ``mean_without`` over the template's other essays, ``difference`` is
    ``mean_with - mean_without`` and ``ci_low`` / ``ci_high`` its :func:`welch_interval` (NaN unless both sides
    have two essays or more).  Essays that share a combo are treated as independent, so with several essays per
    combo the interval is on the narrow side.  Columns :data:`CONCEPT_EFFECT_COLUMNS`, sorted by template and
    ``concept_id``.
    """
    essays, ids = _concept_essays(scores, concepts)
    parts = []
    for template, rows in essays.groupby("evaluation_template", sort=True):
        effects = _effects(rows["score"].to_numpy(), rows["concepts"])
        chosen = [ids[i] for i in effects.index]
        parts.append(
            effects.reset_index(drop=True).assign(
                evaluation_template=template, concept_id=chosen, concept=[concepts.name(c) for c in chosen]
            )
        )
    if not parts:
        return _empty(CONCEPT_EFFECT_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CONCEPT_EFFECT_COLUMNS]


def concept_pair_effects(scores: pd.DataFrame, concepts: ConceptMap) -> pd.DataFrame:
    """As :func:`concept_effects`, per unordered pair of concepts held together by at least one essay's combo.

    "With" are the essays whose combo holds both concepts, "without" every other essay of the template
    (including those holding one of the two).  ``concept_id_a < concept_id_b``.  Columns
    :data:`CONCEPT_PAIR_EFFECT_COLUMNS`, sorted by template, then the two ids.
    """
    essays, ids = _concept_essays(scores, concepts)
    width = len(ids)
    parts = []
    for template, rows in essays.groupby("evaluation_template", sort=True):
        pairs = [[a * width + b for a, b in itertools.combinations(sorted(held), 2)] for held in rows["concepts"]]
        if not any(pairs):
            continue
        effects = _effects(rows["score"].to_numpy(), pairs)
        first, second = ([ids[i] for i in side] for side in divmod(effects.index.to_numpy(), width))
        parts.append(
            effects.reset_index(drop=True).assign(
                evaluation_template=template,
                concept_id_a=first,
                concept_a=[concepts.name(c) for c in first],
                concept_id_b=second,
                concept_b=[concepts.name(c) for c in second],
            )
        )
    if not parts:
        return _empty(CONCEPT_PAIR_EFFECT_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CONCEPT_PAIR_EFFECT_COLUMNS]


# --------------------------------------------------------------------------
# 12. writing the report tables
# --------------------------------------------------------------------------

REPORT_FILES: dict[str, str] = {
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


def write_tables(scores: pd.DataFrame, reports_dir: Path, concepts: ConceptMap = NO_CONCEPTS) -> dict[str, Path]:
    """Write every result table into ``reports_dir`` (created if needed).

    Files: ``parsed_scores.csv`` (canonical order), ``pivot.csv`` (concept names from ``concepts``),
    ``judge_template_means.csv``, ``summary_statistics.csv``, ``top_score_paths.csv`` (default n=10),
    ``judge_agreement.csv``, ``variance_components.csv``, ``concept_effects.csv`` and
    ``concept_pair_effects.csv`` (header only when ``concepts`` knows none of the combos; CSV without index,
    NaN as empty field) and ``agreement.json`` (:func:`agreement_summary`, ``alpha`` null when undefined).
    Each file is written to a temporary file in the same directory and moved into place with ``os.replace``,
    so readers never see a partial file.  Returns ``{name: path}`` with the names of :data:`REPORT_FILES`
    (file name without extension).
    """
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "parsed_scores": sort_parsed_scores(scores),
        "pivot": pivot_scores(scores, concepts),
        "judge_template_means": judge_template_means(scores),
        "summary_statistics": summary_statistics(scores),
        "top_score_paths": top_score_paths(scores),
        "judge_agreement": judge_agreement(scores),
        "variance_components": variance_components(scores),
        "concept_effects": concept_effects(scores, concepts),
        "concept_pair_effects": concept_pair_effects(scores, concepts),
    }
    written: dict[str, Path] = {}
    for name, table in tables.items():
        path = reports_dir / REPORT_FILES[name]
        atomic_write_text(path, table.to_csv(index=False, lineterminator="\n"))
        written[name] = path
    path = reports_dir / REPORT_FILES["agreement"]
    summary = agreement_summary(scores)
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n")
    written["agreement"] = path
    return written
