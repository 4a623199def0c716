"""Shared fixtures: a throwaway project (data + config) and a real OpenAI-compatible server on 127.0.0.1."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from fake_endpoint import FakeEndpoint

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "fake-or-v1-TESTKEY-abcdef0123456789abcdef"

CONCEPTS = {  # concept_id: (name, active, {level: text})
    "tidal-power": (
        "Tidal power",
        "true",
        {
            "sentence": "Energy from the rise and fall of the sea.",
            "paragraph": "Turbines in estuaries turn twice a day as tides move.",
        },
    ),
    "ant-foraging": ("Ant foraging", "true", {"sentence": "Ants find food by laying and following trails."}),
    "sourdough": ("Sourdough", "true", {"paragraph": "A starter of wild yeast and bacteria leavens bread."}),
    "glaciers": ("Glaciers", "false", {"sentence": "Rivers of ice that grind valleys."}),
}
TEMPLATES = {
    "draft": {
        "ladder": (
            "essay_idea_last",
            "true",
            "Combine:\n{% for c in concepts %}- {{ c.name }}: {{ c.content }}\n"
            '{% endfor %}Write <essay-idea stage="N"> blocks.\n',
        ),
        "sketch": (
            "essay_block",
            "true",
            "Notes then <essay>...</essay> about {{ concepts | map(attribute='name') | join(' and ') }}.\n",
        ),
        "plain": ("", "false", "Brainstorm {{ concepts | length }} concepts.\n"),
    },
    "essay": {
        "polish": ("llm", "true", "Write an essay from this draft:\n{{ draft_block }}\n"),
        "verbatim": ("copy", "true", "{{ draft_block }}"),
    },
    "evaluation": {
        "judge-a": ("in_last_line", "true", "Judge this:\n{{ response }}\nEnd with SCORE: N\n"),
        "judge-b": ("complex", "true", "Rate novelty of:\n{{ response }}\nFinish with SCORE: N\n"),
    },
}
MODELS = [  # id, model, provider, display, gen, eval, pool, price
    ("gen-paid", "vendor/gen-model", "openrouter", "Gen", "true", "false", "paid", "1.5"),
    ("judge-paid", "vendor/judge-model", "openrouter", "Judge", "false", "true", "paid", "3"),
    ("free-one", "vendor/free:free", "openrouter", "Free", "false", "false", "free", "0"),
    ("qwen-local", "qwen2.5-coder-1.5b-instruct", "embedded", "Local", "true", "true", "local", "0"),
]
_CATALOG_FILES = {
    "draft": ("draft_templates.csv", "parser"),
    "essay": ("essay_templates.csv", "generator"),
    "evaluation": ("evaluation_templates.csv", "parser"),
}


def write_raw(raw: Path) -> None:
    """A small concept pool of our own: 3 active concepts, 2+2+2 active templates, 1 generator, 1 judge."""
    lines = ["concept_id,name,active"]
    for cid, (name, active, levels) in CONCEPTS.items():
        lines.append(f"{cid},{name},{active}")
        for level, text in levels.items():
            path = raw / "concepts" / f"descriptions-{level}" / f"{cid}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n")
    (raw / "concepts_metadata.csv").write_text("\n".join(lines) + "\n")
    for stage, templates in TEMPLATES.items():
        filename, column = _CATALOG_FILES[stage]
        rows = [f"template_id,template_name,description,active,{column}"]
        for tid, (kind, active, source) in templates.items():
            rows.append(f'{tid},{tid.title()},"A {stage} template, for tests",{active},{kind}')
            path = raw / "generation_templates" / stage / f"{tid}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        (raw / filename).write_text("\n".join(rows) + "\n")
    rows = ["id,model,provider,display_name,for_generation,for_evaluation,pool,price_per_mtok"]
    rows += [",".join(m) for m in MODELS]
    (raw / "llm_models.csv").write_text("\n".join(rows) + "\n")


SLOWEST = [line for line in (REPO / "tests" / "slowest.txt").read_text().splitlines() if not line.startswith("#")]
# The tests that run the real embedded model (llama.cpp on 2 threads).
REAL_MODEL = ("tests/test_embedded_cohort.py::", "tests/test_embedded.py::test_embedded_server_end_to_end")


def pytest_collection_modifyitems(config, items):
    """The order in which `make test`'s workers (pytest-xdist, --dist loadgroup) are handed tests: the slowest first,
    so that both end together; the real-model tests last, together on one worker, so that they run alone: llama.cpp's
    threads spin-wait for each other at every step and slow down many times over when another test takes a core."""
    rank = {nodeid: i for i, nodeid in enumerate(SLOWEST)}

    def key(item):
        if item.nodeid.startswith(REAL_MODEL):
            return (2, 0)
        base = item.nodeid.split("[")[0].removeprefix("tests/")
        return (0, rank[base]) if base in rank else (1, 0)

    for item in items:
        if item.nodeid.startswith(REAL_MODEL):
            item.add_marker(pytest.mark.xdist_group("real-model"))
    items.sort(key=key)  # stable: the rest keep their file order


@pytest.fixture(scope="session")
def endpoint():
    with FakeEndpoint() as server:
        yield server


@pytest.fixture
def project(tmp_path, endpoint, monkeypatch):
    """A project folder with its own data and config, pointed at the loopback endpoint."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    luigi_cfg = tmp_path / "config" / "luigi.cfg"  # Luigi's retries after 1 s instead of 5: the same policy, faster
    luigi_cfg.write_text(luigi_cfg.read_text().replace("retry_delay = 5", "retry_delay = 1"))
    write_raw(tmp_path / "data" / "1_raw")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAYDREAM_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DAYDREAM_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", endpoint.base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", FAKE_KEY)
    monkeypatch.delenv("GEN_TEMPLATES_ROOT", raising=False)
    monkeypatch.delenv("LUIGI_CONFIG_PATH", raising=False)
    endpoint.reset_stats()
    return tmp_path


