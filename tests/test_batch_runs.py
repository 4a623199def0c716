"""Batch mode through the real CLI and Luigi against tests/fake_batch.py (both batch APIs on loopback): no chat call
for batched stages, stage order, answers kept like single calls, costs at batch price, mixed and expired results, a
SIGKILL between submit and poll that submits nothing twice."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import FAKE_KEY, daydream, members_of
from fake_batch import REQUEST_COST, FakeBatchServer
from test_execution import set_settings

MODEL_CALLS = 6 + 6 + 24  # the conftest cohort; its copy essays make no call


def batch_settings(project: Path, **batch) -> None:
    set_settings(project, lambda s: s["batch"].update(poll_interval_s=0.05, **batch))


def submitted(fake: FakeBatchServer) -> Counter:
    """How often each request (custom id) was submitted, over every batch the fake received."""
    return Counter(custom_id for batch in fake.batches.values() for custom_id, _ in batch["items"])


def stage_of_batches(fake: FakeBatchServer, members) -> list[str]:
    stage = {m.gen_id: m.stage for m in members}
    return [stage[batch["items"][0][0]] for batch in fake.batches.values()]


def test_a_cohort_with_batch_makes_no_chat_call_and_keeps_every_answer(project, monkeypatch):
    batch_settings(project, max_requests=4)
    members = members_of()
    with FakeBatchServer(FAKE_KEY, in_progress_polls=2) as fake:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", fake.openrouter_url)
        single, batched = daydream("plan"), daydream("plan", "--batch")
        result = daydream("run", "--batch")
        assert result.returncode == 0, result.stdout + result.stderr
        calls = dict(fake.calls)
        order = stage_of_batches(fake, members)
        sent = submitted(fake)
    assert calls["openrouter_submit"] == 2 + 2 + 6  # chunks of at most 4: drafts 4+2, essays 4+2, evaluations 6x4
    assert "openrouter_chat" not in calls and "openai_chat" not in calls  # no single call for a batched stage
    assert order == ["draft"] * 2 + ["essay"] * 2 + ["evaluation"] * 6  # stage order
    assert len(sent) == MODEL_CALLS and set(sent.values()) == {1}
    assert "done 42, skipped (already complete) 0, failed 0, blocked 0, not started 0" in result.stdout
    assert f"requests sent {MODEL_CALLS} ({MODEL_CALLS} in batches), answers received {MODEL_CALLS}, " in result.stdout
    assert f"cost ${MODEL_CALLS * REQUEST_COST:.4f} reported" in result.stdout
    [first] = {
        line.split(":")[0]
        for line in result.stderr.splitlines()  # the two chunks go at once: any id
        if re.fullmatch(r"batch orb-\d+ \(openrouter, draft gen-paid, chunk 0 wave 0\): .*", line)
    }
    assert [line for line in result.stderr.splitlines() if line.startswith(first)] == [
        f"{first}: submitted, 4 request(s)",
        f"{first}: in_progress, 0 of 4 done",
        f"{first}: completed, 4 of 4 done",
    ]
    cost = [float(re.search(r"^total: .*est_cost_usd ([\d.]+)$", p.stdout, re.M)[1]) for p in (single, batched)]
    assert cost[1] == pytest.approx(cost[0] / 2)  # plan --batch estimates at batch price
    gens = project / "data" / "gens"
    calls_kept = [json.loads(p.read_text()) for p in gens.glob("*/*/call.json")]
    assert len(calls_kept) == MODEL_CALLS
    assert all(
        c["cost"] == REQUEST_COST and c["price_factor"] == 0.5 and c["batch"]["api"] == "openrouter" for c in calls_kept
    )
    for path in gens.glob("*/*/attempts.jsonl"):  # a sent line at submit, an answered line from the results
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [(a["event"], a["via"]) for a in lines] == [("sent", "batch"), ("answered", "batch")]
    scores = (project / "data" / "cohorts" / members[0].cohort_id / "reports" / "parsed_scores.csv").read_text()
    assert len(scores.splitlines()) == 1 + 24


def use_openai_for_judging(project: Path, url: str) -> None:
    """judge-paid's calls go to an OpenAI provider (file batches); drafts and essays stay with OpenRouter."""
    set_settings(
        project,
        lambda s: s["endpoints"].update(
            openai={"base_url": url, "api_key_env": "OPENAI_API_KEY", "batch_api": "openai"}
        ),
    )
    models = project / "data" / "1_raw" / "llm_models.csv"
    models.write_text(models.read_text().replace("vendor/judge-model,openrouter", "vendor/judge-model,openai"))


