"""The research loop after a run, through the real CLI and Luigi against loopback servers: rescore kept judge answers
(no call), a position-swapped Swiss tournament whose fake judge prefers a planted essay, dedup of planted
near-duplicates through /embeddings, concept effects of a planted concept, and the report sections they fill."""

import itertools
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FAKE_KEY, REPO, daydream
from fake_endpoint import judge_score
from fake_judge import FakeJudge

COHORT = "loop"
SPEC = "generation_models: [gen-paid]\nevaluation_models: [judge-paid]\n"  # every other axis: the active flags
CONCEPT_NAMES = ("Tidal power", "Ant foraging", "Sourdough")
PLANTED_CONCEPT = "Sourdough"  # the judge scores the essays that name it 8-9, the others 3-4
EMBEDDING_ROW = "embed-small,vendor/embed-small,openrouter,Embed,false,false,paid,0.02,true"


def add_research_inputs(project: Path) -> None:
    """The shipped pairwise judge template, an embedding model row, and the `loop` cohort (12 essays)."""
    raw = project / "data" / "1_raw"
    shutil.copy(REPO / "data" / "1_raw" / "pairwise_templates.csv", raw / "pairwise_templates.csv")
    (raw / "generation_templates" / "pairwise").mkdir(parents=True)
    shutil.copy(
        REPO / "data" / "1_raw" / "generation_templates" / "pairwise" / "pairwise-novelty.txt",
        raw / "generation_templates" / "pairwise",
    )
    header, *rows = (raw / "llm_models.csv").read_text().splitlines()
    (raw / "llm_models.csv").write_text(
        "\n".join([f"{header},for_embedding", *(f"{r},false" for r in rows), EMBEDDING_ROW]) + "\n"
    )
    (project / "config" / "cohorts").mkdir(exist_ok=True)
    (project / "config" / "cohorts" / f"{COHORT}.yaml").write_text(SPEC)


@pytest.fixture(scope="module")
def judge_server():
    with FakeJudge() as server:
        yield server


@pytest.fixture
def fake(judge_server, project, monkeypatch):
    """The project's provider points at the fake judge, which scores the planted concept high."""
    judge_server.reset()
    judge_server.planted = PLANTED_CONCEPT
    monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", judge_server.base_url)
    add_research_inputs(project)
    yield judge_server
    judge_server.reset()


def invoke(*args: str):
    """The CLI in this process, for answers that come before anything runs (bad input): no interpreter to start."""
    from click.testing import CliRunner

    from daydream_luigi.cli import main

    return CliRunner().invoke(main, list(args))


def reports(project: Path) -> Path:
    return project / "data" / "cohorts" / COHORT / "reports"


def membership(project: Path) -> pd.DataFrame:
    return pd.read_csv(project / "data" / "cohorts" / COHORT / "membership.csv", dtype=str)


def essay_text(project: Path, gen_id: str) -> str:
    return (project / "data" / "gens" / "essay" / gen_id / "parsed.txt").read_text()


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start : html.index("</section>", start)]


