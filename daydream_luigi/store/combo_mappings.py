"""data/combo_mappings.csv, written: every combination a cohort used, under its stable id, appended once (the ids of
recorded combos keep their meaning; `core.combos.read_mappings` reads them back)."""

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from daydream_luigi.core.combos import MAPPING_COLUMNS, Combo, read_mappings
from daydream_luigi.core.errors import InputError
from daydream_luigi.store.files import atomic_write_text
from daydream_luigi.store.locks import exclusive_lock


def persist_mappings(path: Path, combos: list[Combo]) -> int:
    """Append the combos not yet recorded; an existing id with other contents is a collision. Returns rows added."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.with_suffix(".lock")):
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
