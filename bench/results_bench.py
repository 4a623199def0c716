"""P4 results: parsed scores, pivot and summaries over a synthetic store of ~100,000 evaluations.

The store is written directly (no model): 142 concepts -> 10,011 combinations -> 10,011 drafts and essays, each essay
judged by 2 evaluation templates x 5 judges = 100,110 evaluations, with the metadata.json files the pipeline writes
(scores 0-10, about 2% judge answers without a score) and parsed.txt for drafts and essays. Its cohort is the project's
active cohort, expanded by the library exactly as `daydream run` does.

Measured, each in a fresh child process (wall time and its own peak RSS):
  tables  = collect.write_parsed_scores + collect.write_derived_tables   (ParseScores + Pivot: parsed_scores.csv,
            pivot.csv, the summaries, agreement)
  cli     = `daydream run --stage results` (validation, cohort expansion, then ParseScores, Pivot and report.html)
  current = the same command again when every table is up to date (fingerprint checks only)

Usage: python bench/results_bench.py [--evaluations 100000]
"""

import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import measure, parser_for, project_env, run_dir, run_then_clean  # noqa: E402
from project import make_project  # noqa: E402

JUDGES, EVAL_TEMPLATES = 5, 2

_TABLES = """
import sys
from daydream_luigi import collect
from daydream_luigi.config import Paths
paths, cohort = Paths.from_env(), sys.argv[1]
collect.write_parsed_scores(paths, cohort)
collect.write_derived_tables(paths, cohort)
"""


def concepts_for_evaluations(evaluations: int) -> int:
    n = 2
    while math.comb(n, 2) * JUDGES * EVAL_TEMPLATES < evaluations:
        n += 1
    return n


def _write(directory: Path, metadata: dict, parsed: str | None) -> None:
    directory.mkdir(parents=True)
    if parsed is not None:
        (directory / "parsed.txt").write_text(parsed)
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def build_store(evaluations: int, log=print) -> tuple[Path, str, int]:
    """A project whose active cohort has ~`evaluations` complete evaluations on disk; returns (root, cohort, count)."""
    from daydream_luigi.catalog import load_catalog
    from daydream_luigi.cohort import active_spec, expand, write_cohort
    from daydream_luigi.config import Paths, configure_luigi, load_settings, pool_limits

    start = time.perf_counter()
    root = make_project(run_dir(f"results-{evaluations}"), concepts_for_evaluations(evaluations), judges=JUDGES,
                        evaluation_templates=EVAL_TEMPLATES)
    paths = Paths(root / "data", root / "config")
    os.environ.pop("LUIGI_CONFIG_PATH", None)
    configure_luigi(paths)
    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits())
    spec = active_spec(catalog, settings, "http")
    members = expand(spec, paths)
    write_cohort(paths, spec, members)
    combos = spec.manifest()["combos"]
    count = 0
    for member in members:
        common = {"stage": member.stage, "gen_id": member.gen_id, "parent_gen_id": member.parent_gen_id,
                  "cohort_id": member.cohort_id, "combo_id": member.combo_id, "template_id": member.template_id,
                  "template_sha256": "0" * 64, "llm_model_id": member.llm_model_id, "replicate": member.replicate,
                  "model": f"bench/{member.llm_model_id}", "started_at": "2026-01-01T00:00:00.000+00:00",
                  "finished_at": "2026-01-01T00:00:01.000+00:00", "duration_s": 1.0, "finish_reason": "stop",
                  "prompt_tokens": 120, "completion_tokens": 80, "cost": 0.0002, "latency_s": 1.0,
                  "attempts": [{"n": 1, "outcome": "ok", "wait_s": 0.0, "elapsed_s": 1.0}],
                  "called_at": "2026-01-01T00:00:00.500+00:00", "temperature": 0.7, "max_tokens": 500,
                  "task_id": f"{member.parent_gen_id}__{member.template_id}"}
        directory = paths.gens / member.stage / member.gen_id
        if member.stage == "evaluation":
            digest = hashlib.sha256(member.gen_id.encode()).digest()
            score = None if digest[0] < 5 else float(digest[1] % 11)  # ~2% answers without a score
            common.update(parser="in_last_line", score=score, score_max=10,
                          error="" if score is not None else "parser 'in_last_line': no score in the last line")
            _write(directory, common, None)
            count += 1
        else:
            if member.stage == "draft":
                common.update(parser="essay_block", concept_ids=combos[member.combo_id],
                              description_level="paragraph", k=2)
            else:
                common.update(mode="llm")
            text = f"{member.stage} {member.gen_id} about {member.combo_id}.\n" + "Some text of the essay.\n" * 20
            _write(directory, common, text)
    log(f"synthetic store: {len(members):,} generations ({count:,} evaluations) written in "
        f"{time.perf_counter() - start:.0f} s under {root}")
    return root, spec.cohort_id, count


def run_results(evaluations: int = 100_000, repeat: int = 1, log=print) -> dict:
    root, cohort, count = build_store(evaluations, log)
    env = project_env(root, "http://127.0.0.1:9/v1")  # no model is called
    reports = root / "data" / "cohorts" / cohort / "reports"
    out = {"evaluations": count, "tables": [], "cli": [], "current": [], "root": str(root)}
    for _ in range(repeat):
        shutil.rmtree(reports, ignore_errors=True)
        tables = measure([sys.executable, "-c", _TABLES, cohort], env=env, cwd=root)
        if tables.returncode:
            sys.exit(f"results tables failed:\n{tables.stderr[-3000:]}")
        rows = sum(1 for _ in (reports / "parsed_scores.csv").open()) - 1
        if rows != count:
            sys.exit(f"parsed_scores.csv has {rows} rows, expected {count}")
        out["tables"].append({"wall_s": tables.wall_s, "maxrss_mb": tables.maxrss_mb})
        shutil.rmtree(reports, ignore_errors=True)
        cli = measure([sys.executable, "-m", "daydream_luigi", "run", "--stage", "results"], env=env, cwd=root)
        if cli.returncode or not (reports / "report.html").exists():
            sys.exit(f"daydream run --stage results failed:\n{cli.stdout[-2000:]}\n{cli.stderr[-3000:]}")
        out["cli"].append({"wall_s": cli.wall_s, "maxrss_mb": cli.maxrss_mb})
        current = measure([sys.executable, "-m", "daydream_luigi", "run", "--stage", "results"], env=env, cwd=root)
        out["current"].append({"wall_s": current.wall_s, "maxrss_mb": current.maxrss_mb})
        log(f"{count:,} evaluations: ParseScores + Pivot {tables.wall_s:.1f} s, peak RSS {tables.maxrss_mb:.0f} MB; "
            f"`daydream run --stage results` (with report.html) {cli.wall_s:.1f} s, peak RSS {cli.maxrss_mb:.0f} MB; "
            f"again when up to date {current.wall_s:.1f} s")
    return out


def main(argv=None) -> None:
    parser = parser_for(__doc__, workers=False)
    parser.add_argument("--evaluations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    run_then_clean(args.keep, lambda: run_results(args.evaluations, args.repeat))


if __name__ == "__main__":
    main()
