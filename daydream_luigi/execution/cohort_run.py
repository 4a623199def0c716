"""`daydream run`: build a cohort's Luigi graph through the runner (`runner`), stop cleanly when asked, and account
for what was paid.

A cohort is built as the one graph under its `Cohort` root, whose Feeds bring its parts in one after another (see
`schedule`); a part never fed because a generation its Feed waited for failed is fed by a further build, and the root
then again for the reports. With batched calls (`--batch`, or the `batch:` settings) the stages are built one after
another, each after the BatchSubmit tasks of its chunks, so that every batch of a stage runs at the provider at once.
A stop (Ctrl-C, SIGTERM) ends polling batches too: their batches go on at the provider and the next run polls them
again.

Exit codes: 0 done; 1 failures (generations, reports, batches), the budget reached, or a provider unreachable;
2 bad input; 3 only a quota pause left work pending (run again after the resume time); 130 / 143 interrupted.
"""

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from daydream_luigi.core import schedule
from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.batch_settings import unknown_models
from daydream_luigi.core.errors import raise_if
from daydream_luigi.core.expansion import calls_model
from daydream_luigi.core.settings import STAGES
from daydream_luigi.execution import knobs, plans, tasks
from daydream_luigi.execution.knobs import Knobs
from daydream_luigi.execution.monitor import Monitor
from daydream_luigi.execution.runner import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_QUOTA,
    EXIT_SIGNAL,
    Watch,
    check_scheduler,
    check_worker_timeout,
    started,
    workers_for,
)
from daydream_luigi.providers import endpoints
from daydream_luigi.providers.limits import gate
from daydream_luigi.store import accounting, freshness


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
    backend: str | None = None  # the cohort's backend [default: core.settings.default_backend]


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


def preflight(paths, request: Request, pending: list) -> list[str]:
    """What can be known to fail before anything starts: one message, exit 2, nothing written. Every provider the
    pending calls use gets one cheap authenticated request (a server `run` starts itself is waited for instead), and
    one whose GET does not prove its key a 1-token chat completion to the first model the run needs of it; returns
    the endpoints sent one (the summary counts these preflight requests)."""
    if request.scheduler_url:
        check_scheduler(request.scheduler_url)
    context = plans.cohort_plan(request.cohort_id, request.backend).context
    check_worker_timeout(paths, context.settings, {m.stage for m in request.members}, request.scheduler_url is None)
    catalog = context.catalog
    first_model: dict[str, str] = {}  # endpoint -> the model string of the first pending call to it
    for member in pending:
        if calls_model(member, catalog):
            model = catalog.models[member.llm_model_id]
            first_model.setdefault(model.endpoint, model.model)
    raise_if(unknown_models(context.settings.batch, list(catalog.models), "config/daydream.yaml"))
    proved = []
    for name in sorted(name for name in first_model if not backend_of(name).starts_server):
        provider = context.settings.providers[name]
        endpoints.preflight(provider, model=first_model[name])
        if not endpoints.proves_key(provider, endpoints.resolve(provider)[0]):
            proved.append(name)
    return proved


def workers_needed(plan: plans.CohortPlan, pending: list, batch: bool, central: bool, shared_by: int = 1) -> int:
    """Workers for the pools the pending work uses (`runner.workers_for`; a 1/`shared_by` share of them when that
    many run processes share luigid), plus one per chunk of the most chunked batched stage (its polls wait side by
    side); at least one. No worker is kept for the tasks that call nothing: a spare worker would ask Luigi's
    scheduler for work after every task it is handed, and each request scans every pending task of the graph."""
    catalog = plan.context.catalog
    pools = {catalog.models[m.llm_model_id].pool for m in pending if calls_model(m, catalog)}
    chunks = plans.batch_chunks(plan.spec.cohort_id, batch, plan.backend).lists
    polls = max((sum(len(lists) for (s, _), lists in chunks.items() if s == stage) for stage in STAGES), default=0)
    return max(1, workers_for(plan.context.paths, pools, central, shared_by) + polls)


