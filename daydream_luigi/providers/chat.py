"""The one HTTP client for every chat provider.

OpenRouter, any OpenAI-compatible server (vLLM, Ollama, LM Studio, ...) and the
embedded llama.cpp server all take the same ``POST {base_url}/chat/completions``
request, so one function with one small retry loop serves them all:

* transient faults (429, 5xx, HTML error pages, refused/reset connections, read
  timeouts, 200 responses with broken JSON, no ``choices`` or empty content) are
  retried with exponential backoff and full jitter (``Retry-After`` wins when the
  server sends it), bounded by ``RetryPolicy.max_attempts`` and by the total time
  spent waiting (``RetryPolicy.max_total_seconds``);
* configuration problems (400, 401, 403 and other non-retryable 4xx) fail at once
  with a one-line message and a hint;
* every error message and log line is scrubbed of the API key;
* an ``on_attempt`` callback hears of every request before it is sent and of its outcome after, so the caller can
  keep a record that adds up to what the provider received (and refuse to send when the record cannot be written,
  or when a rate limit, quota, breaker or budget says no);
* an ``on_reply`` callback gets what each attempt got back (status, headers, the key-free body, whether a connection
  was made at all), for rate limits and circuit breakers; it is never written anywhere.

``finish_reason == "length"`` is returned as a normal :class:`Completion`; the
caller decides whether a truncated answer is acceptable.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from daydream_luigi.core.settings import RetryPolicy
from daydream_luigi.providers.http_errors import (
    connection_cause,
    error_text,
    http_failure,
    is_connection_failure,
    one_line,
    parse_retry_after,
    scrub,
)

__all__ = [
    "CallSettings",
    "RetryPolicy",
    "Completion",
    "LLMError",
    "Reply",
    "answer_of",
    "chat_completion",
    "request_body",
]

log = logging.getLogger("daydream.llm")

# Jitter source; a module attribute so tests can seed or replace it.
_rng = random.Random()

# 4xx statuses that are worth retrying; every other 4xx is a permanent (config) error.
_RETRYABLE_4XX = {408, 409, 425, 429}
# Statuses whose Retry-After header we honour.
_RETRY_AFTER_STATUSES = {429, 503}

_HINTS = {
    400: "check the model string in data/1_raw/llm_models.csv and max_tokens",
    401: "check OPENROUTER_API_KEY",
    402: "check the OpenRouter account credits",
    403: "check OPENROUTER_API_KEY",
    404: "check the base URL and the model string in data/1_raw/llm_models.csv",
    413: "the prompt is too large for this endpoint",
    422: "check the model string in data/1_raw/llm_models.csv and max_tokens",
}


@dataclass(frozen=True)
class CallSettings:
    temperature: float = 0.7
    max_tokens: int = 800
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    top_p: float | None = None
    frequency_penalty: float | None = None
    grammar: str | None = None  # llama.cpp GBNF; sent as body["grammar"] only when not None
    system_prompt: str | None = None  # when set, a system message precedes the user message
    seed: int | None = None  # sampling seed; sent only when set (the embedded server honours it)
    dialect: str = "openrouter"  # which API's documented fields the request uses (`request_body`)
    reasoning: dict | None = None  # the model's reasoning settings (core.model_options), sent only when set
    routing: dict | None = None  # OpenRouter's provider preferences (core.model_options), sent only when set


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    model: str  # the model string sent
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None  # provider-reported usage.cost when present
    latency_s: float  # wall time of the successful attempt
    attempts: list[dict] = field(default_factory=list)  # {"n", "outcome", "wait_s", "elapsed_s"}
    reasoning: str | None = None  # the model's thinking, kept apart from the answer (None: it showed none)
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens, when reported
    served_by: str | None = None  # the upstream host OpenRouter routed the call to (the answer's `provider`)


@dataclass(frozen=True)
class Reply:
    """What one attempt got back, for whoever throttles calls (rate limits, breaker, budget). Held in memory only; the
    body is scrubbed of the key."""

    status: int | None  # None: no HTTP response at all
    headers: dict = field(default_factory=dict)
    body: str = ""  # of an error response (a limit's details live there); empty for an answer
    no_connection: bool = False  # no connection was made: refused, unresolvable host, connect timeout
    cause: str = ""  # one line, key-free
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None


class LLMError(Exception):
    """Permanent failure: the message is one line, names the model and the cause, never contains the API key."""

    def __init__(
        self, message: str, attempts: list[dict] | None = None, retryable: bool = False, status: int | None = None
    ):
        super().__init__(message)
        self.attempts: list[dict] = list(attempts or [])
        self.retryable: bool = retryable  # False: config problem; True: transient retries exhausted
        self.status: int | None = status  # HTTP status of the last response, if any


class _Attempt(Exception):
    """Internal: one failed attempt. ``outcome`` goes into the attempts log."""

    def __init__(
        self,
        outcome: str,
        detail: str,
        *,
        reply: Reply,
        permanent: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        usage: dict | None = None,
    ):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        self.usage = usage or {}  # a 200 without a usable answer may still report (billed) tokens
        self.reply = reply


def _backoff(policy: RetryPolicy, failures: int) -> float:
    cap = min(policy.backoff_max, policy.backoff_base * (2 ** (failures - 1)))
    return _rng.uniform(0.0, max(0.0, cap))


def request_body(model: str, prompt: str, s: CallSettings) -> dict[str, Any]:
    """The chat-completions request body (also what a batch request carries), with only the fields its dialect's API
    documents:

    openrouter         OpenRouter's fields (https://openrouter.ai/docs/api-reference/chat-completion): max_tokens, and
                       `reasoning` and `provider` (routing) when set; not `usage: {include: true}`, which OpenRouter
                       documents as deprecated and without effect (usage and cost come in every answer:
                       https://openrouter.ai/docs/use-cases/usage-accounting).
    openai             OpenAI's (https://platform.openai.com/docs/api-reference/chat/create): max_completion_tokens
                       (max_tokens is deprecated and refused by its reasoning models), reasoning_effort; nothing of
                       OpenRouter's, which OpenAI answers with a 400 "Unrecognized request argument supplied".
    openai-compatible  the standard chat fields vLLM, Ollama and llama.cpp's server take (max_tokens), plus the
                       llama.cpp `grammar` the embedded backend adds.
    """
    messages = []
    if s.system_prompt is not None:
        messages.append({"role": "system", "content": s.system_prompt})
    messages.append({"role": "user", "content": prompt})
    limit = "max_completion_tokens" if s.dialect == "openai" else "max_tokens"
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": s.temperature, limit: s.max_tokens}
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.frequency_penalty is not None:
        body["frequency_penalty"] = s.frequency_penalty
    if s.grammar is not None:
        body["grammar"] = s.grammar
    if s.seed is not None:
        body["seed"] = s.seed
    if s.reasoning:
        if s.dialect == "openai":
            body["reasoning_effort"] = s.reasoning["effort"]
        else:
            body["reasoning"] = dict(s.reasoning)
    if s.routing:
        body["provider"] = dict(s.routing)
    return body


def _int_or_none(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _attempt(
    session: requests.Session,
    url: str,
    headers: dict,
    body: dict,
    model: str,
    s: CallSettings,
    api_key: str | None,
    started: float,
) -> tuple[Completion, Reply]:
    """One HTTP round trip. Returns a Completion with its Reply, or raises _Attempt (whose detail is key-free)."""
    shown_url = scrub(url, api_key)  # for messages only

    def unanswered(outcome: str, detail: str, exc: Exception, **kwargs) -> _Attempt:
        return _Attempt(
            outcome, detail, reply=Reply(None, no_connection=is_connection_failure(exc), cause=detail), **kwargs
        )

    try:
        resp = session.post(url, headers=headers, json=body, timeout=(s.connect_timeout, s.read_timeout))
    except requests.exceptions.ConnectTimeout as e:
        raise unanswered("timeout", f"connect timed out after {s.connect_timeout:g}s ({shown_url})", e) from None
    except requests.exceptions.Timeout as e:
        raise unanswered("timeout", f"read timed out after {s.read_timeout:g}s", e) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
        raise unanswered("connection", f"{connection_cause(e, api_key)} ({shown_url})", e) from None
    except requests.exceptions.InvalidHeader as e:  # its text would quote the Authorization header
        raise unanswered(
            "request_error", "invalid request header (stray characters in the API key?)", e, permanent=True
        ) from None
    except (
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidURL,
    ) as e:  # a config problem: retrying cannot help
        raise unanswered(
            "request_error", f"{type(e).__name__}: {one_line(scrub(str(e), api_key), 200)}", e, permanent=True
        ) from None
    except requests.exceptions.RequestException as e:  # e.g. a corrupt compressed body
        raise unanswered("connection", f"{type(e).__name__}: {one_line(scrub(str(e), api_key), 200)}", e) from None

    status = resp.status_code
    received = dict(resp.headers)
    if not 200 <= status < 300:
        retryable = status >= 500 or status in _RETRYABLE_4XX
        retry_after = parse_retry_after(resp.headers.get("Retry-After")) if status in _RETRY_AFTER_STATUSES else None
        detail = http_failure(resp, api_key)
        raise _Attempt(
            f"http_{status}",
            detail,
            permanent=not retryable,
            status=status,
            retry_after=retry_after,
            reply=Reply(status, received, scrub(resp.text or "", api_key), cause=detail),
        )

    try:
        data = resp.json()
    except ValueError:
        detail = f"HTTP {status} with a body that is not JSON"
        raise _Attempt("malformed_json", detail, status=status, reply=Reply(status, received, cause=detail)) from None
    return _completion(data, status, received, model, started)


def _completion(data: Any, status: int, received: dict, model: str, started: float) -> tuple[Completion, Reply]:
    """The answer in a chat-completions JSON body, or _Attempt when it has none (no choices, empty content)."""

    def unusable(outcome: str, detail: str, usage: dict | None = None) -> _Attempt:
        return _Attempt(
            outcome, detail, status=status, usage=usage, reply=Reply(status, received, cause=detail, **(usage or {}))
        )

    if not isinstance(data, dict):
        raise unusable("malformed_json", f"HTTP {status} with a JSON {type(data).__name__}, not an object")
    usage = _usage(data)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        err = data.get("error")
        why = f": {one_line(err.get('message', ''))}" if isinstance(err, dict) and err.get("message") else ""
        raise unusable("no_choices", f"HTTP {status} without choices{why}", usage)

    choice = choices[0]
    finish_reason = choice.get("finish_reason")
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    text, reasoning = split_thinking(content if isinstance(content, str) else "")
    shown = message.get("reasoning") or message.get("reasoning_content")  # OpenRouter's; vLLM's and llama.cpp's
    if isinstance(shown, str) and shown.strip():
        reasoning = shown if reasoning is None else shown + "\n" + reasoning
    # Empty content is retried, except when the token budget ran out: that is the
    # caller's call (same as any other finish_reason == "length").
    if not text.strip() and finish_reason != "length":
        raise unusable("empty_content", f"HTTP {status} with empty content (finish_reason={finish_reason})", usage)

    completion = Completion(
        text=text,
        finish_reason=finish_reason,
        model=model,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        cost=usage["cost"],
        latency_s=time.perf_counter() - started,
        reasoning=reasoning,
        reasoning_tokens=_reasoning_tokens(data),
        served_by=data["provider"] if isinstance(data.get("provider"), str) else None,
    )
    return completion, Reply(status, received, **usage)


_THINKING = re.compile(r"^\s*<think>(.*?)(?:</think>\s*|\Z)", re.S)  # unclosed: cut while still thinking


def split_thinking(content: str) -> tuple[str, str | None]:
    """(answer, thinking) of a content that opens with `<think>...</think>` (DeepSeek R1 and its distills served by
    vLLM or llama.cpp without a reasoning parser), else (content, None)."""
    match = _THINKING.match(content)
    if match is None:
        return content, None
    return content[match.end() :], match.group(1).strip()


def _reasoning_tokens(data: dict) -> int | None:
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    details = usage.get("completion_tokens_details")
    return _int_or_none(details.get("reasoning_tokens")) if isinstance(details, dict) else None


def answer_of(data: Any, model: str) -> Completion:
    """The answer in a chat-completions response body that arrived another way (a batch's result); LLMError (one
    line) when it holds none."""
    try:
        return _completion(data, 200, {}, model, time.perf_counter())[0]
    except _Attempt as fail:
        raise LLMError(f"the batch's answer is unusable: {fail.detail}", retryable=True, status=200) from None


def _usage(data: dict) -> dict:
    """prompt_tokens, completion_tokens and cost (provider-reported usage.cost) of a response; None when absent."""
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    cost = usage.get("cost")
    return {
        "prompt_tokens": _int_or_none(usage.get("prompt_tokens")),
        "completion_tokens": _int_or_none(usage.get("completion_tokens")),
        "cost": float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None,
    }


def chat_completion(
    base_url: str,
    api_key: str | None,
    model: str,
    prompt: str,
    settings: CallSettings = CallSettings(),
    retry: RetryPolicy = RetryPolicy(),
    session: requests.Session | None = None,
    on_attempt: Callable[[dict], None] | None = None,
    on_reply: Callable[[int, Reply], None] | None = None,
    on_answer: Callable[[Completion], None] | None = None,
) -> Completion:
    """Send one chat request, retrying transient faults; raise LLMError on permanent failure.

    Pass a ``session`` to reuse connections across calls (one per thread is safest);
    without one a private session is opened and closed around this call. ``on_attempt`` is called with
    ``{"event": "sent", "n"}`` before each request (an exception from it means the request is not sent) and with
    ``{"event": "answered" | "failed", "n", "outcome", "status", "elapsed_s", tokens, cost}`` after it.
    ``on_reply(n, Reply)`` is called after that outcome; an exception from it ends the call (e.g. a quota that
    pauses the pool) and propagates. ``on_answer(Completion)`` is called with the answer right after its "answered"
    record and before ``on_reply``, so that a caller keeps it before any bookkeeping (a process killed in between
    would lose an answer that was paid for).
    """
    report = on_attempt or (lambda record: None)
    hear = on_reply or (lambda n, reply: None)
    api_key = api_key.strip() if api_key else None  # a stray newline from a .env file is common
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    body = request_body(model, prompt, settings)
    max_attempts = max(1, int(retry.max_attempts))

    own_session = session is None
    sess = requests.Session() if own_session else session
    attempts: list[dict] = []
    waited = 0.0
    try:
        n = 0
        while True:
            n += 1
            report({"event": "sent", "n": n})
            started = time.perf_counter()
            try:
                result, reply = _attempt(sess, url, headers, body, model, settings, api_key, started)
            except _Attempt as fail:
                record = {
                    "n": n,
                    "outcome": fail.outcome,
                    "wait_s": 0.0,
                    "elapsed_s": round(time.perf_counter() - started, 4),
                }
                attempts.append(record)
                report(
                    {
                        "event": "failed",
                        "n": n,
                        "outcome": fail.outcome,
                        "status": fail.status,
                        "elapsed_s": record["elapsed_s"],
                        **fail.usage,
                    }
                )
                hear(n, fail.reply)
                detail = scrub(fail.detail, api_key)
                if fail.permanent:
                    hint = _HINTS.get(fail.status or 0, "check base_url" if fail.status is None else "")
                    msg = f"LLM call to {model!r} failed: {detail}" + (f"; {hint}" if hint else "")
                    raise LLMError(error_text(msg, api_key), attempts, retryable=False, status=fail.status) from None

                give_up = None
                wait = 0.0
                if n >= max_attempts:
                    give_up = "retries exhausted"
                else:
                    left = retry.max_total_seconds - waited  # waiting budget still unspent
                    if fail.retry_after is not None:  # the server said how long; honour it or stop
                        wait = fail.retry_after
                        if wait > left:
                            give_up = f"Retry-After of {wait:.1f}s exceeds the remaining retry budget"
                    elif left <= 0:
                        give_up = f"retry budget of {retry.max_total_seconds:g}s spent"
                    else:
                        wait = min(_backoff(retry, n), left)
                if give_up is not None:
                    plural = "attempt" if n == 1 else "attempts"
                    msg = (
                        f"LLM call to {model!r} failed after {n} {plural} ({give_up}); "
                        f"last outcome: {fail.outcome}: {detail}"
                    )
                    raise LLMError(error_text(msg, api_key), attempts, retryable=True, status=fail.status) from None

                record["wait_s"] = round(wait, 4)
                log.info(
                    "%s",
                    scrub(
                        f"LLM call to {model!r}: attempt {n}/{max_attempts} {fail.outcome} "
                        f"({detail}); retrying in {wait:.2f}s",
                        api_key,
                    ),
                )
                if wait > 0:
                    time.sleep(wait)
                waited += wait
                continue

            attempts.append({"n": n, "outcome": "ok", "wait_s": 0.0, "elapsed_s": round(result.latency_s, 4)})
            report(
                {
                    "event": "answered",
                    "n": n,
                    "outcome": "ok",
                    "status": 200,
                    "elapsed_s": attempts[-1]["elapsed_s"],
                    "finish_reason": result.finish_reason,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                    "cost": result.cost,
                }
            )
            result.attempts = attempts
            try:
                if on_answer is not None:
                    on_answer(result)
            finally:
                hear(n, reply)
            if n > 1:
                log.info("LLM call to %r succeeded on attempt %d", model, n)
            return result
    finally:
        if own_session:
            sess.close()
