"""`daydream search` through the real CLI and Luigi against a loopback judge that scores a planted combination high:
it finds it within its budget, records its rounds as cohorts the other commands read, resumes after SIGKILL without
paying twice, stops at its budget, and its replay over its own generations takes the same decisions with no call.
The stock `luigi` command runs the same search as `SearchRound` tasks and takes the same decisions."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import daydream
from fake_judge import FakeJudge

EXTRA = {"kites": "Kites", "beehives": "Beehives", "lighthouses": "Lighthouses"}
PLANTED = ("Tidal power", "Beehives")  # the judge scores an essay naming both 8-9, any other 3-4
SPEC = """\
concepts: [tidal-power, ant-foraging, sourdough, kites, beehives, lighthouses]
k: 2
draft_templates: [sketch]
essay_templates: [polish]
generation_models: [gen-paid]
screen: {evaluation_templates: [judge-a], evaluation_models: [judge-paid]}
gate: found
evaluation_models: [judge-paid, free-one]
replicates: {draft: 2, evaluation: 2}
budget: {max_calls: 200}
strategy: halving
seed: 1
"""
GATE = "criteria:\n  - {template: judge-a, min: 7, by: lower-bound}\nmin_judges: 2\n"
# The cube of SPEC as a cohort: every combination judged as a finalist (what `plan --search` calls the cube).
CUBE = """\
concepts: [tidal-power, ant-foraging, sourdough, kites, beehives, lighthouses]
k: 2
draft_templates: [sketch]
essay_templates: [polish]
evaluation_templates: [judge-a]
generation_models: [gen-paid]
evaluation_models: [judge-paid, free-one]
replicates: {draft: 2, essay: 1, evaluation: 2}
"""
CUBE_CALLS = 15 * (2 + 2 + 2 * 2 * 2)


@pytest.fixture(scope="module")
def judge_server():
    with FakeJudge() as server:
        yield server


@pytest.fixture
def fake(judge_server, project, monkeypatch):
    judge_server.reset()
    judge_server.planted_together = PLANTED
    monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", judge_server.base_url)
    raw = project / "data" / "1_raw"
    with (raw / "concepts_metadata.csv").open("a") as handle:
        for concept_id, name in EXTRA.items():
            handle.write(f"{concept_id},{name},true\n")
            (raw / "concepts" / "descriptions-paragraph" / f"{concept_id}.txt").write_text(f"About {name}.\n")
    write_search(project, "s", SPEC)
    (project / "config" / "gates" / "found.yaml").write_text(GATE)
    yield judge_server
    judge_server.reset()


def write_search(project: Path, name: str, text: str) -> None:
    (project / "config" / "searches").mkdir(exist_ok=True)
    (project / "config" / "searches" / f"{name}.yaml").write_text(text)


def searched(project: Path, name: str = "s") -> tuple[pd.DataFrame, dict]:
    folder = project / "data" / "searches" / name
    return pd.read_csv(folder / "rounds.csv"), json.loads((folder / "result.json").read_text())


def planted_combo(project: Path) -> str:
    from daydream_luigi.core.combos import make_combo

    return make_combo(["tidal-power", "beehives"], "paragraph", 2).combo_id


def answered_per_generation(project: Path) -> Counter:
    counts: Counter = Counter()
    for path in (project / "data" / "gens").glob("*/*/attempts.jsonl"):
        for line in path.read_text().splitlines():
            counts[path.parent.name] += json.loads(line).get("event") == "answered"
    return counts


def test_a_search_finds_the_planted_combination_for_part_of_the_cube_and_its_rounds_are_cohorts(project, fake):
    result = daydream("search", "s", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    rounds, record = searched(project)
    assert rounds[["round", "phase", "candidates", "calls", "passes"]].values.tolist() == [
        [1, "screen", 15, 45, 0],
        [2, "screen", 5, 25, 0],
        [3, "screen", 2, 0, 0],
        [4, "final", 1, 4, 2],
    ]
    assert record["found"] and record["stop_reason"] == "found" and record["calls"] == 74
    assert [p["combo_id"] for p in record["passes"]] == [planted_combo(project)] * len(record["passes"])
    assert record["passes"][0]["concept_names"] == ["Beehives", "Tidal power"]
    assert record["cube"]["calls"] == CUBE_CALLS and record["budget_left"]["calls"] == 126
    chat = [r for r in fake.requests if r["path"] == "/v1/chat/completions"]
    assert len(chat) == 74  # every call the search counts reached the server once
    folder = project / "data" / "searches" / "s"
    assert result.stdout.splitlines() == [
        f"search s: found {len(record['passes'])} essay(s) passing gate found at 74 calls, ${record['cost_usd']:.4f} "
        f"(the cube: 180 calls, est. ${record['cube']['est_cost_usd']:.4f}; 41% of its calls); stopped: found; "
        f"{folder / 'result.json'}"
    ]
    assert "yield curve" in (folder / "report.html").read_text()
    gate = daydream("gate", "found", "--cohort", "search-s-r4")
    assert gate.returncode == 0, gate.stderr
    passed = len(record["passes"])
    assert gate.stdout.splitlines()[-2].startswith(f"{passed} of {passed} essays pass gate found")
    report = daydream("report", "--cohort", "search-s-r1")
    assert report.returncode == 0, report.stderr
    assert (project / "data" / "cohorts" / "search-s-r1" / "reports" / "parsed_scores.csv").exists()

    again = daydream("search", "s")  # run again: every round is complete, nothing is called
    assert again.returncode == 0 and len(fake.requests) == len(chat)
    assert again.stderr.splitlines() == [
        "round 1 (screen): 15 combination(s), cohort search-s-r1, 45 generations, 0 to make",
        "round 2 (screen): 5 combination(s), cohort search-s-r2, 40 generations, 0 to make",
        "round 3 (screen): 2 combination(s), cohort search-s-r3, 16 generations, 0 to make",
        "round 4 (final): 1 combination(s), cohort search-s-r4, 12 generations, 0 to make",
    ]
    assert searched(project)[0].equals(rounds)

    (project / "config" / "cohorts").mkdir(exist_ok=True)
    (project / "config" / "cohorts" / "cube.yaml").write_text(CUBE)
    replay = daydream("search", "s", "--replay", "cube", "--quiet")
    assert replay.returncode == 0, replay.stderr
    replayed = project / "data" / "searches" / "s" / "replay-cube"
    assert (replayed / "rounds.csv").read_text() == (folder / "rounds.csv").read_text()
    assert len(fake.requests) == len(chat)  # zero calls

    write_search(project, "other", SPEC.replace("evaluation_templates: [judge-a]", "evaluation_templates: [judge-b]"))
    lacking = daydream("search", "other", "--replay", "cube")
    assert lacking.returncode == 2 and lacking.stdout == "" and len(lacking.stderr.splitlines()) == 1
    assert lacking.stderr.startswith("error: --replay cube: round 1 of search other asks for evaluation ")
    assert lacking.stderr.endswith(
        ", template judge-b, model judge-paid, replicate 1), which cohort cube lacks (and 14 more); replay over a "
        "cohort with the search's spec (its cube: `daydream plan --search other`)\n"
    )


def test_a_search_stops_at_its_call_budget_cutting_the_round_that_would_exceed_it(project, fake):
    write_search(project, "s", SPEC.replace("max_calls: 200", "max_calls: 50"))
    result = daydream("search", "s", "--quiet")
    assert result.returncode == 0, result.stderr
    rounds, record = searched(project)
    assert rounds[["round", "phase", "candidates", "calls"]].values.tolist() == [
        [1, "screen", 15, 45],
        [2, "screen", 1, 5],  # cut to the best combination: the next one's 5 calls would exceed the 50
    ]
    assert record["stop_reason"] == "budget" and not record["found"] and record["budget_left"]["calls"] == 0
    assert len([r for r in fake.requests if r["path"] == "/v1/chat/completions"]) == 50
    assert "no essay passes gate found at 50 calls" in result.stdout
    again = daydream("search", "s", "--quiet")  # run again: the cut round is resumed as recorded, nothing is called
    assert again.returncode == 0, again.stderr
    assert searched(project)[0].equals(rounds) and len(fake.requests) == 50

    write_search(project, "s", SPEC.replace("max_calls: 200", "max_calls: 50").replace("seed: 1", "seed: 2"))
    changed = daydream("search", "s", "--quiet")  # another seed: another first round than the one recorded
    plan = project / "data" / "searches" / "s" / "rounds" / "r1.json"
    assert changed.returncode == 2 and changed.stderr == (
        f"error: {plan}: round 1 of search s was planned for other combinations "
        f"({project / 'config' / 'searches' / 's.yaml'} or the kept scores changed since); restore the spec, or "
        f"remove {plan.parent.parent} to search again from round 1\n"
    )


def test_plan_search_shows_the_budget_worst_case_beside_the_cube(project, fake):
    result = daydream("plan", "--search", "s")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "search s (halving, seed 1): gate found, stop after 1 pass(es)"
    assert lines[1].startswith("budget, worst case: 200 calls, $") and lines[1].endswith("(111% of the cube's calls)")
    assert lines[2].startswith("the cube (search-s-cube): 180 calls, est. $")


def test_killed_mid_round_and_run_again_it_pays_for_nothing_twice_and_ends_as_an_uninterrupted_search(project, fake):
    fake.latency = 0.3
    command = [sys.executable, "-m", "daydream_luigi", "search", "s", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while sum(answered_per_generation(project).values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert sum(answered_per_generation(project).values()) >= 20
    fake.latency = 0.0
    result = daydream("search", "s", "--quiet")
    assert result.returncode == 0, result.stderr
    rounds, record = searched(project)
    assert record["found"] and record["calls"] == 74
    assert rounds["calls"].tolist() == [45, 25, 0, 4]
    answered = answered_per_generation(project)
    assert max(answered.values()) == 1 and sum(answered.values()) == 74  # no answer paid for twice


def test_bad_search_specs_exit_2_with_one_line_per_problem_naming_the_file_key_and_fix(project, fake):
    path = project / "config" / "searches" / "bad.yaml"
    write_search(
        project,
        "bad",
        "k: 9\nscreen: {evaluation_templates: [nope]}\ngate: missing\nbudget: {}\nstrategy: greedy\neta: 1\n"
        "colour: red\n",
    )
    result = daydream("search", "bad")
    assert result.returncode == 2 and result.stdout == ""
    gates = project / "config" / "gates"
    assert result.stderr.splitlines() == [
        f"error: {path}: unknown key 'colour'; allowed: concepts, k, k_min, k_max, draft_templates, essay_templates, "
        "generation_models, screen, gate, evaluation_models, replicates, budget, strategy, seed, stop_after_passes, "
        "eta, beam_width, batch",
        f"error: {path}: strategy must be one of halving, beam, random, exhaustive (found 'greedy')",
        f"error: {path}: k must be a whole number from 1 to 6, the number of concepts (found 9)",
        f"error: {path}: screen.evaluation_models is missing; add it",
        f"error: {path}: screen: evaluation_templates lists unknown id 'nope'; known: judge-a, judge-b",
        f"error: {path}: budget sets no limit; give max_calls, max_cost_usd or both",
        f"error: {path}: eta must be 2 or more (each round keeps 1/eta of the combinations); found 1",
        f"error: {path}: gate 'missing': {gates / 'missing.yaml'}: gate file not found; write it (like "
        f"config/gates/reinvention.yaml) or name one of: found, reinvention",
    ]
    beam_spec = SPEC.replace("k: 2\n", "k: 2\nk_min: 3\nbatch: 2\n").replace("strategy: halving", "strategy: beam")
    write_search(project, "beam", beam_spec)
    beam = daydream("search", "beam")
    where = project / "config" / "searches" / "beam.yaml"
    assert beam.returncode == 2 and beam.stderr.splitlines() == [
        f"error: {where}: strategy beam grows combinations from k_min to k_max; remove k; add k_max",
        f"error: {where}: batch (combinations per round) only applies to strategy random; remove it",
    ]
    missing = daydream("search", "nothing")
    assert missing.returncode == 2
    assert missing.stderr == (
        f"error: {project / 'config' / 'searches' / 'nothing.yaml'}: search spec not found; write it (see "
        f"docs/search.md) or name one of: bad, beam, example, s\n"
    )


def test_a_cost_budget_is_the_spending_stop_of_the_round_that_reaches_it(project, fake):
    write_search(project, "s", SPEC.replace("budget: {max_calls: 200}", "budget: {max_cost_usd: 0.002}"))
    result = daydream("search", "s", "--quiet")
    assert result.returncode == 0, result.stderr
    rounds, record = searched(project)
    assert rounds["round"].tolist() == [1] and record["stop_reason"] == "budget" and not record["found"]
    chat = [r for r in fake.requests if r["path"] == "/v1/chat/completions"]
    assert 0 < record["calls"] == len(chat) <= 20  # the judge reports $0.0001 a call
    assert record["cost_usd"] <= 0.002 and record["budget_left"]["cost_usd"] == round(0.002 - record["cost_usd"], 6)


def search_round_command(name: str = "s") -> list[str]:
    """The stock `luigi` command on SearchRound(name, 1), as docs/search.md shows it; --no-lock because Luigi refuses
    to start a command line that another test (with its own data folder) is running at the same time."""
    luigi = str(Path(sys.executable).with_name("luigi"))
    module = ["--module", "daydream_luigi.execution.tasks"]
    return [luigi, *module, "SearchRound", "--name", name, "--round", "1", "--local-scheduler", "--workers", "4"] + [
        "--no-lock"
    ]


def luigi_env(project: Path, **env: str) -> dict:
    return {**os.environ, "LUIGI_CONFIG_PATH": str(project / "config" / "luigi.cfg"), **env}


def luigi_search_round(project: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        search_round_command(), capture_output=True, text=True, timeout=600, env=luigi_env(project, **env)
    )


def test_the_stock_luigi_command_runs_a_search_as_search_round_tasks_with_the_decisions_of_daydream_search(
    project, fake
):
    fresh = project / "fresh-data"  # a fresh project: the same config and inputs, nothing made yet
    shutil.copytree(project / "data", fresh)
    result = luigi_search_round(project)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "This progress looks :) because there were no failed tasks or missing dependencies" in result.stderr
    rounds, record = searched(project)
    assert rounds[["round", "phase", "candidates", "calls", "passes"]].values.tolist() == [
        [1, "screen", 15, 45, 0],
        [2, "screen", 5, 25, 0],
        [3, "screen", 2, 0, 0],
        [4, "final", 1, 4, 2],
    ]
    assert record["found"] and record["stop_reason"] == "found" and record["calls"] == 74
    assert [p["combo_id"] for p in record["passes"]] == [planted_combo(project)] * len(record["passes"])
    chat = [r for r in fake.requests if r["path"] == "/v1/chat/completions"]
    assert len(chat) == 74  # every call the search counts reached the judge once
    folder = project / "data" / "searches" / "s"
    decided = [json.loads((folder / "rounds" / f"r{n}.decided.json").read_text()) for n in (1, 2, 3, 4)]
    inputs = decided[0]["inputs"]
    assert inputs == {
        "spec_sha256": hashlib.sha256(SPEC.encode()).hexdigest(),
        "gate_sha256": hashlib.sha256(GATE.encode()).hexdigest(),
    }
    assert decided == [
        {"round": 1, "next_round": 2, "inputs": inputs},
        {"round": 2, "next_round": 3, "inputs": inputs},
        {"round": 3, "next_round": 4, "inputs": inputs},
        {"round": 4, "next_round": None, "inputs": inputs, "stop_reason": "found"},
    ]
    for n in (1, 2, 3, 4):  # each round is a cohort built as `daydream run` builds one, reports included
        assert (project / "data" / "cohorts" / f"search-s-r{n}" / "reports" / "report.html").exists()
    gate = daydream("gate", "found", "--cohort", "search-s-r4")
    assert gate.returncode == 0, gate.stderr
    assert not (folder / "rounds" / "r5.json").exists()

    again = luigi_search_round(project)  # run again: every round is decided, nothing is called
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 complete ones were encountered" in again.stderr
    assert len(fake.requests) == len(chat)
    write_search(project, "s", SPEC.replace("max_calls: 200", "max_calls: 300"))  # decided again, with no call
    raised = luigi_search_round(project)
    assert "This progress looks :) because there were no failed tasks or missing dependencies" in raised.stderr
    assert len(fake.requests) == len(chat) and searched(project)[0].equals(rounds)
    assert searched(project)[1]["budget_left"]["calls"] == 300 - 74
    write_search(project, "s", SPEC)
    assert luigi_search_round(project).returncode == 0 and searched(project)[1] == record

    live = daydream("search", "s", "--quiet", env={"DAYDREAM_DATA_ROOT": str(fresh)})
    assert live.returncode == 0, live.stderr
    assert len([r for r in fake.requests if r["path"] == "/v1/chat/completions"]) == 2 * 74
    live_folder = fresh / "searches" / "s"
    assert (live_folder / "rounds.csv").read_text() == (folder / "rounds.csv").read_text()
    assert json.loads((live_folder / "result.json").read_text()) == record
    for n in (1, 2, 3, 4):  # the same own calls recorded for each round
        assert (live_folder / "rounds" / f"r{n}.json").read_text() == (folder / "rounds" / f"r{n}.json").read_text()

    carried = luigi_search_round(project, DAYDREAM_DATA_ROOT=str(fresh))  # over daydream search's rounds
    assert "This progress looks :) because there were no failed tasks or missing dependencies" in carried.stderr
    assert len([r for r in fake.requests if r["path"] == "/v1/chat/completions"]) == 2 * 74
    assert (live_folder / "rounds.csv").read_text() == (folder / "rounds.csv").read_text()
    assert json.loads((live_folder / "rounds" / "r4.decided.json").read_text())["stop_reason"] == "found"


def test_search_round_tasks_stop_at_the_call_budget_as_daydream_search_does(project, fake):
    write_search(project, "s", SPEC.replace("max_calls: 200", "max_calls: 50"))
    result = luigi_search_round(project)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "This progress looks :) because there were no failed tasks or missing dependencies" in result.stderr
    rounds, record = searched(project)
    assert rounds[["round", "phase", "candidates", "calls"]].values.tolist() == [
        [1, "screen", 15, 45],
        [2, "screen", 1, 5],  # cut to the best combination: the next one's 5 calls would exceed the 50
    ]
    assert record["stop_reason"] == "budget" and not record["found"] and record["budget_left"]["calls"] == 0
    assert len([r for r in fake.requests if r["path"] == "/v1/chat/completions"]) == 50
    rounds_folder = project / "data" / "searches" / "s" / "rounds"
    assert json.loads((rounds_folder / "r2.decided.json").read_text())["stop_reason"] == "budget"
    assert sorted(p.name for p in rounds_folder.iterdir()) == [
        "r1.decided.json",
        "r1.json",
        "r2.decided.json",
        "r2.json",
    ]


def test_search_round_tasks_killed_mid_round_and_run_again_pay_for_nothing_twice(project, fake):
    fake.latency = 0.3
    process = subprocess.Popen(
        search_round_command(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=luigi_env(project),
    )
    deadline = time.monotonic() + 120
    while sum(answered_per_generation(project).values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert sum(answered_per_generation(project).values()) >= 20
    fake.latency = 0.0
    result = luigi_search_round(project)
    assert "This progress looks :) because there were no failed tasks or missing dependencies" in result.stderr
    rounds, record = searched(project)
    assert record["found"] and record["calls"] == 74
    assert rounds["calls"].tolist() == [45, 25, 0, 4]
    answered = answered_per_generation(project)
    assert max(answered.values()) == 1 and sum(answered.values()) == 74  # no answer paid for twice


def test_search_round_on_a_spec_that_does_not_exist_fails_with_its_one_message_and_writes_nothing(project, fake):
    result = subprocess.run(
        search_round_command("nothing"), capture_output=True, text=True, timeout=300, env=luigi_env(project)
    )
    assert "This progress looks :( because there were failed tasks" in result.stderr
    assert (
        f"daydream_luigi.core.errors.InputError: {project / 'config' / 'searches' / 'nothing.yaml'}: search spec not "
        f"found; write it (see docs/search.md) or name one of: example, s\n" in result.stderr
    )
    assert not (project / "data" / "searches").exists() and not fake.requests


def test_the_shipped_example_search_plans_on_the_shipped_inputs(monkeypatch):
    """config/searches/example.yaml, the README's step 9, is valid against the shipped data/1_raw and gate, and its
    budget is a quarter of its cube."""
    from click.testing import CliRunner
    from conftest import REPO

    from daydream_luigi.cli import main

    monkeypatch.setenv("DAYDREAM_DATA_ROOT", str(REPO / "data"))
    monkeypatch.setenv("DAYDREAM_CONFIG_DIR", str(REPO / "config"))
    monkeypatch.delenv("GEN_TEMPLATES_ROOT", raising=False)
    result = CliRunner().invoke(main, ["plan", "--search", "example", "--backend", "http"])
    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            "search example (halving, seed 1): gate reinvention, stop after 1 pass(es)",
            "budget, worst case: 600 calls, $5.0000 (25% of the cube's calls)",
            "the cube (search-example-cube): 2,400 calls, est. $6.2292",
        ],
    )
