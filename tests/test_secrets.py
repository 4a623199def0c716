"""Secrets and sandboxing: the API key goes to the provider and nowhere else; templates cannot reach Python internals;
every server the project starts listens on loopback only."""

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import daydream
from fake_endpoint import FakeEndpoint

from daydream_luigi.cli import main
from daydream_luigi.providers import chat

KEY = "fake-or-v1-SECRET-daydream-7f3a9c2e5b1d40688e1f"
# the whole key, and pieces of it that a cut or a partial scrub would leave behind
FRAGMENTS = (KEY, KEY[-24:], "SECRET-daydream", "7f3a9c2e5b1d")


def fast_retries(project: Path, max_attempts: int) -> None:
    """Retry quickly in this throwaway project: tiny backoff, `max_attempts` attempts."""
    path = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["retry"].update(max_attempts=max_attempts, backoff_base=0.01, backoff_max=0.05)
    path.write_text(yaml.safe_dump(settings))


def assert_no_key(where: str, data: bytes | str) -> None:
    blob = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    for fragment in FRAGMENTS:
        assert fragment.encode() not in blob, f"the API key (or part of it: {fragment!r}) leaked into {where}"


def assert_data_folder_clean(project: Path) -> int:
    """Every file under the data folder, hidden and temporary ones included; returns how many were checked."""
    files = [p for p in (project / "data").rglob("*") if p.is_file()]
    for path in files:
        assert_no_key(str(path), path.read_bytes())
    return len(files)


def error_messages(project: Path) -> list[str]:
    return [json.loads(p.read_text())["error"] for p in (project / "data" / "gens").rglob("error.json")]


