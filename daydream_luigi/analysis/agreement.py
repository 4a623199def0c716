"""How far the judges agree: per essay and template, per essay across templates and judges, and Krippendorff's alpha
over the cohort.

A mean score is only worth reading when the judges behind it roughly agree; these tables say when they do not, and
``agreement.json`` (:func:`agreement_summary`) says in one number, or in one sentence when the number is undefined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from daydream_luigi.analysis.scores import TOLERANCE, empty_table, prepare, scored_rows

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

#: Agreement classes by the range (max - min) of the judges' means, best first: a range up to a class's bound
#: (inclusive) is in that class; a wider one is :data:`POOR`, and an essay with one judge is :data:`SINGLE`.
AGREEMENT_BOUNDS: tuple[tuple[str, int], ...] = (("high", 1), ("moderate", 2), ("low", 3))
POOR, SINGLE = "poor", "single"
#: The classes of two judges or more, best first.
AGREEMENT_CLASSES: tuple[str, ...] = (*(name for name, _ in AGREEMENT_BOUNDS), POOR)


def agreement_class(value_range: float, judge_count: int) -> str:
    """Agreement class from the range of judge scores.

    ``"single"`` when fewer than 2 judges; otherwise range ``<= 1`` ->
    ``"high"``, ``<= 2`` -> ``"moderate"``, ``<= 3`` -> ``"low"``, larger ->
    ``"poor"`` (boundaries inclusive, 1e-9 tolerance).
    """
    if judge_count < 2:
        return SINGLE
    return next((name for name, bound in AGREEMENT_BOUNDS if value_range <= bound + TOLERANCE), POOR)


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
    df = scored_rows(scores)
    if df.empty:
        return empty_table(JUDGE_AGREEMENT_COLUMNS)
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
        [k < 2, *(rng <= bound + TOLERANCE for _, bound in AGREEMENT_BOUNDS)],
        [SINGLE, *(name for name, _ in AGREEMENT_BOUNDS)],
        default=POOR,
    )
    out["judge_count"] = out["judge_count"].astype("int64")
    return out[JUDGE_AGREEMENT_COLUMNS]


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
    df = scored_rows(scores)
    if df.empty:
        return empty_table(VARIANCE_COMPONENTS_COLUMNS)
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
    df = scored_rows(scores)
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
    df = prepare(scores)
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
