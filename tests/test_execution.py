"""Execution on Luigi's own terms: the stock `luigi` command, pipelining across stages, failures after an answer,
Luigi's worker timeout and retry policy, all seen at a real loopback endpoint."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import daydream, members_of
from fake_endpoint import FakeEndpoint

GENERATIONS, MODEL_CALLS = 6 + 12 + 24, 6 + 6 + 24  # the conftest cohort; its copy essays make no call


def set_luigi(project: Path, **values) -> None:
    """Change settings of the project's config/luigi.cfg (each key exists exactly once in it)."""
    path = project / "config" / "luigi.cfg"
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert count == 1, key
    path.write_text(text)


def set_settings(project: Path, edit) -> None:
    import yaml

    path = project / "config" / "daydream.yaml"
    settings = yaml.safe_load(path.read_text())
    edit(settings)
    path.write_text(yaml.safe_dump(settings))


def gen_dirs(project: Path, stage: str) -> list[Path]:
    root = project / "data" / "gens" / stage
    return sorted(root.iterdir()) if root.is_dir() else []


def sent_per_generation(project: Path) -> Counter:
    """Requests each generation recorded in its attempts.jsonl."""
    counts = Counter()
    for path in (project / "data" / "gens").glob("*/*/attempts.jsonl"):
        counts[path.parent.name] = sum(json.loads(line)["event"] == "sent" for line in path.read_text().splitlines())
    return counts