def test_api_key_reaches_the_provider_and_nothing_else(project, endpoint, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    fast_retries(project, max_attempts=2)
    # one worker, so the scripted answers go to the first drafts in turn: a 401, a 400, and a 500 twice (exhausted);
    # Luigi's own retry of a failed task is switched off here (it has its own test) so the failures stay failures
    luigi_cfg = project / "config" / "luigi.cfg"
    luigi_cfg.write_text(luigi_cfg.read_text().replace("retry_count = 3", "retry_count = 1"))
    endpoint.script("401", "400", "500", "500")
    result = daydream("run", "--workers", "1")
    assert result.returncode == 1, result.stdout + result.stderr

    errors = error_messages(project)
    assert len(errors) == 3
    assert any("HTTP 401: No auth credentials found; check OPENROUTER_API_KEY" in e for e in errors)
    assert any("HTTP 400: " in e for e in errors)
    assert any("failed after 2 attempts (retries exhausted); last outcome: http_500" in e for e in errors)
    assert "failed 3, blocked 18" in result.stdout

    # the key was really sent, on every request, as a Bearer header (so this test can fail)
    chats = [r["headers"] for r in endpoint.requests if r["path"].endswith("/chat/completions")]
    # the failed drafts' requests (401, 400, 500 twice), then the other drafts, their llm essays and evaluations
    assert len(chats) == endpoint.stats["requests"] == (1 + 1 + 2) + 3 + 3 + 12
    [preflight] = [r["headers"] for r in endpoint.requests if r["path"] == "/v1/key"]  # one check of the key
    assert {h.get("Authorization") for h in chats + [preflight]} == {f"Bearer {KEY}"}

    assert assert_data_folder_clean(project) > 100
    assert_no_key("stdout", result.stdout)
    assert_no_key("stderr", result.stderr)
    for message in errors:
        assert_no_key("an error.json message", message)

    # the LLMError the pipeline turned into those messages, raised directly
    endpoint.script("401")
    with pytest.raises(chat.LLMError) as info:
        chat.chat_completion(
            endpoint.base_url, KEY, "vendor/gen-model", "hello", retry=chat.RetryPolicy(max_attempts=1)
        )
    assert_no_key("LLMError", str(info.value) + repr(info.value.args) + json.dumps(info.value.attempts))
    assert endpoint.requests[-1]["headers"]["Authorization"] == f"Bearer {KEY}"


class _EchoingProvider(BaseHTTPRequestHandler):
    """A provider that quotes the caller's credentials back in its errors: a 500 page, then a 401 JSON message."""

    protocol_version = "HTTP/1.1"
    calls = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):  # the preflight's GET /models: the key is accepted here, it is the calls that echo it
        data = json.dumps({"object": "list", "data": [{"id": "vendor/gen-model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        with self.lock:
            type(self).calls += 1
            odd = self.calls % 2 == 1
        if odd:
            status, ctype, body = 500, "text/plain", f"upstream refused the request (Authorization: {auth})"
        else:
            status, ctype = 401, "application/json"
            body = json.dumps(
                {
                    "error": {
                        "message": f"Invalid API key {auth.removeprefix('Bearer ')} for this account",
                        "metadata": {"raw": f"upstream saw header {auth!r}"},
                    }
                }
            )
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_a_provider_echoing_the_key_never_gets_it_written(project, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY + "\n")  # as a .env file often leaves it
    fast_retries(project, max_attempts=3)
    _EchoingProvider.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingProvider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
        result = daydream("run", "--workers", "1")  # one at a time, so each draft gets the 500, then the 401
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    errors = error_messages(project)
    assert len(errors) == 6  # every draft failed on the 401 after one retried 500
    for message in errors:
        assert "HTTP 401: Invalid API key *** for this account" in message and "check OPENROUTER_API_KEY" in message
    [log] = re.findall(r"^log: (.+)$", result.stdout, re.M)  # the retried 500 was logged to the run's file, scrubbed
    assert "(Authorization: Bearer ***)" in Path(log).read_text()
    assert_data_folder_clean(project)
    assert_no_key("stdout", result.stdout)
    assert_no_key("stderr", result.stderr)


TEMPLATE_ESCAPES = [  # (stage, template, source): each reaches for Python internals in a different way
    ("draft", "ladder", "{{ ''.__class__.__mro__ }}"),
    ("draft", "ladder", "{{ concepts.__class__.__base__.__subclasses__() }}"),
    ("draft", "sketch", "{% for c in concepts %}{{ c.content.__class__ }}{% endfor %}"),
    ("draft", "sketch", "{{ concepts['__class__'] }}"),
    ("draft", "ladder", "{{ concepts | attr('__class__') }}"),
    ("draft", "ladder", "{{ self._TemplateReference__context }}"),
    ("essay", "polish", "{{ draft_block.__init__.__globals__ }}"),
    ("evaluation", "judge-a", "{{ lipsum.__globals__['os'] }} SCORE"),
]


@pytest.mark.parametrize("stage,template,source", TEMPLATE_ESCAPES)
def test_template_reaching_for_python_internals_is_refused_before_anything_runs(
    project, endpoint, stage, template, source
):
    path = project / "data" / "1_raw" / "generation_templates" / stage / f"{template}.txt"
    path.write_text(source)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: template {template!r} reaches for Python internals (")
    assert line.endswith("and their public fields; fix the template")
    assert not (project / "data" / "gens").exists() and not (project / "data" / "cohorts").exists()
    assert endpoint.stats["requests"] == 0


def test_fake_endpoint_listens_on_loopback_only(endpoint):
    def listening_address(port: int) -> str:
        """The local address of the listening TCP socket on `port`, from /proc/net/tcp (hex, little-endian IPv4)."""
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A = LISTEN
                return ".".join(str(b) for b in reversed(bytes.fromhex(address)))
        raise AssertionError(f"nothing listens on port {port}")

    with FakeEndpoint() as server:  # the library default
        assert server.base_url.startswith("http://127.0.0.1:")
        assert listening_address(server.port) == "127.0.0.1"
    assert listening_address(int(endpoint.base_url.split(":")[2].split("/")[0])) == "127.0.0.1"  # the tests' one

    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("fake_endpoint.py")), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )  # the standalone command
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert listening_address(int(url.split(":")[2].split("/")[0])) == "127.0.0.1"
    finally:
        process.terminate()
        process.wait(timeout=10)
