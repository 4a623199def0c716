"""The gate every request passes: breaker, quota pause, budget, then the rate (its order and its effects), without
HTTP: replies are given as the client would report them."""

from pathlib import Path

import pytest

from daydream_luigi.core.pricing import Price
from daydream_luigi.core.settings import Paths, load_settings
from daydream_luigi.providers.chat import Reply
from daydream_luigi.providers.limits import gate
from daydream_luigi.providers.limits.budget import Budget
from daydream_luigi.providers.limits.gate import Gate, Stopped

REPO = Path(__file__).resolve().parents[1]
URL = "http://127.0.0.1:9/v1"
DAILY = '{"error": {"message": "Rate limit exceeded: free-models-per-day", "code": 429}}'


@pytest.fixture
def paths(tmp_path):
    return Paths(tmp_path / "data", REPO / "config")


def make_gate(paths, pool="paid", price=3.0, run_id="run-1", call_id="gen-a", max_cost=None) -> Gate:
    return Gate(
        paths,
        load_settings(paths),
        run_id,
        provider="vllm",
        url=URL,
        pool=pool,
        price=Price.flat(price),
        call_id=call_id,
        tokens=1000,
        max_cost_usd=max_cost,
    )


def sent_in_window(paths, pool="paid") -> int:
    return gate.limiter(paths, load_settings(paths)).status(pool).sent_in_window


def test_an_open_breaker_stops_before_anything_is_reserved_or_counted(paths):
    first = make_gate(paths, max_cost=1.0)
    refused = Reply(None, no_connection=True, cause="[Errno 111] Connection refused")
    for n in range(1, 5):
        first.before(n)
        first.after(n, refused)
    first.before(5)
    with pytest.raises(Stopped, match="is unreachable"):  # the failure that opens it stops its own call too
        first.after(5, refused)
    with pytest.raises(Stopped) as caught:
        make_gate(paths, max_cost=1.0).before(1)  # another generation of the provider, in any process
    assert (caught.value.kind, caught.value.name) == ("breaker", "vllm")
    assert str(caught.value).startswith(
        f"provider vllm at {URL} is unreachable: 5 connection failures in a row (last: [Errno 111] Connection refused)"
    )
    assert sent_in_window(paths) == 5
    assert Budget(gate.run_dir(paths, "run-1") / "budget.json", 1.0).spend().in_flight_usd == 0
    make_gate(paths, run_id="run-2", max_cost=1.0).before(1)  # a new run tries again


def test_a_daily_quota_429_pauses_the_pool_for_every_process_and_stops_the_call(paths):
    first = make_gate(paths, pool="free")
    first.before(1)
    with pytest.raises(Stopped) as caught:
        first.after(1, Reply(429, {"Retry-After": "7200"}, DAILY, cause="HTTP 429"))
    assert caught.value.kind == "quota" and caught.value.name == "free"
    assert str(caught.value).startswith("quota: free paused, resume after ")
    with pytest.raises(Stopped) as again:
        make_gate(paths, pool="free").before(1)
    assert again.value.key == caught.value.key  # the same pause: one message
    assert sent_in_window(paths, "free") == 1  # the refused request was never counted as sent
    make_gate(paths, pool="paid").before(1)  # other pools go on


def test_a_429_that_can_be_waited_out_is_no_stop(paths, monkeypatch):
    monkeypatch.setenv(gate.WINDOW_ENV, "0.01")  # the back-off after the 429 waits a (short) window
    first = make_gate(paths)
    first.before(1)
    first.after(1, Reply(429, {"Retry-After": "0"}, '{"error": {"message": "slow down"}}', cause="HTTP 429"))
    first.before(2)


def test_the_budget_is_reserved_before_the_permit_and_settled_with_the_cost(paths):
    ledger = Budget(gate.run_dir(paths, "run-1") / "budget.json", 0.005)
    first = make_gate(paths, max_cost=0.005)  # estimate: 1,000 tokens at $3 per million = $0.003
    first.before(1)
    assert ledger.spend().in_flight_usd == pytest.approx(0.003)
    first.after(1, Reply(200, prompt_tokens=100, completion_tokens=100, cost=None))  # no cost reported: estimated
    assert (ledger.spend().spent_usd, ledger.spend().estimated_usd) == (pytest.approx(0.0006), pytest.approx(0.0006))
    make_gate(paths, call_id="gen-b", max_cost=0.005).before(1)  # 0.0006 + 0.003 fits
    with pytest.raises(Stopped) as caught:
        make_gate(paths, call_id="gen-c", max_cost=0.005).before(1)  # and 0.003 more would not
    assert caught.value.kind == "budget" and str(caught.value).startswith("budget reached: spent $0.0006")
    assert sent_in_window(paths) == 2


def test_a_request_that_cannot_be_recorded_releases_its_reservation(paths):
    first = make_gate(paths, max_cost=1.0)
    first.before(1)
    first.cancel(1)
    assert Budget(gate.run_dir(paths, "run-1") / "budget.json", 1.0).spend().in_flight_usd == 0
