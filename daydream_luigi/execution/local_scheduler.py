"""Luigi's local scheduler and forked task processes at a cost per generation that does not grow with the cohort.

Costs of Luigi's stock local execution that grow with the number of tasks a build holds, each paid once per
generation (measured in BENCHMARKS.md):

* `luigi.build` with the local scheduler prunes the whole task state on every request for work: O(tasks) per task run,
  O(n^2) per graph. luigid prunes on a timer instead (once a minute); the local scheduler here does the same, once a
  second (`PRUNE_EVERY_S`), which still puts a failed task back to pending within a second of its retry time.
* Every request for work also counts the worker's pending tasks (`count_pending`, a walk over every pending task's
  upstream status, and a list of every running task, which the worker keeps for the rest of the build), although the
  worker reads the counts only when no task is handed out (to decide whether to wait or stop). The scheduler here
  counts them only then: a quarter of the build process's samples (py-spy) at pool 100.
* A forked task process inherits the run's whole heap. Its first full garbage collection walks every inherited object
  and so copies every page of it (copy-on-write); freezing the inherited objects in the child (`gc.freeze`, as the
  Python documentation advises for fork without exec) leaves its collector only the objects it makes itself.

All use public APIs only: `luigi.build(worker_scheduler_factory=...)`, the public `Scheduler` class (its `resources`
argument, its `prune`, `get_work` and `count_pending` methods), and `os.register_at_fork` (registered once, when the
first worker is made).
"""

import functools
import gc
import os
import time

import luigi.rpc
import luigi.scheduler
import luigi.worker

PRUNE_EVERY_S = 1.0


class TimedPruneScheduler(luigi.scheduler.Scheduler):
    """Luigi's scheduler, pruned at most once per `PRUNE_EVERY_S` (as luigid prunes on a timer) rather than on every
    request for work."""

    def __init__(self, resources: dict[str, int] | None = None):
        super().__init__(resources=resources, prune_on_get_work=False, record_task_history=False)
        self.pruned_at = float("-inf")
        self.handing_out = False  # inside get_work: its counts wait until it is known whether a task is handed out
        self.counts_deferred = False

    def get_work(self, host=None, assistant=False, current_tasks=None, worker=None, **kwargs):
        now = time.monotonic()
        if now - self.pruned_at >= PRUNE_EVERY_S:
            self.prune()
            self.pruned_at = now
        self.handing_out, self.counts_deferred = True, False
        try:
            reply = super().get_work(host, assistant, current_tasks, worker, **kwargs)
        finally:
            self.handing_out = False
        if self.counts_deferred and reply.get("task_id") is None and "batch_id" not in reply:
            reply.update(self.count_pending(worker))  # nothing to run: the worker decides from the counts
        return reply

    def count_pending(self, worker):
        """The worker's pending and running tasks; inside get_work, zeros until no task turns out to be handed out
        (the worker reads them only then)."""
        if self.handing_out:
            self.counts_deferred = True
            return {"n_pending_tasks": 0, "n_unique_pending": 0, "n_pending_last_scheduled": 0, "running_tasks": []}
        return super().count_pending(worker)


class WorkerSchedulerFactory:
    """What `luigi.build(worker_scheduler_factory=...)` asks for: the timed-prune local scheduler (with `resources`,
    the pools' limits it enforces; None: the [resources] of Luigi's configuration), Luigi's remote scheduler client
    for luigid, and Luigi's stock worker, whose forked task processes freeze the heap they inherit."""

    def __init__(self, resources: dict[str, int] | None = None):
        self.resources = resources

    def create_local_scheduler(self):
        return TimedPruneScheduler(self.resources)

    def create_remote_scheduler(self, url):
        return luigi.rpc.RemoteScheduler(url)

    def create_worker(self, scheduler, worker_processes, assistant=False):
        _freeze_inherited_heap_in_task_processes()
        return luigi.worker.Worker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)


@functools.cache
def _freeze_inherited_heap_in_task_processes() -> None:
    os.register_at_fork(after_in_child=gc.freeze)  # once per process: a hook cannot be unregistered
