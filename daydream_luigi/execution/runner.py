"""`daydream run`: build a cohort's Luigi graph, watch it, stop cleanly when asked, and account for what was paid.

A cohort is built as the one graph under its `Cohort` root, whose Feeds bring its parts in one after another (see
`schedule`); a part never fed because a generation its Feed waited for failed is fed by a further build, and the root
then again for the reports. Luigi's local scheduler is pruned on a timer, as luigid is (`local_scheduler`). With
batched calls (`--batch`, or the `batch:` settings) the stages are built one after another, each after the BatchSubmit
tasks of its chunks, so that every batch of a stage runs at the provider at once. Luigi's stock worker runs every
generation in a forked task process, so its worker timeout, retry policy and events hold. Ctrl-C or SIGTERM asks
Luigi's worker to stop asking for work (what its SIGUSR1 handler does) and lets the calls in flight finish, so every
answer already paid for is kept (batch polls stop: their batches go on at the provider and the next run polls them
again); a second Ctrl-C abandons them. Luigi's log, tracebacks included, goes to a file under the data folder.

Exit codes: 0 done; 1 failures (generations, reports, batches), the budget reached, or a provider unreachable;
2 bad input; 3 only a quota pause left work pending (run again after the resume time); 130 / 143 interrupted.
"""

import logging
import os
import shutil
import signal
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import luigi
import requests
from luigi.execution_summary import LuigiStatusCode

from daydream_luigi.core import schedule
from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.batch_settings import unknown_models
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.expansion import calls_model
from daydream_luigi.core.settings import STAGES, pool_limits
from daydream_luigi.execution import batching, generation, slots, tasks
from daydream_luigi.execution.generation import call_time_limit
from daydream_luigi.execution.local_scheduler import WorkerSchedulerFactory
from daydream_luigi.execution.monitor import Listening, Monitor
from daydream_luigi.execution.progress import Display
from daydream_luigi.providers import endpoints
from daydream_luigi.providers.limits import gate
from daydream_luigi.store import accounting, freshness

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_QUOTA = 0, 1, 2, 3
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
_SCHEDULING_FAILED = (LuigiStatusCode.SCHEDULING_FAILED, LuigiStatusCode.FAILED_AND_SCHEDULING_FAILED)


@dataclass
class Request:
    cohort_id: str
    members: list
    workers: int
    scheduler_url: str | None = None  # None: Luigi's local scheduler
    stage: str | None = None  # only this stage (and what it needs)
    gen_ids: tuple = ()  # only these generations (and what they need)
    verbosity: int = 1
    max_cost_usd: float | None = None  # --max-cost: no new call once it would not fit
    batch: bool = False  # --batch: every eligible call through its provider's batch API


@dataclass
class Result:
    outcome: accounting.Outcome
    log_path: Path
    exit_code: int
    interrupted_by: int | None = None
    abandoned: bool = False
    report_problem: str | None = None  # why the reports could not be written, if they could not
    notes: list = field(default_factory=list)
    gates: dict = field(default_factory=dict)  # key -> (kind, name, message) of every gate that closed
    batch_failures: list = field(default_factory=list)
    pools: dict = field(default_factory=dict)  # pool -> ratelimit.PoolStatus at the end, for the pools used
    max_cost_usd: float | None = None


class Stopper:
    """SIGINT / SIGTERM in the run's own process: the first stops new work, the second abandons calls in flight.

    Luigi forks a task process per generation and the terminal sends Ctrl-C to all of them: in a task process the
    handler (inherited through the fork) ignores SIGINT so its call can finish and its answer be kept, and lets SIGTERM
    (how Luigi's worker timeout ends a task process) kill it as usual.
    """

    def __init__(self, display: Display, on_stop=lambda: None):
        self.display = display
        self.on_stop = on_stop  # told of the first signal (batch polls in task processes watch for it)
        self.pid = os.getpid()
        self.signal: int | None = None
        self.abandoned = False
        self._previous = {}

    def __enter__(self) -> "Stopper":
        for signum in EXIT_SIGNAL:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self.pid:  # a task process forked by Luigi
            if signum == signal.SIGTERM:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
            return
        if self.signal is not None:
            self.abandoned = True
            raise KeyboardInterrupt  # Luigi's worker terminates the task processes still running as it unwinds
        self.signal = signum
        self.display.stopping = True
        self.on_stop()
        self.display.note(
            f"{signal.Signals(signum).name}: no new generation starts; waiting for the calls in flight "
            f"to finish (again to abandon them)"
        )
        phase_out = signal.getsignal(signal.SIGUSR1)  # Luigi's worker: stop asking for work, finish what runs
        if callable(phase_out):
            phase_out(signal.SIGUSR1, frame)


