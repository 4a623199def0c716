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
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .store import atomic_write_text

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

#: Sort order of the parsed-scores table itself.
PARSED_SCORES_SORT: list[str] = [
    "cohort_id",
    "parent_gen_id",
    "evaluation_template",
    "evaluation_model",
    "evaluation_replicate",
    "gen_id",
]

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
    "grouping",
    "group",
    "count",
    "mean",
    "sd",
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

#: Label used in summary_statistics for a missing group value.
MISSING_GROUP = "(missing)"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _prepare(scores: pd.DataFrame) -> pd.DataFrame:
    """Validate columns and return a copy restricted to PARSED_SCORES_COLUMNS."""
    missing = [c for c in PARSED_SCORES_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(
            "parsed scores table is missing columns: " + ", ".join(missing)
        )
    df = scores.loc[:, PARSED_SCORES_COLUMNS].copy()
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype("float64")
    df["score_max"] = pd.to_numeric(df["score_max"], errors="coerce").astype("float64")
    df = df.reset_index(drop=True)
    return df


def _scored(scores: pd.DataFrame) -> pd.DataFrame:
    """Prepared rows that have a score and an essay key."""
    df = _prepare(scores)
    return df[df["score"].notna() & df["parent_gen_id"].notna()].reset_index(drop=True)


def _sample_sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) >= 2 else math.nan


def _sample_var(values: pd.Series) -> float:
    return float(values.var(ddof=1)) if len(values) >= 2 else math.nan


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="object") for c in columns})


