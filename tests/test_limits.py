"""Providers as they really are, through the real CLI, Luigi's forked task processes and a loopback endpoint that
enforces limits: pool rates below the provider's get no 429, its X-RateLimit headers are honoured, a daily quota
pauses its pool (one message, work left pending, exit 3) and the next runs make only the rest, repeated 429s lower a
pool's rate, the spending stop, and the circuit breaker when the server goes away mid-run."""

import json
import os
import re
import subprocess
import sys
import threading
import time

import requests
from conftest import daydream
from fake_endpoint import FakeEndpoint
from test_execution import sent_per_generation, set_luigi, set_settings

from daydream_luigi.providers.limits.ratelimit import RateLimiter

MODEL_CALLS = 6 + 6 + 24  # the conftest cohort; its copy essays make no call
FREE_MODEL = "vendor/free:free"


def test_the_fake_endpoint_enforces_its_window_and_quota_with_ratelimit_headers():
    with FakeEndpoint(rate_limit=(2, 30.0), quotas={"judge": 1}) as server:
        url = server.base_url + "/chat/completions"

        def ask(model):
            return requests.post(url, json={"model": model, "messages": [{"role": "user", "content": "hi"}]})

        answers = [ask("gen"), ask("gen"), ask("gen")]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
        assert answers[2].headers["X-RateLimit-Reset"] == answers[0].headers["X-RateLimit-Reset"]
        error = answers[2].json()["error"]
        assert error["message"] == "Rate limit exceeded: free-models-per-min."
        assert error["metadata"]["headers"]["X-RateLimit-Limit"] == "2"
        server.rate_limit = None
        assert [ask("judge").status_code, ask("judge").status_code] == [200, 429]
        assert ask("judge").json()["error"]["message"].startswith("Rate limit exceeded: free-models-per-day.")
        assert server.stats["faults_served"] == {"rate_limit": 1, "quota": 2}


def test_a_pool_rate_below_the_providers_limit_gets_no_429(project, monkeypatch):
    """The provider takes 3 requests a second; the pool is set to 2 per rate window (1 s, plus the 1 s margin)."""
    set_settings(project, lambda s: s["pools"].update(paid={"requests_per_minute": 2}))
    monkeypatch.setenv("DAYDREAM_RATE_WINDOW_S", "1")
    with FakeEndpoint(rate_limit=(3, 1.0)) as server:
        result = daydream("run", "--stage", "draft", env={"DAYDREAM_LLM_BASE_URL": server.base_url})
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.stats["requests"] == server.stats["completed_ok"] == 6
        assert server.stats["faults_served"] == {}
    state = json.loads((project / "data" / ".ratelimit" / "paid.json").read_text())  # one window for every process
    assert state["day_count"] == 6


def test_the_providers_ratelimit_headers_are_honoured(project):
    """No rate configured: the provider's X-RateLimit-Remaining 0 and -Reset make every worker process wait."""
    set_luigi(project, paid=1)
    with FakeEndpoint(rate_limit=(2, 1.0)) as server:
        result = daydream("run", "--stage", "draft", env={"DAYDREAM_LLM_BASE_URL": server.base_url})
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.stats["requests"] == 6 and server.stats["faults_served"] == {}


def quota_message_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("quota: ")]


def test_a_daily_quota_pauses_its_pool_and_a_run_after_the_pause_finishes_the_rest(project):
    """The judge is a free model with 2 requests left today: the third answer is a daily-quota 429 (its reset an hour
    away)."""
    raw = project / "data" / "1_raw" / "llm_models.csv"
    raw.write_text(
        raw.read_text()
        .replace("Judge,false,true,paid", "Judge,false,false,paid")
        .replace("Free,false,false,free", "Free,false,true,free")
    )
    set_settings(project, lambda s: s["pools"].update(free={"requests_per_minute": 100}))
    with FakeEndpoint(quotas={FREE_MODEL: 2}, quota_reset_s=3600.0) as server:
        env = {"DAYDREAM_LLM_BASE_URL": server.base_url}
        first = daydream("run", env=env)
        assert first.returncode == 3, first.stdout + first.stderr
        [message] = quota_message_lines(first.stderr)
        assert re.fullmatch(
            r"quota: free paused, resume after \d\d:\d\d \(Rate limit exceeded: "
            r"free-models-per-day\)",
            message,
        )
        assert quota_message_lines(first.stdout) == [message]  # the summary says it once more, nothing else does
        assert "done 20, skipped (already complete) 0, failed 0, blocked 0, not started 22" in first.stdout
        assert "failed " not in first.stderr and "Traceback" not in first.stdout + first.stderr
        assert server.stats["by_model"] == {"vendor/gen-model": 12, FREE_MODEL: 3}  # the paid pool went on
        assert not list((project / "data" / "gens" / "evaluation").glob("*/error.json"))  # pending, not failed

        second = daydream("run", env=env)  # still paused: the free model is not asked at all
        assert second.returncode == 3 and quota_message_lines(second.stderr) == [message]
        assert "done 0, skipped (already complete) 20, failed 0, blocked 0, not started 22" in second.stdout
        assert server.stats["by_model"][FREE_MODEL] == 3

        server.quotas[FREE_MODEL] = 100  # credits were bought: the provider allows more, and the pause is lifted
        RateLimiter(project / "data" / ".ratelimit", {}).resume("free")
        third = daydream("run", env=env)
        assert third.returncode == 0, third.stdout + third.stderr
        assert "done 22, skipped (already complete) 20, failed 0, blocked 0, not started 0" in third.stdout
        assert server.stats["by_model"] == {"vendor/gen-model": 12, FREE_MODEL: 3 + 22}
    sent = sent_per_generation(project)
    assert sum(sent.values()) == 12 + 25 and max(sent.values()) == 2  # the refused evaluation was asked again once