def preflight(paths, request: Request, pending: list) -> None:
    """What can be known to fail before anything starts: one message, exit 2, nothing written. Every provider the
    pending calls use gets one cheap authenticated request (a server `run` starts itself is waited for instead)."""
    if request.scheduler_url:
        check_scheduler(request.scheduler_url)
    context = tasks.cohort_plan(request.cohort_id).context
    check_worker_timeout(paths, context.settings, {m.stage for m in request.members}, request.scheduler_url is None)
    catalog = context.catalog
    used = {catalog.models[m.llm_model_id].provider for m in pending if calls_model(m, catalog)}
    raise_if(unknown_models(context.settings.batch, list(catalog.models), "config/daydream.yaml"))
    for name in sorted(name for name in used if not backend_of(name).starts_server):
        endpoints.preflight(context.settings.providers[name])


def check_scheduler(url: str) -> None:
    """A central scheduler that does not answer is one line, not a minute of retries and a traceback."""
    try:
        requests.get(url, timeout=3)
    except requests.RequestException:
        raise InputError(
            f"no Luigi scheduler answers at {url}; start one with `daydream ui` (or `make ui`), or run "
            f"with the local scheduler (drop --scheduler central)"
        ) from None


def check_worker_timeout(paths, settings, stages, with_slots: bool = False) -> None:
    """Luigi's worker timeout must only ever end a hung call, never one still within its retry budget; with call
    slots (`slots`) a task may first wait for a slot about as long as another call takes."""
    timeout = luigi.configuration.get_config().getint("worker", "timeout", 0)
    where = os.environ.get("LUIGI_CONFIG_PATH") or paths.config_dir / "luigi.cfg"
    for stage in [stage for stage in STAGES if stage in stages]:
        limit = call_time_limit(settings, stage)
        if 0 < timeout <= limit * (2 if with_slots else 1):
            bound = (
                (
                    f"twice what one {stage} call may take with its retries (2 x {limit:g} s, since a task may first "
                    f"wait that long for a call slot; {limit:g} s"
                )
                if with_slots
                else f"what one {stage} call may take with its retries ({limit:g} s"
            )
            raise InputError(
                f"{where}: [worker] timeout = {timeout} is not longer than {bound} = max_attempts x "
                f"(connect_timeout + read_timeout) + max_total_seconds in "
                f"config/daydream.yaml); raise the timeout or lower those settings"
            )


def log_to_file(paths, run_id: str) -> Path:
    """Everything Luigi and the pipeline log (INFO and up, tracebacks included) goes to this run's file only."""
    folder = paths.data_root / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{datetime.now():%Y%m%d-%H%M%S}-{run_id}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")  # keep Luigi off the terminal
    for name in ("luigi", "luigi-interface"):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).propagate = True
        for old in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(old)
    return path


