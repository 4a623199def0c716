"""daydream_luigi.providers.chat against a real loopback FakeEndpoint: retries, fault handling, key hygiene."""

from __future__ import annotations

import email.utils
import errno
import hashlib
import json
import logging
import os
import threading
import time

import pytest
import requests
from conftest import free_port
from fake_endpoint import DEFAULT_RANDOM_FAULTS, FakeEndpoint, draft_answer, judge_answer

from daydream_luigi.providers import chat, http_errors
from daydream_luigi.providers.chat import CallSettings, Completion, LLMError, RetryPolicy, chat_completion

MODEL = "test/model"
KEY = "fake-or-v1-TESTKEY-abcdef0123456789"
FAST = RetryPolicy(max_attempts=6, max_total_seconds=30.0, backoff_base=0.01, backoff_max=0.05)
PROMPT = "Combine tidal energy with beekeeping and write an essay"


@pytest.fixture(scope="module")
def server():
    with FakeEndpoint(hang_seconds=1.0) as ep:
        yield ep


@pytest.fixture
def ep(server):
    server.reset_stats()
    yield server
    server.reset_stats()


def call(ep, prompt=PROMPT, key=KEY, settings=None, retry=FAST, **kw) -> Completion:
    return chat_completion(ep.base_url, key, MODEL, prompt, settings=settings or CallSettings(), retry=retry, **kw)


def outcomes(attempts):
    return [a["outcome"] for a in attempts]


# --- the happy path -----------------------------------------------------------------------


def test_ok_parses_text_tokens_and_cost(ep):
    c = call(ep, prompt="one two three four five")
    expected = draft_answer("one two three four five")
    assert c.text == expected
    assert c.finish_reason == "stop"
    assert c.model == MODEL
    assert c.prompt_tokens == 5
    assert c.completion_tokens == len(expected.split())
    assert c.cost == pytest.approx(1e-6 * (5 + len(expected.split())))
    assert c.latency_s >= 0
    assert outcomes(c.attempts) == ["ok"]
    assert [sorted(a) for a in c.attempts] == [["elapsed_s", "n", "outcome", "wait_s"]]
    assert c.attempts[0]["n"] == 1 and c.attempts[0]["wait_s"] == 0.0
    assert ep.stats == {
        "requests": 1,
        "completed_ok": 1,
        "max_concurrent": 1,
        "by_model": {MODEL: 1},
        "faults_served": {},
    }


def test_the_answer_is_handed_over_after_its_record_and_before_the_reply_bookkeeping_even_when_that_fails(ep):
    """A caller keeps the answer before the bookkeeping of its reply (which may raise, e.g. a quota that pauses the
    pool): a process killed or stopped there has already kept what it paid for."""
    events = []

    def bookkeeping(n, reply):
        events.append(("reply", n))
        raise RuntimeError("pool paused")

    with pytest.raises(RuntimeError, match="pool paused"):
        call(
            ep,
            prompt="one two",
            on_attempt=lambda record: events.append((record["event"], record["n"])),
            on_answer=lambda answer: events.append(("answer", answer.text, outcomes(answer.attempts))),
            on_reply=bookkeeping,
        )
    assert events == [("sent", 1), ("answered", 1), ("answer", draft_answer("one two"), ["ok"]), ("reply", 1)]
    assert ep.stats["requests"] == 1


def test_judge_prompt_gets_deterministic_score(ep):
    prompt = "Rate the essay above. Finish with a line SCORE: N"
    c = call(ep, prompt=prompt)
    assert c.text == judge_answer(prompt)
    assert c.text.splitlines()[-1] == f"SCORE: {int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 10}"
    assert 2 <= len(c.text.splitlines()) - 1 <= 3


def test_draft_answer_shape_and_determinism(ep):
    a1, a2, b = call(ep, prompt="alpha beta gamma"), call(ep, prompt="alpha beta gamma"), call(ep, prompt="delta")
    assert a1.text == a2.text != b.text
    lines = [ln for ln in a1.text.splitlines() if ln.strip()]
    assert len(lines) >= 6
    assert '<essay-idea stage="1">' in a1.text and '<essay-idea stage="2">' in a1.text
    assert a1.text.count("</essay-idea>") == 2
    assert a1.text.count("<essay>") == 1 and a1.text.count("</essay>") == 1


