"""The parsed-scores table every result table is computed from, and the rules all of them share.

Each table module (``tables``, ``agreement``, ``effects``, ``selection``, ``aggregate``) takes this table as its
input; defining its columns, its validation and the aggregation of an essay's evaluations here, once, is what keeps
the tables consistent with each other.  The table has one row per evaluation generation found on disk, with exactly
the columns of :data:`PARSED_SCORES_COLUMNS`.

Conventions shared by all tables
--------------------------------
* A row is *scored* when its ``score`` is not NaN; error rows (``score`` NaN) never contribute to statistics.
  ``score`` and ``score_max`` are coerced to float, so a table read back from CSV works as well.
* ``parent_gen_id`` is the essay gen_id and is the canonical essay key.  Rows without a ``parent_gen_id`` are
  ignored by the per-essay tables.
* Every returned table has a fixed column order and is sorted by its key columns, so output does not depend on the
  input row order.
* Every function accepts an empty frame (right columns, zero rows) and a frame whose scores are all NaN; it then
  returns a table with the right columns and zero rows (``agreement_alpha`` returns NaN).
* Replicates and judges are combined by one rule: an essay's score for an evaluation template is the *mean* of its
  scored evaluations (every judge x replicate counts once; :func:`essay_means`).  Statistics over groups of
  essays take the essay as the unit, so repeated judgments of one essay never pass for independent observations.
  Scores of different evaluation templates are never pooled into one statistic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

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

#: Columns the parsed-scores table has only when some row has a value: the upstream host that served an evaluation
#: (OpenRouter's `provider`, recorded as served_by) and the vendors of the essay's and the judge's models
#: (llm_models.csv `provider` in the vendor format), so a table of a study without them stays as it was.
OPTIONAL_SCORE_COLUMNS: list[str] = ["evaluation_host", "generation_vendor", "evaluation_vendor"]

#: Sort order of the parsed-scores table itself.
PARSED_SCORES_SORT: list[str] = [
    "cohort_id",
    "parent_gen_id",
    "evaluation_template",
    "evaluation_model",
    "evaluation_replicate",
    "gen_id",
]

#: Tolerance of threshold comparisons on floats (3 out of 10 is "at most 0.3 of the maximum" despite rounding).
TOLERANCE = 1e-9

#: Label of a missing group value (summary groups, cohort lists).
MISSING_GROUP = "(missing)"


def prepare(scores: pd.DataFrame) -> pd.DataFrame:
    """Validate columns and return a copy restricted to PARSED_SCORES_COLUMNS (and the optional ones it has)."""
    missing = [c for c in PARSED_SCORES_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError("parsed scores table is missing columns: " + ", ".join(missing))
    df = scores.loc[:, PARSED_SCORES_COLUMNS + [c for c in OPTIONAL_SCORE_COLUMNS if c in scores.columns]].copy()
    df["score"] = pd.to_numeric(df["score"], errors="coerce").astype("float64")
    df["score_max"] = pd.to_numeric(df["score_max"], errors="coerce").astype("float64")
    df = df.reset_index(drop=True)
    return df


def scored_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """Prepared rows that have a score and an essay key."""
    df = prepare(scores)
    return df[df["score"].notna() & df["parent_gen_id"].notna()].reset_index(drop=True)


def empty_table(columns: Sequence[str]) -> pd.DataFrame:
    """A table with ``columns`` and no rows: what every table function returns when nothing is scored."""
    return pd.DataFrame({c: pd.Series([], dtype="object") for c in columns})


def group_label(value: object) -> str:
    """A group value as text, :data:`MISSING_GROUP` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return MISSING_GROUP
    return str(value)


def essay_means(df: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (evaluation template, *by, essay): the mean of its scored rows, with their count."""
    keys = ["evaluation_template", *by, "parent_gen_id"]
    g = df.groupby(keys, sort=True, dropna=False)
    return pd.DataFrame(
        {"score": g["score"].mean(), "score_max": g["score_max"].mean(), "n_evaluations": g.size()}
    ).reset_index()


def sort_parsed_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Return the parsed-scores table in canonical column and row order.

    Rows are sorted by ``cohort_id, parent_gen_id, evaluation_template,
    evaluation_model, evaluation_replicate, gen_id`` (missing values last).
    """
    df = prepare(scores)
    if df.empty:
        return df
    return df.sort_values(PARSED_SCORES_SORT, kind="mergesort", na_position="last").reset_index(drop=True)


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
