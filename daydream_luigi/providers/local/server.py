"""The embedded offline model's server: llama.cpp's OpenAI-compatible HTTP server (``xllamacpp``) serving the file
``weights.ensure_model_file`` assembled, on 127.0.0.1 and a free port, and the process entry point that runs it.

The server runs in a child process (``python -m daydream_luigi.providers.local.server serve``), not in
the calling process. In-process serving does work (the constructor blocks until the model
is loaded, dropping the last reference frees it, forked children can call it over HTTP),
but a child is more robust for a Luigi run:

* xllamacpp's ``Server`` has no stop method; it is freed only when its last reference is
  garbage-collected. A child is stopped for sure by SIGTERM, even halfway through loading,
  and the OS reclaims its ~2 GB.
* The server keeps a dozen native threads. Luigi forks its workers from the process that
  would host them; a fork only copies the calling thread, which is safe only as long as
  nothing in the child touches the server's state. A child keeps the scheduler process
  free of those threads.
* A llama.cpp abort (assertion, out of memory) would kill the whole pipeline; in a child it
  becomes an EmbeddedModelError with the first error line of its log.
* The child reads its stdin, a pipe from the parent; when the parent dies for any reason,
  the pipe closes and the child exits, so no orphaned server keeps the memory.

The cost is one Python start-up, about 0.1 s next to a 2-4 s model load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from daydream_luigi.providers.local.weights import EmbeddedModelError, ensure_model_file

# What the pipeline sends as "model". The server registers it as the model's alias; llama.cpp
# serves its one loaded model whatever name a request carries.
MODEL_STRING = "qwen2.5-coder-1.5b-instruct"

_PORT_LINE = "DAYDREAM-EMBEDDED-PORT"


_LOG_ERROR = re.compile(r"^[\d.]+ E (?:\S+\s+)?(.*)$")


def _log_summary(path: Path | None, limit: int = 300) -> str:
    """The first llama.cpp error line of the child's log, else its last line."""
    if path is None:
        return ""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    for line in lines:
        match = _LOG_ERROR.match(line)
        if match:
            return match.group(1)[:limit]
    return lines[-1][:limit] if lines else ""


