"""Crash safety: SIGKILL a real `daydream run` at several points, check the store, resume, and run twice at once.

The run is the real CLI in its own process group (so the kill takes every thread with it), pointed at a loopback
FakeEndpoint with a little latency so that calls are in flight when the kill lands. Model calls are counted exactly:
every request the endpoint received is mapped back to its generation through the prompt text.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_endpoint import FakeEndpoint, draft_answer, judge_answer

from daydream_luigi.core.parsers import parse_draft, parse_score
from daydream_luigi.store.files import complete_ids

STAGES = ("draft", "essay", "evaluation")
GENERATIONS = 6 + 12 + 24
MODEL_CALLS = 6 + 6 + 24  # copy essays make no call
OUTPUTS = {"prompt.txt", "attempts.jsonl", "raw.txt", "call.json", "parsed.txt", "metadata.json", "error.json"}
TEMP = re.compile(r"\.(?P<target>[a-z]+\.(?:txt|json))\.[A-Za-z0-9_]+\.tmp")
DRAFT_PARSERS = {"ladder": "essay_idea_last", "sketch": "essay_block"}  # conftest's active draft templates
SCORE_PARSERS = {"judge-a": "in_last_line", "judge-b": "complex"}


@pytest.fixture
def slow_endpoint(project, monkeypatch):
    """A loopback endpoint of our own, with latency, so a run lasts a couple of seconds and calls overlap the kill."""
    with FakeEndpoint(latency=0.1) as server:
        monkeypatch.setenv("DAYDREAM_LLM_BASE_URL", server.base_url)
        yield server


def start_run(log_dir: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """`daydream run --workers 4` in a new session (its own process group); output goes to files, never a pipe."""
    out = log_dir / f"{name}.out"
    with open(out, "w") as stdout, open(log_dir / f"{name}.err", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "daydream_luigi", "run", "--workers", "4"],
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    return process, out


def requested_prompts(server: FakeEndpoint) -> list[str | None]:
    """The prompt of every chat request in arrival order; None for a body the kill cut off mid-send (the endpoint
    counted it, but it names no generation: it can only be a call in flight when the run was killed)."""
    return [
        r["body"]["messages"][-1]["content"] if isinstance(r["body"], dict) else None
        for r in server.requests
        if r["path"].endswith("/chat/completions")
    ]


def settle(server: FakeEndpoint) -> int:
    """Wait until the endpoint has seen every request a dead client had already sent; returns the request count."""
    count, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 0.3:
        now = server.stats["requests"]
        if now != count:
            count, stable_since = now, time.monotonic()
        time.sleep(0.02)
    return count


def expected_answer(prompt: str) -> str:
    """The fake endpoint answers deterministically, so every kept raw.txt can be checked against its prompt."""
    return judge_answer(prompt) if re.search(r"\bSCORE\b", prompt) else draft_answer(prompt)


def scan_store(gens: Path) -> tuple[dict, list[Path]]:
    """Check every generation folder for corruption; returns {(stage, gen_id): {file: text}} and the temp files left.

    Corrupt means: an unexpected file, a JSON file that does not parse, a complete generation (metadata.json) missing
    one of its outputs or contradicting them, or a kept answer (call.json) that is not the answer its prompt got.
    """
    found, temps = {}, []
    if not gens.exists():
        return found, temps
    for stage_dir in sorted(gens.iterdir()):
        assert stage_dir.name in STAGES, stage_dir
        for directory in sorted(stage_dir.iterdir()):
            files = {}
            for path in directory.iterdir():
                if path.name == ".lock":
                    continue
                if path.name.startswith("."):
                    match = TEMP.fullmatch(path.name)
                    assert match and match["target"] in OUTPUTS, f"unexpected hidden file {path}"
                    temps.append(path)
                    continue
                assert path.name in OUTPUTS, f"unexpected file {path}"
                files[path.name] = path.read_text(encoding="utf-8")
                if path.suffix == ".json":
                    json.loads(files[path.name])  # a torn write would not parse
                if path.suffix == ".jsonl":  # appended line by line: only a killed writer's last line may be torn
                    lines = files[path.name].split("\n")
                    for line in lines[:-1]:
                        json.loads(line)
            stage, gen_id = stage_dir.name, directory.name
            if "call.json" in files:  # raw.txt is written first, then call.json: a kept answer is a whole answer
                assert "raw.txt" in files and "prompt.txt" in files, directory
                assert files["raw.txt"] == expected_answer(files["prompt.txt"]), directory
            if "metadata.json" in files:
                assert {"prompt.txt", "raw.txt", "parsed.txt"} <= set(files), (directory, sorted(files))
                meta = json.loads(files["metadata.json"])
                assert (meta["stage"], meta["gen_id"]) == (stage, gen_id)
                assert "error.json" not in files, directory
                check_parsed(stage, meta, files)
            found[(stage, gen_id)] = files
    for stage in STAGES:  # what the pipeline itself counts as complete is exactly the folders with metadata.json
        assert complete_ids(gens, stage) == {
            g for (s, g), files in found.items() if s == stage and "metadata.json" in files
        }
    return found, temps


def check_cohort_files(data: Path) -> None:
    """The cohort's own files are written atomically too: if present, they are whole."""
    for folder in (data / "cohorts").glob("*"):
        if (folder / "membership.csv").exists():
            with (folder / "membership.csv").open() as handle:
                assert len(list(csv.DictReader(handle))) == GENERATIONS
        if (folder / "manifest.json").exists():
            assert len(json.loads((folder / "manifest.json").read_text())["combos"]) == 3
    if (data / "combo_mappings.csv").exists():
        with (data / "combo_mappings.csv").open() as handle:
            assert len(list(csv.DictReader(handle))) == 3 * 2  # 3 combos of 2 concepts


