"""A loopback OpenAI-compatible server whose answers carry planted effects, for the research-loop tests.

``POST /v1/chat/completions`` answers by what the prompt (the last user message) is:

* a pairwise prompt (it has ``ESSAY A START``): ``WINNER: A`` or ``WINNER: B`` for the essay that contains
  ``prefer`` (when exactly one does), else ``WINNER: A``: a judge that always favours the first position, so every
  match without the preferred essay is a tie once both orders are judged, and its position bias is measurable;
  HTTP 400 (a request no retry can help) when the prompt contains ``fail_when``;
* a judge prompt (it has ``SCORE``): ``SCORE: 8`` or ``9`` when the prompt contains ``planted`` (or every text of
  ``planted_together``, a planted combination), else ``3`` or ``4`` (the second digit from the prompt's hash), so a
  planted concept raises the scores of the essays about it;
* any other prompt: a draft or essay that repeats the prompt's words (markup removed) in an ``<essay-idea>`` block
  and an ``<essay>`` block, after a first line ``Fake text <tag>.`` unique to the prompt; concept names given to a
  draft thus reach its essays and their judges.

``POST /v1/embeddings``: a text's vector is a unit vector drawn from ``idea_of(text)`` (default: the text itself)
plus 5% noise drawn from the text, so texts of one idea are near-duplicates (cosine about 0.99) and others are
nearly orthogonal. Every request is recorded (path, Authorization header, body); ``max_concurrent`` counts chat
requests in flight at once (``latency`` seconds each).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer

DIMENSIONS = 32
NOISE = 0.05
_ESSAY = {side: re.compile(rf"ESSAY {side} START\n(.*?)\nESSAY {side} END", re.S) for side in "AB"}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _gaussian(seed: str) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0.0, 1.0) for _ in range(DIMENSIONS)]


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


class FakeJudge(LoopbackServer):
    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.prefer: str | None = None
        self.planted: str | None = None
        self.planted_together: tuple[str, ...] = ()
        self.fail_when: str | None = None
        self.idea_of = lambda text: text
        self.requests: list[dict] = []
        self.max_concurrent = 0
        self._current = 0
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_concurrent = 0
        self.prefer = self.planted = self.fail_when = None
        self.planted_together = ()
        self.idea_of = lambda text: text
        self.latency = 0.0

    def chat_prompts(self) -> list[str]:
        return [r["body"]["messages"][-1]["content"] for r in self.requests if r["path"] == "/v1/chat/completions"]

    # ----------------------------------------------------------------------------------------------- answers

    def verdict(self, prompt: str) -> str:
        a, b = (pattern.search(prompt).group(1) for pattern in _ESSAY.values())
        if self.prefer and (self.prefer in a) != (self.prefer in b):
            return "A" if self.prefer in a else "B"
        return "A"

    def chat_answer(self, prompt: str, model: str = "") -> str:
        """The answer to a chat prompt (`model`: the model asked; a subclass may let it change the answer)."""
        if "ESSAY A START" in prompt:
            return f"Both essays combine their concepts; one is more concrete.\nWINNER: {self.verdict(prompt)}"
        if "SCORE" in prompt:
            together = bool(self.planted_together) and all(text in prompt for text in self.planted_together)
            base = 8 if (self.planted and self.planted in prompt) or together else 3
            return f"Weaknesses: few specifics.\nStrengths: a clear link.\nSCORE: {base + int(_digest(prompt), 16) % 2}"
        body = " ".join(re.sub(r"[<>]", " ", prompt).split())
        return (
            f'Fake text {_digest(prompt)[:8]}.\n<essay-idea stage="1">{body}</essay-idea>\n<essay>\n{body}\n'
            f"</essay>\nEnd of the fake text."
        )

    def embedding(self, text: str) -> list[float]:
        idea, noise = _unit(_gaussian(_digest(self.idea_of(text)))), _gaussian("noise" + _digest(text))
        return _unit([x + NOISE * n for x, n in zip(idea, noise)])

    def _answer(self, path: str, body: dict) -> tuple[int, dict]:
        if path == "/v1/embeddings":
            return 200, {
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "index": k, "embedding": self.embedding(text)}
                    for k, text in enumerate(body["input"])
                ],
            }
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        if self.fail_when and self.fail_when in body["messages"][-1]["content"]:
            return 400, {"error": {"message": "fake judge refuses this prompt", "code": 400}}
        with self._lock:
            self._current += 1
            self.max_concurrent = max(self.max_concurrent, self._current)
        try:
            time.sleep(self.latency)
            text = self.chat_answer(body["messages"][-1]["content"], body["model"])
        finally:
            with self._lock:
                self._current -= 1
        return 200, {
            "id": "fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(body["messages"][-1]["content"].split()),
                "completion_tokens": len(text.split()),
                "cost": 0.0001,
            },
        }

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake._lock:
                    fake.requests.append(
                        {"path": self.path, "authorization": self.headers.get("Authorization", ""), "body": body}
                    )
                self._send(*fake._answer(self.path, body))

            def log_message(self, *args):
                pass

        return Handler
