"""Rate limits per pool (sliding window, day count, tokens), provider headers, adaptive back-off and quota pauses."""

import configparser
import fcntl
import json
import multiprocessing
import threading
import time
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.rates import PoolRates, pool_rates
from daydream_luigi.providers.limits.ratelimit import (
    PoolPaused,
    RateLimiter,
    Verdict,
    classify_rate_limit,
    quota_message,
)

REPO = Path(__file__).resolve().parents[1]
MIDNIGHT = 1_788_220_800.0  # 2026-09-01 00:00 UTC
T0 = MIDNIGHT - 5 * 3600  # 19:00 UTC the day before


class FakeClock:
    """time.time and time.sleep of one process: sleeping moves the clock, nothing waits."""

    def __init__(self, now: float = T0):
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(tmp_path, clock, margin_s=0.0, **pools) -> RateLimiter:
    return RateLimiter(
        tmp_path / ".ratelimit", pools, retry_budget_s=300, margin_s=margin_s, clock=clock, sleep=clock.sleep
    )


def most_in_window(times: list[float], window: float) -> int:
    """The largest number of the times that fall in any half-open window (t - window, t]."""
    times = sorted(times)
    return max(sum(1 for s in times[: i + 1] if s > t - window) for i, t in enumerate(times))


# ----------------------------------------------------------------------------------------------------- settings


def test_pool_settings_are_validated_one_line_per_problem():
    raw = {
        "fre": {"requests_per_minute": 20},
        "paid": {
            "requests_per_minit": 5,
            "requests_per_day": 0,
            "tokens_per_minute": "many",
            "requests_per_minute": True,
        },
        "local": 5,
        "free": {"requests_per_minute": 2.5},
    }
    with pytest.raises(InputError) as caught:
        pool_rates(raw, "config/daydream.yaml", ["free", "local", "paid"])
    assert caught.value.problems == [
        "config/daydream.yaml: pools.fre: no pool 'fre' in config/luigi.cfg [resources] (known: free, local, paid); "
        "add it there or remove it here",
        "config/daydream.yaml: pools.paid.requests_per_minit is not a pool setting; use requests_per_minute, "
        "requests_per_day, tokens_per_minute",
        "config/daydream.yaml: pools.paid.requests_per_day is 0; it must be a whole number of at least 1",
        "config/daydream.yaml: pools.paid.tokens_per_minute is 'many'; it must be a whole number of at least 1",
        "config/daydream.yaml: pools.paid.requests_per_minute is True; it must be a whole number of at least 1",
        "config/daydream.yaml: pools.local must map settings to numbers (requests_per_minute, requests_per_day, "
        "tokens_per_minute)",
        "config/daydream.yaml: pools.free.requests_per_minute is 2.5; it must be a whole number of at least 1",
    ]
    with pytest.raises(InputError) as caught:
        pool_rates(["free"], "config/daydream.yaml")
    assert caught.value.problems == [
        "config/daydream.yaml: pools must map pool names to rates, e.g. pools: {free: {requests_per_minute: 20}}"
    ]


def test_every_setting_is_optional_and_the_shipped_free_pool_allows_20_a_minute():
    assert pool_rates(None, "x") == {}
    assert pool_rates({"paid": None, "local": {}}, "x") == {"paid": PoolRates(), "local": PoolRates()}
    assert pool_rates({"paid": {"requests_per_day": 1000, "tokens_per_minute": 90000}}, "x") == {
        "paid": PoolRates(requests_per_day=1000, tokens_per_minute=90000)
    }
    resources = configparser.ConfigParser()
    resources.read(REPO / "config" / "luigi.cfg")
    shipped = yaml.safe_load((REPO / "config" / "daydream.yaml").read_text())["pools"]
    assert pool_rates(shipped, "config/daydream.yaml", resources["resources"]) == {
        "free": PoolRates(requests_per_minute=20)
    }


# ------------------------------------------------------------------------------------------------ the window


def test_requests_beyond_the_limit_wait_for_the_window_and_acquire_says_how_long(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock, margin_s=1.0, free=PoolRates(requests_per_minute=3))
    permits = [rates.acquire("free") for _ in range(7)]
    assert [p.at - T0 for p in permits] == [0, 0, 0, 61, 61, 61, 122]
    assert [p.waited_s for p in permits] == [0, 0, 0, 61, 0, 0, 61]
    assert rates.status("free").sent_in_window == 1


