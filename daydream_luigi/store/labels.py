"""People's scores ("labels"): data/labels/labels.csv, one row per (essay, template, rater), never replaced silently.

A judge's score means little until it is held against what people think of the same essays (`analysis.human`). A
label is ``gen_id,template,score,rater[,note]``: an essay of the store, an evaluation template (the person scored the
essay on that rubric, 0-10) or ``gate:<name>`` (the person's verdict on that gate: 10 pass, 0 fail), and who scored.

Labels come from a CSV (``daydream labels import``) or one at a time (``daydream labels add``), are validated like
every input (one line per problem, naming the file and line, nothing written when any is wrong), and are appended
under a lock: a row already stored is skipped (importing a file twice writes nothing), and a row that gives an
(essay, template, rater) already stored another score or note is an error, never an overwrite.
"""

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.core.catalog import read_rows
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.gates import GATE_LABEL_PREFIX, gate_path
from daydream_luigi.core.ids import id_problem
from daydream_luigi.core.parsers import SCORE_MAX, SCORE_MIN
from daydream_luigi.core.settings import Paths
from daydream_luigi.store.files import METADATA, atomic_write_text, gen_dir, generation_lock

LABELS_FOLDER, LABELS_FILE = "labels", "labels.csv"
COLUMNS = ["gen_id", "template", "score", "rater", "note"]
REQUIRED = COLUMNS[:4]
GATE_SCORES = (SCORE_MIN, SCORE_MAX)  # fail, pass


@dataclass(frozen=True)
class Label:
    gen_id: str
    template: str
    score: float
    rater: str
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.gen_id, self.template, self.rater

    def shown(self) -> str:
        return f"score {self.score:g}" + (f" (note {self.note!r})" if self.note else "")


@dataclass(frozen=True)
class Added:
    added: list[Label]
    already: list[Label]  # rows identical to a stored one: nothing written for them
    path: Path


def labels_path(paths: Paths) -> Path:
    return paths.data_root / LABELS_FOLDER / LABELS_FILE


def _score(value: str) -> float | None:
    try:
        score = float(value)
    except ValueError:
        return None
    return score if math.isfinite(score) and SCORE_MIN <= score <= SCORE_MAX else None


def checked_label(paths: Paths, where: str, row: dict, evaluation_templates, problems: list[str]) -> Label | None:
    """The label a row holds, or None with its problems added (each naming `where`, the column and the fix)."""
    reported = len(problems)
    gen_id, template, rater = row["gen_id"], row["template"], row["rater"]
    if id_problem(gen_id) or not (gen_dir(paths.gens, "essay", gen_id) / METADATA).exists():
        problems.append(
            f"{where}: gen_id {gen_id!r} is not an essay of the store ({paths.gens / 'essay'}); use an essay's "
            f"gen_id (reports/pivot.csv lists them as parent_gen_id)"
        )
    score = _score(row["score"])
    if template.startswith(GATE_LABEL_PREFIX):
        gate = template[len(GATE_LABEL_PREFIX) :]
        if id_problem(gate) or not gate_path(paths, gate).exists():
            problems.append(f"{where}: template {template!r} names no gate file in config/gates; check the gate name")
        if score not in GATE_SCORES:
            problems.append(
                f"{where}: score {row['score']!r} is not a gate verdict; write {SCORE_MAX:g} for pass or "
                f"{SCORE_MIN:g} for fail"
            )
    else:
        if template not in evaluation_templates:
            known = ", ".join(sorted(evaluation_templates))
            problems.append(
                f"{where}: template {template!r} is not an evaluation template; use one of: {known}, "
                f"or {GATE_LABEL_PREFIX}<gate name> for a pass/fail verdict"
            )
        if score is None:
            problems.append(
                f"{where}: score {row['score']!r} is not a number from {SCORE_MIN:g} to {SCORE_MAX:g}; write the "
                f"person's score on the judges' 0-10 scale"
            )
    problem = id_problem(rater)
    if problem:
        problems.append(f"{where}: rater {rater!r} {problem}; name the person with an id like 'ana' or 'rater_2'")
    if len(problems) > reported or score is None:
        return None
    return Label(gen_id, template, score, rater, row.get("note", "") or "")


def stored_labels(paths: Paths) -> list[tuple[int, Label]]:
    """The stored labels with their line numbers in data/labels/labels.csv (none when the file does not exist)."""
    path = labels_path(paths)
    if not path.exists():
        return []
    problems: list[str] = []
    stored = []
    for line, row in read_rows(path, REQUIRED, problems):
        score = _score(row["score"])
        if score is None:
            problems.append(f"{path}: line {line}: score {row['score']!r} is not a number from 0 to 10; fix that row")
        else:
            stored.append((line, Label(row["gen_id"], row["template"], score, row["rater"], row.get("note", ""))))
    raise_if(problems)
    return stored


def _csv_text(labels: list[Label]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([label.gen_id, label.template, f"{label.score:g}", label.rater, label.note] for label in labels)
    return out.getvalue()


def add_labels(paths: Paths, labels: list[tuple[str, Label]]) -> Added:
    """Store every new label (each with where it came from, for messages); InputError, nothing written, when any
    conflicts with a stored label or with another of ``labels``. Writes nothing when every label is stored already."""
    path = labels_path(paths)
    with generation_lock(path.parent):
        stored = stored_labels(paths)
        known = {label.key: (f"{path}: line {line}", label) for line, label in stored}
        added, already, problems = [], [], []
        for where, label in labels:
            if label.key in known:
                first_where, first = known[label.key]
                if first == label:
                    already.append(label)
                else:
                    problems.append(
                        f"{where}: essay {label.gen_id} on {label.template} by {label.rater} already has "
                        f"{first.shown()} in {first_where}; a label is never replaced: delete that row by hand first "
                        f"if {label.shown()} is right"
                    )
                continue
            known[label.key] = (where, label)
            added.append(label)
        raise_if(problems)
        if added:
            atomic_write_text(path, _csv_text([label for _, label in stored] + added))
    return Added(added, already, path)


def import_labels(paths: Paths, file: Path, evaluation_templates) -> Added:
    """The rows of a CSV with the columns gen_id,template,score,rater[,note], validated, then :func:`add_labels`."""
    problems: list[str] = []
    rows = read_rows(file, REQUIRED, problems)
    if rows:
        unknown = [column for column in rows[0][1] if column not in COLUMNS]
        if unknown:
            problems.append(
                f"{file}: unknown column(s) {', '.join(unknown)}; the header is {','.join(REQUIRED)}[,note]"
            )
    labels = [
        (f"{file}: line {line}", label)
        for line, row in rows
        if (label := checked_label(paths, f"{file}: line {line}", row, evaluation_templates, problems)) is not None
    ]
    raise_if(problems)
    return add_labels(paths, labels)


def add_label(paths: Paths, row: dict, evaluation_templates) -> Added:
    """One label given on the command line (`daydream labels add`), validated, then :func:`add_labels`."""
    problems: list[str] = []
    where = "daydream labels add"
    label = checked_label(paths, where, row, evaluation_templates, problems)
    if label is None:
        raise InputError(problems)
    return add_labels(paths, [(where, label)])
