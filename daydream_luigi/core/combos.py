"""All C(n, k) combinations of the active concepts, with stable ids recorded append-only in combo_mappings.csv
(`read_mappings`; `store.combo_mappings` records them)."""

import csv
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.ids import combo_id

MAPPING_COLUMNS = ["combo_id", "version", "concept_id", "description_level", "k_max", "created_at"]


@dataclass(frozen=True)
class Combo:
    combo_id: str
    concept_ids: tuple  # sorted: prompts list concepts in this deterministic order
    level: str
    k: int


def make_combo(concept_ids: Iterable[str], level: str, k: int) -> Combo:
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