def test_models_route(ep):
    r = requests.get(ep.base_url + "/models", timeout=5)
    assert r.status_code == 200 and r.json()["data"] == [{"id": "fake", "object": "model"}]


def test_shared_session_is_reused(ep):
    with requests.Session() as s:
        texts = [call(ep, prompt=f"p {i}", session=s).text for i in range(5)]
    assert texts == [draft_answer(f"p {i}") for i in range(5)]
    assert ep.stats["completed_ok"] == 5


# --- request body and headers ---------------------------------------------------------------


def test_body_minimal_by_default(ep):
    call(ep, settings=CallSettings(temperature=0.2, max_tokens=123))
    (req,) = ep.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["body"] == {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0.2,
        "max_tokens": 123,
    }  # no `usage: {include: true}`: OpenRouter documents it as deprecated, and OpenAI refuses it


def test_body_with_system_prompt_grammar_and_sampling(ep):
    s = CallSettings(system_prompt="You are terse.", grammar='root ::= "yes" | "no"', top_p=0.9, frequency_penalty=0.5)
    call(ep, settings=s)
    body = ep.requests[0]["body"]
    assert body["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}]
    assert body["grammar"] == 'root ::= "yes" | "no"'
    assert body["top_p"] == 0.9 and body["frequency_penalty"] == 0.5


def test_bearer_header_only_with_key(ep):
    call(ep, key=KEY)
    call(ep, key=None)
    call(ep, key="")
    call(ep, key=KEY + "\n")  # a stray newline from a .env file is stripped
    auth = [r["headers"].get("Authorization") for r in ep.requests]
    assert auth == [f"Bearer {KEY}", None, None, f"Bearer {KEY}"]


# --- transient faults: one retry, then success ----------------------------------------------

TRANSIENT = [
    ("429", "http_429"),
    ("500", "http_500"),
    ("502", "http_502"),
    ("503", "http_503"),
    ("504", "http_504"),
    ("html", "http_502"),
    ("reset", "connection"),
    ("malformed", "malformed_json"),
    ("no_choices", "no_choices"),
    ("empty", "empty_content"),
    ("timeout", "timeout"),
]


def test_transient_table_covers_default_random_faults():
    assert set(DEFAULT_RANDOM_FAULTS) <= {f for f, _ in TRANSIENT}


@pytest.mark.parametrize("fault,outcome", TRANSIENT)
def test_transient_fault_retried_then_ok(ep, fault, outcome):
    ep.script(fault)
    settings = CallSettings(read_timeout=0.3) if fault == "timeout" else CallSettings()
    c = call(ep, settings=settings)
    assert c.text == draft_answer(PROMPT)
    assert outcomes(c.attempts) == [outcome, "ok"]
    assert [a["n"] for a in c.attempts] == [1, 2]
    assert c.attempts[-1]["wait_s"] == 0.0
    assert 0.0 <= c.attempts[0]["wait_s"] <= FAST.backoff_base  # Retry-After: 0 or first backoff step
    stats = ep.stats
    assert (stats["requests"], stats["completed_ok"], stats["faults_served"]) == (2, 1, {fault: 1})


def test_several_faults_in_a_row(ep):
    ep.script("503", "reset", "empty", "429")
    c = call(ep)
    assert outcomes(c.attempts) == ["http_503", "connection", "empty_content", "http_429", "ok"]
    assert ep.stats["requests"] == 5


# --- Retry-After and backoff ------------------------------------------------------------------


def test_retry_after_seconds_beats_backoff(ep):
    # Backoff would wait up to 100 s; the server's "Retry-After: 0" must win.
    ep.script("429")
    c = call(ep, retry=RetryPolicy(backoff_base=100.0, backoff_max=100.0))
    assert c.attempts[0] == {"n": 1, "outcome": "http_429", "wait_s": 0.0, "elapsed_s": c.attempts[0]["elapsed_s"]}
    assert outcomes(c.attempts) == ["http_429", "ok"]


def test_retry_after_http_date_honoured(ep):
    ep.script("429-date")  # Retry-After is an HTTP date between 0.5 and 1.5 s ahead
    c = call(ep, retry=RetryPolicy(backoff_base=100.0, backoff_max=100.0))
    assert outcomes(c.attempts) == ["http_429", "ok"]
    assert 0.3 <= c.attempts[0]["wait_s"] <= 1.5


def test_parse_retry_after():
    p = http_errors.parse_retry_after
    assert p(None) is None and p("soon") is None
    assert p("7") == 7.0 and p(" 2 ") == 2.0 and p("-3") == 0.0
    assert p(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert 100 <= p(email.utils.formatdate(time.time() + 120, usegmt=True)) <= 120


def test_retry_after_beyond_budget_gives_up(ep):
    ep.script("429-date")
    with pytest.raises(LLMError) as ei:
        call(ep, retry=RetryPolicy(max_total_seconds=0.1, backoff_base=0.01))
    e = ei.value
    assert e.retryable is True
    assert outcomes(e.attempts) == ["http_429"]
    prefix = f"LLM call to '{MODEL}' failed after 1 attempt (Retry-After of "
    suffix = "s exceeds the remaining retry budget); last outcome: http_429: HTTP 429: Rate limit exceeded (fake)"
    assert str(e).startswith(prefix) and str(e).endswith(suffix)
    assert ep.stats["requests"] == 1


class _MaxJitter:
    """Full jitter picks uniform(0, cap); this stub always picks the cap."""

    def uniform(self, a, b):
        return b


def test_backoff_is_exponential_and_capped(ep, monkeypatch):
    monkeypatch.setattr(chat, "_rng", _MaxJitter())
    ep.script("500", "502", "503", "504", "500")
    c = call(ep, retry=RetryPolicy(max_attempts=6, backoff_base=0.01, backoff_max=0.05))
    assert outcomes(c.attempts) == ["http_500", "http_502", "http_503", "http_504", "http_500", "ok"]
    assert [a["wait_s"] for a in c.attempts] == [0.01, 0.02, 0.04, 0.05, 0.05, 0.0]


def test_total_wait_bounded_by_budget(ep, monkeypatch):
    monkeypatch.setattr(chat, "_rng", _MaxJitter())
    ep.script("500", "500", "500", "500")
    with pytest.raises(LLMError) as ei:
        call(ep, retry=RetryPolicy(max_attempts=10, max_total_seconds=0.05, backoff_base=0.02, backoff_max=1.0))
    e = ei.value
    assert [a["wait_s"] for a in e.attempts] == [0.02, 0.03, 0.0]  # 0.02 + min(0.04, 0.03 left), then spent
    assert str(e) == (
        f"LLM call to '{MODEL}' failed after 3 attempts (retry budget of 0.05s spent); "
        "last outcome: http_500: HTTP 500: Internal server error (fake)"
    )
    assert e.retryable is True


# --- exhaustion and permanent errors -----------------------------------------------------------


def test_exhaustion_raises_retryable(ep):
    ep.script("503", "503", "503")
    with pytest.raises(LLMError) as ei:
        call(ep, retry=RetryPolicy(max_attempts=3, backoff_base=0.01))
    e = ei.value
    assert str(e) == (
        f"LLM call to '{MODEL}' failed after 3 attempts (retries exhausted); "
        "last outcome: http_503: HTTP 503: Service temporarily unavailable (fake)"
    )
    assert e.retryable is True and e.status == 503
    assert outcomes(e.attempts) == ["http_503"] * 3
    assert e.attempts[-1]["wait_s"] == 0.0
    assert ep.stats["requests"] == 3


def test_exhaustion_reports_last_outcome(ep):
    ep.script("500", "malformed")
    with pytest.raises(LLMError) as ei:
        call(ep, retry=RetryPolicy(max_attempts=2, backoff_base=0.01))
    assert str(ei.value) == (
        f"LLM call to '{MODEL}' failed after 2 attempts (retries exhausted); "
        "last outcome: malformed_json: HTTP 200 with a body that is not JSON"
    )


def test_401_fails_at_once_with_hint(ep):
    ep.script("401")
    with pytest.raises(LLMError) as ei:
        call(ep)
    e = ei.value
    assert str(e) == f"LLM call to '{MODEL}' failed: HTTP 401: No auth credentials found; check OPENROUTER_API_KEY"
    assert e.retryable is False and e.status == 401
    assert outcomes(e.attempts) == ["http_401"]
    assert ep.stats["requests"] == 1


def test_400_fails_at_once_with_hint(ep):
    ep.script("400")
    with pytest.raises(LLMError) as ei:
        call(ep)
    e = ei.value
    assert str(e) == (
        f"LLM call to '{MODEL}' failed: HTTP 400: fake-model is not a valid model ID; "
        "check the model string in data/1_raw/llm_models.csv and max_tokens"
    )
    assert e.retryable is False
    assert outcomes(e.attempts) == ["http_400"]
    assert ep.stats["requests"] == 1


def test_length_is_returned_not_raised(ep):
    ep.script("length")
    c = call(ep)
    full = draft_answer(PROMPT)
    assert c.finish_reason == "length"
    assert c.text and full.startswith(c.text) and c.text != full
    assert outcomes(c.attempts) == ["ok"]
    assert ep.stats["requests"] == 1


def test_connection_refused_retried_then_error():
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(LLMError) as ei:
        chat_completion(base, KEY, MODEL, PROMPT, retry=RetryPolicy(max_attempts=3, backoff_base=0.01))
    e = ei.value
    assert str(e) == (
        f"LLM call to '{MODEL}' failed after 3 attempts (retries exhausted); last outcome: "
        f"connection: [Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)} "
        f"({base}/chat/completions)"
    )
    assert e.retryable is True and e.status is None
    assert outcomes(e.attempts) == ["connection"] * 3


def test_invalid_base_url_is_permanent():
    with pytest.raises(LLMError) as ei:
        chat_completion("localhost:8080/v1", None, MODEL, PROMPT, retry=FAST)
    assert ei.value.retryable is False
    assert outcomes(ei.value.attempts) == ["request_error"]
    assert str(ei.value).endswith("; check base_url")


# --- the API key never leaks -------------------------------------------------------------------


def test_key_never_in_errors_or_logs(ep, caplog):
    caplog.set_level(logging.INFO, logger="daydream.llm")
    errors = []
    for script, retry in [(("401",), FAST), (("400",), FAST), (("503", "reset"), RetryPolicy(2, 10, 0.01, 0.01))]:
        ep.script(*script)
        with pytest.raises(LLMError) as ei:
            call(ep, retry=retry)
        errors.append(ei.value)
    # A base URL carrying the key (a plausible misconfiguration) is echoed in connection errors:
    # the final scrub must still catch it.
    base = f"http://127.0.0.1:{free_port()}/{KEY}/v1"
    with pytest.raises(LLMError) as ei:
        chat_completion(base, KEY, MODEL, PROMPT, retry=RetryPolicy(2, 10, 0.01, 0.01))
    errors.append(ei.value)
    assert "/***/v1/chat/completions" in str(ei.value)
    for e in errors:
        assert KEY not in str(e) and KEY not in repr(e) and KEY not in repr(e.attempts)
        assert "\n" not in str(e)
    assert caplog.records, "retries are logged"
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_provider_text_echoing_the_key_is_scrubbed_before_truncation():
    resp = requests.Response()
    resp.status_code = 401
    resp.headers["Content-Type"] = "application/json"
    # The key straddles the ~300-character cut: scrubbing must happen first.
    message = "x" * 290 + f" invalid key {KEY} rejected"
    resp._content = json.dumps({"error": {"message": message}}).encode()
    text = http_errors.provider_message(resp, KEY)
    assert "TESTKEY" not in text and "sk-or" not in text
    assert text == "x" * 290 + " invali..."  # 297 characters + "..."


# --- concurrency ------------------------------------------------------------------------------


def test_max_concurrent_measured():
    n = 60
    barrier = threading.Barrier(n)
    results: list[str] = [""] * n
    errors: list[BaseException] = []

    def worker(i):
        try:
            barrier.wait(timeout=10)
            results[i] = chat_completion(slow.base_url, None, MODEL, f"prompt {i}", retry=FAST).text
        except BaseException as e:
            errors.append(e)

    with FakeEndpoint(latency=0.5) as slow:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        stats = slow.stats
    assert errors == []
    assert results == [draft_answer(f"prompt {i}") for i in range(n)]
    assert stats["requests"] == n and stats["completed_ok"] == n
    assert stats["max_concurrent"] == n
