"""What the report is drawn from: the files in a cohort's reports folder and the metadata of its generations.

Reading is kept apart from drawing so the views see plain frames and records and never a missing or half-written
file: an absent file reads as None (its section says so) and a derived table that is absent is recomputed from the
parsed scores (without concept names: those come from ``pivot.csv``'s ``concepts`` column).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS, empty_table
from daydream_luigi.core.ids import id_problem
from daydream_luigi.core.settings import STAGES
from daydream_luigi.report.display import as_text
from daydream_luigi.report.tables import REPORT_FILES
from daydream_luigi.store.files import METADATA
from daydream_luigi.store.membership import MEMBERSHIP

#: Characters of an essay shown on the page (the link opens the whole file).
ESSAY_PREVIEW_CHARS = 4000


def load_json(path: Path) -> dict | None:
    """A JSON object from disk; None when the file is absent, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_csv(path: Path, numeric: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """A CSV with every column as text (ids stay ids), except `numeric` ones; None when the file is absent."""
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    for column in numeric:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def read_parsed_scores(reports_dir: Path) -> pd.DataFrame:
    """``parsed_scores.csv`` with every column of the table (empty when absent), scores as floats, no error as ""."""
    frame = load_csv(
        reports_dir / REPORT_FILES["parsed_scores"], numeric=("score", "score_max", "evaluation_replicate")
    )
    if frame is None or frame.empty:
        frame = empty_table(PARSED_SCORES_COLUMNS)
    for column in PARSED_SCORES_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce").astype("float64")
    frame["score_max"] = pd.to_numeric(frame["score_max"], errors="coerce").astype("float64")
    frame["error"] = frame["error"].map(as_text)
    return frame


def derived_table(
    reports_dir: Path,
    name: str,
    parsed: pd.DataFrame,
    compute: Callable[[pd.DataFrame], pd.DataFrame],
    numeric: tuple[str, ...] = (),
) -> pd.DataFrame:
    """A derived table from disk, or computed from the parsed scores when its file is absent."""
    frame = load_csv(reports_dir / REPORT_FILES[name], numeric=numeric)
    if frame is None:
        frame = compute(parsed)
    return frame


def records(frame: pd.DataFrame | None) -> list[dict]:
    """A table's rows as dicts (none for an absent or empty table): what the views iterate over."""
    return [] if frame is None or frame.empty else frame.to_dict("records")


@dataclass
class StageUsage:
    """Calls, tokens, cost and latency of one stage's generations in the cohort, summed from their metadata."""

    stage: str
    in_cohort: int = 0
    complete: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    latency_total: float = 0.0
    latency_count: int = 0

    @property
    def mean_latency(self) -> str:
        return f"{self.latency_total / self.latency_count:.2f} s" if self.latency_count else "\u2013"


def cohort_gen_ids(parsed: pd.DataFrame, status: dict, cohort_dir: Path) -> dict[str, set[str]]:
    """gen_ids per stage: the lineage in parsed_scores, failed evaluations and the cohort's membership.csv."""
    ids: dict[str, set[str]] = {stage: set() for stage in STAGES}
    for stage, column in (("evaluation", "gen_id"), ("essay", "parent_gen_id"), ("draft", "draft_gen_id")):
        ids[stage].update(as_text(v) for v in parsed[column] if as_text(v))
    ids["evaluation"].update(str(k) for k in (status.get("failures") or {}))
    membership = cohort_dir / MEMBERSHIP
    if membership.exists():
        with membership.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("stage") in ids and row.get("gen_id"):
                    ids[row["stage"]].add(row["gen_id"])
    return {stage: {g for g in values if id_problem(g) is None} for stage, values in ids.items()}


def stage_usage(gens_root: Path, gen_ids: dict[str, set[str]]) -> list[StageUsage]:
    """Per stage (in pipeline order), the usage of the given generations that are complete on disk."""
    usage = []
    for stage in STAGES:
        row = StageUsage(stage, in_cohort=len(gen_ids[stage]))
        for gen_id in sorted(gen_ids[stage]):
            meta = load_json(gens_root / stage / gen_id / METADATA)
            if meta is None:
                continue
            row.complete += 1
            prompt, completion = meta.get("prompt_tokens"), meta.get("completion_tokens")
            if meta.get("attempts") or prompt or completion:
                row.calls += 1
            row.prompt_tokens += int(prompt or 0)
            row.completion_tokens += int(completion or 0)
            if isinstance(meta.get("cost"), (int, float)):
                row.cost = (row.cost or 0.0) + float(meta["cost"])
            if isinstance(meta.get("latency_s"), (int, float)):
                row.latency_total += float(meta["latency_s"])
                row.latency_count += 1
        usage.append(row)
    return usage


@dataclass(frozen=True)
class ImportedTexts:
    """Texts of the cohort written elsewhere (see `importer`), each with the label it was imported with (else its
    file name): imported essays, imported drafts, and the essays written here from those drafts."""

    essays: dict  # essay gen_id -> label
    drafts: dict  # draft gen_id -> label
    from_drafts: dict  # essay gen_id -> the label of the imported draft it was written from

    def origin(self, essay: str) -> str:
        """The mark an essay gets in the report; empty for an essay generated here from a generated draft."""
        if essay in self.essays:
            return f"imported: {self.essays[essay]}"
        return f"from imported draft: {self.from_drafts[essay]}" if essay in self.from_drafts else ""


def imported_texts(gens_root: Path, gen_ids: dict[str, set[str]]) -> ImportedTexts:
    """Which of the cohort's drafts and essays were imported, and which essays were written from imported drafts."""
    labels: dict[str, dict] = {"draft": {}, "essay": {}}
    parents = {}  # generated essay -> its draft
    for stage, found in labels.items():
        for gen_id in sorted(gen_ids[stage]):
            meta = load_json(gens_root / stage / gen_id / METADATA) or {}
            if meta.get("imported"):
                found[gen_id] = as_text(meta.get("label")) or as_text(meta.get("source_file"))
            elif stage == "essay":
                parents[gen_id] = as_text(meta.get("parent_gen_id"))
    drafts = labels["draft"]
    return ImportedTexts(
        labels["essay"], drafts, {essay: drafts[draft] for essay, draft in parents.items() if draft in drafts}
    )


def locate(stored: str, gens_root: Path, stage: str, gen_id: str, name: str) -> Path | None:
    """The file on disk: looked up under `gens_root` first (the caller's store), else the stored path as is."""
    candidates = []
    parts = Path(stored).parts if stored else ()
    if len(parts) >= 3 and parts[-3] == stage and id_problem(parts[-2]) is None:
        candidates.append(gens_root / stage / parts[-2] / parts[-1])
    if gen_id and id_problem(gen_id) is None:
        candidates.append(gens_root / stage / gen_id / name)
    if stored:
        candidates.append(Path(stored))
    for path in candidates:
        if path.is_file():
            return path
    return None


def read_preview(path: Path | None) -> tuple[str, int, bool]:
    """(the first ESSAY_PREVIEW_CHARS characters, the text's length, whether it was cut); empty when unreadable."""
    if path is None:
        return "", 0, False
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", 0, False
    return text[:ESSAY_PREVIEW_CHARS], len(text), len(text) > ESSAY_PREVIEW_CHARS