def _graphs(paths, request: Request, plan: tasks.CohortPlan, fed):
    """The graphs to build, in order, each made when its turn comes: the cohort's root (or, with `--stage`, the Feeds of
    that stage), then more Feeds while parts were never fed (`_unfed_parts`). With batched generations pending, stage
    by stage: first the BatchSubmit tasks of the stage's chunks, then the stage's Feeds, and the root last.
    `fed()` is the set of (stage, part) that Feeds of this run have brought into a graph."""
    cohort_id = request.cohort_id
    if request.gen_ids:
        yield [tasks.generation_task(plan.members[g], cohort_id) for g in request.gen_ids]
        return
    complete = accounting.complete_sets(paths)
    found = tasks.batch_chunks(cohort_id, batching.EVERY_CALL)
    if not any(g not in complete[plan.members[g].stage] for g in found.where):
        if request.stage:
            yield from _unfed_parts(paths, request.cohort_id, plan, request.stage, fed)
            return
        yield [tasks.Cohort(cohort_id=cohort_id)]
        rebuilt = False
        for graph in _unfed_parts(paths, request.cohort_id, plan, "", fed):
            rebuilt = True
            yield graph
        if rebuilt:
            yield [tasks.Cohort(cohort_id=cohort_id)]
        return
    last = STAGES.index(request.stage) if request.stage else len(STAGES) - 1
    for stage in STAGES[: last + 1]:
        submits = tasks.open_submits(cohort_id, stage)
        if submits:
            yield submits
        yield from _unfed_parts(paths, request.cohort_id, plan, stage, fed)
    if not request.stage:
        yield [tasks.Cohort(cohort_id=cohort_id)]


def _unfed_parts(paths, cohort_id: str, plan: tasks.CohortPlan, stage: str, fed):
    """One build after another from the first part with work left that no Feed of this run has brought in yet. A
    build ends before its last part when a generation that a Feed waits for fails for good or is refused by a closed
    gate; the parts after it are then fed by the next build, in this run."""
    while True:
        complete = accounting.complete_sets(paths)
        seen = fed()
        start = next(
            (
                i
                for i, part in enumerate(plan.parts)
                if (stage, i) not in seen
                and any(m.gen_id not in complete[m.stage] for m in schedule.part_members(part, stage))
            ),
            None,
        )
        if start is None:
            return
        yield [tasks.Feed(cohort_id=cohort_id, part=start, stage=stage, first=start)]
        if (stage, start) not in fed():
            return  # not even its first Feed ran (Luigi could not schedule it): no loop


def _scope(request: Request, plan: tasks.CohortPlan) -> list:
    """The generations this run was asked to make: all, or those of `--stage` / `--gen-id` with their ancestors."""
    if not (request.stage or request.gen_ids):
        return request.members
    wanted = set(request.gen_ids) | {m.gen_id for m in request.members if m.stage == request.stage}
    todo = list(wanted)
    while todo:
        parent = plan.members[todo.pop()].parent_gen_id
        if parent and parent not in wanted:
            wanted.add(parent)
            todo.append(parent)
    return [m for m in request.members if m.gen_id in wanted]


def _pool_of(plan: tasks.CohortPlan):
    catalog = plan.context.catalog

    def pool(member) -> str:
        return catalog.models[member.llm_model_id].pool if calls_model(member, catalog) else "-"

    return pool


