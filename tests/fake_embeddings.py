"""A loopback OpenAI-compatible ``POST /v1/embeddings`` server for the embeddings client's tests.

A text's vector is a deterministic function of the text (8 floats from its sha256), or the vector planted for
it in ``planted``. Every request is recorded (body and Authorization header) so tests count calls exactly.
``fault`` makes every following request answer with one of: an HTTP status with an error body that echoes the
caller's Authorization header (as some proxies do, to prove the client scrubs the key), ``"not-json"``,
``"short"`` (one vector fewer than asked), ``"reversed"`` (data listed in reverse with correct ``index``
fields), ``"hang"`` (no answer for ``hang_seconds``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer


def text_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255.0 - 0.5 for b in digest[:8]]


class FakeEmbeddings(LoopbackServer):
    def __init__(self, hang_seconds: float = 2.0):
        self.requests: list[dict] = []  # {"body": ..., "authorization": ...}
        self.planted: dict[str, list[float]] = {}
        self.fault: str | int | None = None
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.planted.clear()
            self.fault = None

    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, bytes]:
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        auth = handler.headers.get("Authorization", "")
        with self._lock:
            self.requests.append({"path": handler.path, "body": body, "authorization": auth})
            fault = self.fault
        if handler.path != "/v1/embeddings":
            return 404, json.dumps({"error": {"message": f"no route {handler.path}"}}).encode()
        if isinstance(fault, tuple):  # (status, message): the message may echo the Authorization header as {auth}
            return fault[0], json.dumps({"error": {"message": fault[1].format(auth=auth)}}).encode()
        if isinstance(fault, int):
            return fault, json.dumps({"error": {"message": f"fake failure for {auth or 'no key'}"}}).encode()
        if fault == "not-json":
            return 200, b"<html>gateway page</html>"
        if fault == "hang":
            time.sleep(self.hang_seconds)
        texts = body["input"]
        data = [
            {"object": "embedding", "index": k, "embedding": self.planted.get(t) or text_vector(t)}
            for k, t in enumerate(texts)
        ]
        if fault == "short":
            data = data[:-1]
        if fault == "reversed":
            data = data[::-1]
        return 200, json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                status, payload = fake._answer(self)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the hang fault)

            def log_message(self, *args):
                pass

        return Handler
