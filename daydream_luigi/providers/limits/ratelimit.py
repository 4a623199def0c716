"""Request and token rates per pool, beside Luigi's concurrency limits, and daily quotas that pause a pool.

Luigi's resources bound how many calls of a pool run at once; a provider also bounds how many may start per minute
and per day (OpenRouter's free models: 20 a minute, 50 a day, 1,000 a day once 10 credits were bought, account-wide).
``RateLimiter.acquire`` blocks until a request may be sent under the pool's ``requests_per_minute``,
``requests_per_day`` and ``tokens_per_minute`` and under what the provider's headers said; ``RateLimiter.record``
hears the response. Every worker process and every machine that shares the data folder sees one state file per pool
(``data/.ratelimit/<pool>.json``, see ``shared_state``), so the rates hold for the run as a whole.

Windows. The minute is a sliding window of ``window_s`` seconds widened by ``margin_s``: at most N requests are
allowed in any ``window_s + margin_s`` seconds, so the provider, whose clock starts when a request arrives, never
counts N + 1 in its own window despite network jitter and clock differences up to the margin between machines
sharing the folder (the times in the file are each machine's ``time.time()``; keep the machines on NTP). The day is
the UTC day, as on OpenRouter, whose daily counter resets at UTC midnight.

Adaptive back-off. Repeated 429s (two in a row, no answer between them) halve the effective request rate of a pool
with a configured ``requests_per_minute`` (floor 1 a window), once per round of requests: a 429 for a request allowed
before the last decrease says nothing new. Each success then adds 1/rate, about one request a window per window of
successes, until the configured rate is reached again. A lone 429 among answers (upstream providers behind OpenRouter
send them) is only waited out as the provider asks; a pool without a configured rate follows the provider's own
headers and Retry-After, which say more than any guess of ours.

Quotas. A 429 that reports a daily or quota limit, or whose reset or Retry-After lies beyond the retry budget,
cannot be waited out within a run: ``classify_rate_limit`` says "quota", the pool is paused until the reset, every
process sees the pause, and ``acquire`` raises ``PoolPaused`` with the one-line message instead of sending.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from daydream_luigi.core.rates import PoolRates
from daydream_luigi.providers.http_errors import parse_retry_after
from daydream_luigi.store.shared_state import locked_json, state_file

WINDOW_S = 60.0  # the minute of requests_per_minute and tokens_per_minute
DEFAULT_MARGIN_S = 1.0  # added to the window: network jitter and clock differences between machines
DAY_S = 86_400
FLOOR_PER_WINDOW = 1.0  # adaptive back-off never goes below one request a window
REPEATED_429S = 2  # 429s in a row (no answer between) that lower a pool's rate
UNKNOWN_RESUME_S = 3_600  # a quota that names no reset time pauses its pool for an hour

# Provider wording for a limit that a run cannot wait out (OpenRouter "free-models-per-day", "limit_rpd/...",
# limit_source "openrouter_free_tier_daily"; OpenAI "insufficient_quota") and for one it can ("free-models-per-min",
# "limit_rpm/..."). A minute marker wins: OpenRouter's per-minute message may advertise the daily allowance.
_PER_DAY = re.compile(r"per[-_]day|(?<![a-z])rpd(?![a-z])|daily", re.IGNORECASE)
_QUOTA = re.compile(r"quota", re.IGNORECASE)
_PER_MINUTE = re.compile(r"per[-_]min|(?<![a-z])rpm(?![a-z])", re.IGNORECASE)


# ------------------------------------------------------------------------------------------------ 429 verdicts


@dataclass(frozen=True)
class RateLimitInfo:
    """What a response says about the provider's limits (X-RateLimit-Remaining/-Reset and Retry-After, from headers
    or body). X-RateLimit-Limit is not kept: it names no window, so it cannot say how fast to go."""

    remaining: int | None = None
    reset_at: float | None = None  # epoch seconds
    retry_after_s: float | None = None
    message: str = ""  # the provider's error message plus OpenRouter's metadata.limit_source


@dataclass(frozen=True)
class Verdict:
    kind: str  # "retry": wait and send again within the run; "quota": pause the pool
    resume_at: float | None  # epoch seconds when the provider expects requests again, when it says
    reason: str  # short, for the quota message


def _reset_time(value: str, now: float) -> float | None:
    """X-RateLimit-Reset as epoch seconds: OpenRouter sends epoch milliseconds; epoch seconds and a number of
    seconds from now (other servers) are read too."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number >= 1e11:
        return number / 1000.0
    if number >= 1e9:
        return number
    return now + max(0.0, number)


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _error_object(body: Any) -> dict:
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return {"message": body}
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    return {}