def test_openai_file_batches_for_one_stage_with_errors_and_an_expired_batch(project, monkeypatch):
    """Evaluations only (batch.stages), in 2 chunks of 12: chunk 0's first batch expires after running half of it,
    and one request of each chunk fails inside its batch."""
    batch_settings(project, stages=["evaluation"], max_requests=12)
    with FakeBatchServer(FAKE_KEY, in_progress_polls=1, outcome=["expired", "completed"]) as fake:
        use_openai_for_judging(project, fake.openai_url)
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", fake.openrouter_url)
        monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
        evaluations = [m.gen_id for m in members_of() if m.stage == "evaluation"]
        failing = {evaluations[1], evaluations[13]}  # in the half of its chunk that runs even when the batch expires
        fake.fail_ids = failing
        result = daydream("run")
        assert result.returncode == 0, result.stdout + result.stderr
        calls, sent = dict(fake.calls), submitted(fake)
        batches = list(fake.batches.values())
    assert Counter((b["outcome"], len(b["items"])) for b in batches) == {  # the chunks' batches, in parallel
        ("expired", 12): 1,
        ("completed", 12): 1,
        ("completed", 6): 1,
    }
    [expired] = [b for b in batches if b["outcome"] == "expired"]
    never_ran = {custom_id for custom_id, _ in expired["items"][6:]}
    assert [custom_id for custom_id, _ in batches[-1]["items"]] == [g for g in evaluations if g in never_ran]
    assert {g for g, n in sent.items() if n == 2} == never_ran and len(sent) == 24  # only what was missing, again
    assert calls["openai_chat"] == 1 + 2  # the preflight's 1-token check of the key; the two that failed inside
    # their batch, made as single calls
    assert calls["openrouter_chat"] == 6 + 6 and "openrouter_submit" not in calls  # drafts and essays: not batched
    assert "done 42, skipped (already complete) 0, failed 0, blocked 0, not started 0" in result.stdout
    estimated = 22 * 15 / 1e6 * 3 * 0.5 + 2 * 15 / 1e6 * 3  # OpenAI reports no cost: price_per_mtok, batch at half
    assert (
        f"requests sent {12 + 24 + 6 + 2} ({24 + 6} in batches), answers received {MODEL_CALLS}, tokens "
        f"{12 * 10 + 24 * 10} prompt + {12 * 5 + 24 * 5} completion, cost ${12 * REQUEST_COST + estimated:.4f} "
        f"(${estimated:.4f} of it estimated from the models' prices for 24 answer(s) without a reported cost)"
        in result.stdout
    )
    gens = project / "data" / "gens" / "evaluation"
    for gen_id in evaluations:
        lines = [
            (a["event"], a.get("via"), a.get("outcome"))
            for a in map(json.loads, (gens / gen_id / "attempts.jsonl").read_text().splitlines())
        ]
        if gen_id in failing:
            assert lines == [
                ("sent", "batch", None),
                ("failed", "batch", "batch_error"),
                ("sent", None, None),
                ("answered", None, "ok"),
            ]
        elif gen_id in never_ran:
            assert lines == [
                ("sent", "batch", None),
                ("failed", "batch", "batch_missing"),
                ("sent", "batch", None),
                ("answered", "batch", "ok"),
            ]
        else:
            assert lines == [("sent", "batch", None), ("answered", "batch", "ok")]
    chunk = 0 if expired["items"][0][0] == evaluations[0] else 1
    assert (
        f"batch {expired['id']} (openai, evaluation judge-paid, chunk {chunk} wave 0): expired, 5 of 12 done, "
        f"1 failed\n" in result.stderr
    )
    assert (
        f"batch {batches[-1]['id']} (openai, evaluation judge-paid, chunk {chunk} wave 1): submitted" in result.stderr
    )


