"""The whole pipeline through the real CLI, real Luigi and a real loopback HTTP endpoint."""

import csv
import json

from conftest import FAKE_KEY, daydream

STAGE_COUNTS = {"draft": 6, "essay": 12, "evaluation": 24}  # 3 combos x 2 drafts; x 2 essays; x 2 judges' templates


def membership(project):
    cohorts = list((project / "data" / "cohorts").iterdir())
    assert len(cohorts) == 1
    with (cohorts[0] / "membership.csv").open() as handle:
        return cohorts[0], list(csv.DictReader(handle))


def test_default_cohort_runs_end_to_end_and_rerun_calls_nothing(project, endpoint):
    result = daydream("run", "--workers", "4")
    assert result.returncode == 0, result.stderr
    assert "done 42, skipped (already complete) 0, failed 0, blocked 0" in result.stdout
    assert endpoint.stats["requests"] == 6 + 6 + 24  # copy essays make no call

    folder, rows = membership(project)
    assert {stage: sum(r["stage"] == stage for r in rows) for stage in STAGE_COUNTS} == STAGE_COUNTS
    for row in rows:
        directory = project / "data" / "gens" / row["stage"] / row["gen_id"]
        assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == sorted(
            ["prompt.txt", "raw.txt", "parsed.txt", "metadata.json"]
            + (["call.json", "attempts.jsonl"] if (directory / "call.json").exists() else [])
        )
        meta = json.loads((directory / "metadata.json").read_text())
        assert (meta["gen_id"], meta["parent_gen_id"], meta["template_id"]) == (
            row["gen_id"],
            row["parent_gen_id"],
            row["template_id"],
        )
        assert FAKE_KEY not in (directory / "metadata.json").read_text()

    with (folder / "reports" / "parsed_scores.csv").open() as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == 24 and all(s["error"] == "" for s in scores)
    with (folder / "reports" / "pivot.csv").open() as handle:
        pivot = list(csv.DictReader(handle))
    assert len(pivot) == 12
    assert set(pivot[0]) >= {
        "parent_gen_id",
        "judge-a_judge-paid",
        "judge-b_judge-paid",
        "judge-a:mean",
        "judge-b:mean",
    }

    again = daydream("run")
    assert again.returncode == 0, again.stderr
    assert "done 0, skipped (already complete) 42, failed 0, blocked 0" in again.stdout
    assert endpoint.stats["requests"] == 36
