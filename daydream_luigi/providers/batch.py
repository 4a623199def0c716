"""Clients for the providers' batch APIs: about half the price of single calls, for answers within 24 hours.

OpenRouter takes the requests inline: ``POST {base}/batches`` with ``endpoint``, ``model`` (one per batch) and
``requests`` (each a ``custom_id`` and a chat-completions ``body``) answers 202 with status ``validating``;
``GET {base}/batches/{id}`` reports the status, ``request_counts`` and, once finished, ``usage.cost``;
``GET {base}/batches/{id}/results`` pages through one result per request (a ``response`` whose ``body`` is the
chat-completions answer, or an ``error``). OpenAI takes a JSONL file: ``POST {base}/files`` (purpose ``batch``),
then ``POST {base}/batches`` with its ``input_file_id``, ``endpoint`` ``/v1/chat/completions`` and
``completion_window`` ``24h``; a finished batch names an ``output_file_id`` and an ``error_file_id`` whose lines are
read from ``GET {base}/files/{id}/content``.

Which calls go as batches: a provider declares its batch API (``batch_api: openrouter | openai`` under
``endpoints:``), and a call of a stage or model named under ``batch:`` in config/daydream.yaml (or any call with
``daydream run --batch``) of such a provider is batched; ``batching`` runs them as Luigi tasks.

Both clients have the same three calls, so a task can record the batch id before anything else happens:
``submit(model, items) -> Submitted`` (one request to OpenRouter, two to OpenAI; never repeated by the other calls),
``poll(batch_id) -> BatchState`` (one GET) and ``results(batch_id, expected) -> list[RequestResult]``. Errors are
``BatchError`` with one line that never contains the key. Cost: OpenRouter reports the whole batch's ``usage.cost``
(``BatchState.cost_usd``) and each answer carries its own ``usage``; OpenAI reports tokens only, so its cost is an
estimate from the model's price times ``pricing.BATCH_PRICE_FACTOR``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

from daydream_luigi.core.batch_settings import OPENAI, OPENROUTER, BatchSettings
from daydream_luigi.providers.http_errors import connection_cause, error_text, http_failure, one_line

CHAT_ENDPOINT = "/v1/chat/completions"
# Both providers' statuses: validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})  # results (if any) can be read


@dataclass(frozen=True)
class BatchLimits:
    max_requests: int
    max_bytes: int  # of the serialized requests (OpenAI: the JSONL file)


OPENROUTER_LIMITS = BatchLimits(max_requests=5_000, max_bytes=200_000_000)  # "5,000 requests and 200 MB per batch"
OPENAI_LIMITS = BatchLimits(max_requests=50_000, max_bytes=200_000_000)  # "up to 50,000 requests ... 200 MB"


@dataclass(frozen=True)
class Submitted:
    batch_id: str
    custom_ids: tuple[str, ...]  # in submission order; record both before polling


@dataclass(frozen=True)
class BatchState:
    batch_id: str
    status: str  # the provider's word, passed through
    total: int | None
    completed: int | None
    failed: int | None
    cost_usd: float | None  # reported by the provider for the whole batch (OpenRouter); None when not reported
    error: str | None  # why a failed batch failed

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class RequestResult:
    custom_id: str
    response: dict | None  # the chat-completions JSON of a successful request
    error: str | None  # one line, for a request that failed inside the batch or has no result


class BatchError(Exception):
    """A batch endpoint refused or could not be reached; the message is one line and free of the key."""


def _line_bytes(custom_id: str, body: dict) -> int:
    return len(json.dumps({"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": body})) + 1


def split(items: Sequence[tuple[str, dict]], limits: BatchLimits) -> list[list[tuple[str, dict]]]:
    """Consecutive chunks of (custom_id, body) in the given order, each within the provider's count and size."""
    chunks: list[list[tuple[str, dict]]] = []
    size = 0
    for custom_id, body in items:
        line = _line_bytes(custom_id, body)
        if not chunks or len(chunks[-1]) >= limits.max_requests or size + line > limits.max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append((custom_id, body))
        size += line
    return chunks


