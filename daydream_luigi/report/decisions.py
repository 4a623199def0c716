"""A cohort's decision files, read from the store as it is now: a gate's table and the dossiers of the essays that
pass it, paired comparisons, and judges measured against people.

Files, all in data/cohorts/<cohort_id>/reports/:

* ``gate-<name>.csv``: `analysis.gates.decide` over every essay of the cohort;
* ``dossiers/<gen_id>.json``: one per essay that passes at least one gate, everything a reader needs to check the
  claim: the essay's concepts, templates, model and files (paths relative to the data folder, ``data_root``), its
  tournament rating and near-duplicate cluster when those commands have run, and under ``gates`` one record per gate
  it passes (`analysis.gates.gate_record`: the gate file's text and sha256, each criterion with its interval, judges,
  agreement and evaluations). Running a gate again updates its record in every dossier and removes it from the essays
  that no longer pass; a dossier left without a gate is deleted;
* ``compare-<axis>-<A>-<B>.csv`` (one row per evaluation template) and ``compare-<axis>-<A>-<B>-units.csv`` (the
  pairs behind it): `analysis.compare`;
* ``judge_vs_human.csv``: `analysis.human`.

A cohort's spec may name gates (``gates: [reinvention]``): its reports then decide by each of them and, when people
have labelled some of its essays, measure its judges (and those gates) against them (:func:`write_decisions`, called
by the reports before the page is drawn), so a run ends with its decisions.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis import compare, gates, human
from daydream_luigi.analysis.dedup import DEDUP_COLUMNS
from daydream_luigi.analysis.ratings import RATING_COLUMNS
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.gates import Gate, load_gate
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.settings import load_settings, pool_limits
from daydream_luigi.report import collect
from daydream_luigi.report.tables import DEDUP_CLUSTERS_FILE, TOURNAMENT_RATINGS_FILE
from daydream_luigi.store.files import atomic_write_json, atomic_write_text, read_json
from daydream_luigi.store.labels import stored_labels
from daydream_luigi.store.membership import load_membership, read_manifest

DOSSIERS = "dossiers"
JUDGE_VS_HUMAN_FILE = "judge_vs_human.csv"
_PATH_COLUMNS = ("evaluation_path", "essay_path", "draft_path")


def gate_file(name: str) -> str:
    return f"gate-{name}.csv"


def comparison_files(axis: str, a: str, b: str) -> tuple[str, str]:
    stem = f"compare-{axis}-{checked_id(a, axis)}-{checked_id(b, axis)}"
    return f"{stem}.csv", f"{stem}-units.csv"


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def cohort_scores(paths, cohort_id: str) -> pd.DataFrame:
    """The cohort's parsed-scores table from the store now, its file paths relative to the data folder."""
    scores = collect.collect_scores(paths, cohort_id)[0]
    for column in _PATH_COLUMNS:
        scores[column] = [os.path.relpath(p, paths.data_root) if p else p for p in scores[column]]
    return scores


def cohort_essays(paths, cohort_id: str) -> list[str]:
    return sorted(m.gen_id for m in load_membership(paths, cohort_id).values() if m.stage == "essay")


def _table(path: Path) -> pd.DataFrame | None:
    ids = {"gen_id": str, "cluster": str, "representative": str, "nearest": str}
    return pd.read_csv(path, dtype=ids) if path.exists() else None


@dataclass(frozen=True)
class GateFiles:
    decisions: pd.DataFrame
    table: Path
    dossiers: list[Path]  # written for the essays that pass
    withdrawn: list[Path]  # dossiers this gate no longer holds (deleted when no gate is left in them)


def _withdraw(path: Path, name: str) -> bool:
    """Take gate `name` out of a dossier; True when it was there."""
    dossier = read_json(path)
    if name not in dossier.get("gates", {}):
        return False
    del dossier["gates"][name]
    if dossier["gates"]:
        atomic_write_json(path, dossier)
    else:
        path.unlink()
    return True


