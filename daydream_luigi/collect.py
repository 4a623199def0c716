"""Read a cohort's evaluations from the store into the parsed-scores table, and keep reports in step with the disk.

Reports never require the evaluations (a failed one must not block them); instead each report records a fingerprint of
the evaluations it was built from and counts as complete only while that fingerprint still matches the disk.
"""

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from . import results
from .cohort import load_membership
from .store import ERROR, METADATA, atomic_write_json, atomic_write_text, gen_dir, read_json


def reports_dir(paths, cohort_id: str) -> Path:
    return paths.cohorts / cohort_id / "reports"


def _evaluations(paths, cohort_id: str):
    return sorted((m for m in load_membership(paths, cohort_id).values() if m.stage == "evaluation"),
                  key=lambda m: m.gen_id)


def fingerprint(paths, cohort_id: str) -> str:
    """Changes whenever the cohort's membership changes or an evaluation is completed, failed or removed."""
    digest = hashlib.sha256((paths.cohorts / cohort_id / "membership.csv").read_bytes())
    for member in _evaluations(paths, cohort_id):
        directory = gen_dir(paths.gens, "evaluation", member.gen_id)
        for name in (METADATA, ERROR):
            try:
                digest.update(f"{member.gen_id}/{name}/{os.stat(directory / name).st_mtime_ns}".encode())
            except FileNotFoundError:
                pass
    return digest.hexdigest()


def is_current(paths, cohort_id: str, output: str) -> bool:
    stamp = Path(output + ".fingerprint")
    return os.path.exists(output) and stamp.exists() and stamp.read_text() == fingerprint(paths, cohort_id)


def _stamp(paths, cohort_id: str, output: Path, value: str) -> None:
    atomic_write_text(Path(str(output) + ".fingerprint"), value)


def collect_scores(paths, cohort_id: str) -> tuple[pd.DataFrame, dict]:
    """One row per evaluation on disk (with lineage and paths), plus counts of done, failed and missing ones."""
    rows, failed, missing = [], {}, []
    metadata_cache: dict[Path, dict] = {}

    def meta(directory: Path) -> dict:
        if directory not in metadata_cache:
            metadata_cache[directory] = read_json(directory / METADATA)
        return metadata_cache[directory]

    for member in _evaluations(paths, cohort_id):
        directory = gen_dir(paths.gens, "evaluation", member.gen_id)
        if not (directory / METADATA).exists():
            if (directory / ERROR).exists():
                failed[member.gen_id] = read_json(directory / ERROR)["error"]
            else:
                missing.append(member.gen_id)
            continue
        essay_dir = gen_dir(paths.gens, "essay", member.parent_gen_id)
        try:
            evaluation = meta(directory)
            essay = meta(essay_dir)
            draft_dir = gen_dir(paths.gens, "draft", essay["parent_gen_id"])
            draft = meta(draft_dir)
        except (OSError, ValueError, KeyError) as exc:
            failed[member.gen_id] = f"lineage unreadable ({exc}); run `daydream check`"
            continue
        rows.append({
            "cohort_id": cohort_id, "gen_id": member.gen_id, "parent_gen_id": member.parent_gen_id,
            "evaluation_template": member.template_id, "evaluation_model": member.llm_model_id,
            "evaluation_replicate": member.replicate, "score": evaluation.get("score"),
            "score_max": evaluation.get("score_max"), "error": evaluation.get("error") or "",
            "combo_id": draft["combo_id"], "draft_gen_id": draft["gen_id"], "draft_template": draft["template_id"],
            "generation_template": essay["template_id"], "generation_model": essay["llm_model_id"],
            "evaluation_path": str(directory / "raw.txt"), "essay_path": str(essay_dir / "parsed.txt"),
            "draft_path": str(draft_dir / "parsed.txt")})
    frame = pd.DataFrame(rows, columns=results.PARSED_SCORES_COLUMNS)
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    counts = {"evaluations": len(rows) + len(failed) + len(missing), "on_disk": len(rows),
              "score_errors": int((frame["error"] != "").sum()), "failed": len(failed), "missing": len(missing),
              "failures": failed}
    return frame, counts


def write_parsed_scores(paths, cohort_id: str) -> None:
    stamp = fingerprint(paths, cohort_id)
    frame, counts = collect_scores(paths, cohort_id)
    out = reports_dir(paths, cohort_id)
    atomic_write_text(out / "parsed_scores.csv", frame.to_csv(index=False))
    atomic_write_json(out / "status.json", counts)
    _stamp(paths, cohort_id, out / "parsed_scores.csv", stamp)


def write_derived_tables(paths, cohort_id: str) -> None:
    stamp = fingerprint(paths, cohort_id)
    out = reports_dir(paths, cohort_id)
    frame = pd.read_csv(out / "parsed_scores.csv", keep_default_na=False, na_values=[""],
                        dtype={"error": str}).fillna({"error": ""})
    results.write_tables(frame, out)
    _stamp(paths, cohort_id, out / "pivot.csv", stamp)


def write_report(paths, cohort_id: str) -> None:
    from .report import write_report as write_html
    stamp = fingerprint(paths, cohort_id)
    page = write_html(reports_dir(paths, cohort_id), cohort_id, paths.gens)
    _stamp(paths, cohort_id, page, stamp)


def read_status(paths, cohort_id: str) -> dict:
    return json.loads((reports_dir(paths, cohort_id) / "status.json").read_text())