def run(paths, request: Request) -> Result:
    run_id = uuid.uuid4().hex[:12]
    tasks.RUN_ID = run_id  # the task processes inherit it when Luigi forks them, and these two as well
    gate.MAX_COST_USD, batching.EVERY_CALL = request.max_cost_usd, request.batch
    plan = tasks.cohort_plan(request.cohort_id)
    generation.warm_up(plan.context)
    complete_before = accounting.complete_sets(paths)
    log_path = log_to_file(paths, run_id)
    monitor = Monitor.for_members(request.members, _pool_of(plan), complete_before)
    limiter = gate.limiter(paths, plan.context.settings)
    options = {"scheduler_url": request.scheduler_url} if request.scheduler_url else {"local_scheduler": True}
    scheduled_ok, built_root, built = True, False, 0
    display = Display(monitor, f"cohort {request.cohort_id}", request.verbosity, limiter=limiter)
    slot_folder = None if request.scheduler_url else gate.run_dir(paths, run_id) / "slots"  # luigid: its resources
    with (
        display,
        Listening(monitor) as listening,
        Stopper(display, lambda: gate.request_stop(paths, run_id)) as stopper,
        call_slots(slot_folder, pool_limits(paths)),
    ):
        try:
            for graph in _graphs(paths, request, plan, lambda: listening.caught_up().fed):
                if stopper.signal is not None:
                    break
                root = any(isinstance(task, tasks.Cohort) for task in graph)
                if root and built and not tasks.all_complete(paths, plan.members.values()):
                    break  # the root needs every generation: one failed in a part, so it is reported, not retried
                result = luigi.build(
                    graph, WorkerSchedulerFactory(), workers=request.workers, detailed_summary=True, **options
                )
                scheduled_ok &= result.status not in _SCHEDULING_FAILED
                built_root |= root
                built += 1
                luigi.task_register.Register.clear_instance_cache()  # Luigi keeps every instance; parts add up
        except KeyboardInterrupt:
            stopper.abandoned = True
    seen = {gen_id: reason for gen_id, (_, reason) in monitor.failures.items()}
    scope = _scope(request, plan)
    prices = {model_id: model.price_per_mtok for model_id, model in plan.context.catalog.models.items()}
    outcome = accounting.outcome(paths, scope, complete_before, run_id, seen, prices)
    pool_of = _pool_of(plan)
    result = Result(
        outcome,
        log_path,
        EXIT_OK,
        stopper.signal,
        stopper.abandoned,
        gates=dict(monitor.gates),
        batch_failures=list(monitor.batch_failures),
        max_cost_usd=request.max_cost_usd,
        pools={pool: limiter.status(pool) for pool in sorted({pool_of(m) for m in scope} - {"-"})},
    )
    shutil.rmtree(gate.run_dir(paths, run_id), ignore_errors=True)  # its breaker, ledger and stop flag
    if not scheduled_ok:
        result.notes.append(f"Luigi could not schedule some tasks; see {log_path}")
    if not (request.stage or request.gen_ids) and stopper.signal is None:
        result.report_problem = _reports(paths, request.cohort_id, built_root, log_path)
    result.exit_code = _exit_code(result, scheduled_ok)
    return result


@contextmanager
def call_slots(folder: Path | None, limits: dict[str, int]):
    """Call slots (`slots`) under `folder` for the builds inside, each pool's Luigi resource raised by the tasks that
    may wait ahead (Luigi's local scheduler reads [resources] when a build creates it); nothing when `folder` is
    None."""
    resources = {} if folder is None else slots.configure(folder, limits)
    config = luigi.configuration.get_config()
    before = {pool: config.get("resources", pool, None) for pool in resources}
    for pool, limit in resources.items():
        config.set("resources", pool, str(limit))
    try:
        yield
    finally:
        slots.reset()
        for pool, value in before.items():
            if value is None:
                config.remove_option("resources", pool)
            else:
                config.set("resources", pool, value)


def _exit_code(result: Result, scheduled_ok: bool) -> int:
    """A quota pause alone (nothing failed, no other gate closed) is 3: the same command finishes after its resume
    time. Any other unfinished work is 1."""
    outcome, kinds = result.outcome, {kind for kind, _, _ in result.gates.values()}
    if result.interrupted_by is not None:
        return EXIT_SIGNAL[result.interrupted_by]
    if outcome.ok and not (result.report_problem or result.batch_failures) and scheduled_ok:
        return EXIT_OK
    if (
        kinds == {"quota"}
        and not (outcome.failed or outcome.blocked or result.report_problem or result.batch_failures)
        and scheduled_ok
    ):
        return EXIT_QUOTA
    return EXIT_FAILED


def _reports(paths, cohort_id: str, built_root: bool, log_path: Path) -> str | None:
    """The reports are Luigi's to build when the whole cohort is complete; otherwise (some generations failed) they
    are written here from what is on disk, saying what is missing. Returns why they could not be written, if so."""
    report = freshness.reports_dir(paths, cohort_id) / "report.html"
    if built_root and tasks.Report(cohort_id=cohort_id).complete():
        return None
    if built_root and tasks.all_complete(paths, tasks.cohort_plan(cohort_id).members.values()):
        return f"the report tasks failed; see {log_path}"
    try:
        from daydream_luigi.report import collect  # pandas and scipy: only now, after the last task process was forked

        collect.write_all(paths, cohort_id)
    except Exception as exc:
        logging.getLogger("daydream").exception("writing the partial reports failed")
        return f"the reports could not be written ({type(exc).__name__}: {exc}); see {log_path}"
    return None if report.exists() else f"the report was not written; see {log_path}"