def _group_label(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING_GROUP
    return str(value)


def sort_parsed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the parsed-scores table in canonical column and row order.

    Rows are sorted by ``cohort_id, parent_gen_id, evaluation_template,
    evaluation_model, evaluation_replicate, gen_id`` (missing values last).
    """
    df = _prepare(scores)
    if df.empty:
        return df
    return df.sort_values(
        PARSED_SCORES_SORT, kind="mergesort", na_position="last"
    ).reset_index(drop=True)


# --------------------------------------------------------------------------
# 2. pivot
# --------------------------------------------------------------------------


def pivot_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per essay with one column per (evaluation template, judge).

    Columns: ``parent_gen_id, combo_id, draft_template, generation_template,
    generation_model``, then one column named
    ``"<evaluation_template>_<evaluation_model>"`` per pair present (sorted by
    template, then judge) holding the mean score over replicates (NaN when the
    essay has no score for that pair), then ``sum`` - the sum of the essay's
    score columns skipping NaN.  Essay metadata is the first non-missing value
    among the essay's rows.  Only scored rows count: an essay whose
    evaluations all failed has no row.  Rows are sorted by ``parent_gen_id``.
    """
    key_cols = ["parent_gen_id", *ESSAY_META_COLUMNS]
    df = _scored(scores)
    if df.empty:
        return _empty([*key_cols, "sum"])

    meta = (
        _prepare(scores)
        .dropna(subset=["parent_gen_id"])
        .groupby("parent_gen_id", sort=True)[ESSAY_META_COLUMNS]
        .first()
    )
    cells = (
        df.groupby(["parent_gen_id", "evaluation_template", "evaluation_model"], sort=True)[
            "score"
        ]
        .mean()
        .reset_index()
    )
    cells["column"] = (
        cells["evaluation_template"].astype(str) + "_" + cells["evaluation_model"].astype(str)
    )
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
    out = meta.reindex(wide.index).join(wide)
    out["sum"] = out[score_cols].sum(axis=1, skipna=True)
    out = out.reset_index()
    return out[[*key_cols, *score_cols, "sum"]].reset_index(drop=True)


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


def _threshold_flags(df: pd.DataFrame) -> pd.DataFrame:
    ratio = df["score"] / df["score_max"].where(df["score_max"] > 0)
    out = df.copy()
    out["_top"] = (ratio >= TOP_FRACTION - _EPS).astype("int64")
    out["_high"] = (ratio >= HIGH_FRACTION - _EPS).astype("int64")
    out["_low"] = (ratio <= LOW_FRACTION + _EPS).astype("int64")
    return out


def summary_statistics(scores: pd.DataFrame) -> pd.DataFrame:
    """Descriptive statistics of scored rows for several groupings, in one table.

    Columns: ``grouping, group, count, mean, sd, min, max, top_share,
    high_share, low_count``.

    Groupings, in this row order: ``generation_template``,
    ``generation_model``, ``evaluation_model`` (the judge), ``combo_id``,
    ``draft_template``, ``generation_template x generation_model``,
    ``generation_model x evaluation_model`` and ``overall``.  ``group`` is the
    group's value; for pairs the two values joined with ``" x "``; ``"all"``
    for ``overall``; a missing value is shown as ``"(missing)"``.  Within a
    grouping rows are sorted by ``group``.

    Every scored row counts once (replicates are not averaged first).
    ``sd`` is the sample standard deviation (ddof=1), NaN for a single value.

    Thresholds are relative to each row's own ``score_max`` (so templates with
    different scales can be pooled):

    * top:  ``score >= 0.9 * score_max``  -> ``top_share`` = share of rows
    * high: ``score >= 0.7 * score_max``  -> ``high_share`` = share of rows
    * low:  ``score <= 0.3 * score_max``  -> ``low_count`` = number of rows

    The comparisons are made on ``score / score_max`` with a 1e-9 tolerance,
    so e.g. 3 out of 10 counts as low despite float rounding.  A row whose
    ``score_max`` is missing or not positive is never top, high or low (it
    still counts in ``count`` and the moments).  Groups with no scored rows do
    not appear; with no scored rows at all the table is empty.
    """
    df = _scored(scores)
    if df.empty:
        return _empty(SUMMARY_COLUMNS)
    df = _threshold_flags(df)

    # One groupby per grouping (a boolean mask per group would cost O(groups x rows): 10,000 combos x 100,000 rows).
    parts: list[pd.DataFrame] = []
    for grouping, cols in SUMMARY_GROUPINGS:
        if cols:
            columns = [[_group_label(v) for v in df[c].tolist()] for c in cols]
            labels = [" x ".join(values) for values in zip(*columns)]
        else:
            labels = ["all"] * len(df)
        g = df.groupby(pd.Series(labels, index=df.index, dtype=object), sort=True)
        n = g.size()
        part = pd.DataFrame(
            {
                "grouping": grouping,
                "count": n,
                "mean": g["score"].mean(),
                "sd": g["score"].std(ddof=1),
                "min": g["score"].min(),
                "max": g["score"].max(),
                "top_share": g["_top"].sum() / n,
                "high_share": g["_high"].sum() / n,
                "low_count": g["_low"].sum(),
            }
        )
        part.index.name = "group"
        parts.append(part.reset_index())
    out = pd.concat(parts, ignore_index=True)[SUMMARY_COLUMNS]
    out["count"] = out["count"].astype("int64")
    out["low_count"] = out["low_count"].astype("int64")
    for c in ("mean", "sd", "min", "max", "top_share", "high_share"):
        out[c] = out[c].astype("float64")
    return out


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
        df.groupby(["parent_gen_id", "evaluation_template", "evaluation_model"], sort=True)[
            "score"
        ]
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
        vals = np.array(
            [float(v) for v in unit if v is not None and not pd.isna(v)], dtype="float64"
        )
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
    """Values per unit (essay, template), one per rater (judge, replicate)."""
    df = _scored(scores)
    if df.empty:
        return []
    # A rater should give one value per unit; duplicates are averaged.
    per_rater = (
        df.groupby(
            ["parent_gen_id", "evaluation_template", "evaluation_model", "evaluation_replicate"],
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
    """Krippendorff's alpha (interval metric) over the whole scores table.

    Units are (``parent_gen_id``, ``evaluation_template``); raters are
    (``evaluation_model``, ``evaluation_replicate``), so replicates of one
    judge count as separate raters.  If one rater has several scored rows for
    a unit they are averaged into one value.  NaN when fewer than 2 pairable
    values exist or the pairable values do not vary.  See
    :func:`krippendorff_alpha_interval`.
    """
    return krippendorff_alpha_interval(_alpha_units(scores))


def agreement_summary(scores: pd.DataFrame) -> dict:
    """Alpha plus the counts behind it (the content of ``agreement.json``).

    Keys: ``alpha`` (None when undefined), ``metric`` (``"interval"``),
    ``n_evaluations`` (rows), ``n_scored``, ``n_errors`` (rows without a
    score), ``n_essays`` (essays with a score), ``n_units`` (units with a
    score), ``n_pairable_units`` (units with >= 2 rater values) and
    ``n_pairable_values``.
    """
    df = _prepare(scores)
    units = _alpha_units(df)
    pairable = [u for u in units if len(u) >= 2]
    alpha = krippendorff_alpha_interval(units)
    scored = df["score"].notna()
    return {
        "alpha": None if math.isnan(alpha) else float(alpha),
        "metric": "interval",
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
) -> list[str]:
    """Essay ids (``parent_gen_id``) ranked by their best score.

    Considers scored rows whose ``evaluation_template`` is in ``templates`` and,
    when ``exclude_judge`` is given, whose ``evaluation_model`` does NOT match
    that shell-style glob pattern (``fnmatch.fnmatchcase``: case-sensitive,
    ``*``, ``?``, ``[seq]``; e.g. ``"openai/*"``; a plain name matches only
    itself).  Each essay is ranked by the MAX of those scores, highest first,
    ties by id ascending; at most ``top_n`` ids are returned.

    Every requested template must occur in ``scores`` (in any row, error rows
    included), otherwise::

        ValueError("unknown evaluation template(s): 'x'; templates present: a, b")

    (unknown names in request order, quoted with ``repr``; present templates
    sorted, comma-separated, ``(none)`` when there are none).  An empty scores
    table has nothing to check against or select, and returns ``[]``.
    """
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise ValueError("templates must name at least one evaluation template")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    df = _prepare(scores)
    if df.empty:
        return []
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
    if chosen.empty or top_n == 0:
        return []
    best = chosen.groupby("parent_gen_id", sort=True)["score"].max().reset_index()
    best["parent_gen_id"] = best["parent_gen_id"].astype(str)
    best = best.sort_values(
        ["score", "parent_gen_id"], ascending=[False, True], kind="mergesort"
    )
    return list(best["parent_gen_id"].head(top_n))


# --------------------------------------------------------------------------
# 10. cross-experiment aggregation
# --------------------------------------------------------------------------


def aggregate_cross_experiment(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate several cohorts' parsed-scores tables.

    An evaluation (``gen_id``) present in several cohorts appears once: the
    row of the alphabetically first ``cohort_id`` is kept (missing cohort ids
    sort last).  Rows without a ``gen_id`` are all kept.  The result has
    exactly :data:`PARSED_SCORES_COLUMNS` and is sorted as in
    :func:`sort_parsed_scores`.
    """
    prepared = [_prepare(f) for f in frames]
    non_empty = [f for f in prepared if not f.empty]
    if not non_empty:
        return _prepare(_empty(PARSED_SCORES_COLUMNS))
    df = pd.concat(non_empty, ignore_index=True)
    df = df.sort_values(["cohort_id", "gen_id"], kind="mergesort", na_position="last")
    has_id = df["gen_id"].notna()
    df = pd.concat(
        [df[has_id].drop_duplicates(subset=["gen_id"], keep="first"), df[~has_id]],
        ignore_index=True,
    )
    return sort_parsed_scores(df)


# --------------------------------------------------------------------------
# 11. writing the report tables
# --------------------------------------------------------------------------

REPORT_FILES: dict[str, str] = {
    "parsed_scores": "parsed_scores.csv",
    "pivot": "pivot.csv",
    "judge_template_means": "judge_template_means.csv",
    "summary_statistics": "summary_statistics.csv",
    "top_score_paths": "top_score_paths.csv",
    "judge_agreement": "judge_agreement.csv",
    "variance_components": "variance_components.csv",
    "agreement": "agreement.json",
}


def write_tables(scores: pd.DataFrame, reports_dir: Path) -> dict[str, Path]:
    """Write every result table into ``reports_dir`` (created if needed).

    Files: ``parsed_scores.csv`` (canonical order), ``pivot.csv``,
    ``judge_template_means.csv``, ``summary_statistics.csv``,
    ``top_score_paths.csv`` (default n=10), ``judge_agreement.csv``,
    ``variance_components.csv`` (CSV without index, NaN as empty field) and
    ``agreement.json`` (:func:`agreement_summary`, ``alpha`` null when
    undefined).  Each file is written to a temporary file in the same
    directory and moved into place with ``os.replace``, so readers never see a
    partial file.  Returns ``{name: path}`` with the names of
    :data:`REPORT_FILES` (file name without extension).
    """
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "parsed_scores": sort_parsed_scores(scores),
        "pivot": pivot_scores(scores),
        "judge_template_means": judge_template_means(scores),
        "summary_statistics": summary_statistics(scores),
        "top_score_paths": top_score_paths(scores),
        "judge_agreement": judge_agreement(scores),
        "variance_components": variance_components(scores),
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
