"""Honest run summaries: unscored evaluations counted with their first reasons, costs estimated from the models' prices
where the provider reports none (and said to be estimates), a pool's lowered rate in the progress table."""

import json
import re

import pytest
from conftest import daydream
from fake_endpoint import FakeEndpoint
from rich.console import Console

from daydream_luigi.core.pricing import Price
from daydream_luigi.execution.monitor import Monitor, Row
from daydream_luigi.execution.progress import rate_text, status_line, table
from daydream_luigi.providers.limits.ratelimit import PoolStatus
from daydream_luigi.store.accounting import Calls, first_reasons

PRICES = {"gen-paid": 1.5, "judge-paid": 3.0}  # conftest's llm_models.csv


def test_unscored_evaluations_and_estimated_costs_are_in_the_summary(project, monkeypatch):
    judge_b = project / "data" / "1_raw" / "generation_templates" / "evaluation" / "judge-b.txt"
    judge_b.write_text("Rate the novelty of:\n{{ response }}\nFinish with your grade.\n")  # the fake gives no score
    with FakeEndpoint(report_cost=False) as server:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", server.base_url)
        result = daydream("run")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(p.read_text()) for p in (project / "data" / "gens").glob("*/*/call.json")]
    metadata = [json.loads(p.read_text()) for p in (project / "data" / "gens").glob("*/*/metadata.json")]
    model_of = {m["gen_id"]: m["llm_model_id"] for m in metadata}
    estimate = sum(
        (m["prompt_tokens"] + m["completion_tokens"]) / 1e6 * PRICES[m["llm_model_id"]]
        for m in metadata
        if m.get("prompt_tokens") is not None
    )
    assert len(calls) == 36 and all(c["cost"] is None for c in calls) and len(model_of) == 42
    assert re.search(
        rf"^requests sent 36, answers received 36, tokens \d+ prompt \+ \d+ completion, cost "
        rf"\${estimate:.4f} estimated from the models' prices \(the provider reported none\)$",
        result.stdout,
        re.M,
    ), result.stdout
    lines = result.stdout.splitlines()
    start = lines.index(
        "unscored evaluations 12 (answers kept: fix the parser and re-score, no new call); first reasons:"
    )
    assert re.fullmatch(r"  12 x parser 'complex': no score found.* \(e\.g\. \w+\)", lines[start + 1])
    assert not lines[start + 2].startswith("  ")


def test_the_cost_line_says_how_much_is_an_estimate():
    calls = Calls()
    calls.add({"event": "sent"})
    calls.add({"event": "answered", "prompt_tokens": 100, "completion_tokens": 50, "cost": 0.002}, Price.flat(3.0))
    assert calls.cost_text() == "cost $0.0020 reported"
    calls.add({"event": "sent", "via": "batch"})
    calls.add(
        {"event": "answered", "prompt_tokens": 1000, "completion_tokens": 1000, "cost": None, "price_factor": 0.5},
        Price.flat(3.0),
    )  # a batched answer without a cost: half of $0.006
    assert (calls.requests, calls.batched, calls.answers, calls.unreported_cost) == (2, 1, 2, 1)
    assert calls.cost_text() == (
        "cost $0.0050 ($0.0030 of it estimated from the models' prices for 1 answer(s) without a reported cost)"
    )
    only = Calls()
    only.add({"event": "answered", "prompt_tokens": 500, "completion_tokens": 500, "cost": None}, Price.flat(2.0))
    assert only.cost_text() == "cost $0.0020 estimated from the models' prices (the provider reported none)"
    split = Calls()  # prompt and completion priced apart: 500 x $1 + 500 x $5 per million
    split.add({"event": "answered", "prompt_tokens": 500, "completion_tokens": 500, "cost": None}, Price(1.0, 5.0))
    assert split.cost_text() == "cost $0.0030 estimated from the models' prices (the provider reported none)"


