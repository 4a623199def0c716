"""Whether a cohort's reports are current: a fingerprint of the evaluations (and names) they were built from, and for
the page, of the gate files and people's labels its decisions are made from and of the neutrality check it shows.

Reports never require the evaluations (a failed one must not block them); instead each report records a fingerprint of
the evaluations it was built from and counts as current only while that fingerprint still matches the disk. Kept apart
from `collect` (pandas, scipy): Luigi's worker process asks this on every scheduling, and every module it imports makes
each task process it forks slower to start.
"""

import hashlib
import json
import os
from pathlib import Path

from daydream_luigi.core.gates import gate_path
from daydream_luigi.core.ids import checked_id, id_problem
from daydream_luigi.core.neutrality import RECORD_FILE
from daydream_luigi.store.files import ERROR, METADATA, atomic_write_text
from daydream_luigi.store.labels import labels_path
from daydream_luigi.store.membership import MANIFEST, MEMBERSHIP, load_membership


def reports_dir(paths, cohort_id: str) -> Path:
    return paths.cohorts / cohort_id / "reports"


def evaluations(paths, cohort_id: str):
    return sorted(
        (m for m in load_membership(paths, cohort_id).values() if m.stage == "evaluation"), key=lambda m: m.gen_id
    )


def stage_dir(paths, stage: str) -> str:
    """data/gens/<stage> as a string: the loops below join ~100,000 paths, and pathlib costs ~4 us per join."""
    return os.path.join(str(paths.gens), stage)


def _decision_inputs(paths, cohort_id: str) -> list[bytes]:
    """The texts the report's decisions are made from: each gate file the cohort's manifest names, people's labels
    (data/labels/labels.csv) and the neutrality check its last run recorded. Nothing when none of them exists."""
    try:
        named = json.loads((paths.cohorts / cohort_id / MANIFEST).read_text(encoding="utf-8")).get("gates", [])
    except (OSError, ValueError, AttributeError):
        named = []
    files = [gate_path(paths, name) for name in named if isinstance(name, str) and id_problem(name) is None]
    found = []
    for path in (*files, labels_path(paths), paths.cohorts / cohort_id / RECORD_FILE):
        try:
            found.append(str(path).encode() + b"\0" + path.read_bytes())
        except OSError:
            pass
    return found


def fingerprint(paths, cohort_id: str, decisions: bool = False) -> str:
    """Changes whenever the cohort's membership changes or an evaluation is completed, failed or removed; with
    `decisions` (the report page, which shows them), also when a gate file it names or people's labels change.

    One stat per evaluation: error.json is looked at only when metadata.json is absent, since a generation's
    error.json is removed before its metadata.json is written (generation.run_generation).
    """
    digest = hashlib.sha256((paths.cohorts / cohort_id / MEMBERSHIP).read_bytes())
    for text in _decision_inputs(paths, cohort_id) if decisions else []:
        digest.update(text)
    digest.update((paths.raw / "concepts_metadata.csv").read_bytes())  # the tables name the concepts
    root = stage_dir(paths, "evaluation")
    for member in evaluations(paths, cohort_id):
        directory = os.path.join(root, checked_id(member.gen_id, "gen_id"))
        for name in (METADATA, ERROR):
            try:
                digest.update(f"{member.gen_id}/{name}/{os.stat(os.path.join(directory, name)).st_mtime_ns}".encode())
                break
            except FileNotFoundError:
                pass
    return digest.hexdigest()


def is_current(paths, cohort_id: str, output: str, decisions: bool = False) -> bool:
    stamp = Path(output + ".fingerprint")
    return os.path.exists(output) and stamp.exists() and stamp.read_text() == fingerprint(paths, cohort_id, decisions)


def write_stamp(paths, cohort_id: str, output: Path, value: str) -> None:
    atomic_write_text(Path(str(output) + ".fingerprint"), value)