def rate_limit_info(headers: Mapping[str, str] | None, body: Any, now: float) -> RateLimitInfo:
    """Read the limit headers of a response; OpenRouter repeats them in the error body's ``metadata.headers``."""
    error = _error_object(body)
    metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
    merged: dict[str, str] = {}
    for source in (metadata.get("headers") if isinstance(metadata.get("headers"), dict) else {}, headers or {}):
        merged.update({str(k).lower(): str(v) for k, v in source.items()})
    message = " ".join(
        str(part)
        for part in (
            error.get("message"),
            metadata.get("limit_source"),
            error.get("code") if isinstance(error.get("code"), str) else None,
        )
        if part
    )
    retry_after = parse_retry_after(merged.get("retry-after"))
    return RateLimitInfo(
        remaining=_int(merged.get("x-ratelimit-remaining")),
        reset_at=_reset_time(merged["x-ratelimit-reset"], now) if "x-ratelimit-reset" in merged else None,
        retry_after_s=retry_after,
        message=" ".join(message.split()),
    )


def _next_utc_midnight(now: float) -> float:
    return (math.floor(now / DAY_S) + 1) * DAY_S


def _short(message: str) -> str:
    first = message.split(". ")[0].rstrip(".")
    return first if len(first) <= 120 else first[:117].rstrip() + "..."


def classify_rate_limit(
    status: int, headers: Mapping[str, str] | None, body: Any, retry_budget_s: float, now: float | None = None
) -> Verdict:
    """Whether a 429 can be waited out within the retry budget ("retry") or pauses its pool ("quota").

    Quota: the message names a daily or quota limit (a per-minute marker overrides), the provider reports 0
    requests remaining with a reset further away than the budget, or Retry-After is longer than the budget. Any
    other status is "retry" (this rule is about 429s only).
    """
    now = time.time() if now is None else now
    info = rate_limit_info(headers, body, now)
    reason = _short(info.message) or f"HTTP {status}"
    if status != 429:
        return Verdict("retry", None, reason)
    if info.remaining == 0 and info.reset_at is not None and info.reset_at - now > retry_budget_s:
        return Verdict("quota", info.reset_at, reason)
    if info.retry_after_s is not None and info.retry_after_s > retry_budget_s:
        return Verdict(
            "quota",
            now + info.retry_after_s,
            f"Retry-After {info.retry_after_s:g}s is longer than the retry budget of {retry_budget_s:g}s",
        )
    daily = _PER_DAY.search(info.message)
    if (daily or _QUOTA.search(info.message)) and not _PER_MINUTE.search(info.message):
        if info.reset_at is not None and info.reset_at > now:
            return Verdict("quota", info.reset_at, reason)
        return Verdict("quota", _next_utc_midnight(now) if daily else now + UNKNOWN_RESUME_S, reason)
    resume = info.reset_at if info.remaining == 0 else None
    if info.retry_after_s is not None:
        resume = now + info.retry_after_s
    return Verdict("retry", resume, reason)


def quota_message(pool: str, until: float, reason: str, now: float | None = None, tz: tzinfo | None = None) -> str:
    """The one line a paused pool prints: ``quota: <pool> paused, resume after HH:MM (<reason>)``, in local time
    (``tz`` for tests); a date is added when the resume time is a day or more away."""
    now = time.time() if now is None else now
    when = datetime.fromtimestamp(until, tz)
    shown = when.strftime("%H:%M") if until - now < DAY_S else when.strftime("%Y-%m-%d %H:%M")
    return f"quota: {pool} paused, resume after {shown} ({reason})"


class PoolPaused(Exception):
    """The pool is paused for a quota: its generations stay pending (not failed, not retried) until ``until``."""

    def __init__(self, pool: str, until: float, reason: str):
        self.pool, self.until, self.reason = pool, until, reason
        super().__init__(quota_message(pool, until, reason))


# ----------------------------------------------------------------------------------------------------- limiter


@dataclass(frozen=True)
class Permit:
    """A granted request: ``at`` is when it was allowed (the limiter's clock), ``waited_s`` how long acquire blocked."""

    pool: str
    at: float
    waited_s: float
    entry: str  # identifies this request in the pool's window, so record() can put in the tokens actually used


