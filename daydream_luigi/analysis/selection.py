"""Choosing the best essays of one or more cohorts by their scores (`daydream select top`, and the representative
of each near-duplicate cluster in `daydream dedup`).

Selection is where a judge's bias or a lucky single score does the most harm, so it can leave out a judge, require
several judges, cap their disagreement and rank by an interval's lower bound instead of the mean.
"""

from __future__ import annotations

import fnmatch

import pandas as pd

from daydream_luigi.analysis.intervals import moments
from daydream_luigi.analysis.scores import TOLERANCE, empty_table, prepare

SELECT_TOP_COLUMNS: list[str] = ["gen_id", "mean", "ci_low", "ci_high", "n_judges", "n", "judge_range"]

SELECT_TOP_ORDERS = ("mean", "lower-bound")


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

    Per essay: ``n`` scored evaluations, ``mean`` (the mean over
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
    df = prepare(scores)
    if df.empty:
        return empty_table(SELECT_TOP_COLUMNS)
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
        return empty_table(SELECT_TOP_COLUMNS)
    chosen = chosen.assign(parent_gen_id=chosen["parent_gen_id"].astype(str))
    ranked = moments(chosen.groupby("parent_gen_id", sort=True)["score"])
    judge_means = chosen.groupby(["parent_gen_id", "evaluation_model"], sort=True)["score"].mean()
    per_essay = judge_means.groupby(level=0, sort=True)
    ranked["n_judges"] = per_essay.size()
    ranked["judge_range"] = per_essay.max() - per_essay.min()
    ranked = ranked[ranked["n_judges"] >= min_judges]
    if max_judge_range is not None:
        ranked = ranked[ranked["judge_range"] <= max_judge_range + TOLERANCE]
    ranked = ranked.rename_axis("gen_id").reset_index()
    keys = ["mean", "gen_id"] if by == "mean" else ["ci_low", "mean", "gen_id"]
    ranked = ranked.sort_values(
        keys, ascending=[False] * (len(keys) - 1) + [True], kind="mergesort", na_position="last"
    )
    out = ranked[SELECT_TOP_COLUMNS].head(top_n).reset_index(drop=True)
    out["n"] = out["n"].astype("int64")
    out["n_judges"] = out["n_judges"].astype("int64")
    return out