def test_a_run_killed_between_submit_and_poll_resumes_polling_and_submits_nothing_twice(project, monkeypatch):
    batch_settings(project, max_requests=4)
    with FakeBatchServer(FAKE_KEY, in_progress_polls=10**6) as fake:  # the batches run until the test says
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", fake.openrouter_url)
        process = subprocess.Popen(
            [sys.executable, "-m", "daydream_luigi", "run", "--batch", "--stage", "draft"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while fake.calls["openrouter_poll"] < 4:  # both chunks submitted, recorded and polled
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)  # no handler runs: the run, its workers and its polls die at once
        process.wait(timeout=30)
        records = sorted((project / "data" / "batches").glob("*/draft/gen-paid/chunk-*/wave-0/submitted.json"))
        assert [len(json.loads(p.read_text())["batches"][0]["custom_ids"]) for p in records] == [4, 2]
        assert not list((project / "data" / "gens").glob("draft/*/raw.txt"))
        fake.in_progress_polls = 0  # the provider finishes them
        resumed = daydream("run", "--batch", "--stage", "draft")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert fake.calls["openrouter_submit"] == 2 and set(submitted(fake).values()) == {1}
        assert "openrouter_chat" not in fake.calls
    assert "done 6, skipped (already complete) 0, failed 0" in resumed.stdout
    assert "requests sent 0, answers received 6," in resumed.stdout  # the requests were the killed run's
    assert len(list((project / "data" / "gens").glob("draft/*/metadata.json"))) == 6


def test_ctrl_c_while_batches_run_stops_polling_and_the_next_run_resumes(project, monkeypatch):
    batch_settings(project)
    with FakeBatchServer(FAKE_KEY, in_progress_polls=10**6) as fake:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", fake.openrouter_url)
        out = project / "run.out"
        with open(out, "w") as stdout:
            process = subprocess.Popen(
                [sys.executable, "-m", "daydream_luigi", "run", "--batch", "--stage", "draft"],
                stdout=stdout,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while fake.calls["openrouter_poll"] < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130  # a batch may run for hours: its poll does not hold the run
        summary = out.read_text()
        assert re.search(
            r"^batch draft gen-paid chunk 0 wave 0 \(BatchPoll\): stopped polling batch\(es\) orb-1 of "
            r"draft gen-paid: they keep running at the provider, and the next run resumes polling them$",
            summary,
            re.M,
        ), summary
        fake.in_progress_polls = 0
        resumed = daydream("run", "--batch", "--stage", "draft")
        assert resumed.returncode == 0 and fake.calls["openrouter_submit"] == 1
    assert "done 6, skipped (already complete) 0, failed 0" in resumed.stdout


def test_a_batch_whose_lines_carry_no_cost_shares_the_batchs_own_cost_by_tokens(project, monkeypatch):
    batch_settings(project, stages=["evaluation"], max_requests=12)
    with FakeBatchServer(FAKE_KEY, line_costs=False) as fake:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", fake.openrouter_url)
        result = daydream("run")
        assert result.returncode == 0, result.stdout + result.stderr
    kept = [json.loads(p.read_text()) for p in (project / "data" / "gens" / "evaluation").glob("*/call.json")]
    assert len(kept) == 24 and [c["cost"] for c in kept] == [pytest.approx(REQUEST_COST)] * 24  # equal tokens, shares
    assert f"cost ${MODEL_CALLS * REQUEST_COST:.4f} reported" in result.stdout  # the batches' own cost, not an estimate


def test_shared_batch_cost():
    from daydream_luigi.core.pricing import shared_batch_cost

    assert shared_batch_cost(0.01, [(None, 100), (None, 300)]) == [pytest.approx(0.0025), pytest.approx(0.0075)]
    assert shared_batch_cost(0.01, [(0.004, 50), (None, 10), (None, 0)]) == [0.004, pytest.approx(0.006), 0.0]
    assert shared_batch_cost(0.01, [(None, 0), (None, 0)]) == [0.005, 0.005]  # no tokens: equal shares
    assert shared_batch_cost(None, [(None, 100)]) == [None]  # no batch cost: the line is priced from the model
    assert shared_batch_cost(0.01, [(0.002, 5)]) == [0.002]
