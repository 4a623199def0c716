"""Read a cohort's evaluations from the store into the parsed-scores table, the derived tables and the report, each
stamped with the fingerprint of what it was built from (see `freshness`)."""

import json
import os
from pathlib import Path

import pandas as pd

from daydream_luigi.analysis.scores import PARSED_SCORES_COLUMNS, ConceptMap
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.combos import read_mappings
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.settings import load_settings, pool_limits
from daydream_luigi.report.tables import REPORT_FILES, STATUS_FILE, write_tables
from daydream_luigi.store.files import ERROR, METADATA, PARSED, RAW, atomic_write_json, atomic_write_text, read_json
from daydream_luigi.store.freshness import evaluations, fingerprint, reports_dir, stage_dir, write_stamp

NO_DRAFT = {"combo_id": "", "gen_id": "", "template_id": ""}  # the lineage columns of an imported essay


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.loads(handle.read())


def collect_scores(paths, cohort_id: str, members=None) -> tuple[pd.DataFrame, dict]:
    """One row per evaluation on disk (with lineage and paths), plus counts of done, failed and missing ones; of the
    cohort's membership, or of the evaluation `members` given (a search's replay reads what it asks for).

    Built column by column with string paths, and only essays' and drafts' metadata are kept (each is read once,
    and shared by all its evaluations): ~100,000 evaluations in a few seconds and ~100 MB.
    """
    columns: dict[str, list] = {name: [] for name in PARSED_SCORES_COLUMNS}
    hosts: list[str] = []  # served_by of each row's evaluation ("" when not recorded)
    # who made the essay's and the judge's models ("" when the catalog does not say)
    vendors: dict[str, list[str]] = {"generation_vendor": [], "evaluation_vendor": []}
    failed, missing = {}, []
    parents: dict[str, dict | Exception] = {}  # essay/draft folder -> its metadata, or why it cannot be read

    def parent(directory: str) -> dict:
        if directory not in parents:
            try:
                parents[directory] = _read_json(os.path.join(directory, METADATA))
            except (OSError, ValueError) as exc:
                parents[directory] = exc
        found = parents[directory]
        if isinstance(found, Exception):
            raise found
        return found

    evaluation_root, essay_root, draft_root = (stage_dir(paths, stage) for stage in ("evaluation", "essay", "draft"))
    for member in evaluations(paths, cohort_id) if members is None else members:
        directory = os.path.join(evaluation_root, checked_id(member.gen_id, "gen_id"))
        try:
            evaluation = _read_json(os.path.join(directory, METADATA))
        except FileNotFoundError:
            if os.path.exists(os.path.join(directory, ERROR)):
                failed[member.gen_id] = read_json(Path(directory) / ERROR)["error"]
            else:
                missing.append(member.gen_id)
            continue
        except (OSError, ValueError) as exc:
            evaluation = exc
        essay_dir = os.path.join(essay_root, checked_id(member.parent_gen_id, "gen_id"))
        try:
            if isinstance(evaluation, Exception):
                raise evaluation
            essay = parent(essay_dir)
            if essay.get("imported"):  # no draft, no template, no model: those columns stay empty
                draft, draft_path = NO_DRAFT, ""
            else:
                draft_dir = os.path.join(draft_root, checked_id(essay["parent_gen_id"], "gen_id"))
                draft, draft_path = parent(draft_dir), os.path.join(draft_dir, PARSED)
        except (OSError, ValueError, KeyError) as exc:
            failed[member.gen_id] = f"lineage unreadable ({exc}); run `daydream check`"
            continue
        row = (
            cohort_id,
            member.gen_id,
            member.parent_gen_id,
            member.template_id,
            member.llm_model_id,
            member.replicate,
            evaluation.get("score"),
            evaluation.get("score_max"),
            evaluation.get("error") or "",
            draft["combo_id"],
            draft["gen_id"],
            draft["template_id"],
            essay["template_id"],
            essay["llm_model_id"],
            os.path.join(directory, RAW),
            os.path.join(essay_dir, PARSED),
            draft_path,
        )
        for values, value in zip(columns.values(), row):
            values.append(value)
        hosts.append(evaluation.get("served_by") or "")
        vendors["generation_vendor"].append(essay.get("vendor") or draft.get("vendor") or "")  # copy: the draft's
        vendors["evaluation_vendor"].append(evaluation.get("vendor") or "")
    rows = len(columns["gen_id"])
    frame = pd.DataFrame(columns, columns=PARSED_SCORES_COLUMNS)
    if any(hosts):  # only then: a cohort whose calls name no host keeps its table as it was
        frame["evaluation_host"] = hosts
    for column, values in vendors.items():  # the same: only for a catalog that names vendors
        if any(values):
            frame[column] = values
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    counts = {
        "evaluations": rows + len(failed) + len(missing),
        "on_disk": rows,
        "score_errors": int((frame["error"] != "").sum()),
        "failed": len(failed),
        "missing": len(missing),
        "failures": failed,
    }
    return frame, counts


def write_parsed_scores(paths, cohort_id: str) -> None:
    stamp = fingerprint(paths, cohort_id)
    frame, counts = collect_scores(paths, cohort_id)
    out = reports_dir(paths, cohort_id)
    atomic_write_text(out / REPORT_FILES["parsed_scores"], frame.to_csv(index=False))
    atomic_write_json(out / STATUS_FILE, counts)
    write_stamp(paths, cohort_id, out / REPORT_FILES["parsed_scores"], stamp)


def write_derived_tables(paths, cohort_id: str) -> None:
    stamp = fingerprint(paths, cohort_id)
    out = reports_dir(paths, cohort_id)
    frame = pd.read_csv(
        out / REPORT_FILES["parsed_scores"], keep_default_na=False, na_values=[""], dtype={"error": str}
    ).fillna({"error": ""})
    write_tables(frame, out, concept_map(paths))
    write_stamp(paths, cohort_id, out / REPORT_FILES["pivot"], stamp)


def concept_map(paths) -> ConceptMap:
    """Which concepts each recorded combo holds, and their names (the tables name concepts, not only ids)."""
    catalog = load_catalog(paths, pool_limits(paths), load_settings(paths))
    return ConceptMap(
        {cid: combo.concept_ids for cid, combo in read_mappings(paths.combo_mappings).items()},
        {cid: concept.name for cid, concept in catalog.concepts.items()},
    )
