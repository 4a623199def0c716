"""The spending stop: costs (reported or estimated), the start rule, and one ledger shared by forked workers."""

import multiprocessing

import pytest

from daydream_luigi.core.pricing import BATCH_PRICE_FACTOR, Price, call_cost, estimate_cost_usd, upper_bound_usd
from daydream_luigi.providers.limits.budget import Budget, BudgetReached, Spend, may_start


def test_cost_is_the_reported_one_or_an_estimate_from_the_price():
    assert estimate_cost_usd(Price.flat(1.5), 1000, 600) == pytest.approx(0.0024)
    assert estimate_cost_usd(Price.flat(1.5), 1000, 600, BATCH_PRICE_FACTOR) == pytest.approx(0.0012)
    assert call_cost(0.0107, Price.flat(3.0), 1000, 1000) == (0.0107, False)
    assert call_cost(None, Price.flat(3.0), 100, 100) == (pytest.approx(0.0006), True)
    assert call_cost(None, Price.flat(3.0), None, None) == (0.0, True)
    # prompt and completion apart ($3 and $15 per million, as Claude Sonnet); an unknown price is unknown, not 0
    assert estimate_cost_usd(Price(3.0, 15.0), 1000, 600) == pytest.approx(0.003 + 0.009)
    assert call_cost(None, None, 100, 100) == (None, True)
    assert upper_bound_usd(Price(3.0, 15.0), 1000) == pytest.approx(0.015) and upper_bound_usd(None, 1000) == 0.0


def test_a_call_starts_only_when_everything_counted_and_its_estimate_fit():
    assert may_start(0.07, 0.02, 0.01, 0.10)  # exactly at the limit (float noise ignored)
    assert may_start(0.1 + 0.2, 0.0, 0.0, 0.3)
    assert not may_start(0.07, 0.02, 0.011, 0.10)
    assert not may_start(0.0, 0.1, 0.001, 0.1)  # in-flight estimates count
    assert may_start(1e6, 0.0, 1.0, None)  # no --max-cost: no stop


def test_the_ledger_reserves_settles_and_refuses_with_one_message(tmp_path):
    budget = Budget(tmp_path / ".budget" / "run-1.json", limit_usd=0.05)
    budget.reserve("draft-z#1", 0.01)
    budget.settle("draft-z#1", 0.0, estimated=False)  # nothing billed (no connection)
    budget.reserve("draft-a#1", 0.02)
    budget.reserve("draft-b#1", 0.02)
    with pytest.raises(BudgetReached) as caught:
        budget.reserve("essay-c#1", 0.02)
    assert str(caught.value) == (
        "budget reached: spent $0.0000, $0.0400 in flight, remaining $0.0100 of --max-cost "
        "$0.05; a call estimated at $0.0200 did not fit, so no new call starts in this run"
    )
    budget.settle("draft-a#1", 0.013, estimated=False)  # reported cost
    budget.settle("draft-b#1", 0.004, estimated=True)  # no reported cost: the price estimate
    with pytest.raises(BudgetReached):  # reached is reached: not even a call that would fit now starts
        budget.reserve("essay-d#1", 0.001)
    assert budget.spend() == Spend(spent_usd=0.017, estimated_usd=0.004, in_flight_usd=0.0, limit_usd=0.05)
    assert budget.spend().line() == (
        "spent $0.0170 ($0.0040 of it estimated from the models' prices), remaining $0.0330 of --max-cost $0.05"
    )
    assert Budget(tmp_path / "none.json", None).spend().line() == "spent $0.0000"
    with pytest.raises(ValueError):
        Budget(tmp_path / "x.json", -1)


def _spend_until_refused(ledger, out):
    budget = Budget(ledger, limit_usd=5.0)
    started = 0
    for n in range(40):
        try:
            budget.reserve(f"{out.name}#{n}", 0.1)
        except BudgetReached:
            continue
        started += 1
        budget.settle(f"{out.name}#{n}", 0.1, estimated=True)
    out.write_text(str(started))


def test_forked_workers_sharing_the_ledger_never_overspend(tmp_path):
    context = multiprocessing.get_context("fork")
    outs = [tmp_path / f"worker{i}" for i in range(3)]
    workers = [context.Process(target=_spend_until_refused, args=(tmp_path / "run.json", out)) for out in outs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert sum(int(out.read_text()) for out in outs) == 50
    assert Budget(tmp_path / "run.json", 5.0).spend() == Spend(5.0, 5.0, 0.0, 5.0)
