"""Scale-out: two run processes on one real luigid divide a cohort between them.

Each process sends its calls with a key of its own, so the loopback endpoint itself says which process made each
call; its concurrency counter says what the pool saw across both.
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

from conftest import FAKE_KEY, daydream, luigid, members_of
from fake_endpoint import FakeEndpoint

CHAT = "/v1/chat/completions"
KEYS = {name: FAKE_KEY.replace("TESTKEY", f"PROCESS{name}") for name in "AB"}
POOL = 4


def start_run(name: str, base_url: str, url: str) -> subprocess.Popen:
    """`daydream run` of the cohort on luigid as one of two processes, calling with its own key."""
    return subprocess.Popen(
        [sys.executable, "-m", "daydream_luigi", "run", "--cohort", "wide", "-q"]
        + ["--scheduler", "central", "--scheduler-url", url, "--shared-by", "2"],
        env={**os.environ, "DAYDREAM_LLM_BASE_URL": base_url, "OPENROUTER_API_KEY": KEYS[name]},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def calls_by_process(server: FakeEndpoint) -> Counter:
    who = {f"Bearer {key}": name for name, key in KEYS.items()}
    return Counter(who[r["headers"]["Authorization"]] for r in server.requests if r["path"] == CHAT)


def wide_cohort(project, replicates: int) -> int:
    """The cohort `wide`: 42 generations per draft replicate, 36 of which call the model (the copy essays call
    nothing); the paid pool made 4 wide. Returns the number of calls the cohort needs."""
    config = project / "config" / "luigi.cfg"
    config.write_text(config.read_text().replace("paid = 5", f"paid = {POOL}"))
    (project / "config" / "cohorts" / "wide.yaml").write_text(f"replicates: {{draft: {replicates}}}\n")
    return sum(1 for member in members_of("wide") if member.template_id != "verbatim")


def test_two_processes_each_make_about_half_of_the_calls_and_none_twice(project):
    calls = wide_cohort(project, 2)
    assert calls == 72
    with luigid("--no-history") as url, FakeEndpoint(latency=0.25) as server:
        runs = {name: start_run(name, server.base_url, url) for name in "AB"}
        outputs = {name: run.communicate(timeout=120) for name, run in runs.items()}
        for name, run in runs.items():
            assert run.returncode == 0, outputs[name][1][-3000:]
        made = calls_by_process(server)
        assert sum(made.values()) == calls  # every generation called once across both processes
        for name in "AB":
            assert 0.4 * calls <= made[name] <= 0.6 * calls, made
            assert f"requests sent {made[name]}, answers received {made[name]}," in outputs[name][0]  # its own calls
        assert server.stats["max_concurrent"] <= POOL
    assert (project / "data" / "cohorts" / "wide" / "reports" / "report.html").exists()
    logs = "".join(path.read_text() for path in (project / "data" / "logs").glob("run-*.log"))  # both runs' Luigi logs
    for shared in ("CohortMembership", "Combinations", "Lineages", "ParseScores", "Pivot", "Report", "Cohort"):
        assert len(re.findall(rf" running +{shared}\(cohort_id=wide[,)]", logs)) == 1, shared  # made once, by one
    assert (project / "data" / "luigid" / "luigid.cfg").exists()
    assert not (project / "data" / "luigid" / "history.db").exists()  # --no-history: no SQLite commit per task event


def test_a_stopped_process_leaves_its_share_to_the_other_and_a_rerun_pays_nothing_twice(project):
    calls = wide_cohort(project, 1)
    assert calls == 36
    with luigid("--no-history") as url, FakeEndpoint(latency=0.25) as server:
        runs = {name: start_run(name, server.base_url, url) for name in "AB"}
        while calls_by_process(server)["A"] < 5:
            time.sleep(0.05)
        runs["A"].send_signal(signal.SIGTERM)  # stops asking for work; its calls in flight finish and are kept
        outputs = {name: run.communicate(timeout=120) for name, run in runs.items()}
        assert runs["A"].returncode == 143, outputs["A"]
        assert runs["B"].returncode == 0, outputs["B"][1][-3000:]
        made = calls_by_process(server)
        assert sum(made.values()) == calls
        assert made["B"] > 0.6 * calls  # B went on alone with what A left
        assert server.stats["max_concurrent"] <= POOL
        rerun = start_run("A", server.base_url, url)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err[-3000:]
        assert sum(calls_by_process(server).values()) == calls  # nothing paid twice


def test_shared_by_without_luigid_is_one_message_and_nothing_runs(project):
    result = daydream("run", "--shared-by", "2")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --shared-by 2: run processes share a cohort only on luigid; add --scheduler central "
        "(start luigid with `daydream ui`)\n"
    )
    assert not (project / "data" / "cohorts").exists()
