"""The spending stop: a new call starts only while what was spent, what is in flight and its own estimate fit
within ``--max-cost``; once one does not, the budget is reached and no new call starts in the run.

A run's calls are made by forked worker processes (and possibly other machines), so the account is one ledger file
shared like the rate limits (see ``shared_state``): each call reserves its estimate before it is sent and settles
with its cost when it ends. Spent money is the provider's reported cost, or the estimate from ``price_per_mtok``
where none is reported (those are counted apart, so a summary can say how much is an estimate). Answers already in
flight when the limit is reached are kept: they were reserved and paid for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.store.shared_state import locked_json

_PRECISION = 9  # digits kept when comparing sums of dollars, so float noise never refuses a call that fits


def may_start(spent_usd: float, in_flight_usd: float, estimate_usd: float, limit_usd: float | None) -> bool:
    """Whether a call estimated at ``estimate_usd`` may start: everything counted, it included, stays within limit."""
    return limit_usd is None or round(spent_usd + in_flight_usd + estimate_usd, _PRECISION) <= limit_usd


@dataclass(frozen=True)
class Spend:
    spent_usd: float
    estimated_usd: float  # the part of spent_usd that is a price estimate, not a reported cost
    in_flight_usd: float
    limit_usd: float | None

    @property
    def remaining_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return max(0.0, round(self.limit_usd - self.spent_usd - self.in_flight_usd, _PRECISION))

    def line(self) -> str:
        """For the run summary."""
        text = f"spent ${self.spent_usd:.4f}"
        if self.estimated_usd:
            text += f" (${self.estimated_usd:.4f} of it estimated from the models' prices)"
        if self.in_flight_usd:
            text += f", ${self.in_flight_usd:.4f} in flight"
        if self.limit_usd is not None:
            text += f", remaining ${self.remaining_usd:.4f} of --max-cost ${self.limit_usd:g}"
        return text


class BudgetReached(Exception):
    """The call was not started: its generation stays pending for a later run."""

    def __init__(self, spend: Spend, estimate_usd: float):
        self.spend, self.estimate_usd = spend, estimate_usd
        super().__init__(
            f"budget reached: {spend.line()}; a call estimated at ${estimate_usd:.4f} did not fit, so no "
            f"new call starts in this run"
        )


class Budget:
    """One run's account in ``ledger`` (``data/.runs/<run_id>/budget.json``), shared by all its processes."""

    def __init__(self, ledger: Path, limit_usd: float | None):
        if limit_usd is not None and limit_usd < 0:
            raise ValueError("limit_usd must be >= 0")
        self.ledger = Path(ledger)
        self.limit_usd = limit_usd

    @staticmethod
    def _spend_of(state: dict, limit_usd: float | None) -> Spend:
        return Spend(
            state.get("spent", 0.0),
            state.get("estimated", 0.0),
            round(sum(state.get("in_flight", {}).values()), _PRECISION),
            limit_usd,
        )

    def reserve(self, call_id: str, estimate_usd: float) -> None:
        """Count ``estimate_usd`` as in flight for ``call_id``, or raise BudgetReached (nothing counted) when the call
        would not fit or an earlier one did not. Call before sending; ``call_id`` is unique per call (e.g. the gen_id
        and attempt)."""
        with locked_json(self.ledger) as state:
            in_flight = state.setdefault("in_flight", {})
            in_flight.pop(call_id, None)
            spend = self._spend_of(state, self.limit_usd)
            state["reached"] = state.get("reached") or not may_start(
                spend.spent_usd, spend.in_flight_usd, estimate_usd, self.limit_usd
            )
            if not state["reached"]:
                in_flight[call_id] = estimate_usd
        if state["reached"]:
            raise BudgetReached(spend, estimate_usd)

    def settle(self, call_id: str, cost_usd: float, estimated: bool) -> None:
        """Replace the call's reservation by its cost (0 when nothing was billed, e.g. no connection)."""
        with locked_json(self.ledger) as state:
            state.setdefault("in_flight", {}).pop(call_id, None)
            state["spent"] = round(state.get("spent", 0.0) + cost_usd, _PRECISION)
            if estimated:
                state["estimated"] = round(state.get("estimated", 0.0) + cost_usd, _PRECISION)

    def spend(self) -> Spend:
        with locked_json(self.ledger) as state:
            return self._spend_of(state, self.limit_usd)
