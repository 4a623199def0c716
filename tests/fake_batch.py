"""OpenRouter's and OpenAI's batch APIs on 127.0.0.1, for tests: one real HTTP server that speaks both.

OpenRouter's inline batches live under ``/api/v1`` (``POST /batches``, ``GET /batches/{id}``,
``GET /batches/{id}/results`` in pages of ``page_size``), OpenAI's file batches under ``/v1`` (``POST /files``
multipart, ``POST /batches``, ``GET /batches/{id}``, ``GET /files/{id}/content``).

A batch answers ``in_progress`` to its first ``in_progress_polls`` polls, then ends with ``outcome`` (or, given a
list, the i-th batch submitted with its i-th entry, the last one repeating):

* ``completed``: every request answered, except the custom ids in ``fail_ids``, which get a per-request error;
* ``expired`` / ``cancelled``: the first half of the requests ran, the rest did not (OpenAI lists them in the error
  file with ``batch_expired`` / ``batch_cancelled``; OpenRouter's results simply lack them);
* ``failed``: nothing ran, the batch carries an error message.

Every request is counted in ``calls`` by route (``openrouter_submit``, ``openai_poll``, ...; ``unrouted`` for the
rest), so tests can prove a poll never re-submits. A wrong key is refused with 401 and a message that quotes it, as
some providers do. ``GET .../models`` and ``GET /api/v1/key`` (what a run's preflight asks) and ``POST .../chat/completions`` (a normal call,
counted as ``openrouter_chat`` / ``openai_chat``) are served too, so a whole cohort can run against it. Answers are
those of tests/fake_endpoint.py: a draft for a prompt, a judge's verdict ending ``SCORE: N`` for a prompt that asks
for one.
"""

from __future__ import annotations

import collections
import itertools
import json
import re
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from fake_endpoint import _SCORE_RE, _last_user_message, draft_answer, judge_answer
from loopback import LoopbackServer

OUTCOMES = ("completed", "expired", "cancelled", "failed")
REQUEST_COST = 0.00025  # usage.cost of each answered request (OpenRouter reports it)

_ROUTES = [  # (method, path pattern, handler and route name)
    ("GET", r"/api/v1/models", "openrouter_models"),
    ("GET", r"/api/v1/key", "openrouter_key"),
    ("POST", r"/api/v1/chat/completions", "openrouter_chat"),
    ("GET", r"/v1/models", "openai_models"),
    ("POST", r"/v1/chat/completions", "openai_chat"),
    ("POST", r"/api/v1/batches", "openrouter_submit"),
    ("GET", r"/api/v1/batches/(?P<id>[^/]+)", "openrouter_poll"),
    ("GET", r"/api/v1/batches/(?P<id>[^/]+)/results", "openrouter_results"),
    ("POST", r"/v1/files", "openai_upload"),
    ("POST", r"/v1/batches", "openai_create"),
    ("GET", r"/v1/batches/(?P<id>[^/]+)", "openai_poll"),
    ("GET", r"/v1/files/(?P<id>[^/]+)/content", "openai_content"),
]


