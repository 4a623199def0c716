"""A tiny provider on 127.0.0.1 for preflight tests: it records every request (path and Authorization header) and
answers GET /v1/models and GET /v1/key like an OpenAI-compatible server and OpenRouter do."""

import json
import threading
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer


class FakeProvider(LoopbackServer):
    """`key`: the only key accepted (None: any request is accepted); `status`: answer every request with it;
    `redirect_to`: answer 302 to this URL; `hang`: never answer (until the server stops)."""

    def __init__(
        self, key: str | None = None, status: int | None = None, redirect_to: str | None = None, hang: bool = False
    ):
        self.key, self.status, self.redirect_to, self.hang = key, status, redirect_to, hang
        self.requests: list[dict] = []
        self._release = threading.Event()
        super().__init__(self._handler())

    def __exit__(self, *exc) -> None:
        self._release.set()
        super().__exit__(*exc)

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict, dict]:
        if self.redirect_to:
            return 302, {"Location": self.redirect_to}, {}
        if self.status:
            return self.status, {}, {"error": {"message": f"status {self.status} on purpose"}}
        if self.key is not None and authorization != f"Bearer {self.key}":
            return 401, {}, {"error": {"message": "invalid key"}}
        if path == "/v1/models":
            return 200, {}, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
        if path == "/v1/key":
            return 200, {}, {"data": {"label": "fake", "usage": 0, "limit": None, "is_free_tier": True}}
        return 404, {}, {"error": {"message": f"no route for GET {path}"}}

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})
                if provider.hang:
                    provider._release.wait(10)
                    return
                status, headers, body = provider._answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        return Handler