def members_of(cohort: str | None = None) -> list:
    """The cohort's generations, resolved in this process the way `daydream run` resolves them (nothing is written)."""
    from daydream_luigi.cli.common import prepare

    return list(prepare(cohort, "http")[1].members.values())


class ForkServer:
    """The client of tests/cli_forkserver.py, started on first use in each pytest process."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="daydream-forkserver-"))
        self.socket_path = str(self.folder / "socket")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAYDREAM_", "LUIGI_"))}
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "cli_forkserver.py"), self.socket_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        if self.process.stdout.readline() != "ready\n":
            raise RuntimeError(f"tests/cli_forkserver.py did not start (exit {self.process.wait()})")
        atexit.register(self.close)

    def run(self, args: list[str], env: dict, cwd: Path | None, timeout: float) -> subprocess.CompletedProcess:
        out, err = (tempfile.mkstemp(dir=self.folder)[1] for _ in range(2))
        request = {"args": args, "env": env, "cwd": str(cwd or os.getcwd()), "stdout": out, "stderr": err}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(self.socket_path)
            connection.sendall(json.dumps(request).encode() + b"\n")
            connection.settimeout(timeout)
            answers = connection.makefile()
            pid = json.loads(answers.readline())["pid"]
            try:
                returncode = json.loads(answers.readline())["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["daydream", *args], timeout) from None
        try:
            return subprocess.CompletedProcess(
                [sys.executable, "-m", "daydream_luigi", *args],
                returncode,
                Path(out).read_text(),
                Path(err).read_text(),
            )
        finally:
            os.unlink(out)
            os.unlink(err)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


_fork_server: list[ForkServer] = []


def daydream(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `daydream` CLI in its own process (Luigi forks workers; a process keeps tests isolated), forked
    from a server that has imported the CLI once (tests/cli_forkserver.py)."""
    if not _fork_server:
        _fork_server.append(ForkServer())
    return _fork_server[0].run(list(args), {**os.environ, **(env or {})}, cwd, timeout=600)


def free_port() -> int:
    """A port where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def luigid(*options: str):
    """`daydream ui` on a free port (luigid with the project's pools), answering; yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daydream_luigi", "ui", "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                if requests.get(url + "api/task_list", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