def answer(custom_id: str, body: dict, cost: bool = True) -> dict:
    """The chat-completions answer the fake gives one request; OpenAI's (`cost` False) reports tokens only."""
    prompt = _last_user_message(body)
    content = judge_answer(prompt) if _SCORE_RE.search(prompt) else draft_answer(prompt)
    return {
        "id": f"gen-{custom_id}",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            **({"cost": REQUEST_COST} if cost else {}),
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        fake = self.server.fake
        for verb, pattern, name in _ROUTES:
            match = re.fullmatch(pattern, parts.path)
            if verb == method and match:
                with fake.lock:
                    fake.calls[name] += 1
                if self.headers.get("Authorization") != f"Bearer {fake.key}":
                    given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    return self._send(401, {"error": {"message": f"Incorrect API key provided: {given}", "code": 401}})
                try:
                    status, body, ctype = getattr(fake, name)(
                        match.groupdict().get("id"),
                        payload,
                        self.headers.get("Content-Type", ""),
                        parse_qs(parts.query),
                    )
                except Exception as exc:  # a fake's bug answers at once rather than leave the client waiting
                    status, body, ctype = 500, {"error": {"message": f"fake: {exc!r}"}}, "application/json"
                return self._send(status, body, ctype)
        with fake.lock:
            fake.calls["unrouted"] += 1
        self._send(404, {"error": {"message": f"no route {method} {parts.path}"}})

    def _send(self, status: int, body, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeBatchServer(LoopbackServer):
    def __init__(
        self,
        key: str,
        in_progress_polls: int = 1,
        outcome: str | list = "completed",
        fail_ids=(),
        page_size: int = 2,
        line_costs: bool = True,
    ):
        """`line_costs` False: OpenRouter's result lines carry no usage.cost, only the batch reports its cost."""
        outcomes = [outcome] if isinstance(outcome, str) else list(outcome)
        if not outcomes or any(o not in OUTCOMES for o in outcomes):
            raise ValueError(f"outcome must be one of {OUTCOMES}, or a list of them")
        self.key, self.in_progress_polls, self.outcomes = key, in_progress_polls, outcomes
        self.fail_ids, self.page_size, self.line_costs = set(fail_ids), page_size, line_costs
        self.lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.batches: dict[str, dict] = {}
        self.files: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        super().__init__(_Handler)
        self._server.fake = self  # the handler's way back to this fake

    @property
    def openrouter_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- batch life ---------------------------------------------------------------------------------------------
    def _new(self, prefix: str, model: str, items: list[tuple[str, dict]]) -> dict:
        with self.lock:
            batch_id = f"{prefix}{next(self._ids)}"
            outcome = self.outcomes[min(len(self.batches), len(self.outcomes) - 1)]
            self.batches[batch_id] = {"id": batch_id, "model": model, "items": items, "polls": 0, "outcome": outcome}
        return self.batches[batch_id]

    def _advance(self, batch: dict) -> str:
        """Count a poll and say the batch's status after it."""
        with self.lock:
            batch["polls"] += 1
        return self._status(batch)

    def _status(self, batch: dict) -> str:
        return "in_progress" if batch["polls"] <= self.in_progress_polls else batch["outcome"]

    def _ran(self, batch: dict) -> list[tuple[str, dict]]:
        items = batch["items"]
        return {"completed": items, "failed": []}.get(batch["outcome"], items[: (len(items) + 1) // 2])

    # -- what a whole run asks besides batches ------------------------------------------------------------------
    def _models(self, *_):
        return 200, {"object": "list", "data": [{"id": "fake", "object": "model"}]}, "application/json"

    def _chat(self, payload: bytes, cost: bool):
        with self.lock:
            number = sum(self.calls[name] for name in ("openrouter_chat", "openai_chat"))
        return 200, answer(f"chat-{number}", json.loads(payload), cost), "application/json"

    def openrouter_chat(self, _, payload: bytes, ctype, query):
        return self._chat(payload, cost=True)

    def openai_chat(self, _, payload: bytes, ctype, query):
        return self._chat(payload, cost=False)

    openrouter_models = openai_models = _models

    def openrouter_key(self, *_):  # what a run's preflight asks OpenRouter
        return 200, {"data": {"label": "fake", "usage": 0, "limit": None, "is_free_tier": False}}, "application/json"

    def _counts(self, batch: dict, status: str) -> dict:
        ran = self._ran(batch) if status in OUTCOMES else []
        failed = sum(custom_id in self.fail_ids for custom_id, _ in ran)
        return {"total": len(batch["items"]), "completed": len(ran) - failed, "failed": failed}

    # -- OpenRouter -----------------------------------------------------------------------------------------------
    def openrouter_submit(self, _, payload: bytes, ctype, query):
        body = json.loads(payload)
        if list(body)[:2] != ["endpoint", "model"] or body["endpoint"] != "/v1/chat/completions":
            return 400, {"error": {"message": "endpoint and model must come first"}}, "application/json"
        items = [(r["custom_id"], r["body"]) for r in body["requests"]]
        batch = self._new("orb-", body["model"], items)
        return (
            202,
            {
                "id": batch["id"],
                "object": "batch",
                "status": "validating",
                "model": body["model"],
                "endpoint": body["endpoint"],
                "completion_window": "24h",
                "request_counts": {"total": len(items), "completed": 0, "failed": 0},
            },
            "application/json",
        )

    def openrouter_poll(self, batch_id, payload, ctype, query):
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": f"batch {batch_id} not found"}}, "application/json"
        status = self._advance(batch)
        answered = self._counts(batch, status)["completed"]
        data = {
            "id": batch_id,
            "object": "batch",
            "status": status,
            "model": batch["model"],
            "request_counts": self._counts(batch, status),
            "usage": {
                "prompt_tokens": 10 * answered,
                "completion_tokens": 5 * answered,
                "cost": round(REQUEST_COST * answered, 10),
            },
        }
        if status == "failed":
            data["error"] = {"message": "validation failed: model does not support batch"}
        return 200, data, "application/json"

    def openrouter_results(self, batch_id, payload, ctype, query):
        batch = self.batches[batch_id]
        if self._status(batch) not in OUTCOMES:
            return 409, {"error": {"message": "batch is not finished"}}, "application/json"
        rows = [
            {
                "id": f"res-{custom_id}",
                "custom_id": custom_id,
                "response": None
                if custom_id in self.fail_ids
                else {
                    "status_code": 200,
                    "request_id": f"req-{custom_id}",
                    "body": answer(custom_id, body, self.line_costs),
                },
                "error": {
                    "message": "This model's maximum context length was exceeded",
                    "type": "invalid_request_error",
                }
                if custom_id in self.fail_ids
                else None,
            }
            for custom_id, body in self._ran(batch)
        ]
        start = int(query.get("cursor", ["0"])[0])
        end = start + self.page_size
        return (
            200,
            {
                "object": "list",
                "data": rows[start:end],
                "has_more": end < len(rows),
                "next_cursor": str(end) if end < len(rows) else None,
            },
            "application/json",
        )

    # -- OpenAI ---------------------------------------------------------------------------------------------------
    def openai_upload(self, _, payload: bytes, ctype: str, query):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + payload)
        fields = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()
        }
        if fields.get("purpose") != b"batch" or "file" not in fields:
            return 400, {"error": {"message": "purpose must be batch and a file is required"}}, "application/json"
        with self.lock:
            file_id = f"file-in-{next(self._ids)}"
            self.files[file_id] = fields["file"]
        return (
            200,
            {"id": file_id, "object": "file", "purpose": "batch", "bytes": len(fields["file"])},
            "application/json",
        )

    def openai_create(self, _, payload: bytes, ctype, query):
        body = json.loads(payload)
        if (
            body.get("endpoint") != "/v1/chat/completions"
            or body.get("completion_window") != "24h"
            or body.get("input_file_id") not in self.files
        ):
            return 400, {"error": {"message": "bad batch create request"}}, "application/json"
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].decode().splitlines()]
        models = {line["body"]["model"] for line in lines}
        if len(models) != 1 or any(line["method"] != "POST" or line["url"] != body["endpoint"] for line in lines):
            return (
                400,
                {"error": {"message": "every line must POST to the batch endpoint with one model"}},
                "application/json",
            )
        batch = self._new("batch_", models.pop(), [(line["custom_id"], line["body"]) for line in lines])
        batch["input_file_id"] = body["input_file_id"]
        return 200, self._openai_batch(batch, "validating"), "application/json"

    def _openai_batch(self, batch: dict, status: str) -> dict:
        data = {
            "id": batch["id"],
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "status": status,
            "input_file_id": batch["input_file_id"],
            "completion_window": "24h",
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": self._counts(batch, status),
        }
        if status == "failed":
            data["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "model does not support batch", "line": 1}],
            }
        elif status in OUTCOMES:
            data["output_file_id"] = f"file-out-{batch['id']}"
            data["error_file_id"] = f"file-err-{batch['id']}"
        return data

    def openai_poll(self, batch_id, payload, ctype, query):
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": f"No batch found with id '{batch_id}'."}}, "application/json"
        return 200, self._openai_batch(batch, self._advance(batch)), "application/json"

    def openai_content(self, file_id, payload, ctype, query):
        kind, _, batch_id = file_id.removeprefix("file-").partition("-")
        batch = self.batches[batch_id]
        ran = {custom_id for custom_id, _ in self._ran(batch)}
        lines = []
        for custom_id, body in batch["items"]:
            if kind == "out" and custom_id in ran and custom_id not in self.fail_ids:
                lines.append(
                    {
                        "id": f"batch_req_{custom_id}",
                        "custom_id": custom_id,
                        "error": None,
                        "response": {
                            "status_code": 200,
                            "request_id": f"req_{custom_id}",
                            "body": answer(custom_id, body, cost=False),
                        },
                    }
                )
            elif kind == "err" and custom_id in ran and custom_id in self.fail_ids:
                lines.append(
                    {
                        "id": f"batch_req_{custom_id}",
                        "custom_id": custom_id,
                        "error": None,
                        "response": {
                            "status_code": 400,
                            "request_id": f"req_{custom_id}",
                            "body": {
                                "error": {
                                    "message": "This model's maximum context length was exceeded",
                                    "type": "invalid_request_error",
                                }
                            },
                        },
                    }
                )
            elif kind == "err" and custom_id not in ran:
                word = "expired" if batch["outcome"] == "expired" else "cancelled"
                lines.append(
                    {
                        "id": f"batch_req_{custom_id}",
                        "custom_id": custom_id,
                        "response": None,
                        "error": {
                            "code": f"batch_{word}",
                            "message": f"This request could not be executed before the batch {word}.",
                        },
                    }
                )
        return 200, "".join(json.dumps(line) + "\n" for line in lines).encode(), "application/jsonl"
