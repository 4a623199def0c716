"""The research loop's tables beside a cohort's reports: a tournament's matches, ratings and summary, the near-duplicate
clusters of `dedup` with the scores that pick their representatives, and the reports rewritten to show them."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis.ratings import matches_table, ratings_table
from daydream_luigi.analysis.scores import ConceptMap
from daydream_luigi.analysis.selection import select_top
from daydream_luigi.analysis.tournament import Tournament, position_bias
from daydream_luigi.core.errors import InputError
from daydream_luigi.report import collect, folder
from daydream_luigi.report.tables import (
    DEDUP_CLUSTERS_FILE,
    DEDUP_SUMMARY_FILE,
    TOURNAMENT_MATCHES_FILE,
    TOURNAMENT_RATINGS_FILE,
    TOURNAMENT_SUMMARY_FILE,
)
from daydream_luigi.store.files import atomic_write_json, atomic_write_text
from daydream_luigi.store.membership import MEMBERSHIP


def has_run(paths, cohort_id: str) -> bool:
    return (paths.cohorts / cohort_id / MEMBERSHIP).exists()


def rewrite_reports(paths, cohort_id: str) -> Path | None:
    """Every table and the report of a cohort that has run, rewritten from the disk now; the report's path, or None
    when the cohort has not run."""
    if not has_run(paths, cohort_id):
        return None
    folder.write_all(paths, cohort_id)
    return collect.reports_dir(paths, cohort_id) / "report.html"


def essay_concepts(combo_concepts: dict, concept_names: dict, essays) -> dict[str, str]:
    """essay gen_id -> the names of its combo's concepts, as the report labels them (`combo_concepts`: combo_id ->
    concept ids; `concept_names`: concept id -> name; `essays`: the essay members)."""
    concepts = ConceptMap(combo_concepts, concept_names)
    return {m.gen_id: concepts.label(m.combo_id) for m in essays}


def write_tournament_tables(
    paths, cohort_id: str, played: Tournament, rounds: int, judgment_id: Callable[[str, str], str], judge: dict
) -> tuple[pd.DataFrame, dict]:
    """Write tournament_matches.csv, tournament_ratings.csv and tournament.json (`judge`: its template_id, judge and
    model, first in the summary); returns the ratings and the position bias."""
    out = collect.reports_dir(paths, cohort_id)
    matches = matches_table(played.matches, judgment_id)
    ratings, bias = ratings_table(played.essay_ids, played.matches), position_bias(played.matches)
    atomic_write_text(out / TOURNAMENT_MATCHES_FILE, matches.to_csv(index=False))
    atomic_write_text(out / TOURNAMENT_RATINGS_FILE, ratings.to_csv(index=False))
    atomic_write_json(
        out / TOURNAMENT_SUMMARY_FILE,
        {
            **judge,
            "essays": len(played.essay_ids),
            "rounds_asked": rounds,
            "rounds_played": len(played.rounds),
            "matches": len(played.matches),
            "judgments": len(matches),
            "stopped_early": played.stopped_early,
            "position_bias": bias,
        },
    )
    return ratings, bias


def representative_scores(
    paths, cohort_id: str, evaluation_templates: list[str], template_id: str | None
) -> tuple[str | None, dict, str | None]:
    """(evaluation template, essay gen_id -> mean score on it, a note on the choice): the scores that pick each
    cluster's representative, aggregated as `select top` ranks (the mean over judges and replicates). Without
    `template_id`, the cohort's first evaluation template that has scores (never a mix of two scales); InputError when
    `template_id` has none."""
    frame = collect.collect_scores(paths, cohort_id)[0] if has_run(paths, cohort_id) else None
    present = sorted(set(frame.loc[frame["score"].notna(), "evaluation_template"])) if frame is not None else []
    note = None
    if template_id is None:
        if not present:
            return None, {}, None
        template_id = next((t for t in evaluation_templates if t in present), present[0])
        if len(present) > 1:
            note = (
                f"representatives by their mean score on {template_id}, the first of the cohort's "
                f"{len(present)} scored evaluation templates ({', '.join(present)}); choose another with "
                f"--template"
            )
    elif template_id not in present:
        raise InputError(
            f"--template {template_id!r}: cohort {cohort_id} has no score on it; scored templates: "
            f"{', '.join(present) or 'none'}"
        )
    ranked = select_top(frame, [template_id], top_n=frame["parent_gen_id"].nunique())
    return template_id, dict(zip(ranked["gen_id"], ranked["mean"])), note


def write_dedup_tables(paths, cohort_id: str, table: pd.DataFrame, summary: dict) -> Path:
    """Write dedup_clusters.csv and dedup.json (`summary` and the counts of essays and clusters); returns the
    table's path."""
    out = collect.reports_dir(paths, cohort_id)
    atomic_write_text(out / DEDUP_CLUSTERS_FILE, table.to_csv(index=False))
    atomic_write_json(
        out / DEDUP_SUMMARY_FILE, {**summary, "essays": len(table), "clusters": table["cluster"].nunique()}
    )
    return out / DEDUP_CLUSTERS_FILE