class EmbeddedServer:
    """llama.cpp's OpenAI-compatible server for ``model_path`` in a child process.

    ``base_url`` is ``http://127.0.0.1:<port>/v1`` once :meth:`start` returns. ``ctx_size`` is
    the context of each of the ``parallel`` slots. Use as a context manager, or call
    :meth:`start` and :meth:`stop` (idempotent; also run at interpreter exit).
    """

    def __init__(
        self,
        model_path: Path,
        threads: int = 2,
        parallel: int = 1,
        ctx_size: int = 4096,
        ready_timeout: float = 180.0,
        log_path: Path | None = None,
    ):
        self.model_path = Path(model_path)
        self.threads = int(threads)
        self.parallel = int(parallel)
        self.ctx_size = int(ctx_size)
        self.ready_timeout = float(ready_timeout)
        self.log_path = Path(log_path) if log_path is not None else None
        self._own_log = log_path is None
        self.port: int | None = None
        self.base_url: str = ""
        self.load_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()

    # ---- lifecycle

    def start(self) -> EmbeddedServer:
        with self._lock:
            if self._proc is not None:
                return self
            if not self.model_path.is_file():
                raise EmbeddedModelError(f"model file {self.model_path} does not exist; call ensure_model_file() first")
            if self.log_path is None:
                fd, name = tempfile.mkstemp(prefix="daydream-embedded-", suffix=".log")
                os.close(fd)
                self.log_path = Path(name)
            cmd = [
                sys.executable,
                "-m",
                "daydream_luigi.providers.local.server",
                "serve",
                "--model",
                str(self.model_path),
                "--port",
                "0",
                "--threads",
                str(self.threads),
                "--parallel",
                str(self.parallel),
                "--ctx-size",
                str(self.ctx_size),
            ]
            t0 = time.monotonic()
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,  # the child exits when this pipe closes (we died)
                    stdout=subprocess.PIPE,
                    stderr=log,
                    close_fds=True,
                    env=_child_env(),
                )
            _register_for_exit(self)
        try:
            self.port = self._read_port(t0 + self.ready_timeout)
            self.base_url = f"http://127.0.0.1:{self.port}/v1"
            self._wait_ready(t0 + self.ready_timeout)
        except BaseException:
            self._own_log = False  # the error message points at the log: keep it
            self.stop()
            raise
        self.load_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or os.getpid() != self._owner_pid:
            return  # never started, already stopped, or we are a forked copy of the owner
        with contextlib.suppress(OSError):
            proc.stdin.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(OSError):
            proc.stdout.close()
        _unregister_for_exit(self)
        if self._own_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- helpers

    def _died(self, what: str) -> EmbeddedModelError:
        code = self._proc.poll() if self._proc else None
        summary = _log_summary(self.log_path)
        return EmbeddedModelError(
            f"embedded model server {what} (exit code {code}){': ' + summary if summary else ''}; "
            f"it needs about 2.5 GB of free memory and an intact model file, see the log {self.log_path}"
        )

    def _read_port(self, deadline: float) -> int:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(timeout=min(0.5, max(0.0, deadline - time.monotonic()))):
                    if proc.poll() is not None:
                        raise self._died("exited during start-up")
                    continue
                data = os.read(proc.stdout.fileno(), 4096)
                if not data:
                    proc.wait(timeout=5)
                    raise self._died("exited during start-up")
                buf += data
                for line in buf.decode(errors="replace").splitlines():
                    if line.startswith(_PORT_LINE + " "):
                        return int(line.split()[1])
        raise EmbeddedModelError(
            f"embedded model server did not report its port within {self.ready_timeout:g} s; "
            f"raise ready_timeout or see the log {self.log_path}"
        )

    def _wait_ready(self, deadline: float) -> None:
        import requests

        url = f"{self.base_url}/models"
        last = "no answer"
        with requests.Session() as session:
            session.trust_env = False  # never route loopback through a proxy
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    raise self._died("exited while loading the model")
                try:
                    resp = session.get(url, timeout=5)
                    if resp.status_code == 200:
                        return
                    last = f"HTTP {resp.status_code}"
                except requests.RequestException as exc:
                    last = exc.__class__.__name__
                time.sleep(0.25)
        raise EmbeddedModelError(
            f"embedded model server was not ready within {self.ready_timeout:g} s (last answer: {last}); "
            f"raise ready_timeout on a slow machine or see the log {self.log_path}"
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import this very package, even when it is not installed.
    pkg_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    return env


_live_servers: set[EmbeddedServer] = set()
_atexit_registered = False


def _register_for_exit(server: EmbeddedServer) -> None:
    global _atexit_registered
    _live_servers.add(server)
    if not _atexit_registered:
        import atexit

        atexit.register(_stop_all)
        _atexit_registered = True


def _unregister_for_exit(server: EmbeddedServer) -> None:
    _live_servers.discard(server)


def _stop_all() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.stop()


def _serve(model: Path, port: int, threads: int, parallel: int, ctx_size: int) -> int:
    """Body of the child process: serve until SIGTERM, or until stdin closes (the parent is gone)."""
    # SIGTERM/SIGHUP end the process at once, even in the middle of loading the model: the
    # OS reclaims memory and socket, no destructor runs. Ctrl-C in the terminal is for the
    # parent, which stops us itself (or dies, which closes our stdin).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _exit_when_parent_gone():
        with contextlib.suppress(OSError):
            while os.read(0, 1024):
                pass
        os._exit(0)

    threading.Thread(target=_exit_when_parent_gone, name="parent-watch", daemon=True).start()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {MODEL_STRING}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = ctx_size * parallel  # llama.cpp splits n_ctx between the slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_threads_http = max(8, 2 * parallel + 2)  # health checks never wait behind busy slots
    params.ui = False

    try:
        server = xllamacpp.Server(params)  # returns once the model is loaded
        actual_port = _parse_port(server.listening_address)
    except Exception as exc:
        print(f"daydream-embedded: {exc}", file=sys.stderr, flush=True)
        os._exit(2)
    print(f"{_PORT_LINE} {actual_port}", flush=True)
    # Nobody reads our stdout after the port line: send any later output to the log
    # so that a full pipe can never block the server.
    os.dup2(2, 1)
    while True:
        time.sleep(3600)  # the server runs on its own threads; we only wait to be ended


def _parse_port(address) -> int:
    if isinstance(address, int):
        return address
    text = str(address)
    return int(text.rsplit(":", 1)[-1].strip("/ []"))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daydream_luigi.providers.local.server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a GGUF model on 127.0.0.1 (prints the port)")
    serve.add_argument("--model", required=True, type=Path)
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--threads", type=int, default=2)
    serve.add_argument("--parallel", type=int, default=1)
    serve.add_argument("--ctx-size", type=int, default=4096)
    sub.add_parser("assemble", help="assemble and verify the model file, print its path")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command == "serve":
        return _serve(args.model, args.port, args.threads, args.parallel, args.ctx_size)
    try:
        print(ensure_model_file())
    except EmbeddedModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
