"""A recorded cohort's files, data/cohorts/<cohort_id>/: manifest.json (its spec's axes), membership.csv (its
generations, written last: a membership.csv means a whole cohort) and last_run.json (when a run of it last finished)."""

import csv
import io
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from daydream_luigi.core.cohort_spec import CohortSpec
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import MEMBERSHIP_COLUMNS, Member
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.settings import Paths
from daydream_luigi.store.files import atomic_write_json, atomic_write_text, read_json

MEMBERSHIP, MANIFEST, RUN_RECORD = "membership.csv", "manifest.json", "last_run.json"


def member_list(members: Iterable[Member] | Mapping[str, Member]) -> list[Member]:
    """Accept the list `prepare` returns or the gen_id -> Member dict `load_membership` returns."""
    return list(members.values()) if isinstance(members, Mapping) else list(members)


def has_membership(paths: Paths, cohort_id: str) -> bool:
    """Whether the cohort is recorded (its membership.csv written): it has run, or a run has started."""
    return (paths.cohorts / cohort_id / MEMBERSHIP).exists()


def _membership_text(rows: list[Member]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MEMBERSHIP_COLUMNS)
    writer.writerows([getattr(m, c) for c in MEMBERSHIP_COLUMNS] for m in rows)
    return buffer.getvalue()


def write_cohort(paths: Paths, spec: CohortSpec, rows: list[Member]) -> Path:
    folder = paths.cohorts / checked_id(spec.cohort_id, "cohort id")
    atomic_write_json(folder / MANIFEST, spec.manifest())
    atomic_write_text(folder / MEMBERSHIP, _membership_text(rows))  # last: a membership.csv means a whole cohort
    return folder


def membership_is_current(paths: Paths, spec: CohortSpec, rows: list[Member]) -> bool:
    """Whether the recorded membership is exactly what the spec expands to now."""
    folder = paths.cohorts / checked_id(spec.cohort_id, "cohort id")
    try:
        return (folder / MEMBERSHIP).read_text() == _membership_text(rows) and read_json(
            folder / MANIFEST
        ) == json.loads(json.dumps(spec.manifest()))
    except (OSError, ValueError):
        return False


def record_run(paths: Paths, cohort_id: str, started_at: str, finished_at: str, counts: dict) -> None:
    """Note a finished run of the cohort (ISO times, counts such as done/failed), for `daydream cohorts`."""
    atomic_write_json(
        paths.cohorts / checked_id(cohort_id, "cohort id") / RUN_RECORD,
        {"started_at": started_at, "finished_at": finished_at, **counts},
    )


def load_membership(paths: Paths, cohort_id: str) -> dict[str, Member]:
    """gen_id -> Member for a written cohort (cached per file version; Luigi tasks look their row up here)."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / MEMBERSHIP
    if not path.exists():
        raise InputError(f"cohort {cohort_id!r} has no membership at {path}; run `daydream run --cohort NAME` first")
    return _read_membership(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _read_membership(path: Path, _mtime: int) -> dict[str, Member]:
    with path.open(newline="") as handle:
        return {row["gen_id"]: Member(**{**row, "replicate": int(row["replicate"])}) for row in csv.DictReader(handle)}


def read_manifest(paths: Paths, cohort_id: str) -> tuple[dict, Path]:
    """A recorded cohort's manifest.json and its path; OSError or ValueError when it cannot be read."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / MANIFEST
    return read_json(path), path