def ran(project: Path, fake: FakeJudge) -> pd.DataFrame:
    result = daydream("run", "--cohort", COHORT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(fake.requests) == 6 + 6 + 24  # drafts, llm essays (copy essays call nothing), evaluations
    return membership(project)


# ------------------------------------------------------------------------------------------------------- rescore


def plant_old_readings(project: Path, endpoint_members: pd.DataFrame) -> tuple[str, str]:
    """Two kept judge answers as older parsers left them: a sub-score taken for the verdict (an answer listing
    sub-scores before its verdict, read as 9), and an answer that did not parse (complete, without a score)."""
    evaluations = endpoint_members[endpoint_members["stage"] == "evaluation"].sort_values("gen_id")
    sub_score = evaluations[evaluations["template_id"] == "judge-b"]["gen_id"].iloc[0]
    failed = evaluations[evaluations["template_id"] == "judge-a"]["gen_id"].iloc[0]
    gens = project / "data" / "gens" / "evaluation"
    (gens / sub_score / "raw.txt").write_text("Novelty 3/10, clarity 9/10.\nOverall: 6")
    for gen_id, score, error in ((sub_score, 9.0, ""), (failed, None, "parser 'in_last_line': no score found")):
        path = gens / gen_id / "metadata.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "score": score, "error": error}))
        (gens / gen_id / "parsed.txt").write_text("" if score is None else "9\n")
    return sub_score, failed


def scores_of(project: Path) -> dict:
    frame = pd.read_csv(reports(project) / "parsed_scores.csv", dtype={"gen_id": str})
    return {row.gen_id: (None if pd.isna(row.score) else row.score) for row in frame.itertuples()}


def test_rescore_reads_the_kept_answers_again_without_a_model_call_and_the_reports_follow(project, endpoint):
    (project / "config" / "cohorts").mkdir(exist_ok=True)
    (project / "config" / "cohorts" / f"{COHORT}.yaml").write_text(SPEC)
    assert daydream("run", "--cohort", COHORT).returncode == 0 and endpoint.stats["requests"] == 36
    sub_score, failed = plant_old_readings(project, membership(project))
    assert invoke("report", "--cohort", COHORT).exit_code == 0
    assert scores_of(project)[sub_score] == 9 and scores_of(project)[failed] is None
    failed_prompt = (project / "data" / "gens" / "evaluation" / failed / "prompt.txt").read_text()

    result = daydream("rescore", "--cohort", COHORT)
    assert result.returncode == 0, result.stderr
    changed = sorted(
        [
            f"  changed {sub_score} (judge-b): 9 -> 6",
            f"  changed {failed} (judge-a): none -> {judge_score(failed_prompt)}",
        ]
    )
    report = reports(project) / "report.html"
    assert result.stdout.splitlines() == [
        "rescored 24 evaluation(s) with the current parsers, no model call: 2 changed, 0 without a score",
        *changed,
        f"cohort {COHORT}: report: {report}",
    ]
    assert endpoint.stats["requests"] == 36
    folder = project / "data" / "gens" / "evaluation" / sub_score
    metadata = json.loads((folder / "metadata.json").read_text())
    assert (metadata["score"], metadata["error"], metadata["parser"]) == (6, "", "complex") and metadata["rescored_at"]
    assert (folder / "parsed.txt").read_text() == "6\n"
    assert scores_of(project)[sub_score] == 6 and scores_of(project)[failed] == judge_score(failed_prompt)

    stamp = (folder / "metadata.json").stat().st_mtime_ns
    again = daydream("rescore")  # every evaluation in the store: nothing left to change, nothing rewritten
    assert again.stdout.splitlines() == [
        "rescored 24 evaluation(s) with the current parsers, no model call: 0 changed, 0 without a score"
    ]
    assert (folder / "metadata.json").stat().st_mtime_ns == stamp
    rerun = daydream("run", "--cohort", COHORT)
    assert rerun.returncode == 0 and "skipped (already complete) 42" in rerun.stdout
    assert endpoint.stats["requests"] == 36

    unknown = invoke("rescore", "--template", "nope")
    assert unknown.exit_code == 2
    csv = project / "data" / "1_raw" / "evaluation_templates.csv"
    assert unknown.stderr == f"error: --template 'nope' is not in {csv}; known: judge-a, judge-b\n"


def test_a_rescored_evaluation_makes_the_reports_stale_so_the_next_run_rebuilds_them_without_a_call(project, endpoint):
    from daydream_luigi.core.catalog import load_catalog
    from daydream_luigi.core.settings import Paths, load_settings, pool_limits
    from daydream_luigi.report import folder
    from daydream_luigi.store import freshness, rescore

    (project / "config" / "cohorts").mkdir(exist_ok=True)
    (project / "config" / "cohorts" / f"{COHORT}.yaml").write_text(SPEC)
    assert daydream("run", "--cohort", COHORT).returncode == 0
    sub_score, _ = plant_old_readings(project, membership(project))
    paths = Paths.from_env()
    folder.write_all(paths, COHORT)  # what `daydream report` does
    page = str(reports(project) / "report.html")  # its fingerprint also covers the decisions' inputs
    assert freshness.is_current(paths, COHORT, page, decisions=True)
    done = rescore.rescore(paths, load_catalog(paths, pool_limits(paths), load_settings(paths)), [sub_score])
    assert [(c.gen_id, c.before, c.after) for c in done.changed] == [(sub_score, 9, 6)]
    assert not freshness.is_current(paths, COHORT, page, decisions=True)
    assert daydream("run", "--cohort", COHORT).returncode == 0
    assert endpoint.stats["requests"] == 36 and scores_of(project)[sub_score] == 6
    assert freshness.is_current(paths, COHORT, page, decisions=True)


# ---------------------------------------------------------------------------------------------------- tournament


def test_a_tournament_rates_the_planted_essay_first_judges_both_orders_and_never_pays_twice(project, fake):
    luigi_cfg = project / "config" / "luigi.cfg"
    luigi_cfg.write_text(luigi_cfg.read_text().replace("paid = 5", "paid = 2"))
    members = ran(project, fake)
    essays = sorted(members[members["stage"] == "essay"]["gen_id"])
    llm_essays = sorted(members[(members["stage"] == "essay") & (members["template_id"] == "polish")]["gen_id"])
    planted = llm_essays[2]
    fake.prefer = essay_text(project, planted).splitlines()[0]  # "Fake text <tag>.": in that essay only
    assert sum(fake.prefer in essay_text(project, e) for e in essays) == 1
    fake.requests.clear()
    fake.latency, fake.max_concurrent = 0.05, 0

    result = daydream("tournament", "--cohort", COHORT, "--rounds", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"tournament of cohort {COHORT}: 12 essays, 3 round(s), 36 judgments by judge-paid with "
        f"pairwise-novelty (36 made now, 0 kept)"
    )
    assert lines[1].startswith("requests sent 36, answers received 36, tokens ")
    assert (
        "position bias: the essay shown first won 33 of 36 decisive judgments (92%, 95% interval 78% to 97%); "
        "50% is a judge without position bias"
    ) in lines
    prompts = fake.chat_prompts()
    assert len(prompts) == 36 and all("ESSAY A START" in p for p in prompts) and len(set(prompts)) == 36
    assert fake.max_concurrent == 2  # [resources] paid = 2: the judge's pool throttles the judgments

    matches = pd.read_csv(reports(project) / "tournament_matches.csv", dtype=str, keep_default_na=False)
    assert len(matches) == 36 and Counter(matches["order"]) == {"ab": 18, "ba": 18}
    round_one = matches[(matches["round"] == "1") & (matches["order"] == "ab")]
    assert list(zip(round_one["a"], round_one["b"])) == list(zip(essays[::2], essays[1::2]))  # neighbours by id
    assert len({frozenset(pair) for pair in zip(matches["a"], matches["b"])}) == 18  # no pair meets twice
    gens = project / "data" / "gens" / "pairwise"
    for row in matches.itertuples():
        first, second = (row.a, row.b) if row.order == "ab" else (row.b, row.a)
        folder = gens / row.judgment_id
        assert sorted(p.name for p in folder.iterdir()) == [
            ".lock",
            "attempts.jsonl",
            "call.json",
            "metadata.json",
            "parsed.txt",
            "prompt.txt",
            "raw.txt",
        ]
        prompt = (folder / "prompt.txt").read_text()
        assert prompt in prompts  # the server was asked exactly this, once
        assert f"ESSAY A START\n{essay_text(project, first)}" in prompt
        assert f"ESSAY B START\n{essay_text(project, second)}" in prompt
        metadata = json.loads((folder / "metadata.json").read_text())
        assert (
            metadata["stage"],
            metadata["essay_a"],
            metadata["essay_b"],
            metadata["verdict"],
            metadata["error"],
            metadata["template_id"],
            metadata["llm_model_id"],
        ) == ("pairwise", first, second, row.verdict, "", "pairwise-novelty", "judge-paid")
        events = [json.loads(line)["event"] for line in (folder / "attempts.jsonl").read_text().splitlines()]
        assert events == ["sent", "answered"]
        expected = "A" if first == planted or second != planted else "B"
        assert row.verdict == expected and (folder / "parsed.txt").read_text() == f"{expected}\n"
    planted_matches = matches[(matches["a"] == planted) | (matches["b"] == planted)]
    assert len(planted_matches) == 6 and set(planted_matches["match_winner"]) == {planted}
    others = matches[(matches["a"] != planted) & (matches["b"] != planted)]
    assert set(others["match_winner"]) == {"tie"}  # a judge that always says A disagrees with itself

    ratings = pd.read_csv(reports(project) / "tournament_ratings.csv", dtype={"gen_id": str})
    assert list(ratings.columns) == ["gen_id", "rating", "ci_low", "ci_high", "wins", "losses", "ties"]
    assert ratings.iloc[0][["gen_id", "wins", "losses", "ties"]].tolist() == [planted, 3, 0, 0]
    assert ratings["rating"].iloc[0] > ratings["rating"].iloc[1] and ratings["wins"].iloc[1:].sum() == 0
    assert re.search(
        rf"^ +1\. {planted}  rating \+\d\.\d\d \[[+-]\d\.\d\d, \+\d\.\d\d\]  W-L-T 3-0-0  "
        rf"(Ant foraging|Sourdough|Tidal power) \+ ",
        result.stdout,
        re.M,
    )

    tables = {
        name: (reports(project) / name).read_bytes() for name in ("tournament_matches.csv", "tournament_ratings.csv")
    }
    fake.requests.clear()
    again = daydream("tournament", "--cohort", COHORT, "--rounds", "3")
    assert again.returncode == 0 and fake.requests == []
    assert again.stdout.splitlines()[:2] == [
        f"tournament of cohort {COHORT}: 12 essays, 3 round(s), 36 judgments by judge-paid with pairwise-novelty "
        f"(0 made now, 36 kept)",
        "requests sent 0, answers received 0, tokens 0 prompt + 0 completion, cost $0.0000 reported",
    ]
    assert {name: (reports(project) / name).read_bytes() for name in tables} == tables

    changed = next(e for e in essays if e != planted)  # made again with another text (as after `gens rm`)
    (project / "data" / "gens" / "essay" / changed / "parsed.txt").write_text("A different essay.\n")
    fake.requests.clear()
    assert daydream("tournament", "--cohort", COHORT, "--rounds", "3").returncode == 0
    assert len(fake.requests) == 6  # its 3 matches, both orders: never a verdict given for its old text

    html = (reports(project) / "report.html").read_text()
    tournament = section(html, "tournament")
    assert f'<tr data-essay="{planted}"><td class="num">1</td>' in tournament
    assert "Position bias: the essay shown first won 33 of 36 decisive judgments (92%" in tournament
    assert "12 essays, 3 Swiss rounds (36 judgments) judged by <code>judge-paid</code>" in " ".join(tournament.split())
    names = re.findall(
        r'<tr data-essay="[^"]+"><td class="num">\d+</td><td class="id">[^<]+</td><td>([^<]*)</td>', tournament
    )
    assert len(names) == 12 and all(
        re.fullmatch(
            r"(Ant foraging|Sourdough|Tidal power) \+ "
            r"(Ant foraging|Sourdough|Tidal power)",
            n,
        )
        for n in names
    )


def pairwise_prompts(fake: FakeJudge) -> list[str]:
    return [p for p in fake.chat_prompts() if "ESSAY A START" in p]


def test_failed_judgments_stop_the_tournament_after_their_round_and_the_next_run_pays_only_for_them(project, fake):
    members = ran(project, fake)
    refused = sorted(members[(members["stage"] == "essay") & (members["template_id"] == "polish")]["gen_id"])[0]
    fake.fail_when = essay_text(project, refused).splitlines()[0]
    fake.requests.clear()
    result = daydream("tournament", "--cohort", COHORT, "--rounds", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "round 1: 2 judgment(s) failed; nothing written. Run the same command again to retry them "
        "(kept judgments are reused, none is paid twice):"
    )
    failed = sorted(p.parent for p in (project / "data" / "gens" / "pairwise").glob("*/error.json"))
    assert len(failed) == 2 and all(fake.fail_when in (folder / "prompt.txt").read_text() for folder in failed)
    reasons = [json.loads((folder / "error.json").read_text()) for folder in failed]
    assert [r["kind"] for r in reasons] == ["config", "config"] and "fake judge refuses this prompt" in reasons[0][
        "error"
    ]
    assert lines[1:3] == [f"  failed pairwise {folder.name}: {r['error']}" for folder, r in zip(failed, reasons)]
    assert lines[3].startswith("requests sent 12, answers received 10, ")
    assert not list(reports(project).glob("tournament*"))
    assert len(pairwise_prompts(fake)) == 12  # round 1, each judgment asked once; no round 2

    first = set(pairwise_prompts(fake))
    fake.fail_when = None
    fake.requests.clear()
    again = daydream("tournament", "--cohort", COHORT, "--rounds", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[0].endswith(
        "24 judgments by judge-paid with pairwise-novelty (14 made now, 10 kept)"
    )
    retried = {(folder / "prompt.txt").read_text() for folder in failed}
    assert {p for p in pairwise_prompts(fake) if p in first} == retried  # of round 1, only the failed ones again
    assert len(pairwise_prompts(fake)) == 2 + 12 and len(set(pairwise_prompts(fake))) == 14


def test_a_tournament_round_holds_call_slots_of_the_judges_pool_as_a_run_does(project, fake):
    """The rounds are built by the runner of `daydream run`: with [resources] paid = 2, Luigi runs a judgment ahead
    that renders its prompt and waits for one of the pool's 2 call slots, and the server never has more than 2 in
    flight."""
    luigi_cfg = project / "config" / "luigi.cfg"
    luigi_cfg.write_text(luigi_cfg.read_text().replace("paid = 5", "paid = 2"))
    ran(project, fake)
    fake.requests.clear()
    fake.latency, fake.max_concurrent = 1.0, 0
    result = daydream("tournament", "--cohort", COHORT, "--rounds", "1", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(pairwise_prompts(fake)) == 12 and fake.max_concurrent == 2
    waited = {}  # judgment -> seconds from its prompt rendered to its request sent
    for folder in (project / "data" / "gens" / "pairwise").iterdir():
        records = [json.loads(line) for line in (folder / "attempts.jsonl").read_text().splitlines()]
        sent = datetime.fromisoformat(next(r["at"] for r in records if r["event"] == "sent")).timestamp()
        waited[folder.name] = sent - (folder / "prompt.txt").stat().st_mtime
    assert len(waited) == 12 and max(waited.values()) > 0.3  # ready ahead while both slots were taken
    assert not (project / "data" / ".runs").exists() or not list((project / "data" / ".runs").iterdir())


def test_sigterm_lets_the_judgments_in_flight_finish_and_the_next_run_makes_exactly_the_rest(project, fake):
    ran(project, fake)
    fake.requests.clear()
    fake.latency = 1.0
    out = project / "tournament.out"
    with open(out, "w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "daydream_luigi", "tournament", "--cohort", COHORT, "--rounds", "2", "-q"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while not pairwise_prompts(fake):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    sent = pairwise_prompts(fake)
    assert 1 <= len(sent) < 12
    gens = project / "data" / "gens" / "pairwise"
    kept = {(folder / "prompt.txt").read_text() for folder in gens.iterdir() if (folder / "call.json").exists()}
    assert kept == set(sent)  # every answer paid for is kept
    lines = out.read_text().splitlines()
    assert lines[0] == (
        f"interrupted in round 1: {len(sent)} judgment(s) made in this run; every call in flight "
        f"finished and its answer is kept; nothing written. Resume with the same command: kept "
        f"judgments are reused."
    )
    assert not list(reports(project).glob("tournament*"))

    fake.latency = 0.0
    again = daydream("tournament", "--cohort", COHORT, "--rounds", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(pairwise_prompts(fake)) == 24 and len(set(pairwise_prompts(fake))) == 24  # the rest, nothing twice


def test_a_tournament_says_what_to_choose_or_run_first_before_anything_runs(project, fake):
    (project / "config" / "cohorts" / "two.yaml").write_text(
        "generation_models: [gen-paid]\nevaluation_models: [judge-paid, free-one]\n"
    )
    two = invoke("tournament", "--cohort", "two")
    assert (two.exit_code, two.stderr) == (
        2,
        "error: cohort two has 2 judges (judge-paid, free-one); choose the tournament's with --judge\n",
    )
    unknown = invoke("tournament", "--cohort", COHORT, "--template", "nope")
    assert (unknown.exit_code, unknown.stderr) == (
        2,
        f"error: --template 'nope' is not in {project / 'data' / '1_raw' / 'pairwise_templates.csv'}; known: "
        f"pairwise-novelty\n",
    )
    not_run = invoke("tournament", "--cohort", COHORT)
    assert (not_run.exit_code, not_run.stderr) == (
        2,
        f"error: cohort {COHORT} has 0 complete essay(s); a tournament needs 2 or more (`daydream run --cohort "
        f"{COHORT}` first)\n",
    )
    assert fake.requests == []


# --------------------------------------------------------------------------------------------------------- dedup


def test_dedup_clusters_planted_near_duplicates_keeps_the_best_of_each_and_caches_embeddings(project, fake):
    members = ran(project, fake)
    fake.idea_of = lambda text: " + ".join(name for name in CONCEPT_NAMES if name in text)  # one idea per combo
    fake.requests.clear()
    result = daydream("dedup", "--cohort", COHORT, "--template", "judge-a")
    assert result.returncode == 0, result.stdout + result.stderr
    essays = members[members["stage"] == "essay"]
    assert [(r["path"], r["authorization"], sorted(r["body"]["input"])) for r in fake.requests] == [
        ("/v1/embeddings", f"Bearer {FAKE_KEY}", sorted(essay_text(project, e) for e in essays["gen_id"]))
    ]
    assert fake.requests[0]["body"]["model"] == "vendor/embed-small"
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"dedup of cohort {COHORT}: 12 essays in 3 cluster(s) at cosine >= 0.8; embeddings by "
        f"embed-small: 12 computed, 0 from the cache"
    )

    table = pd.read_csv(reports(project) / "dedup_clusters.csv", dtype={"gen_id": str, "representative": str})
    assert list(table.columns) == ["gen_id", "cluster", "representative", "nearest_similarity", "nearest", "mean_score"]
    scores = pd.read_csv(reports(project) / "parsed_scores.csv", dtype={"parent_gen_id": str})
    means = scores[scores["evaluation_template"] == "judge-a"].groupby("parent_gen_id")["score"].mean()
    expected = {}
    for _combo, group in essays.groupby("combo_id"):
        best = sorted(group["gen_id"], key=lambda e: (-means[e], e))[0]
        expected.update(dict.fromkeys(group["gen_id"], best))
    assert dict(zip(table["gen_id"], table["representative"])) == expected  # a cluster is a combo
    assert table.groupby("representative")["cluster"].nunique().eq(1).all()
    assert (table["nearest_similarity"] > 0.9).all()
    for cluster, group in table.groupby("cluster"):
        kept = group.iloc[0]
        assert (
            f"  cluster {cluster}: keeps {kept.gen_id} (mean {means[kept.gen_id]:g} on judge-a), drops "
            f"{', '.join(group['gen_id'].iloc[1:])}" in lines
        )

    fake.requests.clear()
    again = daydream("dedup", "--cohort", COHORT)  # the cohort's first evaluation template picks, and says so
    assert again.returncode == 0 and fake.requests == []
    assert again.stdout.splitlines()[0] == (
        "representatives by their mean score on judge-a, the first of the cohort's 2 scored evaluation templates "
        "(judge-a, judge-b); choose another with --template"
    )
    assert again.stdout.splitlines()[2:] == lines[1:]
    assert "embeddings by embed-small: 0 computed, 12 from the cache" in again.stdout
    assert len(list((project / "data" / "gens" / "essay").glob("*/embedding-vendor_embed-small-*.json"))) == 12

    top = daydream("select", "top", "--templates", "judge-a", "--dedup", "--cohort", COHORT)
    assert top.returncode == 0, top.stderr
    chosen = (project / "data" / "selected_essays.txt").read_text().split()
    assert sorted(chosen) == sorted(set(expected.values()))  # one essay per cluster

    dedup = section((reports(project) / "report.html").read_text(), "dedup")
    assert "12 essays in 3 clusters of near-duplicates" in dedup and dedup.count('<table class="data cluster"') == 3
    assert "cosine similarity ≥ 0.8 of their <code>embed-small</code> embeddings" in " ".join(dedup.split())
    assert all(f'<td>★</td><td class="id">{e}</td>' in dedup for e in set(expected.values()))


def test_offline_dedup_runs_minilm_in_process_asks_no_server_and_clusters_around_the_best(project, fake):
    from daydream_luigi.providers.local import minilm

    if minilm.unavailable_reason():
        pytest.skip(minilm.unavailable_reason())
    ran(project, fake)
    models = project / "data" / "1_raw" / "llm_models.csv"
    models.write_text(models.read_text() + "minilm-local,all-MiniLM-L6-v2,embedded,MiniLM,false,false,local,0,true\n")
    fake.requests.clear()
    result = daydream("dedup", "--cohort", COHORT, "--template", "judge-a", "--backend", "local")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.requests == []
    assert result.stdout.splitlines()[0].endswith("embeddings by minilm-local: 12 computed, 0 from the cache")
    table = pd.read_csv(reports(project) / "dedup_clusters.csv", dtype={"gen_id": str, "representative": str})
    kept = {
        path.parent.name: json.loads(path.read_text())
        for path in (project / "data" / "gens" / "essay").glob("*/embedding-all-MiniLM-L6-v2-*.json")
    }
    assert len(kept) == 12 and {k["model"] for k in kept.values()} == {"all-MiniLM-L6-v2"}
    vectors = {gen_id: np.array(k["embedding"]) for gen_id, k in kept.items()}
    assert all(v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-6 for v in vectors.values())
    representatives = sorted(set(table["representative"]))
    for row in table.itertuples():  # every essay is at 0.8 or more to the essay that keeps its place
        assert vectors[row.gen_id] @ vectors[row.representative] >= 0.8 - 1e-9
    for a, b in itertools.combinations(representatives, 2):  # and no two kept essays are near-duplicates
        assert vectors[a] @ vectors[b] < 0.8


# ----------------------------------------------------------------------------------------------- concept effects


def test_concept_effects_find_the_planted_concept_and_the_report_names_concepts(project, fake):
    ran(project, fake)
    effects = pd.read_csv(reports(project) / "concept_effects.csv")
    for _template, rows in effects.groupby("evaluation_template"):
        rows = rows.set_index("concept")
        assert list(rows.sort_values("difference", ascending=False).index)[0] == PLANTED_CONCEPT
        planted = rows.loc[PLANTED_CONCEPT]
        assert (planted["n_with"], planted["n_without"]) == (8, 4)  # 2 of the 3 combinations hold it, 4 essays each
        assert 8 <= planted["mean_with"] <= 9 and 3 <= planted["mean_without"] <= 4
        # the 4 essays without it are one combination, one cluster: they cannot tell the concept from that
        # combination, so there is no interval (taken as 4 independent essays they gave one above 3)
        assert math.isnan(planted["ci_low"]) and math.isnan(planted["ci_high"])
        assert (rows.drop(PLANTED_CONCEPT)["difference"] < 0).all()
    html = (reports(project) / "report.html").read_text()
    concepts = section(html, "concepts")
    assert concepts.index(f'data-label="{PLANTED_CONCEPT}"') < concepts.index('data-label="Ant foraging"')
    combos = {"Ant foraging + Sourdough", "Ant foraging + Tidal power", "Sourdough + Tidal power"}
    for name in ("heatmap", "top"):
        assert all(combo in section(html, name) for combo in combos), name
    assert "one judge scored these essays; agreement between judges needs two judges or more" in section(
        html, "agreement"
    )


# ------------------------------------------------------------------------------------------------------- inputs


def test_pairwise_templates_and_embedding_models_are_validated_with_the_other_inputs(project, fake):
    raw = project / "data" / "1_raw"
    template = raw / "generation_templates" / "pairwise" / "pairwise-novelty.txt"
    template.write_text("Which is better?\n{{ essay_a }}\n{{ response }}\n")
    (raw / "pairwise_templates.csv").write_text(
        "template_id,template_name,description,active,parser\npairwise-novelty,P,D,true,in_last_line\n"
    )
    models = raw / "llm_models.csv"
    models.write_text(models.read_text().replace("Embed,false,false,paid", "Embed,false,true,paid"))
    result = invoke("plan", "--cohort", COHORT)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {raw / 'pairwise_templates.csv'}: line 2: unknown parser 'in_last_line' for template "
        f"'pairwise-novelty'; use one of: winner",
        f"error: {template}: template 'pairwise-novelty' uses undefined variable 'response' (available for pairwise: "
        f"essay_a, essay_b); fix the template",
        f"error: {models}: line 6: model 'embed-small' is for_embedding, so it cannot also be for_generation or "
        f"for_evaluation (an embedding model does not chat); set those to false",
    ]
    (raw / "pairwise_templates.csv").unlink()  # optional: without it there is no tournament, nothing else changes
    models.write_text(models.read_text().replace("Embed,false,true,paid", "Embed,false,false,paid"))
    assert invoke("plan", "--cohort", COHORT).exit_code == 0
    none = invoke("tournament", "--cohort", COHORT)
    assert (none.exit_code, none.stderr) == (
        2,
        f"error: {raw / 'pairwise_templates.csv'}: no pairwise template (the "
        f"file is missing or has no row); add a row with parser winner and its "
        f"file generation_templates/pairwise/<template_id>.txt (see the "
        f"README)\n",
    )
    unknown = invoke("dedup", "--cohort", COHORT, "--embedding-model", "judge-paid")
    assert (unknown.exit_code, unknown.stderr) == (
        2,
        "error: --embedding-model 'judge-paid' is not an embedding model "
        "of llm_models.csv; use one of embed-small (a row with "
        "for_embedding true)\n",
    )