def test_the_stock_luigi_command_runs_a_whole_cohort_with_its_pool_limits(project):
    (project / "config" / "cohorts").mkdir(exist_ok=True)
    (project / "config" / "cohorts" / "tiny.yaml").write_text(
        "concepts: [tidal-power, ant-foraging]\nk: 2\ndraft_templates: [ladder, sketch]\nessay_templates: [polish]\n"
        "evaluation_templates: [judge-a, judge-b]\ngeneration_models: [gen-paid]\nevaluation_models: [judge-paid]\n"
    )
    set_luigi(project, paid=2)
    assert not (project / "data" / "gens").exists() and not (project / "data" / "cohorts").exists()
    with FakeEndpoint(latency=0.1) as server:
        luigi = Path(sys.executable).with_name("luigi")
        result = subprocess.run(
            [
                str(luigi),
                "--module",
                "daydream_luigi.execution.tasks",
                "Cohort",
                "--cohort-id",
                "tiny",
                "--local-scheduler",
                "--workers",
                "4",
                "--no-lock",  # Luigi refuses a command line that another test is running at the same time
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={
                **os.environ,
                "DAYDREAM_LLM_BASE_URL": server.base_url,
                "LUIGI_CONFIG_PATH": str(project / "config" / "luigi.cfg"),  # how the stock command finds our pools
            },
        )
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert "This progress looks :) because there were no failed tasks or missing dependencies" in result.stderr
        assert server.stats["requests"] == 2 + 2 + 4  # 1 combo x 2 drafts, their 2 llm essays, 2 x 2 evaluations
        assert server.stats["max_concurrent"] == 2  # [resources] paid = 2 of the project's config/luigi.cfg
    membership = (project / "data" / "cohorts" / "tiny" / "membership.csv").read_text().splitlines()
    assert len(membership) == 1 + 8
    assert sorted(p.name for p in (project / "data" / "cohorts" / "tiny" / "reports").glob("*.html")) == ["report.html"]
    assert all(
        (d / "metadata.json").exists() for stage in ("draft", "essay", "evaluation") for d in gen_dirs(project, stage)
    )


def test_an_evaluation_starts_before_the_last_draft_ends(project):
    set_luigi(project, paid=2)
    with FakeEndpoint(latency=0.2) as server:
        result = daydream("run", env={"DAYDREAM_LLM_BASE_URL": server.base_url})
        requests = [r for r in server.requests if r["path"].endswith("/chat/completions")]
    assert result.returncode == 0, result.stdout + result.stderr
    prompts = [(r["body"]["messages"][-1]["content"], r["received"], r["answered"]) for r in requests]
    drafts = [p for p in prompts if p[0].startswith(("Combine:", "Notes then"))]
    judgments = [p for p in prompts if "SCORE" in p[0]]
    assert len(drafts) == 6 and len(judgments) == 24
    # depth first (Luigi priorities): the first essay is judged while drafts are still being written
    assert min(received for _, received, _ in judgments) < max(answered for _, _, answered in drafts)


def attempt_times(project: Path, event: str, pick) -> dict:
    """gen_id -> `pick` (min or max) of the ISO times its attempts.jsonl records `event` ("sent", "answered") at."""
    times = {}
    for path in (project / "data" / "gens").glob("*/*/attempts.jsonl"):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        times[path.parent.name] = pick(r["at"] for r in records if r["event"] == event)
    return times


def builds(result: subprocess.CompletedProcess) -> int:
    """How many Luigi builds the run made (Luigi logs "Done scheduling tasks" once per build)."""
    log = re.search(r"^log: (.+)$", result.stdout, re.M)[1]
    return Path(log).read_text().count("Done scheduling tasks")


def parts_of(lineages_per_part: int) -> dict:
    """part -> the gen_ids of its lineages (the conftest cohort's lineages are 7 generations each)."""
    members = {m.gen_id: m for m in members_of()}
    drafts = [m.gen_id for m in members.values() if m.stage == "draft"]
    by_part = {}
    for member in members.values():
        root = member
        while root.parent_gen_id:
            root = members[root.parent_gen_id]
        by_part.setdefault(drafts.index(root.gen_id) // lineages_per_part, []).append(member.gen_id)
    return by_part


def test_a_cohort_in_parts_is_one_build_whose_next_part_starts_before_the_last_one_ends(project):
    """Parts of 2 lineages (14 generations): the Feeds bring them into one graph, each before the one ahead of it
    has run dry, so no pool waits at a part boundary."""
    set_settings(project, lambda s: s["scheduling"].update(part_size=14))
    set_luigi(project, paid=2)
    by_part = parts_of(lineages_per_part=2)
    assert sorted(by_part) == [0, 1, 2]
    with FakeEndpoint(latency=0.2) as server:
        result = daydream("run", env={"DAYDREAM_LLM_BASE_URL": server.base_url})
        assert result.returncode == 0, result.stdout + result.stderr
        assert server.stats["requests"] == MODEL_CALLS and server.stats["max_concurrent"] == 2
    assert builds(result) == 1
    sent, answered = attempt_times(project, "sent", min), attempt_times(project, "answered", max)
    for part in (1, 2):
        first_sent = min(sent[g] for g in by_part[part] if g in sent)
        last_answer_before = max(answered[g] for g in by_part[part - 1] if g in answered)
        assert first_sent < last_answer_before, part
    assert sorted(p.name for p in (project / "data" / "cohorts").glob("*/reports/report.html")) == ["report.html"]


def test_a_part_enters_the_graph_only_once_the_part_two_before_it_is_complete(project):
    """One lineage per part: Luigi's log shows each Feed first running after every generation two parts before it
    is done, so the scheduler never holds more than two parts and the tail of a third."""
    set_settings(project, lambda s: s["scheduling"].update(part_size=7))
    by_part = parts_of(lineages_per_part=1)
    result = daydream("run")
    assert result.returncode == 0, result.stdout + result.stderr
    log = Path(re.search(r"^log: (.+)$", result.stdout, re.M)[1]).read_text().splitlines()

    def first_line(pattern: str) -> int:
        return next(i for i, line in enumerate(log) if re.search(pattern, line))

    for part in range(2, 6):
        fed = first_line(rf" running +Feed\(cohort_id=[^,]+, part={part},")
        assert all(first_line(rf" done +\w+Task\(gen_id={gen_id}\)") < fed for gen_id in by_part[part - 2]), part
    assert builds(result) == 1


def test_a_generation_that_fails_for_good_holds_back_no_part_after_it(project, endpoint):
    """One lineage per part: the first draft fails for good, so the Feed of part 1, which waits for part 0, never
    runs; the run builds again from part 1 and makes every other call, once."""
    set_settings(project, lambda s: s["scheduling"].update(part_size=7))
    draft = next(m for m in members_of() if m.stage == "draft")
    (project / "data" / "gens" / "draft" / draft.gen_id / "raw.txt").mkdir(parents=True)
    result = daydream("run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert builds(result) == 2
    assert endpoint.stats["requests"] == MODEL_CALLS - 1 - 4  # its llm essay and 4 evaluations are blocked
    assert sent_per_generation(project)[draft.gen_id] == 1
    assert "done 35, skipped (already complete) 0, failed 1, blocked 6, not started 0" in result.stdout


def test_a_failure_after_the_answer_arrived_is_recorded_and_never_paid_again(project, endpoint):
    """raw.txt of one draft cannot be written (a folder is in its way, as a full disk would refuse it too)."""
    draft = next(m for m in members_of() if m.stage == "draft")
    blocker = project / "data" / "gens" / "draft" / draft.gen_id / "raw.txt"
    blocker.mkdir(parents=True)
    result = daydream("run")
    assert result.returncode == 1, result.stdout + result.stderr
    error = json.loads((blocker.parent / "error.json").read_text())
    assert error["kind"] == "answer_lost" and error["retryable"] is False
    assert error["error"].startswith("the answer arrived but could not be stored ([Errno 21] Is a directory")
    assert sent_per_generation(project)[draft.gen_id] == 1  # Luigi retried the task, but made no second call
    assert f"  failed draft {draft.gen_id}: the answer arrived but could not be stored" in result.stdout
    assert re.search(
        rf"^requests sent {endpoint.stats['requests']}, answers received {endpoint.stats['requests']},",
        result.stdout,
        re.M,
    )
    assert endpoint.stats["requests"] == MODEL_CALLS - 1 - 4  # its llm essay and 4 evaluations are blocked


def test_an_answer_that_cannot_be_stored_nor_its_failure_is_still_never_asked_for_twice(project, endpoint):
    """raw.txt and error.json both refused: only the run's memory (an event from the task process) stops a retry."""
    draft = next(m for m in members_of() if m.stage == "draft")
    folder = project / "data" / "gens" / "draft" / draft.gen_id
    for name in ("raw.txt", "error.json"):
        (folder / name).mkdir(parents=True)
    result = daydream("run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert sent_per_generation(project)[draft.gen_id] == 1
    assert re.search(
        rf"^  failed draft {draft.gen_id}: (the answer arrived but could not be stored|an answer for this "
        rf"generation arrived earlier in this run)",
        result.stdout,
        re.M,
    )
    assert endpoint.stats["requests"] == MODEL_CALLS - 1 - 4


def test_luigi_retries_a_task_whose_call_failed_transiently(project, endpoint):
    set_settings(project, lambda s: s["retry"].update(max_attempts=2, backoff_base=0.01, backoff_max=0.02))
    endpoint.script("500", "500")  # the first call exhausts the HTTP client's 2 attempts; Luigi's retry succeeds
    result = daydream("run", "--workers", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done 42, skipped (already complete) 0, failed 0, blocked 0, not started 0" in result.stdout
    sent = sent_per_generation(project)
    assert sorted(sent.values())[-1] == 3 and sum(sent.values()) == MODEL_CALLS + 2
    assert f"requests sent {MODEL_CALLS + 2}, answers received {MODEL_CALLS}," in result.stdout
    assert endpoint.stats["requests"] == MODEL_CALLS + 2


def test_the_worker_timeout_ends_a_hung_call_and_luigi_retries_it(project, endpoint):
    """A server that trickles a byte a second never trips the read timeout; Luigi's worker timeout ends the task."""

    def tight(settings):
        for stage in settings["stages"].values():
            stage.update(connect_timeout=1, read_timeout=2)
        settings["retry"].update(max_attempts=1, max_total_seconds=0.5)

    set_settings(project, tight)
    set_luigi(project, timeout=8)  # above twice a call's 3.5 s: a task may wait that long for a call slot first
    endpoint.script("trickle")
    result = daydream("run", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    sent = sent_per_generation(project)
    [hung] = [gen_id for gen_id, n in sent.items() if n == 2]  # killed mid-call, then asked again by Luigi's retry
    assert sum(sent.values()) == endpoint.stats["requests"] == MODEL_CALLS + 1
    assert f"requests sent {MODEL_CALLS + 1}, answers received {MODEL_CALLS}," in result.stdout
    assert (
        f"failed draft {hung}: Luigi's worker timeout (8 s) ended the task; its call in flight was abandoned\n"
        in result.stderr
    )
    log = re.search(r"^log: (.+)$", result.stdout, re.M)[1]
    assert "timed out after 8 seconds and was terminated" in Path(log).read_text()


def test_a_worker_timeout_shorter_than_a_call_with_its_retries_is_refused(project, endpoint):
    set_luigi(project, timeout=60)
    result = daydream("run")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {project}/config/luigi.cfg: [worker] timeout = 60 is not longer than twice what one draft call may take "
        f"with its retries (2 x 2160 s, since a task may first wait that long for a call slot; 2160 s = max_attempts x "
        f"(connect_timeout + read_timeout) + max_total_seconds in config/daydream.yaml); raise the timeout or lower "
        f"those settings"
    ]
    assert endpoint.stats["requests"] == 0 and not (project / "data" / "gens").exists()


def test_a_runs_knobs_are_luigi_settings_its_tasks_read_and_hand_down(project):
    """What `daydream run` sets for its builds ([daydream] of Luigi's configuration) is what a task process reads: the
    backend the cohort resolves with, the run id, and the max cost and call slots its calls get in their context."""
    from daydream_luigi.core.settings import Paths
    from daydream_luigi.execution import knobs, plans
    from daydream_luigi.execution.luigi_config import configure_luigi
    from daydream_luigi.providers.limits.gate import run_dir

    paths = Paths.from_env()
    configure_luigi(paths)
    plans.forget_plans()
    (project / "config" / "cohorts" / "axes.yaml").write_text("concepts: [tidal-power, ant-foraging]\nk: 2\n")

    def draft_models() -> set:  # the spec leaves its models to the backend
        return {m.llm_model_id for m in plans.cohort_plan("axes").members.values() if m.stage == "draft"}

    assert knobs.current().backend is None and draft_models() == {"gen-paid"}  # a provider key is set: http
    with knobs.applied(knobs.Knobs("run-knob", "local", 0.25, batch=True, call_slots=True)):
        run = knobs.current()
        assert (run.run_id, run.backend, run.max_cost_usd, run.batch, run.call_slots) == (
            "run-knob",
            "local",
            0.25,
            True,
            True,
        )
        assert draft_models() == {"qwen-local"}  # resolved with the run's backend
        context = knobs.context_for_run(plans.cohort_plan("axes").context)
        assert context.max_cost_usd == 0.25
        assert context.call_slots.folder == run_dir(paths, "run-knob") / "slots"
        assert context.call_slots.limits == {"free": 1, "paid": 5, "local": 1}  # config/luigi.cfg [resources]
    run = knobs.current()
    assert (run.backend, run.max_cost_usd, run.batch, run.call_slots) == (None, None, False, False)
    assert knobs.context_for_run(plans.cohort_plan("axes").context).call_slots is None


def test_luigi_forks_the_task_processes_from_a_build_process_of_its_own_not_from_the_command(project):
    """The command's process (click, rich, the display) is never what Luigi forks a task process from: Luigi's worker
    runs in one build process, which logs its CPU and its task processes' at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "daydream_luigi", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, out + err
    log = Path(re.search(r"^log: (.+)$", out, re.M)[1]).read_text()
    ran = re.findall(r"\[pid (\d+)\] Worker Worker\(.*?pid=(\d+)\) running", log)
    workers = {int(worker) for _, worker in ran}
    tasks = {int(task) for task, _ in ran}
    assert len(workers) == 1 and process.pid not in workers
    build = workers.pop()
    assert len(ran) >= GENERATIONS and len(tasks) == len(ran) and not tasks & {process.pid, build}
    assert re.search(rf" {build} daydream INFO CPU of the build process: user [\d.]+ s", log)
    assert re.search(rf" {build} daydream INFO CPU of its task processes: user [\d.]+ s", log)