def check_parsed(stage: str, meta: dict, files: dict) -> None:
    raw, parsed = files["raw.txt"], files["parsed.txt"]
    if stage == "draft":
        assert parsed == parse_draft(DRAFT_PARSERS[meta["template_id"]], raw)
    elif stage == "essay" and meta["mode"] == "copy":
        assert raw == parsed and parsed.strip()
    elif stage == "essay":
        assert parsed == raw.strip() + "\n"
    else:
        score = parse_score(SCORE_PARSERS[meta["template_id"]], raw)
        assert meta["score"] == score and parsed == f"{score:g}\n" and meta["error"] == ""


def prompt_owners(found: dict) -> dict[str, tuple[str, str]]:
    """prompt text -> the generation that sent it (each model-calling generation has its own prompt)."""
    owners = {}
    for key, files in found.items():
        if "call.json" in files:
            assert files["prompt.txt"] not in owners, f"two generations share a prompt: {key}, {owners}"
            owners[files["prompt.txt"]] = key
    return owners


def first_dir(stage: str, name: str | None = None):
    def reached(gens: Path, elapsed: float) -> bool:
        root = gens / stage
        if not root.is_dir():
            return False
        return any(name is None or (entry / name).exists() for entry in root.iterdir())

    return reached


def answer_kept_not_complete(gens: Path, elapsed: float) -> bool:
    """Some generation has kept its answer (call.json) but not yet written metadata.json: the narrowest window.

    Polling can miss it, so halfway through the evaluations counts too: the kill always lands mid-run.
    """
    dirs = [d for stage in STAGES if (gens / stage).is_dir() for d in (gens / stage).iterdir()]
    if any((d / "call.json").exists() and not (d / "metadata.json").exists() for d in dirs):
        return True
    return sum(d.parent.name == "evaluation" and (d / "metadata.json").exists() for d in dirs) >= 12


def requests_seen(server: FakeEndpoint, n: int):
    """The endpoint has received n requests: the run is mid-call (its answers cannot all have been written)."""
    return lambda gens, elapsed: server.stats["requests"] >= n