def _checked(model: str, items: Sequence[tuple[str, dict]], limits: BatchLimits) -> tuple[str, ...]:
    """The custom ids, after checking what a provider would reject only after accepting the batch."""
    ids = tuple(custom_id for custom_id, _ in items)
    if not ids:
        raise ValueError("a batch needs at least one request")
    if len(set(ids)) != len(ids) or not all(isinstance(i, str) and i for i in ids):
        raise ValueError("custom_id values must be unique, non-empty strings")
    if len(ids) > limits.max_requests or sum(_line_bytes(c, b) for c, b in items) > limits.max_bytes:
        raise ValueError(
            f"{len(ids)} requests exceed a batch of at most {limits.max_requests} requests and "
            f"{limits.max_bytes} bytes; split() them"
        )
    other = sorted({body["model"] for _, body in items if body.get("model", model) != model})
    if other:
        raise ValueError(f"a batch runs one model ({model}); bodies name {', '.join(other)}")
    return ids


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _result(row: Any) -> RequestResult:
    """One result line (the same shape on both providers) in the common form."""
    row = row if isinstance(row, dict) else {}
    custom_id = str(row.get("custom_id", ""))
    response = row.get("response") if isinstance(row.get("response"), dict) else None
    error = row.get("error")
    body = response.get("body") if response else None
    status = _number(response.get("status_code")) if response else None
    if not error and isinstance(body, dict) and (status is None or 200 <= status < 300):
        return RequestResult(custom_id, body, None)
    if isinstance(error, dict):
        code, message = error.get("code") or error.get("type"), error.get("message") or "no message"
        text = f"{code}: {message}" if code else str(message)
    elif error:
        text = str(error)
    else:
        inner = body.get("error") if isinstance(body, dict) else None
        message = inner.get("message") if isinstance(inner, dict) else inner
        text = f"HTTP {status}: {message or 'no message'}" if status else "result without a response"
    return RequestResult(custom_id, None, one_line(text))


def _mapped(batch_id: str, rows: list[RequestResult], expected: Sequence[str] | None) -> list[RequestResult]:
    """Results in ``expected`` order, a missing one reported as an error (an expired batch drops what it never ran)."""
    if expected is None:
        return rows
    found = {row.custom_id: row for row in rows}
    return [
        found.get(custom_id) or RequestResult(custom_id, None, f"no result for this request in batch {batch_id}")
        for custom_id in expected
    ]