def test_repeated_429s_lower_the_pools_rate_and_the_summary_shows_it(project, endpoint):
    set_settings(project, lambda s: s["pools"].update(paid={"requests_per_minute": 1000}))
    endpoint.script("429", "ok", "429", "429", "429")  # a lone 429, then one generation refused three times in a row
    result = daydream("run", "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    rate = float(
        re.search(r"^pool paid: ([\d.]+)/min \(lowered after 429s, configured 1000/min\)$", result.stdout, re.M)[1]
    )
    assert 250 < rate < 251  # halved at the second and third 429 in a row (1000 -> 250), recovering +1/rate an answer
    assert endpoint.stats["requests"] == MODEL_CALLS + 4


def test_the_spending_stop_keeps_what_was_paid_and_a_later_run_makes_only_the_rest(project, endpoint):
    first = daydream("run", "--workers", "1", "--max-cost", "0.004")
    assert first.returncode == 1, first.stdout + first.stderr
    made = endpoint.stats["requests"]
    assert 0 < made < MODEL_CALLS
    costs = [json.loads(p.read_text())["cost"] for p in (project / "data" / "gens").glob("*/*/call.json")]
    assert len(costs) == made and sum(costs) <= 0.004
    summary = first.stdout
    assert f"requests sent {made}, answers received {made}," in summary
    assert re.search(rf"^spent \${sum(costs):.4f}, remaining \$[\d.]+ of --max-cost \$0.004$", summary, re.M)
    [reached] = [line for line in summary.splitlines() if line.startswith("budget reached: ")]
    assert reached.endswith("did not fit, so no new call starts in this run") and "failed " not in first.stderr
    pending = int(re.search(r"not started (\d+)$", summary, re.M)[1])
    assert pending > 0 and "failed 0, blocked 0" in summary

    second = daydream("run", "--max-cost", "1")
    assert second.returncode == 0, second.stdout + second.stderr
    assert endpoint.stats["requests"] == MODEL_CALLS  # only the calls left
    assert f"done {pending}," in second.stdout and "budget reached" not in second.stdout
    assert max(sent_per_generation(project).values()) == 1


def test_an_unreachable_provider_stops_its_pool_with_one_message(project):
    """The server answers the preflight and the first calls, then goes away: nothing listens on its port any more."""
    set_settings(project, lambda s: s["retry"].update(backoff_base=0.01, backoff_max=0.02))
    out, err = project / "run.out", project / "run.err"
    with FakeEndpoint(latency=0.3) as server:
        base_url = server.base_url
        with open(out, "w") as stdout, open(err, "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "daydream_luigi", "run"],
                stdout=stdout,
                stderr=stderr,
                env={**os.environ, "DAYDREAM_LLM_BASE_URL": server.base_url},
            )
        deadline = time.monotonic() + 120
        while server.stats["completed_ok"] < 3:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        threading.Thread(target=server.stop).start()
        assert process.wait(timeout=120) == 1
        answered = server.stats["completed_ok"]
    stdout, stderr = out.read_text(), err.read_text()
    unreachable = rf"provider openrouter at {re.escape(base_url)} is unreachable: 5 connection failures in a row"
    assert len(re.findall(unreachable, stderr)) == 1 and len(re.findall(unreachable, stdout)) == 1
    assert not re.search(r"^failed ", stderr, re.M) and "Traceback" not in stdout + stderr
    pending = int(re.search(r"not started (\d+)$", stdout, re.M)[1])
    assert pending >= 42 - 6 - answered  # every other generation waits for a run that can reach the provider
    attempts = [
        json.loads(line)
        for p in (project / "data" / "gens").glob("*/*/attempts.jsonl")
        for line in p.read_text().splitlines()
    ]
    unanswered = sum(a["event"] == "failed" for a in attempts)
    assert unanswered <= 5 + 5  # the breaker's 5, and at most one more per call in flight (paid = 5), not 6 each
    assert not list((project / "data" / "gens").glob("*/*/error.json"))