def write_gate(paths, cohort_id: str, gate: Gate, scores: pd.DataFrame | None = None) -> GateFiles:
    """Decide every essay of the cohort, write gate-<name>.csv and the dossiers of the essays that pass; `scores` is
    the cohort's `cohort_scores` when the caller has read them already."""
    scores = cohort_scores(paths, cohort_id) if scores is None else scores
    decisions = gates.decide(scores, gate, cohort_essays(paths, cohort_id))
    out = collect.reports_dir(paths, cohort_id)
    table = out / gate_file(gate.name)
    atomic_write_text(table, _csv(decisions))
    folder = out / DOSSIERS
    concepts = collect.concept_map(paths)
    ratings, clusters = _table(out / TOURNAMENT_RATINGS_FILE), _table(out / DEDUP_CLUSTERS_FILE)
    passed = gates.passing(decisions)
    written = []
    for gen_id in passed:
        path = folder / f"{gen_id}.json"
        kept = read_json(path).get("gates", {}) if path.exists() else {}
        dossier = {
            **gates.essay_record(gen_id, scores, concepts),
            "cohort_id": cohort_id,
            "data_root": str(paths.data_root),
            "tournament": gates.row_record(ratings, gen_id, RATING_COLUMNS),
            "dedup": gates.row_record(clusters, gen_id, DEDUP_COLUMNS),
            "gates": {**kept, gate.name: gates.gate_record(gen_id, scores, gate, gates.PASS)},
        }
        atomic_write_json(path, dossier)
        written.append(path)
    others = sorted(p for p in folder.glob("*.json") if p.stem not in set(passed)) if folder.exists() else []
    withdrawn = [path for path in others if _withdraw(path, gate.name)]
    return GateFiles(decisions, table, written, withdrawn)


def write_comparison(
    paths, cohort_id: str, axis: str, a: str, b: str, template: str | None
) -> tuple[pd.DataFrame, list[Path]]:
    """The paired comparison of A and B on `axis` over the cohort; a wrong name is an input error."""
    try:
        summary, units = compare.compare(cohort_scores(paths, cohort_id), axis, a, b, template)
    except ValueError as exc:
        raise InputError(f"cohort {cohort_id}: {exc}") from None
    out = collect.reports_dir(paths, cohort_id)
    files = [out / name for name in comparison_files(axis, a, b)]
    for path, frame in zip(files, (summary, units)):
        atomic_write_text(path, _csv(frame))
    return summary, files


def labels_frame(paths) -> pd.DataFrame:
    labels = [label for _, label in stored_labels(paths)]
    return pd.DataFrame(
        [(label.gen_id, label.template, label.score, label.rater) for label in labels], columns=human.LABEL_COLUMNS
    )


def write_judge_vs_human(
    paths, cohort_id: str, gate_list: list[Gate], scores: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, Path]:
    """Each judge of the cohort against the people's labels, and each gate of `gate_list` against their verdicts."""
    scores = cohort_scores(paths, cohort_id) if scores is None else scores
    essays = cohort_essays(paths, cohort_id)
    decisions = {gate.name: gates.decide(scores, gate, essays) for gate in gate_list}
    table = human.judge_vs_human(scores, labels_frame(paths), decisions)
    path = collect.reports_dir(paths, cohort_id) / JUDGE_VS_HUMAN_FILE
    atomic_write_text(path, _csv(table))
    return table, path


def cohort_gates(paths, cohort_id: str, names: list[str] | None = None) -> list[Gate]:
    """The gates `names`, by default those the cohort names (its manifest's ``gates``), each file validated against
    today's catalog."""
    names = read_manifest(paths, cohort_id)[0].get("gates", []) if names is None else names
    if not names:
        return []
    templates = load_catalog(paths, pool_limits(paths), load_settings(paths)).templates["evaluation"]
    return [load_gate(paths, name, templates) for name in names]


def labels_cohort(paths, cohort_id: str) -> bool:
    """Whether people have labelled at least one essay of the cohort (data/labels/labels.csv)."""
    essays = set(cohort_essays(paths, cohort_id))
    return any(label.gen_id in essays for _, label in stored_labels(paths))


def write_decisions(paths, cohort_id: str, gate_names: list[str] | None = None) -> list[Path]:
    """What the reports decide: each gate the cohort names (`gate_names`, default: as its manifest records them; its
    table and dossiers) and, when people have labelled some of its essays, judge_vs_human.csv (those gates held
    against people's verdicts); the tables written."""
    gate_list = cohort_gates(paths, cohort_id, gate_names)
    labelled = labels_cohort(paths, cohort_id)
    if not (gate_list or labelled):
        return []
    scores = cohort_scores(paths, cohort_id)
    written = [write_gate(paths, cohort_id, gate, scores).table for gate in gate_list]
    if labelled:
        written.append(write_judge_vs_human(paths, cohort_id, gate_list, scores)[1])
    return written
