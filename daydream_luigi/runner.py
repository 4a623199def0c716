"""Schedule a cohort through Luigi in a sliding window, so scheduling cost per generation stays flat as cohorts grow.

Luigi's scheduler scans every pending task it knows on each get_work call, so one graph of n tasks costs O(n^2). A
cohort is therefore built stage by stage, and each stage is one Luigi build whose worker holds at most `window`
unfinished generations in the scheduler: it adds the next one each time one finishes (workers.ThreadedWorker). Cost per
generation is O(window) whatever the cohort size, and the pool never drains between windows. Only generations that
are not complete and whose parent is complete are scheduled, so a re-run of a finished cohort schedules nothing.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import luigi

from . import tasks
from .cohort import Member
from .config import STAGES, Paths
from .stages import called_here
from .store import CALL, ERROR, METADATA, complete_ids, gen_dir, read_json, wait_unlocked
from .workers import ThreadedWorkerFactory

log = logging.getLogger("daydream")
_PARENT_STAGE = {"essay": "draft", "evaluation": "essay"}
_MAX_ROUNDS, _IDLE_WAIT_S = 20, 0.5


@dataclass
class RunSummary:
    done: list = field(default_factory=list)  # gen_ids completed by this run
    skipped: int = 0  # already complete before the run
    failed: dict = field(default_factory=dict)  # gen_id -> reason
    blocked: dict = field(default_factory=dict)  # gen_id -> why it could not start (parent not complete)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def pending_by_stage(paths: Paths, members: list[Member], stages) -> dict[str, list[Member]]:
    complete = {stage: complete_ids(paths.gens, stage) for stage in STAGES}
    return {stage: [m for m in members if m.stage == stage and m.gen_id not in complete[stage]] for stage in stages}


def _build(task_list, workers: int, scheduler_url: str | None, feed=None, window: int = 0) -> bool:
    """One Luigi build: the in-process scheduler, or the central one (luigid) when a URL is given.

    `feed` (an iterator of tasks) is added to the build while it runs, keeping at most `window` unfinished at once.
    """
    options = {"scheduler_url": scheduler_url} if scheduler_url else {"local_scheduler": True}
    try:
        return luigi.build(task_list, worker_scheduler_factory=ThreadedWorkerFactory(feed, window), workers=workers,
                           log_level="WARNING", **options)
    finally:
        luigi.task_register.Register.clear_instance_cache()  # Luigi keeps every task instance; a big cohort has many


def _account_call(summary: RunSummary, directory: Path, since: float) -> None:
    """Tokens and cost of a model answer received in this window (paid for whether or not it parsed).

    Only answers this process asked for count: a second run of the same cohort at the same time (or another worker of a
    central scheduler) writes call.json files in this window too, and they are that run's calls, not ours.
    """
    if (directory / CALL).exists() and (directory / CALL).stat().st_mtime >= since and called_here(directory):
        call = read_json(directory / CALL)
        summary.calls += 1
        summary.prompt_tokens += call.get("prompt_tokens") or 0
        summary.completion_tokens += call.get("completion_tokens") or 0
        summary.cost += call.get("cost") or 0.0


def _settled(directory: Path, since: float) -> bool:
    """Complete, or failed during this window (a fresh error.json)."""
    if (directory / METADATA).exists():
        return True
    try:
        return (directory / ERROR).stat().st_mtime >= since
    except FileNotFoundError:
        return False


def _run_stage(paths: Paths, cohort_id: str, stage: str, chunk: list[Member], workers: int, window: int,
               scheduler_url: str | None, summary: RunSummary) -> None:
    """Build a stage in a sliding window; with a central scheduler, also wait for generations another worker process
    is running.

    Luigi's worker leaves as soon as nothing is left for it, even while another worker still runs some of the stage's
    tasks; so unsettled ones are waited for (their generation lock) and re-submitted until no progress is made.
    """
    since = time.time() - 1  # file mtimes can trail the clock slightly
    unsettled = chunk
    task_class = tasks.STAGE_TASKS[stage]
    for _ in range(_MAX_ROUNDS):
        _build([], workers, scheduler_url, (task_class(gen_id=m.gen_id, cohort_id=cohort_id) for m in unsettled),
               max(window, workers))
        if scheduler_url:  # a local build returns only once each of its tasks has run (and waited for any lock)
            for member in unsettled:
                wait_unlocked(gen_dir(paths.gens, stage, member.gen_id))
        left = [m for m in unsettled if not _settled(gen_dir(paths.gens, stage, m.gen_id), since)]
        if not left:
            break
        if len(left) == len(unsettled):
            time.sleep(_IDLE_WAIT_S)
        unsettled = left
    for member in chunk:
        directory = gen_dir(paths.gens, stage, member.gen_id)
        _account_call(summary, directory, since)
        if (directory / METADATA).exists():
            summary.done.append(member.gen_id)
        else:
            summary.failed[member.gen_id] = read_json(directory / ERROR)["error"] if (directory / ERROR).exists() \
                else "did not run (see the Luigi log above)"


def _blocked_reason(paths: Paths, stage: str, parent: str) -> str:
    parent_stage = _PARENT_STAGE[stage]
    failed = (gen_dir(paths.gens, parent_stage, parent) / ERROR).exists()
    return f"its {parent_stage} {parent} {'failed (see above)' if failed else 'is not complete'}"


def run_cohort(paths: Paths, cohort_id: str, members: list[Member], stages, workers: int, window: int,
               scheduler_url: str | None = None) -> RunSummary:
    """Run the not-yet-complete generations of `stages` (in pipeline order) and report what happened to each."""
    summary = RunSummary()
    tasks.context(cohort_id)  # load once here; the worker threads share it
    for stage in STAGES:
        if stage not in stages:
            continue
        stage_members = [m for m in members if m.stage == stage]
        complete = complete_ids(paths.gens, stage)
        parents_done = complete_ids(paths.gens, _PARENT_STAGE[stage]) if stage in _PARENT_STAGE else None
        pending, done, blocked = [], 0, 0
        for member in stage_members:
            if member.gen_id in complete:
                done += 1
            elif parents_done is not None and member.parent_gen_id not in parents_done:
                blocked += 1
                summary.blocked[member.gen_id] = _blocked_reason(paths, stage, member.parent_gen_id)
            else:
                pending.append(member)
        summary.skipped += done
        if pending:
            log.info("%s: %d to run, %d already complete, %d blocked", stage, len(pending), done, blocked)
        if pending:
            _run_stage(paths, cohort_id, stage, pending, workers, window, scheduler_url, summary)
    return summary


def build_reports(cohort_id: str, scheduler_url: str | None = None) -> bool:
    return _build([tasks.Report(cohort_id=cohort_id)], 1, scheduler_url)
