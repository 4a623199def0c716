"""The results tables over ~100,000 evaluations: ParseScores + Pivot, and the whole `daydream report`.

The store is synthetic and written without a model, by a child process running this file with `--build` (the
measuring process never imports the pipeline): 142 concepts -> 10,011 drafts and llm essays, each judged by
2 evaluation templates x 5 judges = 100,110 evaluations. The cohort is resolved by the pipeline exactly as
`daydream run` resolves it, its membership and combinations recorded, and every generation gets the metadata.json the
pipeline writes (scores 0-10, ~2% answers without a score) plus parsed.txt for drafts and essays.

Measured, each in a new child process (wall time and its own peak RSS):
  tables  collect.write_parsed_scores + collect.write_derived_tables: what ParseScores and Pivot run (parsed_scores.csv,
          pivot.csv, the summaries, agreement)
  report  `daydream report --cohort bench`: validation, cohort expansion, the same tables and report.html
"""

import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import harness
from project import COHORT, Model, Shape, make_project

JUDGES, EVALUATION_TEMPLATES = 5, 2

_TABLES = """
import sys
from daydream_luigi.report import collect
from daydream_luigi.core.settings import Paths
paths = Paths.from_env()
collect.write_parsed_scores(paths, sys.argv[1])
collect.write_derived_tables(paths, sys.argv[1])
"""


def shape_for(evaluations: int) -> Shape:
    n = 2
    while math.comb(n, 2) * JUDGES * EVALUATION_TEMPLATES < evaluations:
        n += 1
    return Shape(
        concepts=n,
        judges=tuple(Model(f"judge-{i + 1}", "paid") for i in range(JUDGES)),
        evaluation_templates=EVALUATION_TEMPLATES,
    )


def build(root: Path) -> int:
    """(In the child, with the pipeline on its path.) Record the cohort and write every generation's files."""
    from daydream_luigi.cli.common import prepare
    from daydream_luigi.store.combo_mappings import persist_mappings
    from daydream_luigi.store.files import gen_dir
    from daydream_luigi.store.membership import write_cohort

    paths, plan = prepare(COHORT, "http")
    members = list(plan.members.values())
    write_cohort(paths, plan.spec, members)
    persist_mappings(paths.combo_mappings, list(plan.context.combos.values()))
    evaluations = 0
    for member in members:
        metadata = {
            "stage": member.stage,
            "gen_id": member.gen_id,
            "parent_gen_id": member.parent_gen_id,
            "cohort_id": member.cohort_id,
            "combo_id": member.combo_id,
            "template_id": member.template_id,
            "template_sha256": "0" * 64,
            "llm_model_id": member.llm_model_id,
            "replicate": member.replicate,
            "model": f"bench/{member.llm_model_id}",
            "started_at": "2026-01-01T00:00:00.000+00:00",
            "finished_at": "2026-01-01T00:00:01.000+00:00",
            "duration_s": 1.0,
            "run_id": "bench",
            "finish_reason": "stop",
            "prompt_tokens": 120,
            "completion_tokens": 80,
            "cost": 0.0002,
            "latency_s": 1.0,
            "attempts": [{"n": 1, "outcome": "ok", "wait_s": 0.0, "elapsed_s": 1.0}],
            "called_at": "2026-01-01T00:00:00.500+00:00",
            "temperature": 0.7,
            "max_tokens": 500,
        }
        directory = gen_dir(paths.gens, member.stage, member.gen_id)
        directory.mkdir(parents=True)
        if member.stage == "evaluation":
            digest = hashlib.sha256(member.gen_id.encode()).digest()
            score = None if digest[0] < 5 else float(digest[1] % 11)  # ~2% answers without a score
            metadata.update(
                parser="in_last_line",
                score=score,
                score_max=10,
                error="" if score is not None else "parser 'in_last_line': no score in the last line",
            )
            evaluations += 1
        else:
            if member.stage == "draft":
                combo = plan.context.combos[member.combo_id]
                metadata.update(
                    parser="essay_block", concept_ids=list(combo.concept_ids), description_level=combo.level, k=combo.k
                )
            else:
                metadata.update(mode="llm")
            (directory / "parsed.txt").write_text(
                f"{member.stage} {member.gen_id} about {member.combo_id}.\n" + "Some text of the essay.\n" * 20
            )
        (directory / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return evaluations


def run_results(evaluations: int = 100_000, repeat: int = 1, log=print) -> tuple[list, dict]:
    from table import Row

    code = harness.after()
    shape = shape_for(evaluations)
    root = make_project(harness.run_dir(f"results-{shape.drafts * shape.evaluations_per_essay}"), shape, code.root)
    env = harness.project_env(root, "http://127.0.0.1:9/v1", code)  # nothing calls a model
    start = time.perf_counter()
    built = harness.measure([sys.executable, __file__, "--build", str(root)], env, root)
    if built.returncode:
        sys.exit(f"building the synthetic store failed:\n{built.stderr[-3000:]}")
    count = shape.drafts * shape.evaluations_per_essay
    log(
        f"results: synthetic store of {shape.generations:,} generations ({count:,} evaluations) written in "
        f"{time.perf_counter() - start:.0f} s"
    )
    reports = root / "data" / "cohorts" / COHORT / "reports"
    out = {"evaluations": count, "tables": [], "report": []}
    for _ in range(repeat):
        shutil.rmtree(reports, ignore_errors=True)
        tables = harness.measure([sys.executable, "-c", _TABLES, COHORT], env, root)
        if tables.returncode:
            sys.exit(f"results tables failed:\n{tables.stderr[-3000:]}")
        rows = sum(1 for _ in (reports / "parsed_scores.csv").open()) - 1
        if rows != count:
            sys.exit(f"parsed_scores.csv has {rows} rows, expected {count}")
        shutil.rmtree(reports, ignore_errors=True)
        report = harness.measure([sys.executable, "-m", "daydream_luigi", "report", "--cohort", COHORT], env, root)
        if report.returncode or not (reports / "report.html").exists():
            sys.exit(f"daydream report failed:\n{report.stdout[-2000:]}\n{report.stderr[-3000:]}")
        out["tables"].append(tables)
        out["report"].append(report)
        log(
            f"  ParseScores + Pivot {tables.wall_s:.1f} s, peak RSS {tables.maxrss_mb:.0f} MB; `daydream report` "
            f"{report.wall_s:.1f} s, peak RSS {report.maxrss_mb:.0f} MB (load {harness.load()})"
        )
    best = {key: min(out[key], key=lambda m: m.wall_s) for key in ("tables", "report")}
    rows = [
        Row(f"ParseScores + Pivot, {count:,} evaluations: wall", "s", None, 30.0, {"after": best["tables"].wall_s}),
        Row(
            f"ParseScores + Pivot, {count:,} evaluations: peak RSS",
            "MB",
            None,
            1024.0,
            {"after": best["tables"].maxrss_mb},
        ),
        Row(
            f"`daydream report`, {count:,} evaluations: wall (peak RSS)",
            "s",
            None,
            None,
            {"after": best["report"].wall_s},
            {"after": f"{best['report'].wall_s:.1f} s ({best['report'].maxrss_mb:.0f} MB)"},
        ),
    ]
    return rows, out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--build"]:
        print(build(Path(sys.argv[2])))
    else:
        sys.exit("usage: python bench/run_all.py --only results (this file's --build is its store builder)")
