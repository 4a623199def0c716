"""The circuit breaker: which failures count (real sockets on 127.0.0.1), when it opens, and that it is shared."""

import multiprocessing
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from daydream_luigi.providers.http_errors import is_connection_failure
from daydream_luigi.providers.limits.breaker import BreakerOpen, CircuitBreaker

URL = "http://127.0.0.1:9/v1"


def _raised(url: str, timeout=(2.0, 2.0)) -> BaseException | None:
    try:
        requests.post(url, json={}, timeout=timeout)
    except requests.RequestException as exc:
        return exc
    return None


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Answers500(_Quiet):
    def do_POST(self):
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _HangsUp(_Quiet):
    def do_POST(self):
        self.connection.shutdown(socket.SHUT_RDWR)  # connected, then no answer at all


class _Silent(_Quiet):
    def do_POST(self):
        self.server.release.wait(5)  # connected, answers too late


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.release = threading.Event()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"


def test_refused_unresolvable_and_connect_timeouts_are_connection_failures():
    assert is_connection_failure(_raised(f"http://127.0.0.1:{_closed_port()}/v1/chat/completions"))
    assert is_connection_failure(_raised("http://no-such-host.invalid/v1/chat/completions"))
    with socket.socket() as listener:  # a full accept queue drops new connections: the connect times out
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued = [socket.socket() for _ in range(3)]
        for conn in queued:
            conn.setblocking(False)
            conn.connect_ex(listener.getsockname())
        try:
            exc = _raised(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=(0.3, 0.3))
        finally:
            for conn in queued:
                conn.close()
    assert isinstance(exc, requests.exceptions.ConnectTimeout) and is_connection_failure(exc)


def test_a_server_that_answers_badly_is_not_a_connection_failure():
    for handler in (_HangsUp, _Silent, _Answers500):
        server, url = _serve(handler)
        try:
            exc = _raised(url, timeout=(2.0, 0.3))
        finally:
            server.release.set()
            server.shutdown()
            server.server_close()
        assert exc is None if handler is _Answers500 else not is_connection_failure(exc), handler.__name__
    assert not is_connection_failure(ValueError("not a request error"))


def test_the_breaker_opens_after_n_failures_in_a_row_and_a_success_closes_it(tmp_path):
    breaker = CircuitBreaker(tmp_path / ".breaker", threshold=3)
    assert [breaker.failure("vllm", URL, "[Errno 111] Connection refused") for _ in range(2)] == [False, False]
    breaker.success("vllm")  # any answer from the server starts the count again
    assert [breaker.failure("vllm", URL, "[Errno 111] Connection refused") for _ in range(3)] == [False, False, True]
    breaker.check("openrouter")  # other providers go on
    with pytest.raises(BreakerOpen) as caught:
        breaker.check("vllm")
    assert str(caught.value) == (
        "provider vllm at http://127.0.0.1:9/v1 is unreachable: 3 connection failures in a row (last: [Errno 111] "
        "Connection refused); its calls stop for this run. Check that the server is running and the base URL is "
        "right, then run again"
    )
    assert breaker.failure("vllm", URL, "[Errno 111] Connection refused") is False  # opened once, reported once
    breaker.success("vllm")
    breaker.check("vllm")


def _fail_twice(state_dir):
    breaker = CircuitBreaker(state_dir, threshold=3)
    for _ in range(2):
        breaker.failure("ollama", URL, "connect timed out after 10s")


def test_failures_in_different_processes_add_up(tmp_path):
    worker = multiprocessing.get_context("fork").Process(target=_fail_twice, args=(tmp_path / ".breaker",))
    worker.start()
    worker.join(30)
    assert worker.exitcode == 0
    assert CircuitBreaker(tmp_path / ".breaker", threshold=3).failure("ollama", URL, "connect timed out after 10s")
    with pytest.raises(BreakerOpen, match="3 connection failures in a row"):
        CircuitBreaker(tmp_path / ".breaker", threshold=3).check("ollama")
