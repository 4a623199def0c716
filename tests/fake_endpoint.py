"""A small OpenAI-compatible chat server on loopback, for tests and benchmarks.

It speaks real HTTP/1.1 (keep-alive, Content-Length) so the production client in
``daydream_luigi.providers.chat`` is exercised end to end, and it can inject the faults real
providers produce: rate limits, 5xx pages, dropped connections, hangs, broken JSON,
empty answers, truncated answers and auth/config errors.

Answers are deterministic functions of the prompt (the last user message):

* a prompt containing the word ``SCORE`` gets a judge answer ending ``SCORE: N``
  with ``N = int(sha256(prompt)) % 10``;
* any other prompt gets a draft/essay text with two ``<essay-idea>`` blocks and one
  ``<essay>`` block.

Run standalone::

    python tests/fake_endpoint.py --port 8765 --latency 0.5

It prints its base URL on the first line; ``GET /_stats`` returns its counters as JSON
(requests, completed_ok, max_concurrent, ...), and ``--no-record`` keeps counters only.

Provider limits, as OpenRouter states them: ``rate_limit=(N, window_s)`` accepts at most N chat requests in any
``window_s`` seconds and answers the next with a 429 ("free-models-per-min"); ``quotas={model: N}`` accepts N requests
of that model and then answers 429 "free-models-per-day" until ``quota_reset_s`` after the first refusal (when N more
are allowed). Both refusals carry ``X-RateLimit-Limit``, ``-Remaining`` (0) and ``-Reset`` (epoch milliseconds) as
headers and in the body's ``error.metadata.headers``; with a ``rate_limit`` every accepted answer carries the
headers too. Refusals are counted in ``faults_served`` as "rate_limit" and "quota".

Dialects: ``strict="openai" | "openrouter" | "openai-compatible"`` answers a chat request carrying any field outside
that API's documented set with OpenAI's 400 "Unrecognized request argument supplied: <field>" (and, as OpenAI's
reasoning models do, ``max_tokens`` with its 400 asking for ``max_completion_tokens``); each refusal is counted in
``faults_served["rejected_field"]`` and its field kept in ``rejected_fields``. Every answer carries ``usage.cost``
unless ``report_cost=False`` (OpenRouter reports it without being asked).

Reasoning: a model string in ``reasoning_models`` answers with its thinking in ``message.reasoning`` and
``usage.completion_tokens_details.reasoning_tokens`` (its thinking counts against the budget: with fewer than
``thinking_tokens`` + 10 tokens allowed it spends them all thinking and answers nothing, finish_reason ``length``);
in ``think_tag_models`` the thinking comes inside the content as ``<think>...</think>`` (R1 distills on vLLM).
``served_by`` names the upstream host in the answer's ``provider`` field, as OpenRouter does.

Keys: with ``require_key`` a chat request without that bearer key gets a 401, while ``GET /v1/models`` answers
anyone, as llama.cpp's server does; refusals are counted in ``faults_served["unauthorized"]``.
"""

from __future__ import annotations

import argparse
import collections
import email.utils
import hashlib
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeEndpoint", "DEFAULT_RANDOM_FAULTS", "ALL_FAULTS", "judge_score", "main"]

#: Transient faults a well-behaved client must retry through.
DEFAULT_RANDOM_FAULTS: tuple[str, ...] = (
    "429",
    "500",
    "502",
    "503",
    "504",
    "html",
    "reset",
    "malformed",
    "no_choices",
    "empty",
)
#: Every fault name accepted by ``script()`` and ``faults=`` ("ok" means no fault).
ALL_FAULTS: tuple[str, ...] = DEFAULT_RANDOM_FAULTS + ("429-date", "timeout", "trickle", "length", "401", "400", "ok")

_ERROR_MESSAGES = {
    "500": "Internal server error (fake)",
    "502": "Bad gateway: upstream provider error (fake)",
    "503": "Service temporarily unavailable (fake)",
    "504": "Gateway timeout (fake)",
    "429": "Rate limit exceeded (fake)",
    "429-date": "Rate limit exceeded (fake)",
    "401": "No auth credentials found",
    "400": "fake-model is not a valid model ID",
}

_HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    "<body><center><h1>502 Bad Gateway</h1></center><hr><center>fake-proxy</center></body></html>\n"
)

# The request fields each API documents (the subset a chat client could send). OpenRouter:
# https://openrouter.ai/docs/api-reference/chat-completion; OpenAI: https://platform.openai.com/docs/api-reference/chat
# (max_tokens deprecated and refused by reasoning models); OpenAI-compatible servers: the standard fields.
_STANDARD_FIELDS = frozenset(
    {"model", "messages", "temperature", "top_p", "n", "stream", "stop", "presence_penalty", "frequency_penalty"}
    | {"logit_bias", "logprobs", "top_logprobs", "seed", "user", "response_format", "tools", "tool_choice"}
)
DOCUMENTED_FIELDS = {
    "openai-compatible": _STANDARD_FIELDS | {"max_tokens"},
    "openai": _STANDARD_FIELDS
    | {"max_completion_tokens", "reasoning_effort", "metadata", "store", "service_tier", "parallel_tool_calls"},
    "openrouter": _STANDARD_FIELDS
    | {"max_tokens", "reasoning", "provider", "models", "route", "transforms", "top_k", "min_p", "top_a"}
    | {"repetition_penalty", "plugins", "usage"},
}
REASONING_TEXT = "First I weigh the two concepts against each other, then I pick the stronger link."
THINKING_TOKENS = 40  # what a fake reasoning model spends thinking

_WORDS_RE = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
_SCORE_RE = re.compile(r"\bSCORE\b")

# Idle keep-alive connections are closed after this many seconds, so a client that
# never closes its pool cannot pin handler threads forever.
_IDLE_TIMEOUT_S = 60.0
_MAX_RECORDED_REQUESTS = 100_000


def _digest(prompt: str) -> bytes:
    return hashlib.sha256(prompt.encode("utf-8")).digest()


def judge_score(prompt: str) -> int:
    """The score the fake judge gives ``prompt``: int(sha256(prompt)) % 10."""
    return int.from_bytes(_digest(prompt), "big") % 10


def _pick_words(prompt: str, digest: bytes, n: int) -> list[str]:
    words = _WORDS_RE.findall(prompt) or ["nothing", "in", "particular"]
    return [words[digest[i % len(digest)] % len(words)].lower() for i in range(n)]


def judge_answer(prompt: str) -> str:
    d = _digest(prompt)
    w = _pick_words(prompt, d, 4)
    score = judge_score(prompt)
    return (
        f"The response connects {w[0]} with {w[1]} in a way that is easy to follow.\n"
        f"Its treatment of {w[2]} and {w[3]} is {'original' if score >= 5 else 'fairly conventional'}.\n"
        f"Overall the idea is {'promising' if score >= 5 else 'modest'} (fake judge, digest {d.hex()[:8]}).\n"
        f"SCORE: {score}"
    )


def draft_answer(prompt: str) -> str:
    d = _digest(prompt)
    w = _pick_words(prompt, d, 8)
    tag = d.hex()[:8]
    return (
        f"Thinking about {w[0]} and {w[1]} together (fake draft {tag}).\n"
        f'<essay-idea stage="1">What if {w[0]} behaved like {w[2]}? The link runs through {w[3]}.</essay-idea>\n'
        f'<essay-idea stage="2">Combining {w[2]} with {w[4]} suggests a loop where {w[5]} feeds back '
        f"into {w[1]}.</essay-idea>\n"
        "<essay>\n"
        f"Consider {w[0]} as a form of {w[6]}. Seen that way, {w[1]} stops being a constraint and "
        f"becomes a resource.\n"
        f"The practical test is whether {w[7]} improves when {w[4]} is varied deliberately.\n"
        f"If it does, {w[0]} and {w[1]} were never separate problems.\n"
        "</essay>\n"
        f"End of draft {tag}."
    )


def _truncate_mid_sentence(text: str) -> str:
    cut = max(1, int(len(text) * 0.6))
    # Avoid ending on whitespace or punctuation so the cut is visibly mid-sentence.
    while cut > 1 and not text[cut - 1].isalnum():
        cut -= 1
    return text[:cut]