def test_an_answer_that_cannot_be_priced_is_unknown_never_zero():
    unknown = Calls()
    unknown.add({"event": "answered", "prompt_tokens": 500, "completion_tokens": 500, "cost": None}, None)
    assert unknown.cost_text() == (
        "cost unknown: 1 answer(s) without a reported cost and without a price (`daydream prices refresh`, or price "
        "columns in llm_models.csv)"
    )
    unknown.add({"event": "answered", "prompt_tokens": 10, "completion_tokens": 10, "cost": 0.001}, None)
    assert unknown.cost_text() == (
        "cost $0.0010 reported, plus 1 answer(s) of unknown cost (no reported cost and no price: `daydream prices "
        "refresh`, or price columns in llm_models.csv)"
    )


def test_the_live_cost_is_the_summarys_estimates_included():
    from types import SimpleNamespace

    members = [SimpleNamespace(stage="draft", gen_id=g, llm_model_id="gen-paid") for g in ("d1", "d2")]
    monitor = Monitor.for_members(members, lambda m: "paid", {"draft": set()}, lambda m: Price.flat(3.0))
    summary = Calls()
    for gen_id, cost in (("d1", None), ("d2", 0.001)):  # one unreported (estimated), one reported
        record = {"event": "answered", "prompt_tokens": 1000, "completion_tokens": 1000, "cost": cost}
        monitor.apply({**record, "event": "attempt", "kind": "answered", "gen_id": gen_id})
        summary.add(record, Price.flat(3.0))
    assert monitor.snapshot()["cost"] == summary.cost == pytest.approx(0.006 + 0.001)


def test_first_reasons_are_the_commonest_with_an_example():
    reasons = {"e3": "no score found", "e1": "no score found", "e2": "truncated", "e4": "two scores", "e5": "other"}
    assert first_reasons(reasons) == [("no score found", 2, "e1"), ("other", 1, "e5"), ("truncated", 1, "e2")]


def test_the_progress_table_shows_each_pools_rate_in_force():
    monitor = Monitor(rows={("draft", "free"): Row(total=4, done=1, batched=1), ("essay", "paid"): Row(total=2)})
    lowered = PoolStatus("paid", 2.5, 5, 1, 3, None, None)
    pools = {"free": PoolStatus("free", 20, 20, 0, 1, None, None), "paid": lowered}
    console = Console(width=200, record=True)
    console.print(table(monitor.snapshot(), "cohort c", pools))
    text = console.export_text()
    assert re.search(r"draft\s*│\s*free\s*│\s*1\s*│\s*0\s*│\s*2\s*│\s*0\s*│\s*4\s*│\s*1\s*│\s*0\s*│\s*20/min", text)
    assert "2.5/min (lowered after 429s, configured 5/min)" in text
    assert status_line(monitor.snapshot(), pools).endswith(
        "; pool free 20/min; pool paid 2.5/min (lowered after 429s, configured 5/min)"
    )
    assert rate_text(PoolStatus("x", None, None, 0, 0, None, None)) == "no limit"
    assert rate_text(PoolStatus("x", 3.0, None, 0, 0, None, None)) == "3.0/min (lowered after 429s)"


def test_after_a_stop_request_the_progress_says_what_is_still_in_flight():
    monitor = Monitor(rows={("draft", "paid"): Row(total=4, done=1, running=2)})
    snap = monitor.snapshot()
    assert ", ETA " in status_line(snap) and "stopping" not in status_line(snap)
    assert status_line(snap, stopping=True).endswith(", stopping: 2 in flight")


def test_a_generation_waiting_for_a_call_slot_counts_as_queued_not_running():
    monitor = Monitor(rows={("draft", "paid"): Row(total=3)}, where={"d1": ("draft", "paid")})
    monitor.apply({"event": "start", "gen_id": "d1"})
    monitor.apply({"event": "slot", "gen_id": "d1", "waiting": True})
    row = monitor.snapshot()["rows"]["draft", "paid"]
    assert (row.running, row.queued) == (0, 3)
    monitor.apply({"event": "slot", "gen_id": "d1", "waiting": False})
    monitor.apply({"event": "success", "gen_id": "d1"})
    snap = monitor.snapshot()
    assert (snap["rows"]["draft", "paid"].running, snap["rows"]["draft", "paid"].done) == (0, 1)
    assert snap["new_finished"] == [("draft", "paid", "d1")]
