"""Writing a cohort's result tables into its reports folder, and the name of every file there.

The tables are computed in `analysis` (which writes no file); this module puts them on disk, atomically, beside the
parsed-scores table `report.collect` writes, under the names the report page reads them back by.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis.agreement import agreement_summary, judge_agreement, variance_components
from daydream_luigi.analysis.effects import concept_effects, concept_pair_effects
from daydream_luigi.analysis.scores import NO_CONCEPTS, ConceptMap, sort_parsed_scores
from daydream_luigi.analysis.tables import judge_template_means, pivot_scores, summary_statistics, top_score_paths
from daydream_luigi.store.files import atomic_write_text

#: The files :func:`write_tables` writes, by name (the file name without its extension).
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
#: Written by `report.collect` beside ``parsed_scores.csv``: evaluations done, failed and missing.
STATUS_FILE = "status.json"
#: Written by `daydream tournament`: gen_id, rating, ci_low, ci_high, wins, losses, ties.
TOURNAMENT_RATINGS_FILE = "tournament_ratings.csv"
#: Written by `daydream tournament`: one row per judgment (match_id, round, a, b, order, judgment_id, verdict, ...).
TOURNAMENT_MATCHES_FILE = "tournament_matches.csv"
#: Written by `daydream tournament`: its judge, template, rounds and position bias.
TOURNAMENT_SUMMARY_FILE = "tournament.json"
#: Written by `daydream dedup`: gen_id, cluster, representative (its cluster's representative), nearest_similarity.
DEDUP_CLUSTERS_FILE = "dedup_clusters.csv"
#: Written by `daydream dedup`: its threshold, embedding model and the template that picked representatives.
DEDUP_SUMMARY_FILE = "dedup.json"
#: Every file a reports folder may hold besides report.html, in the order the page lists them.
FOLDER_FILES = (
    *REPORT_FILES.values(),
    STATUS_FILE,
    TOURNAMENT_RATINGS_FILE,
    TOURNAMENT_MATCHES_FILE,
    TOURNAMENT_SUMMARY_FILE,
    DEDUP_CLUSTERS_FILE,
    DEDUP_SUMMARY_FILE,
)


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
