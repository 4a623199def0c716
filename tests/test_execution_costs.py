"""What the per-generation savings of the build process and the task processes keep: the counts Luigi's worker decides
from, the knobs a task process reads, and where they come from (the costs themselves are in BENCHMARKS.md)."""

import luigi
from luigi.scheduler import DONE, PENDING

from daydream_luigi.execution import knobs
from daydream_luigi.execution.local_scheduler import TimedPruneScheduler


def _two_tasks_one_slot() -> TimedPruneScheduler:
    scheduler = TimedPruneScheduler({"pool": 1})
    for task_id in ("A", "B"):
        scheduler.add_task(worker="w", task_id=task_id, status=PENDING, runnable=True, resources={"pool": 1})
    return scheduler


def test_the_worker_gets_the_real_pending_counts_whenever_no_task_is_handed_out():
    """A task handed out comes without counts (the worker never reads them then); with the pool full and nothing to
    hand out, the worker, which then decides between waiting and stopping, gets the pending and running tasks."""
    scheduler = _two_tasks_one_slot()
    first = scheduler.get_work(worker="w", current_tasks=[])
    assert first["task_id"] == "A"
    assert (first["n_pending_tasks"], first["running_tasks"]) == (0, [])
    second = scheduler.get_work(worker="w", current_tasks=["A"])
    assert second["task_id"] is None
    assert (second["n_pending_tasks"], second["n_unique_pending"]) == (1, 1)
    assert [running["task_id"] for running in second["running_tasks"]] == ["A"]
    assert second["worker_state"] == "active"
    assert scheduler.count_pending("w")["n_pending_tasks"] == 1  # asked directly: always counted
    scheduler.add_task(worker="w", task_id="A", status=DONE)
    assert scheduler.get_work(worker="w", current_tasks=[])["task_id"] == "B"
    nothing_left = scheduler.get_work(worker="w", current_tasks=["B"])
    assert (nothing_left["task_id"], nothing_left["n_pending_tasks"]) == (None, 0)
    assert [running["task_id"] for running in nothing_left["running_tasks"]] == ["B"]


def test_applied_knobs_are_read_as_applied_and_still_set_in_luigis_configuration():
    """A task process reads the knobs its build process applied without parsing Luigi's configuration; the [daydream]
    section says the same for any other reader (the stock luigi command's tasks, luigid's UI), nested runs included."""
    outer = knobs.Knobs("run-outer", "local", 0.5, batch=True, call_slots=True)
    inner = knobs.Knobs("run-inner", "http")
    with knobs.applied(outer):
        assert knobs.current() is outer
        section = knobs.daydream()
        assert (section.run_id, section.backend, section.max_cost_usd, section.batch, section.call_slots) == (
            "run-outer",
            "local",
            0.5,
            True,
            True,
        )
        with knobs.applied(inner):
            assert knobs.current() is inner and knobs.daydream().run_id == "run-inner"
        assert knobs.current() is outer and knobs.daydream().run_id == "run-outer"
    after = knobs.current()
    assert isinstance(after, luigi.Config) and after.max_cost_usd is None and after.call_slots is False
