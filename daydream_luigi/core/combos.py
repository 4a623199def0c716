"""All C(n, k) combinations of the active concepts, with stable ids persisted append-only in combo_mappings.csv."""

import csv
import fcntl
import io
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.ids import combo_id
from daydream_luigi.store.files import atomic_write_text

MAPPING_COLUMNS = ["combo_id", "version", "concept_id", "description_level", "k_max", "created_at"]


@dataclass(frozen=True)
class Combo:
    combo_id: str
    concept_ids: tuple  # sorted: prompts list concepts in this deterministic order
    level: str
    k: int


def make_combo(concept_ids, level: str, k: int) -> Combo:
    ordered = tuple(sorted(concept_ids))
    return Combo(combo_id(ordered, level, k), ordered, level, k)


def enumerate_combos(concept_ids: list[str], k: int, level: str) -> list[Combo]:
    if not concept_ids:
        raise InputError("concepts_metadata.csv: no active concepts; set active=true on at least k concepts")
    if not 1 <= k <= len(concept_ids):
        raise InputError(
            f"k={k} but only {len(concept_ids)} active concept(s); lower k in config/daydream.yaml "
            f"or activate more concepts in concepts_metadata.csv"
        )
    return [make_combo(group, level, k) for group in itertools.combinations(sorted(concept_ids), k)]


def read_mappings(path: Path) -> dict[str, Combo]:
    if not path.exists():
        return {}
    members: dict[str, list] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            members.setdefault(row["combo_id"], []).append(row)
    return {
        cid: Combo(
            cid, tuple(sorted(r["concept_id"] for r in rows)), rows[0]["description_level"], int(rows[0]["k_max"])
        )
        for cid, rows in members.items()
    }


def persist_mappings(path: Path, combos: list[Combo]) -> int:
    """Append the combos not yet recorded; an existing id with other contents is a collision. Returns rows added."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = read_mappings(path)
        new = []
        for combo in combos:
            existing = known.get(combo.combo_id)
            if existing is None:
                new.append(combo)
            elif existing != combo:
                raise InputError(
                    f"{path}: combo id {combo.combo_id} is recorded with concepts "
                    f"{'|'.join(existing.concept_ids)} but now means {'|'.join(combo.concept_ids)}; "
                    f"the file was edited by hand; restore it from a backup"
                )
        if not new:
            return 0
        now = datetime.now(UTC).isoformat(timespec="seconds")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not known:
            writer.writerow(MAPPING_COLUMNS)
        for combo in new:
            for concept in combo.concept_ids:
                writer.writerow([combo.combo_id, "v1", concept, combo.level, combo.k, now])
        previous = path.read_text() if path.exists() else ""
        atomic_write_text(path, previous + buffer.getvalue())
        return len(new)
