"""Stopping a real run: Ctrl-C (SIGINT to the whole process group, as a terminal sends it) and SIGTERM let the calls in
flight finish and keep their answers, exit 130 / 143, leave a clean store, and the next run makes exactly the rest;
a second Ctrl-C abandons the calls in flight. Exit codes and messages of the other endings, and the progress display."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import daydream
from fake_endpoint import FakeEndpoint

MODEL_CALLS = 6 + 6 + 24


@pytest.fixture
def slow(project, monkeypatch):
    with FakeEndpoint(latency=1.0) as server:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", server.base_url)
        yield server


def start(project: Path, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    out, err = project / "run.out", project / "run.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "daydream_luigi", "run", *args], stdout=stdout, stderr=stderr, start_new_session=True
        )
    return process, out, err


def wait_for_requests(server: FakeEndpoint, n: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while server.stats["requests"] < n:
        assert process.poll() is None, "the run ended before its calls were in flight"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def kept_and_sent(project: Path) -> tuple[set, set]:
    """Generations whose answer is kept (call.json), and those that sent at least one request."""
    gens = project / "data" / "gens"
    kept = {p.parent.name for p in gens.glob("*/*/call.json")}
    sent = {
        p.parent.name
        for p in gens.glob("*/*/attempts.jsonl")
        if any(json.loads(line)["event"] == "sent" for line in p.read_text().splitlines())
    }
    return kept, sent


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"])
def test_a_signal_lets_calls_in_flight_finish_then_the_next_run_makes_exactly_the_rest(project, slow, signum, code):
    process, out, err = start(project, "--workers", "4")
    wait_for_requests(slow, 3, process)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
    else:
        process.send_signal(signal.SIGTERM)  # `kill PID`
    assert process.wait(timeout=120) == code, out.read_text() + err.read_text()
    stdout, stderr = out.read_text(), err.read_text()
    name = signal.Signals(signum).name
    assert (
        f"{name}: no new generation starts; waiting for the calls in flight to finish (again to abandon them)" in stderr
    )
    assert "Traceback" not in stdout + stderr

    kept, sent = kept_and_sent(project)
    assert kept == sent and len(kept) == slow.stats["requests"] < MODEL_CALLS  # every request paid for is kept
    finished = len(list((project / "data" / "gens").glob("*/*/metadata.json")))
    assert re.search(
        rf"^interrupted: {finished} generation\(s\) finished in this run, {42 - finished} left; every "
        r"call in flight finished and its answer is kept\. Resume with the same command",
        stdout,
        re.M,
    )
    assert f"requests sent {len(kept)}, answers received {len(kept)}," in stdout
    assert "reports:" not in stdout  # an interrupted run writes none

    check = daydream("check")
    assert check.returncode == 0 and check.stdout.splitlines()[-1] == "0 problem(s) found", check.stdout

    before = slow.stats["requests"]
    resumed = daydream("run")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert slow.stats["requests"] - before == MODEL_CALLS - len(kept)  # exactly the calls not made yet
    assert f"done {42 - finished}, skipped (already complete) {finished}, failed 0" in resumed.stdout


def test_a_second_ctrl_c_abandons_the_calls_in_flight(project, slow):
    process, out, err = start(project, "--workers", "4")
    wait_for_requests(slow, 3, process)
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 130
    stdout = out.read_text()
    assert "calls still in flight were abandoned" in stdout and "Traceback" not in stdout + err.read_text()
    # abandoned calls left no answer and nothing that looks complete: the next run makes every missing call once
    kept, sent = kept_and_sent(project)
    assert kept < sent
    check = daydream("check")  # the abandoned calls are listed, not counted as problems
    lines = check.stdout.splitlines()
    assert check.returncode == 0 and lines[-1] == "0 problem(s) found", check.stdout
    assert len(lines) - 1 == len(sent - kept) and all(line.startswith("unanswered ") for line in lines[:-1])
    before = slow.stats["requests"]
    resumed = daydream("run")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert slow.stats["requests"] - before == MODEL_CALLS - len(kept)


def test_a_failed_report_exits_1_with_its_reason_and_the_traceback_only_in_the_log(project, endpoint):
    from conftest import members_of

    cohort_id = members_of()[0].cohort_id
    reports = project / "data" / "cohorts" / cohort_id / "reports"
    reports.parent.mkdir(parents=True)
    reports.write_text("a file where the reports folder should be\n")
    result = daydream("run")
    assert result.returncode == 1
    assert "done 42, skipped (already complete) 0, failed 0, blocked 0, not started 0" in result.stdout
    [log] = re.findall(r"^log: (.+)$", result.stdout, re.M)
    assert f"report failed: the report tasks failed; see {log}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr and "Traceback" in Path(log).read_text()


def test_a_central_scheduler_that_is_not_running_is_one_line(project, endpoint):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = daydream("run", "--scheduler", "central", "--scheduler-url", f"http://127.0.0.1:{port}/")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: no Luigi scheduler answers at http://127.0.0.1:{port}/; start one with `daydream ui` (or `make ui`), "
        f"or run with the local scheduler (drop --scheduler central)"
    ]
    assert endpoint.stats["requests"] == 0 and not (project / "data" / "gens").exists()


def test_each_failure_is_one_line_on_the_terminal_as_it_happens(project, endpoint):
    endpoint.script("400")
    result = daydream("run", "--workers", "1")
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert len(failures) == 1 and failures[0].endswith(
        "HTTP 400: fake-model is not a valid model ID; check the model "
        "string in data/1_raw/llm_models.csv and max_tokens"
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_quiet_prints_only_the_summary(project, endpoint):
    result = daydream("run", "--quiet")
    assert result.returncode == 0
    assert result.stderr.splitlines() == ["cohort active-08c9d38e: 42 generations, 42 to run"]


def test_verbose_adds_a_line_per_finished_generation(project, endpoint):
    result = daydream("run", "--verbose")
    assert result.returncode == 0, result.stdout + result.stderr
    done = [line.split() for line in result.stderr.splitlines() if line.startswith("done ")]
    gens = project / "data" / "gens"
    calls = {p.parent.name for p in gens.glob("*/*/call.json")}
    expected = {(p.parent.parent.name, p.parent.name) for p in gens.glob("*/*/metadata.json")}
    assert len(done) == 42 and {(stage, gen_id) for _, stage, gen_id, *_ in done} == expected
    assert all(pool == (["(pool", "paid)"] if gen_id in calls else []) for _, _, gen_id, *pool in done)


def test_a_terminal_gets_a_live_table_per_stage_and_pool(project, endpoint):
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "daydream_luigi", "run"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "140"},
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the run closed its end
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=120) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode("utf-8", "replace"))
    for header in ("stage", "pool", "done", "running", "queued", "failed", "total"):
        assert header in text
    assert re.search(r"evaluation\s*│\s*paid\s*│\s*24\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*24", text), text[-3000:]
    assert re.search(r"answers 36 of 36 requests", text)
