"""One parsed-scores table out of several cohorts', for reports and selections across experiments.

Cohorts share generations, so the same evaluation can sit in several of them; this is the one place that decides how
such an evaluation is listed (under every cohort, with the list of its cohorts) so that a reader counts it once.
"""

from __future__ import annotations

import pandas as pd

from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS, empty_table, group_label, prepare, sort_parsed_scores

#: :data:`PARSED_SCORES_COLUMNS` plus ``cohorts``: every cohort holding the evaluation, sorted, joined with ";".
CROSS_EXPERIMENT_COLUMNS: list[str] = [*PARSED_SCORES_COLUMNS, "cohorts"]


def aggregate_cross_experiment(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate several cohorts' parsed-scores tables, each evaluation under every cohort that holds it.

    An evaluation (``gen_id``) shared by several cohorts has one row per cohort, and its ``cohorts`` column
    lists them all (sorted, joined with ``";"``) so a reader can count it once (``drop_duplicates("gen_id")``;
    :func:`select_top` does).  A row repeated within one cohort appears once; rows without a ``gen_id`` are
    all kept (their ``cohorts`` is their own ``cohort_id``).  The result has :data:`CROSS_EXPERIMENT_COLUMNS`
    and is sorted as in :func:`sort_parsed_scores`.
    """
    prepared = [prepare(f) for f in frames]
    non_empty = [f for f in prepared if not f.empty]
    if not non_empty:
        return prepare(empty_table(PARSED_SCORES_COLUMNS)).assign(cohorts=pd.Series([], dtype="object"))
    df = pd.concat(non_empty, ignore_index=True)
    has_id = df["gen_id"].notna()
    df = pd.concat([df[has_id].drop_duplicates(subset=["cohort_id", "gen_id"]), df[~has_id]], ignore_index=True)
    df = sort_parsed_scores(df)
    holders = (
        df[df["gen_id"].notna()]
        .groupby("gen_id")["cohort_id"]
        .agg(lambda c: ";".join(sorted({group_label(v) for v in c})))
    )
    df["cohorts"] = df["gen_id"].map(holders)
    df.loc[df["gen_id"].isna(), "cohorts"] = df.loc[df["gen_id"].isna(), "cohort_id"].map(group_label)
    return df[CROSS_EXPERIMENT_COLUMNS]