KILL_POINTS = [  # (id, condition on the store (or the endpoint) that holds while the run is surely still running)
    ("first-request", lambda server: requests_seen(server, 1)),
    ("first-draft-answer-kept", lambda server: first_dir("draft", "call.json")),
    ("answer-kept-not-complete", lambda server: answer_kept_not_complete),
    ("first-evaluation-dir", lambda server: first_dir("evaluation")),
    ("half-the-requests", lambda server: requests_seen(server, MODEL_CALLS // 2)),
]


@pytest.mark.parametrize("make_condition", [k[1] for k in KILL_POINTS], ids=[k[0] for k in KILL_POINTS])
def test_sigkill_then_resume_repeats_only_calls_in_flight(project, slow_endpoint, make_condition):
    gens = project / "data" / "gens"
    condition = make_condition(slow_endpoint)
    process, _ = start_run(project, "killed")
    started = time.monotonic()
    while process.poll() is None and not condition(gens, time.monotonic() - started):
        time.sleep(0.0005)
    assert process.poll() is None, "the run finished before the kill point"
    os.killpg(process.pid, signal.SIGKILL)  # the run and every task process Luigi forked for it
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert settle(slow_endpoint) < MODEL_CALLS, "the kill landed after the last request"

    # (a) nothing complete-looking is corrupt; temp files may remain but are never taken for outputs
    first_requests = settle(slow_endpoint)
    after_kill, temps = scan_store(gens)
    check_cohort_files(project / "data")
    kept = {key for key, files in after_kill.items() if "call.json" in files}
    kept_raw = {key: after_kill[key]["raw.txt"] for key in kept}
    complete_before = {key: files["metadata.json"] for key, files in after_kill.items() if "metadata.json" in files}
    for temp in temps:  # metadata.json is written last, so a temp file can only sit in an incomplete generation
        assert not (temp.parent / "metadata.json").exists(), temp

    # (b) resume to completion
    resumed = subprocess.run(
        [sys.executable, "-m", "daydream_luigi", "run", "--workers", "4"], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "failed 0, blocked 0" in resumed.stdout
    final, leftover = scan_store(gens)
    assert sum("metadata.json" in files for files in final.values()) == GENERATIONS
    assert leftover == [], f"stale temp files survived the resumed run: {leftover}"
    for key, metadata in complete_before.items():  # complete generations are never redone
        assert final[key]["metadata.json"] == metadata
    for key, raw in kept_raw.items():  # a kept answer is reused as it is
        assert final[key]["raw.txt"] == raw

    owners = prompt_owners(final)
    assert len(owners) == MODEL_CALLS
    prompts = requested_prompts(slow_endpoint)
    assert len(prompts) == slow_endpoint.stats["requests"]
    assert None not in prompts[first_requests:], "only the killed run can have sent a torn request"
    torn = prompts[:first_requests].count(None)
    first = Counter(owners[p] for p in prompts[:first_requests] if p is not None)
    second = Counter(owners[p] for p in prompts[first_requests:])
    assert max(first.values(), default=1) == 1 and max(second.values(), default=1) == 1
    assert set(kept) <= set(first), "a kept answer that the endpoint never gave"
    assert not set(second) & kept, f"kept answers were asked for again: {sorted(set(second) & kept)}"
    in_flight = set(first) - kept  # asked for before the kill, answer never written: the only calls repeated
    assert set(second) == set(owners.values()) - kept
    assert len(prompts) == MODEL_CALLS + len(in_flight) + torn
    assert set(first) & set(second) == in_flight


def test_two_runs_of_one_cohort_at_once_call_the_model_once_per_generation(project, slow_endpoint):
    runs = [start_run(project, f"run{i}") for i in (1, 2)]
    for process, _ in runs:
        assert process.wait(timeout=300) == 0, (project / "run1.err").read_text() + (project / "run2.err").read_text()
    for _, out in runs:
        assert "failed 0, blocked 0" in out.read_text()
    final, temps = scan_store(project / "data" / "gens")
    assert temps == []
    assert sum("metadata.json" in files for files in final.values()) == GENERATIONS
    owners = prompt_owners(final)
    calls = Counter(owners[p] for p in requested_prompts(slow_endpoint))
    assert slow_endpoint.stats["requests"] == MODEL_CALLS
    assert set(calls) == set(owners.values()) and set(calls.values()) == {1}
    # each run reports (and bills) only the calls it made: together exactly the calls the endpoint answered
    reported = [int(re.search(r"^requests sent (\d+),", out.read_text(), re.M)[1]) for _, out in runs]
    assert sum(reported) == MODEL_CALLS, reported


def test_generations_cut_off_after_their_answer_was_kept_finish_without_a_new_call(project, slow_endpoint):
    """The window a kill rarely hits, made on purpose: answer kept; parsed.txt, metadata.json not (or half) written."""
    first = subprocess.run([sys.executable, "-m", "daydream_luigi", "run"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    gens = project / "data" / "gens"
    found, _ = scan_store(gens)
    cut = {
        stage: next(g for (s, g), files in sorted(found.items()) if s == stage and "call.json" in files)
        for stage in STAGES
    }
    for stage, gen_id in cut.items():
        directory = gens / stage / gen_id
        (directory / "metadata.json").unlink()
        (directory / "parsed.txt").unlink()
        (directory / ".metadata.json.k1ll3d.tmp").write_text('{"stage": "draft", "gen_')  # a torn write, never renamed
    assert scan_store(gens)[1] and slow_endpoint.stats["requests"] == MODEL_CALLS

    again = subprocess.run([sys.executable, "-m", "daydream_luigi", "run"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"done 3, skipped (already complete) {GENERATIONS - 3}, failed 0, blocked 0" in again.stdout
    assert slow_endpoint.stats["requests"] == MODEL_CALLS  # the kept answers were reused
    final, temps = scan_store(gens)
    assert temps == []
    for (stage, gen_id), files in final.items():
        assert "metadata.json" in files
        assert files["raw.txt"] == found[stage, gen_id]["raw.txt"]
        assert files["parsed.txt"] == found[stage, gen_id]["parsed.txt"]
