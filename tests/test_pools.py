"""Pool limits are Luigi resources (plus the call slots of `daydream run`): more workers than the limit never means
more concurrent calls than the limit, and a full pool's next generation waits ready."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import daydream
from fake_endpoint import FakeEndpoint


def test_paid_pool_limit_holds_with_more_workers_than_the_limit(project, tmp_path):
    config = tmp_path / "limits.cfg"
    config.write_text("[resources]\nfree = 1\npaid = 2\nlocal = 1\n[core]\nautoload_range = false\n")
    with FakeEndpoint(latency=0.2) as slow:
        result = daydream(
            "run", "--workers", "6", env={"LUIGI_CONFIG_PATH": str(config), "DAYDREAM_LLM_BASE_URL": slow.base_url}
        )
        assert result.returncode == 0, result.stderr
        assert slow.stats["requests"] == 36
        assert slow.stats["max_concurrent"] == 2  # the limit, reached but never exceeded


def two_slot_pool(tmp_path) -> str:
    config = tmp_path / "limits.cfg"
    config.write_text(
        "[resources]\nfree = 1\npaid = 2\nlocal = 1\n[core]\nautoload_range = false\n"
        "[worker]\nforce_multiprocessing = true\ntimeout = 7200\n"
    )
    return str(config)


def prompts_without_a_request(project: Path) -> set:
    gens = project / "data" / "gens" / "draft"
    return {p.parent.name for p in gens.glob("*/prompt.txt") if not (p.parent / "attempts.jsonl").exists()}


def test_a_full_pool_has_its_next_generation_ready_and_never_more_calls_than_its_limit(project, tmp_path):
    """Luigi runs a pool's limit plus one task process here; the extra one renders its prompt while both slots are
    busy and sends only when one frees."""
    with FakeEndpoint(latency=2.0) as slow:
        process = subprocess.Popen(
            [sys.executable, "-m", "daydream_luigi", "run", "--stage", "draft"],
            env={**os.environ, "LUIGI_CONFIG_PATH": two_slot_pool(tmp_path), "DAYDREAM_LLM_BASE_URL": slow.base_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not (slow.stats["requests"] == 2 and prompts_without_a_request(project)):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        assert slow.stats["requests"] == 2  # the two calls still run: the third draft is rendered and waits
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stdout + stderr
        assert slow.stats["requests"] == 6 and slow.stats["max_concurrent"] == 2


def test_ctrl_c_while_a_generation_waits_for_a_slot_sends_nothing_more(project, tmp_path):
    with FakeEndpoint(latency=1.0) as slow:
        env = {**os.environ, "LUIGI_CONFIG_PATH": two_slot_pool(tmp_path), "DAYDREAM_LLM_BASE_URL": slow.base_url}
        process = subprocess.Popen(
            [sys.executable, "-m", "daydream_luigi", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not (slow.stats["requests"] == 2 and prompts_without_a_request(project)):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        [waiting] = prompts_without_a_request(project)
        os.killpg(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stdout + stderr
        assert slow.stats["requests"] == 2  # the calls in flight finished; the waiting one never started
        assert waiting in prompts_without_a_request(project)
        assert "Traceback" not in stdout + stderr
        resumed = daydream(
            "run", env={"LUIGI_CONFIG_PATH": env["LUIGI_CONFIG_PATH"], "DAYDREAM_LLM_BASE_URL": slow.base_url}
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert slow.stats["requests"] == 36 and slow.stats["max_concurrent"] == 2
