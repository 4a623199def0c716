"""The daily loop after a run: select the winners, build a curated cohort, re-judge them, check the store."""

import csv
import shutil

from conftest import daydream


def test_top_three_rejudged_by_one_more_template_runs_only_the_new_evaluations(project, endpoint):
    catalog = project / "data" / "1_raw" / "evaluation_templates.csv"
    text = catalog.read_text()
    assert 'judge-b,Judge-B,"A evaluation template, for tests",true' in text
    catalog.write_text(
        text.replace(
            'judge-b,Judge-B,"A evaluation template, for tests",true',
            'judge-b,Judge-B,"A evaluation template, for tests",false',
        )
    )
    assert daydream("run").returncode == 0
    calls_after_first_run = endpoint.stats["requests"]
    assert calls_after_first_run == 6 + 6 + 12

    selected = project / "winners.txt"
    chosen = daydream("select", "top", "--templates", "judge-a", "--top-n", "3", "--out", str(selected))
    assert chosen.returncode == 0, chosen.stderr
    essays = selected.read_text().split()
    with next((project / "data" / "cohorts").glob("active-*/reports/parsed_scores.csv")).open() as handle:
        rows = list(csv.DictReader(handle))
    best = sorted((-float(r["score"]), r["parent_gen_id"]) for r in rows if r["evaluation_template"] == "judge-a")
    assert essays == [gen_id for _, gen_id in best[:3]]  # highest first, ties by id

    built = daydream(
        "cohort",
        "build",
        "winners",
        "--from-essays",
        str(selected),
        "--eval-templates",
        "judge-a,judge-b",
        "--eval-models",
        "judge-paid",
    )
    assert built.returncode == 0, built.stderr
    assert "cohort winners: 3 essays, 6 evaluations" in built.stdout
    rerun = daydream("run", "--cohort", "winners")
    assert rerun.returncode == 0, rerun.stderr
    drafts = {r["draft_gen_id"] for r in rows if r["parent_gen_id"] in essays}  # two winners may share a draft
    assert (
        f"cohort winners: done 3, skipped (already complete) {len(drafts) + 3 + 3}, failed 0, blocked 0" in rerun.stdout
    )
    assert endpoint.stats["requests"] == calls_after_first_run + 3  # only the three judge-b evaluations
    with (project / "data" / "cohorts" / "winners" / "reports" / "pivot.csv").open() as handle:
        pivot = list(csv.DictReader(handle))
    assert sorted(r["parent_gen_id"] for r in pivot) == sorted(essays)
    assert all(r["judge-a_judge-paid"] and r["judge-b_judge-paid"] for r in pivot)


def test_check_cli_exits_1_on_planted_problems_and_0_on_a_clean_store(project):
    assert daydream("run").returncode == 0
    clean = daydream("check")
    assert clean.returncode == 0 and clean.stdout.strip() == "0 problem(s) found"
    gens = project / "data" / "gens"
    drafts = sorted((gens / "draft").iterdir())
    shutil.copytree(drafts[0], gens / "draft" / "copied-by-hand")
    (drafts[1] / "metadata.json").unlink()
    essay = sorted((gens / "essay").iterdir())[0]
    (essay / "metadata.json").write_text("{not json")
    found = daydream("check")
    assert found.returncode == 1
    kinds = {line.split()[0] for line in found.stdout.splitlines()[:-1]}
    assert kinds == {"incomplete", "missing_parent", "duplicate", "orphan", "corrupt"}