@dataclass(frozen=True)
class PoolStatus:
    """For progress displays: the rate in force and what the window holds."""

    pool: str
    effective_per_window: float | None  # requests per window now allowed (adaptive); None: no request limit
    configured_per_window: int | None
    sent_in_window: int
    sent_today: int
    hold_until: float | None  # the provider asked us to wait until then
    paused: tuple[float, str] | None


class RateLimiter:
    """Rate limits of every pool, kept in ``state_dir`` (``data/.ratelimit``) and shared by all processes using it.

    ``clock`` and ``sleep`` are injectable for tests; ``window_s`` is the length of the "minute" (tests shorten it);
    ``retry_budget_s`` is the longest a provider-requested wait may be before it counts as a quota.
    """

    def __init__(
        self,
        state_dir: Path,
        rates: Mapping[str, PoolRates],
        *,
        retry_budget_s: float = 300.0,
        window_s: float = WINDOW_S,
        margin_s: float = DEFAULT_MARGIN_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.state_dir = Path(state_dir)
        self.rates = dict(rates)
        self.retry_budget_s = retry_budget_s
        self.span = window_s + margin_s
        self.clock = clock
        self.sleep = sleep

    # -- before sending ---------------------------------------------------------------------------------------
    def acquire(self, pool: str, estimated_tokens: int = 0) -> Permit:
        """Block until a request of ``pool`` may be sent now and count it; raise PoolPaused when the pool is paused.

        Call it before every HTTP attempt (retries included) and send at once after it returns.
        """
        rates = self.rates.get(pool, PoolRates())
        started = self.clock()
        while True:
            paused = permit = None
            with locked_json(state_file(self.state_dir, pool)) as state:
                now = self.clock()
                self._refresh(state, now)
                paused = self._pause_of(state, now)
                if paused is None and rates.requests_per_day and state["day_count"] >= rates.requests_per_day:
                    paused = (_next_utc_midnight(now), f"requests_per_day {rates.requests_per_day} reached")
                    state.update(paused_until=paused[0], pause_reason=paused[1])
                if paused is None:
                    ready = self._ready_at(state, rates, now, estimated_tokens)
                    if ready <= now:
                        permit = Permit(pool, now, now - started, secrets.token_hex(6))
                        if rates.requests_per_minute or rates.tokens_per_minute:
                            state["sent"].append([now, estimated_tokens, permit.entry])
                        else:  # nothing waits on the window: a count per second is all the display needs
                            second = str(math.floor(now))
                            state["counts"][second] = state["counts"].get(second, 0) + 1
                        state["day_count"] += 1
            if paused is not None:
                raise PoolPaused(pool, *paused)
            if permit is not None:
                return permit
            self.sleep(ready - now)

    def _refresh(self, state: dict, now: float) -> None:
        """Drop requests that left the window and start a new day's count at UTC midnight.

        A pool with a request or token rate keeps every request of the window (`sent`: time, tokens, entry); one
        without keeps only a count per second (`counts`), so that its file stays small however fast it sends."""
        state["sent"] = sorted(entry for entry in state.get("sent", []) if entry[0] > now - self.span)
        state["counts"] = {second: n for second, n in state.get("counts", {}).items() if self._counted(second, now)}
        day = math.floor(now / DAY_S)
        if state.get("day") != day:
            state["day"], state["day_count"] = day, 0

    def _counted(self, second: str, now: float) -> bool:
        """Whether a per-second count still reaches into the window."""
        return int(second) + 1 > now - self.span

    def _ready_at(self, state: dict, rates: PoolRates, now: float, estimated_tokens: int) -> float:
        """The earliest time a new request fits every limit (the entries are the requests still in the window)."""
        ready = max(now, state.get("hold_until") or 0.0)
        sent = state["sent"]
        rate = state.get("effective") or rates.requests_per_minute
        if rate is not None:
            allowed = max(1, math.floor(rate))
            if len(sent) >= allowed:
                ready = max(ready, sent[-allowed][0] + self.span)
        if rates.tokens_per_minute is not None and sent:
            excess = sum(entry[1] for entry in sent) + estimated_tokens - rates.tokens_per_minute
            for at, tokens, _ in sent:  # wait until enough tokens have left the window (a lone request always fits)
                if excess <= 0:
                    break
                excess -= tokens
                ready = max(ready, at + self.span)
        return ready

    @staticmethod
    def _pause_of(state: dict, now: float) -> tuple[float, str] | None:
        until = state.get("paused_until")
        return (until, state.get("pause_reason") or "") if until is not None and until > now else None

    # -- after the response -----------------------------------------------------------------------------------
    def record(
        self,
        permit: Permit,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        tokens_used: int | None = None,
    ) -> Verdict | None:
        """Hear the response to a permitted request (``status`` None: no response, e.g. a refused connection).

        Puts the tokens actually used into the window, honours X-RateLimit-Remaining 0 / Reset and Retry-After for
        every process, adapts the pool's rate, and for a 429 returns the verdict: on "quota" the pool is paused
        (the caller leaves the generation pending), on "retry" the caller may send again after ``acquire``.
        """
        rates = self.rates.get(permit.pool, PoolRates())
        verdict = None
        with locked_json(state_file(self.state_dir, permit.pool)) as state:
            now = self.clock()
            self._refresh(state, now)
            if tokens_used is not None:
                for entry in state["sent"]:
                    if entry[2] == permit.entry:
                        entry[1] = tokens_used
            if status is None:
                return None
            info = rate_limit_info(headers, body, now)
            hold = state.get("hold_until") or 0.0
            if info.remaining == 0 and info.reset_at is not None:
                hold = max(hold, info.reset_at)
            if status == 429:
                verdict = classify_rate_limit(status, headers, body, self.retry_budget_s, now)
                if info.retry_after_s is not None:
                    hold = max(hold, now + info.retry_after_s)
                state["refused_in_a_row"] = state.get("refused_in_a_row", 0) + 1
                if rates.requests_per_minute and verdict.kind == "retry" and state["refused_in_a_row"] >= REPEATED_429S:
                    self._decrease(state, rates, permit, now)
            elif 200 <= status < 300:
                state.pop("refused_in_a_row", None)
                self._increase(state, rates)
            if verdict is None and hold - now > self.retry_budget_s:  # a success that used the last of a day
                verdict = Verdict("quota", hold, "X-RateLimit-Remaining 0 until the provider's reset")
            if verdict is not None and verdict.kind == "quota":
                until = verdict.resume_at if verdict.resume_at is not None else now + UNKNOWN_RESUME_S
                state.update(paused_until=until, pause_reason=verdict.reason)
            elif hold > now:
                state["hold_until"] = hold
        return verdict

    @staticmethod
    def _decrease(state: dict, rates: PoolRates, permit: Permit, now: float) -> None:
        if permit.at <= state.get("decreased_at", float("-inf")):
            return  # allowed before the last decrease: the rate it was sent under is already gone
        state["effective"] = max(FLOOR_PER_WINDOW, (state.get("effective") or rates.requests_per_minute) / 2)
        state["decreased_at"] = now

    @staticmethod
    def _increase(state: dict, rates: PoolRates) -> None:
        effective = state.get("effective")
        if effective is None:
            return
        effective += 1.0 / effective
        if rates.requests_per_minute is None or effective >= rates.requests_per_minute:
            for key in ("effective", "decreased_at"):
                state.pop(key, None)
        else:
            state["effective"] = effective

    # -- quota pauses -----------------------------------------------------------------------------------------
    def pause(self, pool: str, until: float, reason: str) -> None:
        """Pause ``pool`` for every process until ``until`` (epoch seconds)."""
        with locked_json(state_file(self.state_dir, pool)) as state:
            state.update(paused_until=until, pause_reason=reason)

    def paused(self, pool: str) -> tuple[float, str] | None:
        """(until, reason) while ``pool`` is paused, else None."""
        with locked_json(state_file(self.state_dir, pool)) as state:
            return self._pause_of(state, self.clock())

    def resume(self, pool: str) -> None:
        """Lift a pause early (e.g. credits were bought)."""
        with locked_json(state_file(self.state_dir, pool)) as state:
            state.pop("paused_until", None)
            state.pop("pause_reason", None)

    # -- progress ---------------------------------------------------------------------------------------------
    def status(self, pool: str) -> PoolStatus:
        rates = self.rates.get(pool, PoolRates())
        with locked_json(state_file(self.state_dir, pool)) as state:
            now = self.clock()
            sent = sum(1 for entry in state.get("sent", []) if entry[0] > now - self.span) + sum(
                n for second, n in state.get("counts", {}).items() if self._counted(second, now)
            )
            today = state.get("day_count", 0) if state.get("day") == math.floor(now / DAY_S) else 0
            hold = state.get("hold_until")
            return PoolStatus(
                pool,
                state.get("effective") or rates.requests_per_minute,
                rates.requests_per_minute,
                sent,
                today,
                hold if hold and hold > now else None,
                self._pause_of(state, now),
            )
