"""The descriptive result tables of one cohort: per-essay pivot, judge x template means, summary statistics and the
best essays with their files.

They are what a reader looks at first, and what the report draws; each is a pure function of the parsed-scores
table (see `analysis.scores` for the conventions they share) and intervals come from `analysis.intervals`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from daydream_luigi.analysis.intervals import moments
from daydream_luigi.analysis.scores import (
    NO_CONCEPTS,
    TOLERANCE,
    ConceptMap,
    empty_table,
    essay_means,
    group_label,
    prepare,
    scored_rows,
)

#: Essay-level descriptive columns carried into :func:`pivot_scores`.
ESSAY_META_COLUMNS: list[str] = [
    "combo_id",
    "draft_template",
    "generation_template",
    "generation_model",
]

#: Columns of :func:`pivot_scores` before the score columns.
PIVOT_KEY_COLUMNS: list[str] = ["parent_gen_id", "combo_id", "concepts", *ESSAY_META_COLUMNS[1:]]

#: Thresholds relative to the row's score_max (see summary_statistics).
TOP_FRACTION = 0.9
HIGH_FRACTION = 0.7
LOW_FRACTION = 0.3

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
#: Added before ``overall`` when the scores say which upstream host served each evaluation (``evaluation_host``).
HOST_GROUPINGS: list[tuple[str, tuple[str, ...]]] = [
    ("evaluation_host", ("evaluation_host",)),
    ("evaluation_model x evaluation_host", ("evaluation_model", "evaluation_host")),
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


def pivot_columns(template: str) -> list[str]:
    """The aggregate columns :func:`pivot_scores` adds for one evaluation template."""
    return [f"{template}:{name}" for name in ("n", "mean", "ci_low", "ci_high")]


def pivot_scores(scores: pd.DataFrame, concepts: ConceptMap = NO_CONCEPTS) -> pd.DataFrame:
    """One row per essay: its scores per (evaluation template, judge) and, per template, their aggregate.

    Columns: :data:`PIVOT_KEY_COLUMNS` (``concepts`` is the combo's concept names joined with " + ", empty when
    ``concepts`` does not know the combo), then one column ``"<evaluation_template>_<evaluation_model>"`` per pair
    present (sorted by template, then judge) holding the judge's mean over replicates (NaN when the essay has no
    score for that pair), then per template (sorted) :func:`pivot_columns`: ``"<template>:n"`` (scored
    evaluations), ``":mean"`` (the mean over every judge and replicate) and ``":ci_low"`` /
    ``":ci_high"`` (:func:`t_interval`).  Templates are never combined: there is no cross-template total.
    Essay metadata is the first non-missing value among the essay's rows.  Only scored rows count: an essay
    whose evaluations all failed has no row.  Rows are sorted by ``parent_gen_id``.
    """
    df = scored_rows(scores)
    if df.empty:
        return empty_table(PIVOT_KEY_COLUMNS)

    meta = (
        prepare(scores).dropna(subset=["parent_gen_id"]).groupby("parent_gen_id", sort=True)[ESSAY_META_COLUMNS].first()
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
        aggregate = moments(rows.groupby("parent_gen_id", sort=True)["score"])
        aggregate = aggregate[["n", "mean", "ci_low", "ci_high"]].reindex(wide.index)
        aggregate.columns = pivot_columns(str(template))
        parts.append(aggregate)
    out = pd.concat(parts, axis=1).reset_index()
    for column in out.columns:
        if column.endswith(":n"):
            out[column] = out[column].astype("Int64")
    return out.reset_index(drop=True)


def judge_template_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean score per judge (rows) and evaluation template (columns).

    The first column is ``evaluation_model``; the remaining columns are the
    evaluation templates in sorted order.  Each cell is the plain mean of that
    judge's scored rows for that template (every replicate counts once); NaN
    when the judge never scored the template.  Rows are sorted by judge.
    """
    df = scored_rows(scores)
    if df.empty:
        return empty_table(["evaluation_model"])
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


def summary_statistics(scores: pd.DataFrame) -> pd.DataFrame:
    """Statistics of essay scores per evaluation template, for several groupings, in one table.

    Columns: :data:`SUMMARY_COLUMNS`.  For each evaluation template separately (never pooling two templates'
    scores), and within it for each grouping of :data:`SUMMARY_GROUPINGS` in that order -
    ``generation_template``, ``generation_model``, ``evaluation_model`` (the judge), ``combo_id``,
    ``draft_template``, ``generation_template x generation_model``, ``generation_model x evaluation_model``
    and ``overall`` (with, before ``overall``, :data:`HOST_GROUPINGS` when the scores have an ``evaluation_host``
    column with a value).  ``group`` is the group's value; for pairs the two values joined with ``" x "``;
    ``"all"`` for ``overall``; a missing value is shown as ``"(missing)"``.  Rows are sorted by template,
    grouping (in that order), then ``group``.

    The unit is the essay: each essay contributes one score per group, the mean of its scored
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
    df = scored_rows(scores)
    if df.empty:
        return empty_table(SUMMARY_COLUMNS)
    df = df[df["evaluation_template"].notna()]
    groupings = SUMMARY_GROUPINGS
    if "evaluation_host" in df.columns and df["evaluation_host"].notna().any():  # the hosts that served the judges
        groupings = [*SUMMARY_GROUPINGS[:-1], *HOST_GROUPINGS, SUMMARY_GROUPINGS[-1]]
    # One two-stage groupby per grouping (a mask per group would cost O(groups x rows): 10,000 combos x 100,000 rows).
    parts: list[pd.DataFrame] = []
    for order, (grouping, cols) in enumerate(groupings):
        labelled = df.assign(
            _group=[" x ".join(values) for values in zip(*[[group_label(v) for v in df[c]] for c in cols])]
            if cols
            else "all"
        )
        essays = essay_means(labelled, by=["_group"])
        ratio = essays["score"] / essays["score_max"].where(essays["score_max"] > 0)
        essays["_top"] = (ratio >= TOP_FRACTION - TOLERANCE).astype("int64")
        essays["_high"] = (ratio >= HIGH_FRACTION - TOLERANCE).astype("int64")
        essays["_low"] = (ratio <= LOW_FRACTION + TOLERANCE).astype("int64")
        g = essays.groupby(["evaluation_template", "_group"], sort=True)
        part = moments(g["score"])
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
    df = scored_rows(scores)
    if df.empty or n == 0:
        return empty_table(TOP_SCORE_PATHS_COLUMNS)
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