class _BatchClient:
    provider = ""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 120.0),
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key.strip() if api_key else None
        self.session = session or requests.Session()
        self.timeout = timeout

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise BatchError(
                error_text(
                    f"{self.provider} batch {what} failed: {connection_cause(exc, self.api_key)} ({url})", self.api_key
                )
            ) from None
        if not 200 <= response.status_code < 300:
            raise BatchError(
                error_text(f"{self.provider} batch {what} failed: {http_failure(response, self.api_key)}", self.api_key)
            )
        return response

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> dict:
        response = self._call(method, path, what, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise BatchError(f"{self.provider} batch {what} failed: HTTP {response.status_code} without a JSON object")
        return data

    def _batch_id(self, data: dict, what: str) -> str:
        if not isinstance(data.get("id"), str) or not data["id"]:
            raise BatchError(f"{self.provider} batch {what} failed: the answer has no batch id")
        return data["id"]

    def _state(self, data: dict, cost: float | None) -> BatchState:
        counts = data.get("request_counts") if isinstance(data.get("request_counts"), dict) else {}
        error = data.get("error") or data.get("errors")
        if isinstance(error, dict):
            listed = error.get("data") if isinstance(error.get("data"), list) else [error]
            error = "; ".join(str(item.get("message", item)) for item in listed if isinstance(item, dict)) or None
        return BatchState(
            self._batch_id(data, "poll"),
            str(data.get("status", "")),
            _number(counts.get("total")),
            _number(counts.get("completed")),
            _number(counts.get("failed")),
            cost,
            one_line(str(error)) if error else None,
        )


class OpenRouterBatches(_BatchClient):
    """OpenRouter's inline batches; ``base_url`` is the chat base, e.g. ``https://openrouter.ai/api/v1``."""

    provider = OPENROUTER
    limits = OPENROUTER_LIMITS

    def submit(self, model: str, items: Sequence[tuple[str, dict]]) -> Submitted:
        ids = _checked(model, items, self.limits)
        payload = {
            "endpoint": CHAT_ENDPOINT,
            "model": model,  # endpoint and model before requests, as documented
            "requests": [{"custom_id": custom_id, "body": body} for custom_id, body in items],
        }
        return Submitted(self._batch_id(self._json("POST", "/batches", "submit", json=payload), "submit"), ids)

    def poll(self, batch_id: str) -> BatchState:
        data = self._json("GET", f"/batches/{batch_id}", "poll")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        cost = usage.get("cost")
        return self._state(data, float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None)

    def results(self, batch_id: str, expected: Sequence[str] | None = None) -> list[RequestResult]:
        """Every result of a finished batch, page by page (``expected``: the submitted ids, to report missing ones)."""
        rows: list[RequestResult] = []
        cursor = None
        while True:
            page = self._json(
                "GET", f"/batches/{batch_id}/results", "results", params={"cursor": cursor} if cursor else None
            )
            rows += [_result(row) for row in page.get("data") or []]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                return _mapped(batch_id, rows, expected)


def openai_jsonl(model: str, items: Sequence[tuple[str, dict]]) -> bytes:
    """The input file of an OpenAI batch: one request per line, each naming the batch's model."""
    lines = [
        json.dumps({"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": {**body, "model": model}})
        for custom_id, body in items
    ]
    return ("\n".join(lines) + "\n").encode()


class OpenAIBatches(_BatchClient):
    """OpenAI's file batches; ``base_url`` is e.g. ``https://api.openai.com/v1``."""

    provider = OPENAI
    limits = OPENAI_LIMITS

    def submit(self, model: str, items: Sequence[tuple[str, dict]]) -> Submitted:
        ids = _checked(model, items, self.limits)
        upload = self._json(
            "POST",
            "/files",
            "upload",
            data={"purpose": "batch"},
            files={"file": ("daydream-batch.jsonl", openai_jsonl(model, items), "application/jsonl")},
        )
        if not isinstance(upload.get("id"), str):
            raise BatchError(f"{self.provider} batch upload failed: the answer has no file id")
        created = self._json(
            "POST",
            "/batches",
            "create",
            json={"input_file_id": upload["id"], "endpoint": CHAT_ENDPOINT, "completion_window": "24h"},
        )
        return Submitted(self._batch_id(created, "create"), ids)

    def poll(self, batch_id: str) -> BatchState:
        return self._state(self._json("GET", f"/batches/{batch_id}", "poll"), None)  # OpenAI reports no cost

    def results(self, batch_id: str, expected: Sequence[str] | None = None) -> list[RequestResult]:
        """The output file's answers and the error file's failures of a finished batch, mapped by custom_id."""
        data = self._json("GET", f"/batches/{batch_id}", "poll")
        rows: list[RequestResult] = []
        for key in ("output_file_id", "error_file_id"):
            if data.get(key):
                text = self._call("GET", f"/files/{data[key]}/content", "download").text
                for number, line in enumerate(text.splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError:
                        raise BatchError(
                            f"{self.provider} batch download failed: line {number} of {key} {data[key]} is not JSON"
                        ) from None
                    rows.append(_result(row))
        return _mapped(batch_id, rows, expected)


CLIENTS = {client.provider: client for client in (OpenRouterBatches, OpenAIBatches)}  # batch_api -> its client


def chunk_size(settings: BatchSettings, batch_api: str) -> int:
    """How many requests one chunk (one submit task) carries: the setting, never more than the provider allows."""
    limit = CLIENTS[batch_api].limits.max_requests
    return min(settings.max_requests or limit, limit)