def test_a_pool_without_limits_never_waits(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock)
    assert [rates.acquire("paid").waited_s for _ in range(50)] == [0] * 50
    assert clock.slept == []


def test_the_day_count_pauses_the_pool_until_utc_midnight(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock, free=PoolRates(requests_per_day=2))
    rates.acquire("free")
    rates.acquire("free")
    with pytest.raises(PoolPaused) as caught:
        rates.acquire("free")
    assert (caught.value.pool, caught.value.until, caught.value.reason) == (
        "free",
        MIDNIGHT,
        "requests_per_day 2 reached",
    )
    other_process = limiter(tmp_path, clock, free=PoolRates(requests_per_day=2))
    assert other_process.paused("free") == (MIDNIGHT, "requests_per_day 2 reached")
    clock.now = MIDNIGHT  # a new UTC day: the pause is over and the count starts again
    assert other_process.paused("free") is None
    assert other_process.acquire("free").at == MIDNIGHT
    assert other_process.status("free").sent_today == 1


def test_tokens_per_minute_count_the_estimate_until_the_tokens_used_are_recorded(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock, paid=PoolRates(tokens_per_minute=1000))
    first = rates.acquire("paid", estimated_tokens=600)
    assert rates.acquire("paid", estimated_tokens=600).at == T0 + 60  # 1,200 would not fit in the minute
    clock.now = T0 + 200
    third = rates.acquire("paid", estimated_tokens=600)
    rates.record(third, 200, tokens_used=100)
    assert rates.acquire("paid", estimated_tokens=600).at == T0 + 200  # 100 + 600 fit
    assert first.waited_s == 0


