"""What every model request passes before it is sent, and hears after: the provider's circuit breaker, the pool's
quota pause, the run's spending limit, then the pool's rates (last, so that a request is sent the moment its permit
is granted).

Each part keeps its state in files under the data folder (see ``shared_state``), so it holds for every task process
Luigi forks and every machine sharing the folder: rates and quota pauses per pool in ``data/.ratelimit/`` (shared by
every run, since a provider's limits are account-wide), the breaker and the spending ledger per run in
``data/.runs/<run_id>/`` (a breaker says what this run could reach; ``--max-cost`` bounds what this run spends).

A request the gate refuses is not sent and its generation is not failed: ``Stopped`` says why in one line, the
generation stays pending, and a later run makes it.
"""

import os
from pathlib import Path

from daydream_luigi.core.pricing import Price, call_cost, upper_bound_usd
from daydream_luigi.core.settings import Paths, Settings
from daydream_luigi.providers.chat import Reply
from daydream_luigi.providers.limits.breaker import BreakerOpen, CircuitBreaker
from daydream_luigi.providers.limits.budget import Budget, BudgetReached
from daydream_luigi.providers.limits.ratelimit import WINDOW_S, PoolPaused, RateLimiter

CHARS_PER_TOKEN = 4  # a prompt's tokens, estimated before it is sent (English text; only limits and budgets use it)
WINDOW_ENV = "DAYDREAM_RATE_WINDOW_S"  # the length in seconds of a rate's "minute"; tests shorten it
STOP_FILE = "stop"  # in the run's folder: the run was asked to stop (batch polls end)


class Stopped(Exception):
    """A request was not sent: its pool is paused for a quota ("quota"), its provider is unreachable ("breaker") or
    the run's budget is reached ("budget"). `name` is the pool, provider or run; `key` tells one stop from another
    (a pause until another time is another stop)."""

    def __init__(self, kind: str, name: str, key: str, message: str):
        self.kind, self.name, self.key = kind, name, key
        super().__init__(message)


def stopped(exc: PoolPaused | BreakerOpen | BudgetReached, run_id: str) -> Stopped:
    if isinstance(exc, PoolPaused):
        return Stopped("quota", exc.pool, f"{exc.pool}-until-{int(exc.until)}", str(exc))
    if isinstance(exc, BreakerOpen):
        return Stopped("breaker", exc.provider, f"{exc.provider}-{run_id}", str(exc))
    return Stopped("budget", "run", run_id, str(exc))


def run_dir(paths: Paths, run_id: str) -> Path:
    """This run's own state (breaker, ledger, stop flag)."""
    return paths.data_root / ".runs" / run_id


def request_stop(paths: Paths, run_id: str) -> None:
    """Tell the run's long waits (batch polls) in every task process to end."""
    folder = run_dir(paths, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STOP_FILE).touch()


def stop_requested(paths: Paths, run_id: str) -> bool:
    return (run_dir(paths, run_id) / STOP_FILE).exists()


def limiter(paths: Paths, settings: Settings) -> RateLimiter:
    """The pools' rate limits; a provider-requested wait longer than the retry budget is a quota."""
    return RateLimiter(
        paths.data_root / ".ratelimit",
        settings.pools,
        retry_budget_s=float(settings.retry.max_total_seconds),
        window_s=float(os.environ.get(WINDOW_ENV) or WINDOW_S),
    )


def budget(paths: Paths, run_id: str, max_cost_usd: float | None) -> Budget | None:
    """The run's ledger when it has a --max-cost."""
    return None if max_cost_usd is None else Budget(run_dir(paths, run_id) / "budget.json", max_cost_usd)


def estimated_tokens(prompt: str, max_tokens: int) -> int:
    """What a call may use at most, as far as it can be known before it is sent."""
    return len(prompt) // CHARS_PER_TOKEN + max_tokens


class Gate:
    """The checks of one generation's call; every attempt passes `before` and reports to `after`."""

    def __init__(
        self,
        paths: Paths,
        settings: Settings,
        run_id: str,
        *,
        provider: str,
        url: str,
        pool: str,
        price: Price | None,
        call_id: str,
        tokens: int,
        max_cost_usd: float | None = None,
    ):
        """`max_cost_usd`: the run's --max-cost (None: no spending stop)."""
        self.run_id = run_id
        self.limiter = limiter(paths, settings)
        self.breaker = CircuitBreaker(run_dir(paths, run_id) / "breaker")
        self.budget = budget(paths, run_id, max_cost_usd)
        self.provider, self.url, self.pool = provider, url, pool
        self.price, self.call_id, self.tokens = price, call_id, tokens
        self.permit = None

    def _attempt(self, n: int) -> str:
        return f"{self.call_id}#{n}"

    def before(self, n: int) -> None:
        """Raise Stopped, or return when attempt `n` may be sent now (its estimate reserved, its permit counted)."""
        try:
            self.breaker.check(self.provider)
            if self.budget is not None:  # a paused pool reserves nothing (without a budget, acquire says it is paused)
                paused = self.limiter.paused(self.pool)
                if paused is not None:
                    raise PoolPaused(self.pool, *paused)
                self.budget.reserve(self._attempt(n), upper_bound_usd(self.price, self.tokens))
            try:
                self.permit = self.limiter.acquire(self.pool, self.tokens)
            except PoolPaused:
                self.cancel(n)
                raise
        except (BreakerOpen, PoolPaused, BudgetReached) as exc:
            raise stopped(exc, self.run_id) from None

    def cancel(self, n: int) -> None:
        """Attempt `n` passed `before` but was not sent after all: nothing is spent."""
        if self.budget is not None:
            self.budget.settle(self._attempt(n), 0.0, estimated=False)

    def after(self, n: int, reply: Reply) -> None:
        """Hear what attempt `n` got back. Raises Stopped when the call cannot go on: a 429 that reports a quota
        (the pool is paused for every process; the generation waits for the resume time instead of failing), or a
        connection failure that finds the provider's breaker open."""
        if reply.no_connection:
            self.breaker.failure(self.provider, self.url, reply.cause)
        elif reply.status is not None:
            self.breaker.success(self.provider)
        used = (
            None
            if reply.prompt_tokens is None or reply.completion_tokens is None
            else reply.prompt_tokens + reply.completion_tokens
        )
        verdict = self.limiter.record(self.permit, reply.status, reply.headers, reply.body, used)
        if self.budget is not None:
            cost, estimated = call_cost(reply.cost, self.price, reply.prompt_tokens, reply.completion_tokens)
            self.budget.settle(self._attempt(n), cost or 0.0, estimated)
        try:
            if reply.no_connection:
                self.breaker.check(self.provider)
            paused = (
                self.limiter.paused(self.pool) if reply.status == 429 and verdict and verdict.kind == "quota" else None
            )
            if paused is not None:
                raise PoolPaused(self.pool, *paused)
        except (BreakerOpen, PoolPaused) as exc:
            raise stopped(exc, self.run_id) from None