def _last_user_message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts
                return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return ""
    return ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256
    endpoint: FakeEndpoint

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # clients going away (timeouts, resets) are expected here
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    timeout = _IDLE_TIMEOUT_S
    server: _Server

    # -- plumbing ---------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # silence request logging
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle + delayed ACK
        # add ~40 ms to every response after the first on a keep-alive connection.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.endpoint._track_connection(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.endpoint._track_connection(self.connection, False)

    def _send(
        self, status: int, payload: Any, headers: dict[str, str] | None = None, content_type: str = "application/json"
    ) -> None:
        data = (
            payload
            if isinstance(payload, bytes)
            else (payload.encode("utf-8") if isinstance(payload, str) else json.dumps(payload).encode("utf-8"))
        )
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # client went away (e.g. it timed out first)
            self.close_connection = True

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def _reset(self) -> None:
        """Drop the connection without a response (RST rather than a clean FIN)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()  # the real close happens once rfile/wfile are closed in finish()

    # -- routes -----------------------------------------------------------------------
    def do_GET(self) -> None:
        ep = self.server.endpoint
        if ep.record_requests:
            ep._record(self.path, dict(self.headers.items()), None)
        if self.path.rstrip("/") == "/v1/models":
            listed = [{"id": model, "object": "model", "pricing": p} for model, p in ep.listed_prices.items()]
            self._send(200, {"object": "list", "data": listed or [{"id": "fake", "object": "model"}]})
        elif self.path.rstrip("/") == "/v1/key":  # OpenRouter's key status (what its preflight asks)
            self._send(200, {"data": {"label": "fake", "usage": 0, "limit": None, "is_free_tier": False}})
        elif self.path == "/_stats":  # the counters, for a parent process running us standalone (benchmarks)
            self._send(200, ep.stats)
        elif self.path == "/_timeline":  # (received, answered, kind) of every chat request, server clock
            self._send(200, ep.timeline)
        else:
            self._send(404, {"error": {"message": f"no route for GET {self.path}"}})

    def do_POST(self) -> None:
        ep = self.server.endpoint
        body = self._read_body()
        record = ep._record(self.path, dict(self.headers.items()), body) if ep.record_requests else {}
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route for POST {self.path}"}})
            return
        received = time.time()
        model = body.get("model") if isinstance(body, dict) else None
        refusal, limit_headers = ep._admit(str(model) if model is not None else "", received)
        if refusal is not None:
            self._send(429, refusal, headers=limit_headers)
            record["answered"] = time.time()
            return
        if ep.require_key is not None and self.headers.get("Authorization") != f"Bearer {ep.require_key}":
            with ep._lock:
                ep._n_requests += 1
                ep._faults_served["unauthorized"] += 1
            self._send(401, {"error": {"message": "Invalid API Key", "type": "authentication_error", "code": 401}})
            record["answered"] = time.time()
            return
        rejected = ep._rejected_field(body)
        if rejected is not None:
            self._send(400, rejected)
            record["answered"] = time.time()
            return
        fault = ep._next_fault(str(model) if model is not None else "")
        ep._enter()
        try:
            latency = ep._latency()
            if latency > 0:
                ep._stop_event.wait(latency)
            if fault == "timeout":
                ep._stop_event.wait(ep.hang_seconds)
        finally:
            ep._leave()
        self._answer(body, fault, limit_headers)
        record["answered"] = answered = time.time()
        kind = "judge" if isinstance(body, dict) and _SCORE_RE.search(_last_user_message(body)) else "text"
        ep._answered(received, answered, kind)

    def _answer(self, body: Any, fault: str, limit_headers: dict | None = None) -> None:
        ep = self.server.endpoint
        if fault == "reset":
            self._reset()
            return
        if fault == "trickle":  # headers at once, then one byte a second: no read timeout ever fires
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            try:
                while not ep._stop_event.wait(1.0):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True
            return
        if fault in ("429", "429-date"):
            if fault == "429":
                retry_after = "0"
            else:
                retry_after = email.utils.formatdate(time.time() + 1.5, usegmt=True)
            self._send(
                429, {"error": {"message": _ERROR_MESSAGES[fault], "code": 429}}, headers={"Retry-After": retry_after}
            )
            return
        if fault in ("500", "502", "503", "504", "401", "400"):
            code = int(fault)
            self._send(code, {"error": {"message": _ERROR_MESSAGES[fault], "code": code}})
            return
        if fault == "html":
            self._send(502, _HTML_PAGE, content_type="text/html; charset=utf-8")
            return
        if fault == "malformed":
            self._send(200, b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": "trunc')
            return
        if fault == "no_choices":
            self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion", "choices": []})
            return

        if not isinstance(body, dict):
            self._send(400, {"error": {"message": "request body is not JSON"}})
            return
        prompt = _last_user_message(body)
        text = judge_answer(prompt) if _SCORE_RE.search(prompt) else draft_answer(prompt)
        finish_reason = "stop"
        if fault == "empty":
            text = ""
        elif fault == "length":
            text = _truncate_mid_sentence(text)
            finish_reason = "length"
        model_name = str(body.get("model", "fake"))
        thinking = model_name in ep.reasoning_models or model_name in ep.think_tag_models
        budget = body.get("max_completion_tokens", body.get("max_tokens"))
        if thinking and isinstance(budget, int) and budget < THINKING_TOKENS + 10:
            text, finish_reason = "", "length"  # the whole budget went on thinking
        prompt_tokens = len(prompt.split())
        completion_tokens = len(text.split()) + (THINKING_TOKENS if thinking else 0)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if ep.report_cost:
            usage["cost"] = 1e-6 * (prompt_tokens + completion_tokens)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if model_name in ep.reasoning_models:
            message["reasoning"] = REASONING_TEXT
            usage["completion_tokens_details"] = {"reasoning_tokens": THINKING_TOKENS}
        elif model_name in ep.think_tag_models:
            message["content"] = f"<think>\n{REASONING_TEXT}\n</think>\n\n{text}"
        payload = {
            "id": "chatcmpl-fake-" + _digest(prompt).hex()[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": usage,
        }
        if ep.served_by is not None:
            payload["provider"] = ep.served_by
        if fault == "ok":  # counted before sending, so a client that has its answer sees the count
            ep._count_ok()
        self._send(200, payload, headers=limit_headers)


class FakeEndpoint:
    """An OpenAI-compatible chat server on a loopback port, with scripted or random faults.

    Use as a context manager (``with FakeEndpoint() as ep: ep.base_url``) or call
    ``start()``/``stop()``. ``port`` 0 (the default) picks a free port.
    """

    def __init__(
        self,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = DEFAULT_RANDOM_FAULTS,
        seed: int = 0,
        hang_seconds: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        record_requests: bool = True,
        latency_sigma: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
        quotas: dict[str, int] | None = None,
        quota_reset_s: float = 3.0,
        report_cost: bool = True,
        strict: str | None = None,
        reasoning_models: Sequence[str] = (),
        think_tag_models: Sequence[str] = (),
        served_by: str | None = None,
        require_key: str | None = None,
        listed_prices: dict[str, dict] | None = None,
        latency_cap: float | None = None,
    ):
        unknown = [f for f in faults if f not in ALL_FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {list(ALL_FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        if fault_rate > 0 and not faults:
            raise ValueError("fault_rate > 0 needs at least one fault")
        self.latency = float(latency)  # seconds; with latency_sigma > 0 the median of a lognormal latency
        self.latency_sigma = float(latency_sigma)
        self.latency_cap = latency_cap  # seconds: the most a lognormal latency may draw (None: no cap)
        self._latency_rng = random.Random(seed + 1)
        self.fault_rate = float(fault_rate)
        self.faults = tuple(faults)
        self.seed = seed
        self.hang_seconds = float(hang_seconds)
        self.record_requests = record_requests  # False: keep counters only (benchmarks send 100,000s of requests)
        self.host = host
        self.port = port
        self.report_cost = report_cost  # False: answers carry tokens but no usage.cost, as many servers do
        if strict is not None and strict not in DOCUMENTED_FIELDS:
            raise ValueError(f"unknown dialect {strict!r}; known: {list(DOCUMENTED_FIELDS)}")
        self.strict = strict  # a dialect: any request field it does not document is answered with a 400
        self.reasoning_models = frozenset(reasoning_models)
        self.think_tag_models = frozenset(think_tag_models)
        self.served_by = served_by
        self.require_key = require_key  # chat requests need this bearer key; GET /v1/models does not (llama.cpp)
        self.listed_prices = dict(listed_prices or {})  # model -> OpenRouter's `pricing` in GET /v1/models
        self.rate_limit = rate_limit  # (requests, window seconds) accepted in any window
        self.quotas = dict(quotas or {})  # model string -> requests accepted until the quota's reset
        self.quota_reset_s = float(quota_reset_s)
        self._accepted: collections.deque[float] = collections.deque()  # times of requests the rate limit accepted
        self._quota_used: collections.Counter[str] = collections.Counter()
        self._quota_reset: dict[str, float] = {}  # model -> when its quota allows requests again
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._script: collections.deque[str] = collections.deque()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._reset_counters()

    # -- lifecycle --------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeEndpoint is not started")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}/v1"

    def start(self) -> FakeEndpoint:
        if self._server is not None:
            return self
        self._stop_event.clear()
        server = _Server((self.host, self.port), _Handler)
        server.endpoint = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"fake-endpoint-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stop_event.set()  # wakes handlers sleeping for latency / hang faults
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # unblock handler threads waiting on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeEndpoint:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- control ----------------------------------------------------------------------
    def script(self, *faults: str) -> None:
        """The next ``len(faults)`` chat requests get these faults in order ("ok" = none)."""
        unknown = [f for f in faults if f not in ALL_FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {list(ALL_FAULTS)}")
        with self._lock:
            self._script.extend(faults)

    def reset_stats(self) -> None:
        """Zero the counters, forget recorded requests and drop any pending script."""
        with self._lock:
            self._reset_counters()
            self._script.clear()

    @property
    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": self._n_requests,
                "completed_ok": self._completed_ok,
                "max_concurrent": self._max_concurrent,
                "by_model": dict(self._by_model),
                "faults_served": dict(self._faults_served),
            }

    @property
    def timeline(self) -> list[tuple[float, float, str]]:
        """(received, answered, "judge" | "text") per answered chat request, in answer order (server clock)."""
        with self._lock:
            return list(self._timeline)

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return list(self._requests)

    # -- internals (called from handler threads) -----------------------------------------
    def _reset_counters(self) -> None:
        # Requests still in flight (e.g. a hanging "timeout" fault) keep counting as current.
        self._current = getattr(self, "_current", 0)
        self._n_requests = 0
        self._completed_ok = 0
        self._max_concurrent = self._current
        self._by_model: collections.Counter[str] = collections.Counter()
        self._faults_served: collections.Counter[str] = collections.Counter()
        self._requests: collections.deque[dict] = collections.deque(maxlen=_MAX_RECORDED_REQUESTS)
        self._timeline: list[tuple[float, float, str]] = []
        self.rejected_fields: list[str] = []

    def _record(self, path: str, headers: dict, body: Any) -> dict:
        record = {"path": path, "headers": headers, "body": body, "received": time.time(), "answered": None}
        with self._lock:
            self._requests.append(record)
        return record

    def _rejected_field(self, body: Any) -> dict | None:
        """OpenAI's 400 body for the first field of `body` its strict dialect does not document, counted; else None."""
        if self.strict is None or not isinstance(body, dict):
            return None
        if self.strict == "openai" and "max_tokens" in body:
            field, message = (
                "max_tokens",
                (
                    "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
                    "instead."
                ),
            )
        else:
            field = next((f for f in body if f not in DOCUMENTED_FIELDS[self.strict]), None)
            if field is None:
                return None
            message = f"Unrecognized request argument supplied: {field}"
        with self._lock:
            self._n_requests += 1
            self._faults_served["rejected_field"] += 1
            self.rejected_fields.append(field)
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}

    def _next_fault(self, model: str) -> str:
        with self._lock:
            self._n_requests += 1
            self._by_model[model] += 1
            if self._script:
                fault = self._script.popleft()
            elif self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.faults)
            else:
                fault = "ok"
            if fault != "ok":
                self._faults_served[fault] += 1
            return fault

    @staticmethod
    def _limit_headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(reset * 1000)),
        }

    def _refusal(self, model: str, name: str, message: str, headers: dict[str, str]) -> dict:
        self._n_requests += 1
        self._by_model[model] += 1
        self._faults_served[name] += 1
        return {"error": {"message": message, "code": 429, "metadata": {"headers": headers}}}

    def _admit(self, model: str, now: float) -> tuple[dict | None, dict[str, str] | None]:
        """(the 429 body, its headers) when a limit refuses this request, else (None, headers for the answer)."""
        with self._lock:
            reset_at = self._quota_reset.get(model)
            if reset_at is not None and now >= reset_at:
                del self._quota_reset[model]
                self._quota_used[model] = 0
            if model in self.quotas and self._quota_used[model] >= self.quotas[model]:
                reset_at = self._quota_reset.setdefault(model, now + self.quota_reset_s)
                headers = self._limit_headers(self.quotas[model], 0, reset_at)
                return self._refusal(
                    model,
                    "quota",
                    "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock "
                    "1000 free model requests per day",
                    headers,
                ), headers
            headers = None
            if self.rate_limit is not None:
                limit, window = self.rate_limit
                while self._accepted and self._accepted[0] <= now - window:
                    self._accepted.popleft()
                if len(self._accepted) >= limit:
                    headers = self._limit_headers(limit, 0, self._accepted[0] + window)
                    return self._refusal(
                        model, "rate_limit", "Rate limit exceeded: free-models-per-min.", headers
                    ), headers
                self._accepted.append(now)
                headers = self._limit_headers(limit, limit - len(self._accepted), self._accepted[0] + window)
            self._quota_used[model] += 1
            return None, headers

    def _latency(self) -> float:
        if self.latency_sigma <= 0:
            return self.latency
        with self._lock:
            drawn = self.latency * self._latency_rng.lognormvariate(0.0, self.latency_sigma)
        return drawn if self.latency_cap is None else min(drawn, self.latency_cap)

    def _answered(self, received: float, answered: float, kind: str) -> None:
        with self._lock:
            self._timeline.append((received, answered, kind))

    def _enter(self) -> None:
        with self._lock:
            self._current += 1
            self._max_concurrent = max(self._max_concurrent, self._current)

    def _leave(self) -> None:
        with self._lock:
            self._current -= 1

    def _count_ok(self) -> None:
        with self._lock:
            self._completed_ok += 1

    def _track_connection(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python tests/fake_endpoint.py", description="Serve a fake OpenAI-compatible chat endpoint on loopback."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--latency", type=float, default=0.0, help="seconds to sleep per chat request")
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random transient fault")
    p.add_argument(
        "--faults",
        default=",".join(DEFAULT_RANDOM_FAULTS),
        help="comma-separated faults drawn from when --fault-rate > 0",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang-seconds", type=float, default=5.0)
    p.add_argument("--no-record", action="store_true", help="do not keep request bodies (counters only)")
    p.add_argument(
        "--latency-sigma",
        type=float,
        default=0.0,
        help="> 0: lognormal latency with median --latency and this sigma (seeded)",
    )
    p.add_argument("--latency-cap", type=float, default=None, help="the longest lognormal latency, in seconds")
    args = p.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    ep = FakeEndpoint(
        latency=args.latency,
        fault_rate=args.fault_rate,
        faults=faults,
        seed=args.seed,
        hang_seconds=args.hang_seconds,
        host=args.host,
        port=args.port,
        record_requests=not args.no_record,
        latency_sigma=args.latency_sigma,
        latency_cap=args.latency_cap,
    )

    def _interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a shell starting us in the background may have SIGINT ignored,
    # and a parent process (benchmarks) stops us with SIGTERM.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    ep.start()
    print(ep.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        ep.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