def _share_a_window(state_dir: str, clock_file: str, out: str, count: int) -> None:
    """One worker process: `count` requests through the shared limiter, on a clock shared through a file."""

    def now() -> float:
        with open(clock_file) as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            return float(handle.read())

    def sleep(seconds: float) -> None:  # virtual time: moves the shared clock forward, never back
        target = now() + seconds
        with open(clock_file, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            current = float(handle.read())
            handle.seek(0)
            handle.write(repr(max(current, target)))
            handle.truncate()

    rates = RateLimiter(
        Path(state_dir), {"free": PoolRates(requests_per_minute=3)}, margin_s=0.0, clock=now, sleep=sleep
    )
    Path(out).write_text(json.dumps([rates.acquire("free").at for _ in range(count)]))


def test_two_processes_sharing_a_data_folder_never_exceed_the_limit_in_any_minute(tmp_path):
    clock_file = tmp_path / "clock"
    clock_file.write_text(repr(T0))
    context = multiprocessing.get_context("fork")  # Luigi's workers are forked processes too
    workers = [
        context.Process(
            target=_share_a_window, args=(str(tmp_path / ".ratelimit"), str(clock_file), str(tmp_path / f"{i}.json"), 9)
        )
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    times = [t for i in range(2) for t in json.loads((tmp_path / f"{i}.json").read_text())]
    assert len(times) == 18
    assert most_in_window(times, 60.0) == 3


class _Arrivals(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.server.arrivals.append(time.monotonic())
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _send_through_the_limiter(state_dir: str, url: str, count: int) -> None:
    rates = RateLimiter(Path(state_dir), {"free": PoolRates(requests_per_minute=3)}, window_s=1.0, margin_s=0.5)
    with requests.Session() as session:
        for _ in range(count):
            rates.acquire("free")
            session.post(url, data=b"{}", timeout=10)


def test_in_real_time_two_processes_send_at_most_3_a_second_as_counted_by_the_server(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Arrivals)
    server.arrivals = []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/chat/completions"
        context = multiprocessing.get_context("fork")
        workers = [
            context.Process(target=_send_through_the_limiter, args=(str(tmp_path / ".ratelimit"), url, 4))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert len(server.arrivals) == 8
    assert most_in_window(server.arrivals, 1.0) == 3


# ------------------------------------------------------------------------------------------- provider headers

DAILY_429 = json.dumps(
    {
        "error": {
            "message": "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day",
            "code": 429,
            "metadata": {
                "headers": {
                    "X-RateLimit-Limit": "50",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(MIDNIGHT * 1000)),
                },
                "provider_name": None,
            },
        },
        "user_id": "user_test",
    }
)
HIGH_BALANCE_429 = json.dumps(
    {
        "error": {
            "message": "Rate limit exceeded: free-models-per-day-high-balance. ",
            "type": "rate_limit_error",
            "code": "429",
        }
    }
)
MINUTE_429 = json.dumps(
    {
        "error": {
            "message": "Rate limit exceeded: free-models-per-min. Add 10 credits to unlock 1000 free model requests per day",
            "code": 429,
            "metadata": {
                "headers": {
                    "X-RateLimit-Limit": "20",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int((T0 + 40) * 1000)),
                }
            },
        }
    }
)
UPSTREAM_429 = json.dumps(
    {
        "error": {
            "message": "Provider returned error",
            "code": 429,
            "metadata": {
                "raw": "vendor/free-model:free is temporarily rate-limited upstream. Please retry shortly",
                "provider_name": "Venice",
                "headers": {"Retry-After": "17"},
            },
        }
    }
)
DAILY_SOURCE_429 = json.dumps(
    {
        "error": {
            "message": "Rate limit exceeded: free-models-per-day-high-balance. ",
            "code": 429,
            "metadata": {"limit_source": "openrouter_free_tier_daily"},
        }
    }
)
OPENAI_QUOTA_429 = json.dumps(
    {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
)


@pytest.mark.parametrize(
    "headers, body, expected",
    [
        ({}, DAILY_429, Verdict("quota", MIDNIGHT, "Rate limit exceeded: free-models-per-day")),
        ({}, HIGH_BALANCE_429, Verdict("quota", MIDNIGHT, "Rate limit exceeded: free-models-per-day-high-balance")),
        ({}, DAILY_SOURCE_429, Verdict("quota", MIDNIGHT, "Rate limit exceeded: free-models-per-day-high-balance")),
        (
            {},
            OPENAI_QUOTA_429,
            Verdict("quota", T0 + 3600, "You exceeded your current quota, please check your plan and billing details"),
        ),
        ({}, MINUTE_429, Verdict("retry", T0 + 40, "Rate limit exceeded: free-models-per-min")),
        ({}, UPSTREAM_429, Verdict("retry", T0 + 17, "Provider returned error")),
        (
            {"Retry-After": "3600"},
            "",
            Verdict("quota", T0 + 3600, "Retry-After 3600s is longer than the retry budget of 300s"),
        ),
        ({"Retry-After": "20"}, "", Verdict("retry", T0 + 20, "HTTP 429")),
        (
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((T0 + 600) * 1000))},
            "",
            Verdict("quota", T0 + 600, "HTTP 429"),
        ),
        (
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(T0 + 200))},
            "",
            Verdict("retry", T0 + 200, "HTTP 429"),
        ),
        ({}, "<html>Too Many Requests</html>", Verdict("retry", None, "<html>Too Many Requests</html>")),
    ],
)
def test_a_429_is_a_quota_only_when_it_cannot_be_waited_out_within_the_retry_budget(headers, body, expected):
    assert classify_rate_limit(429, headers, body, retry_budget_s=300, now=T0) == expected


def test_the_retry_budget_decides_a_long_reset():
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int((T0 + 600) * 1000))}
    assert classify_rate_limit(429, headers, "", retry_budget_s=900, now=T0).kind == "retry"
    assert classify_rate_limit(503, {"Retry-After": "3600"}, "", retry_budget_s=300, now=T0).kind == "retry"


def test_the_quota_message_names_the_pool_the_resume_time_and_the_reason():
    assert quota_message("free", MIDNIGHT, "Rate limit exceeded: free-models-per-day", now=T0, tz=UTC) == (
        "quota: free paused, resume after 00:00 (Rate limit exceeded: free-models-per-day)"
    )
    assert quota_message("paid", MIDNIGHT + 86400 * 2, "billing", now=T0, tz=UTC) == (
        "quota: paid paused, resume after 2026-09-03 00:00 (billing)"
    )


