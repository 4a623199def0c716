"""Inputs you can trust, through the real CLI: keys reach only their own provider, a provider that fails its preflight
stops the run before anything is written, big runs ask first, and the read-only commands write nothing (checked on a
really read-only data folder)."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import FAKE_KEY, daydream
from fake_endpoint import FakeEndpoint
from fake_provider import FakeProvider

SECOND_KEY = "second-provider-key-0123456789"


def add_provider(project: Path, name: str, base_url: str, key_env: str | None) -> None:
    path = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["endpoints"][name] = {"base_url": base_url, **({"api_key_env": key_env} if key_env else {})}
    path.write_text(yaml.safe_dump(settings))


def move_judge_to(project: Path, provider: str) -> None:
    models = project / "data" / "1_raw" / "llm_models.csv"
    models.write_text(
        models.read_text().replace(
            "judge-paid,vendor/judge-model,openrouter,", f"judge-paid,vendor/judge-model,{provider},"
        )
    )


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_each_key_goes_only_to_its_own_provider(project, endpoint, monkeypatch):
    with FakeEndpoint() as second:
        add_provider(project, "second", second.base_url, "SECOND_KEY")
        move_judge_to(project, "second")
        result = daydream("run", env={"SECOND_KEY": SECOND_KEY})
        assert result.returncode == 0, result.stdout + result.stderr
        first_auth = {r["headers"].get("Authorization") for r in endpoint.requests}
        second_auth = {r["headers"].get("Authorization") for r in second.requests}
        assert first_auth == {f"Bearer {FAKE_KEY}"} and second_auth == {f"Bearer {SECOND_KEY}"}
        assert endpoint.stats["requests"] == 6 + 6 and second.stats["requests"] == 1 + 24  # the judge's calls moved
        # its preflight: GET /models, which does not prove a key, and a 1-token chat completion, which does
        assert len([r for r in second.requests if r["path"] == "/v1/models"]) == 1
        assert second.requests[1]["body"]["max_tokens"] == 1


def test_a_key_is_never_sent_over_plain_http_to_another_machine(project, endpoint):
    result = daydream("run", env={"DAYDREAM_LLM_BASE_URL": "http://models.example.org:8000/v1"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: provider 'openrouter': base URL http://models.example.org:8000/v1 (from DAYDREAM_LLM_BASE_URL) is "
        "plain http to another machine, so the key would travel unencrypted; use https://, or a loopback address "
        "(127.0.0.1, ::1, localhost), e.g. through an SSH tunnel"
    ]
    assert endpoint.stats["requests"] == 0 and not (project / "data" / "gens").exists()


def test_a_rejected_key_stops_the_run_before_anything_is_written(project, endpoint):
    with FakeProvider(key="the-right-key") as provider:
        add_provider(project, "second", provider.base_url, "SECOND_KEY")
        move_judge_to(project, "second")
        result = daydream("run", env={"SECOND_KEY": SECOND_KEY})
        assert [r["path"] for r in provider.requests] == ["/v1/models"]
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: provider 'second' at {provider.base_url}: the key in SECOND_KEY was "
        f"rejected (HTTP 401); check SECOND_KEY"
    ]
    assert SECOND_KEY not in result.stdout + result.stderr
    assert endpoint.stats["requests"] == 0 and not (project / "data" / "gens").exists()
    assert not (project / "data" / "cohorts").exists()


def test_a_provider_where_nothing_listens_is_one_message(project, endpoint):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    result = daydream("run", env={"DAYDREAM_LLM_BASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: provider 'openrouter' at {url}: cannot connect (connection refused: "
        f"nothing listens there); start the server or correct the base URL"
    ]
    assert not (project / "data" / "gens").exists()


def test_a_big_run_without_a_terminal_needs_yes(project, endpoint):
    path = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(path.read_text())
    settings["guard"]["max_calls"] = 10
    path.write_text(yaml.safe_dump(settings))
    refused = daydream("run")
    assert refused.returncode == 2
    assert re.fullmatch(
        r"error: not started: this run makes 36 model call\(s\) estimated at \$0\.\d\d, over "
        r"guard\.max_calls \(10\) in config/daydream\.yaml; nothing to ask without a terminal: pass "
        r"--yes to start it, or raise the limits\n",
        refused.stderr,
    )
    assert endpoint.stats["requests"] == 0 and not (project / "data" / "gens").exists()
    started = daydream("run", "--yes")
    assert started.returncode == 0 and endpoint.stats["requests"] == 36


@pytest.fixture
def read_only(project):
    """Make the project's data folder really read-only (a read-only bind mount onto itself) while the test runs."""
    data = project / "data"

    def mount(*args):
        return subprocess.run(["mount", *args], capture_output=True, text=True)

    if mount("--bind", str(data), str(data)).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root and mount permission)")
    try:
        if mount("-o", "remount,ro,bind", str(data)).returncode != 0:
            pytest.skip("cannot remount read-only here")
        with pytest.raises(OSError):
            (data / "probe").write_text("x")
        yield data
    finally:
        subprocess.run(["umount", str(data)], check=True)


def test_read_only_commands_work_on_a_read_only_data_folder(project, endpoint, request):
    assert daydream("run").returncode == 0
    data = request.getfixturevalue("read_only")
    before = snapshot(data)
    for args in (
        ["plan"],
        ["status"],
        ["check"],
        ["tasks"],
        ["run", "--dry-run"],
        ["cohorts"],
        ["plan", "--cohort", next(p.name for p in (data / "cohorts").iterdir())],
    ):
        result = daydream(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
    assert snapshot(data) == before


def test_a_fresh_data_folder_can_be_planned_read_only(project, endpoint, request):
    data = request.getfixturevalue("read_only")
    for args in (["plan"], ["status"], ["run", "--dry-run"], ["check"]):
        result = daydream(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert not (data / "cohorts").exists() and not (data / "gens").exists()
    assert os.listdir(data) == ["1_raw"]