def _graphs(paths, request: Request, plan: plans.CohortPlan, fed):
    """The graphs to build, in order, each made when its turn comes: the cohort's root (or, with `--stage`, the Feeds of
    that stage), then more Feeds while parts were never fed (`_unfed_parts`). With batched generations pending, stage
    by stage: first the BatchSubmit tasks of the stage's chunks, then the stage's Feeds, and the root last.
    `fed()` is the set of (stage, part) that Feeds of this run have brought into a graph.

    On luigid, which other runs may share, this run's own Feeds first and the root after them: the reports, shared by
    every run, depend on the Feeds of the run that registered them last (`tasks.ParseScores`), so a run registers
    them only once its own Feeds are done, and a run stopped half-way never leaves the others waiting for its Feeds."""
    cohort_id = request.cohort_id
    if request.gen_ids:
        yield [tasks.generation_task(plan.members[g], cohort_id) for g in request.gen_ids]
        return
    complete = accounting.complete_sets(paths)
    found = plans.batch_chunks(cohort_id, request.batch)
    if not any(g not in complete[plan.members[g].stage] for g in found.where):
        if request.stage:
            yield from _unfed_parts(paths, request.cohort_id, plan, request.stage, fed)
            return
        if request.scheduler_url:
            yield from _unfed_parts(paths, request.cohort_id, plan, "", fed)
            yield [tasks.Cohort(cohort_id=cohort_id)]
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


def _unfed_parts(paths, cohort_id: str, plan: plans.CohortPlan, stage: str, fed):
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
        yield [tasks.Feed(cohort_id=cohort_id, part=start, stage=stage, first=start, feeder=knobs.current().run_id)]
        if (stage, start) not in fed():
            return  # not even its first Feed ran (Luigi could not schedule it): no loop


def _scope(request: Request, plan: plans.CohortPlan) -> list:
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


def _pool_of(plan: plans.CohortPlan):
    catalog = plan.context.catalog

    def pool(member) -> str:
        return catalog.models[member.llm_model_id].pool if calls_model(member, catalog) else "-"

    return pool


def run(paths, request: Request) -> Result:
    plan = plans.cohort_plan(request.cohort_id, request.backend)
    run_id = uuid.uuid4().hex[:12]
    run = Knobs(run_id, plan.backend, request.max_cost_usd, request.batch, call_slots=request.scheduler_url is None)
    complete_before = accounting.complete_sets(paths)
    with started(paths, run) as log_path:
        models = plan.context.catalog.models
        monitor = Monitor.for_members(
            request.members,
            _pool_of(plan),
            complete_before,
            lambda member: models[member.llm_model_id].price if member.llm_model_id in models else None,
        )
        limiter = gate.limiter(paths, plan.context.settings)
        built_root, built = False, 0
        title = f"cohort {request.cohort_id}"
        with Watch(paths, run, monitor, title, request.verbosity, log_path, limiter, request.scheduler_url) as watch:
            for graph in _graphs(paths, request, plan, lambda: watch.listening.caught_up().fed):
                if watch.stopped:
                    break
                root = any(isinstance(task, tasks.Cohort) for task in graph)
                if root and built and not plans.all_complete(paths, plan.members.values()):
                    break  # the root needs every generation: one failed in a part, so it is reported, not retried
                watch.build(graph, request.workers)
                built_root |= root
                built += 1
        seen = {gen_id: reason for gen_id, (_, reason) in monitor.failures.items()}
        scope = _scope(request, plan)
        prices = {model_id: model.price for model_id, model in plan.context.catalog.models.items()}
        outcome = accounting.outcome(paths, scope, complete_before, run_id, seen, prices)
        pool_of = _pool_of(plan)
        result = Result(
            outcome,
            log_path,
            EXIT_OK,
            watch.stopper.signal,
            watch.stopper.abandoned,
            gates=dict(monitor.gates),
            batch_failures=list(monitor.batch_failures),
            max_cost_usd=request.max_cost_usd,
            pools={pool: limiter.status(pool) for pool in sorted({pool_of(m) for m in scope} - {"-"})},
        )
        if not watch.scheduled_ok:
            result.notes.append(f"Luigi could not schedule some tasks; see {log_path}")
        if not (request.stage or request.gen_ids) and not watch.stopped:
            result.report_problem = _reports(paths, request.cohort_id, built_root, log_path)
        result.exit_code = _exit_code(result, watch.scheduled_ok)
    return result


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
    if built_root and plans.all_complete(paths, plans.cohort_plan(cohort_id).members.values()):
        return f"the report tasks failed; see {log_path}"
    try:
        from daydream_luigi.report import folder  # pandas and scipy: only now, after the last task process was forked

        folder.write_all(paths, cohort_id)
    except Exception as exc:
        logging.getLogger("daydream").exception("writing the partial reports failed")
        return f"the reports could not be written ({type(exc).__name__}: {exc}); see {log_path}"
    return None if report.exists() else f"the report was not written; see {log_path}"