def test_a_daily_429_pauses_the_pool_for_every_process_and_acquire_refuses(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock, free=PoolRates(requests_per_minute=20))
    verdict = rates.record(rates.acquire("free"), 429, {}, DAILY_429)
    assert verdict == Verdict("quota", MIDNIGHT, "Rate limit exceeded: free-models-per-day")
    another = limiter(tmp_path, clock, free=PoolRates(requests_per_minute=20))
    with pytest.raises(PoolPaused) as caught:
        another.acquire("free")
    assert (caught.value.until, caught.value.reason) == (MIDNIGHT, "Rate limit exceeded: free-models-per-day")
    assert another.acquire("paid").at == T0  # the other pools go on
    another.resume("free")
    assert rates.paused("free") is None


def test_a_short_reset_or_retry_after_holds_the_pool_for_every_process(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock, free=PoolRates(requests_per_minute=20))
    assert rates.record(rates.acquire("free"), 429, {}, MINUTE_429).kind == "retry"
    another = limiter(tmp_path, clock, free=PoolRates(requests_per_minute=20))
    assert another.status("free").hold_until == T0 + 40
    assert another.acquire("free").at == T0 + 40  # until X-RateLimit-Reset (epoch ms, from the error body)
    assert rates.record(rates.acquire("free"), 429, {"Retry-After": "7"}, "").kind == "retry"
    assert another.acquire("free").at == T0 + 47


def test_a_success_that_used_the_last_request_of_the_day_pauses_the_pool(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock)
    headers = {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(MIDNIGHT * 1e3))}
    assert rates.record(rates.acquire("free"), 200, headers) == Verdict(
        "quota", MIDNIGHT, "X-RateLimit-Remaining 0 until the provider's reset"
    )
    assert rates.paused("free") == (MIDNIGHT, "X-RateLimit-Remaining 0 until the provider's reset")
    headers["X-RateLimit-Remaining"] = "1"
    assert rates.record(rates.acquire("paid"), 200, headers) is None


# -------------------------------------------------------------------------------------------- adaptive rate


def test_repeated_429s_halve_the_rate_once_per_round_down_to_one_and_successes_bring_it_back(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock, free=PoolRates(requests_per_minute=20))
    lone = rates.acquire("free")
    rates.record(lone, 429, {}, "")
    rates.record(rates.acquire("free"), 200, {}, "")
    assert rates.status("free").effective_per_window == 20  # a lone 429 among answers lowers nothing
    sent_together = [rates.acquire("free") for _ in range(3)]
    for permit in sent_together:  # three 429s in a row for requests sent under the same rate: one decrease
        rates.record(permit, 429, {}, "")
    assert rates.status("free").effective_per_window == 10
    halvings = []
    for _ in range(5):
        clock.now += 61
        rates.record(rates.acquire("free"), 429, {}, "")
        halvings.append(rates.status("free").effective_per_window)
    assert halvings == [5, 2.5, 1.25, 1, 1]
    rises = []
    for _ in range(3):
        clock.now += 61
        rates.record(rates.acquire("free"), 200, {}, "")
        rises.append(rates.status("free").effective_per_window)
    assert rises == pytest.approx([2, 2.5, 2.9])
    for _ in range(400):
        rates.record(rates.acquire("free"), 200, {}, "")
        clock.now += 61
    status = rates.status("free")
    assert (status.effective_per_window, status.configured_per_window) == (20, 20)


def test_the_lowered_rate_is_what_acquire_enforces(tmp_path):
    clock = FakeClock()
    rates = limiter(tmp_path, clock, free=PoolRates(requests_per_minute=4))
    permits = [rates.acquire("free") for _ in range(4)]
    rates.record(permits[-2], 429, {}, "")
    rates.record(permits[-1], 429, {}, "")
    clock.now = T0 + 61
    assert [rates.acquire("free").at - T0 for _ in range(3)] == [61, 61, 121]


def test_a_pool_without_a_configured_rate_follows_the_providers_word_not_a_guess(tmp_path):
    """A fast pool that draws 429s is not throttled to half of what its last minute held (a burst of a fast run would
    then crawl for minutes); what the provider says it allows is what holds it."""
    clock = FakeClock()
    rates = limiter(tmp_path, clock)
    permits = [rates.acquire("paid") for _ in range(6)]
    for permit in permits[-3:]:
        rates.record(permit, 429, {}, "")
    assert rates.status("paid").effective_per_window is None
    assert rates.acquire("paid").waited_s == 0
    rates.record(permits[0], 429, {"Retry-After": "20"}, "")
    assert rates.acquire("paid").at == T0 + 20
