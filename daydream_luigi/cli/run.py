"""Running a cohort: `run`, the read-only views of what a run would do or has done: `plan`, `status`, and the pools
its calls go through: `pools` (and `pools resume`)."""

import sys
from dataclasses import replace

import click
import pandas as pd

from daydream_luigi.cli.common import backend_option, backend_servers, cohort_option, confirm, prepare
from daydream_luigi.core.clock import now
from daydream_luigi.core.cohort_spec import empty_reasons
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.settings import STAGES, Paths, load_settings, pool_limits
from daydream_luigi.execution import cohort_run as running
from daydream_luigi.execution.central import central_url
from daydream_luigi.execution.neutrality import record_neutral_inputs, require_neutral_inputs
from daydream_luigi.execution.progress import rate_text
from daydream_luigi.providers.limits import gate
from daydream_luigi.providers.limits.budget import Spend
from daydream_luigi.providers.limits.ratelimit import quota_message
from daydream_luigi.store import costs, operations
from daydream_luigi.store.accounting import complete_sets, first_reasons
from daydream_luigi.store.membership import record_run

budget_option = click.option(
    "--budget",
    type=float,
    callback=lambda ctx, param, value: costs.checked_budget(value),
    help="Exit 2 (nothing started) when the estimated cost (USD) is above this.",
)
batch_option = click.option(
    "--batch",
    is_flag=True,
    help="Send every eligible call through its provider's batch API "
    "(endpoints.*.batch_api): about half the price, answers within 24 hours.",
)


def _pending(plan, complete) -> list:
    return [m for m in plan.members.values() if m.gen_id not in complete[m.stage]]


def print_summary(cohort_id: str, result: running.Result, reports, proved: list[str] = ()) -> None:
    """`proved`: the endpoints the preflight sent a 1-token chat completion (requests the provider received too)."""
    outcome = result.outcome
    calls = outcome.calls
    click.echo(
        f"\ncohort {cohort_id}: done {len(outcome.done)}, skipped (already complete) {outcome.complete_before}, "
        f"failed {len(outcome.failed)}, blocked {len(outcome.blocked)}, not started {len(outcome.pending)}"
    )
    batched = f" ({calls.batched} in batches)" if calls.batched else ""
    click.echo(
        f"requests sent {calls.requests}{batched}, answers received {calls.answers}, tokens "
        f"{calls.prompt_tokens} prompt + {calls.completion_tokens} completion, {calls.cost_text()}"
    )
    if proved:
        click.echo(
            f"preflight requests {len(proved)} (a 1-token chat completion proving the key of "
            f"{', '.join(proved)}, before the run)"
        )
    if result.max_cost_usd is not None:
        click.echo(Spend(calls.cost, calls.estimated_cost, 0.0, result.max_cost_usd).line())
    if outcome.unscored:
        click.echo(
            f"unscored evaluations {len(outcome.unscored)} (answers kept: fix the parser and re-score, no new "
            f"call); first reasons:"
        )
        for reason, count, gen_id in first_reasons(outcome.unscored):
            click.echo(f"  {count} x {reason} (e.g. {gen_id})")
    for gen_id, (stage, reason) in sorted(outcome.failed.items()):
        click.echo(f"  failed {stage} {gen_id}: {reason}")
    for gen_id, (stage, reason) in sorted(outcome.blocked.items()):
        click.echo(f"  blocked {stage} {gen_id}: {reason}")
    for pool, status in result.pools.items():
        if status.paused is not None or rate_text(status) not in ("no limit", f"{status.configured_per_window}/min"):
            click.echo(f"pool {pool}: {rate_text(status)}")
    for _, _, message in result.gates.values():
        click.echo(message)
    for reason in result.batch_failures:
        click.echo(reason)
    for note in result.notes:
        click.echo(note)
    if result.report_problem:
        click.echo(f"report failed: {result.report_problem}")
    elif reports is not None:
        click.echo(f"reports: {reports}")
    if result.interrupted_by is not None:
        left = len(outcome.pending) + len(outcome.failed) + len(outcome.blocked)
        abandoned = (
            "; calls still in flight were abandoned"
            if result.abandoned
            else "; every call in flight finished and its answer is kept"
        )
        click.echo(
            f"interrupted: {len(outcome.done)} generation(s) finished in this run, {left} left{abandoned}. "
            f"Resume with the same command: finished work and kept answers are reused."
        )
    click.echo(f"log: {result.log_path}")


@click.command()
@cohort_option
@click.option("--stage", type=click.Choice(STAGES), help="Only this stage (and the parents it needs).")
@click.option("--gen-id", "gen_ids", multiple=True, help="Only this generation (and its parents); repeatable.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Luigi workers [default: the sum of the pool limits in use, plus one].",
)
@backend_option
@click.option(
    "--scheduler",
    type=click.Choice(["local", "central"]),
    default="local",
    show_default=True,
    help="central = the luigid of `make ui`, shared by every worker process and machine.",
)
@click.option(
    "--scheduler-url",
    envvar="DAYDREAM_SCHEDULER_URL",
    help="luigid URL for --scheduler central "
    "[default: http://<scheduler_host>:<scheduler_port>/ from config/luigi.cfg]",
)
@click.option(
    "--shared-by",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --scheduler central: N run processes (or machines) share this cohort, each started with this "
    "option; this one starts 1/N of the pools' workers, so each makes about 1/N of the calls.",
)
@budget_option
@click.option(
    "--max-cost",
    type=float,
    callback=lambda ctx, param, value: costs.checked_budget(value, "--max-cost"),
    help="Spending stop (USD): no new call starts once what this run spent (reported cost, else the "
    "price_per_mtok estimate), what is in flight and its own estimate would exceed it.",
)
@batch_option
@click.option(
    "--yes", is_flag=True, help="Start a run above the guard thresholds (config/daydream.yaml `guard`) without asking."
)
@click.option("--dry-run", is_flag=True, help="Show what would run, run nothing, write nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display; only the summary.")
@click.option("--verbose", "-v", is_flag=True, help="Also a line for each generation as it finishes.")
def run(
    cohort,
    stage,
    gen_ids,
    workers,
    backend,
    scheduler,
    scheduler_url,
    shared_by,
    budget,
    max_cost,
    batch,
    yes,
    dry_run,
    quiet,
    verbose,
):
    """Run a cohort end to end: drafts, essays and evaluations as one pipelined Luigi graph, then the reports.

    Before anything starts, the fixed inputs are checked against config/neutrality.yaml (`daydream check inputs`).

    Exit codes: 0 all done; 1 some generations or a report failed (each listed with its reason), the --max-cost
    budget was reached, or a provider became unreachable; 2 bad input; 3 a daily quota paused a pool (its work is
    left for a run after the resume time shown); 130 / 143 interrupted by Ctrl-C / SIGTERM (finished work is kept;
    run again to resume).
    """
    if shared_by > 1 and scheduler != "central":
        raise InputError(
            f"--shared-by {shared_by}: run processes share a cohort only on luigid; add --scheduler central "
            f"(start luigid with `daydream ui`)"
        )
    paths, plan = prepare(cohort, backend)
    cohort_id = plan.spec.cohort_id
    neutrality = require_neutral_inputs(paths, plan.spec, plan.context.catalog, plan.context.settings)
    members = list(plan.members.values())
    unknown = [g for g in gen_ids if g not in plan.members]
    if unknown:
        raise InputError(
            [
                f"--gen-id {g}: not a generation of cohort {cohort_id}; `daydream status --cohort "
                f"{cohort_id}` lists the cohort"
                for g in unknown
            ]
        )
    settings = plan.context.settings
    cost_plan = costs.plan(paths, plan.context.catalog, members, settings, batch)
    if budget is not None:
        costs.check_budget(cost_plan, budget)
    if max_cost is not None:
        costs.check_priced(cost_plan, "--max-cost")
    complete = complete_sets(paths)
    pending = _pending(plan, complete)
    if dry_run:
        for name in STAGES:
            total = sum(1 for m in members if m.stage == name)
            to_run = sum(1 for m in pending if m.stage == name)
            click.echo(f"{name}: {total} in cohort, {to_run} to run, {total - to_run} done")
        return
    totals, unpriced = costs.plan_total(cost_plan), sum(costs.unpriced(cost_plan).values())
    if costs.guard_reason(totals, settings.guard, unpriced) and not yes and sys.stdin.isatty():
        click.echo(costs.shown_plan(cost_plan), err=True)
    costs.check_guard(totals, settings.guard, yes, confirm if sys.stdin.isatty() else None, unpriced)
    url = (scheduler_url or central_url()) if scheduler == "central" else None
    request = running.Request(
        cohort_id,
        members,
        workers or running.workers_needed(plan, pending, batch, url is not None, shared_by),
        url,
        stage,
        tuple(gen_ids),
        0 if quiet else 2 if verbose else 1,
        max_cost,
        batch,
        plan.backend,
    )
    proved = running.preflight(paths, request, pending)
    record_neutral_inputs(paths, cohort_id, neutrality)
    click.echo(f"cohort {cohort_id}: {len(members)} generations, {len(pending)} to run", err=True)
    started = now()
    with backend_servers(plan, pending):
        result = running.run(paths, request)
    outcome = result.outcome
    record_run(
        paths,
        cohort_id,
        started,
        now(),
        {
            "done": len(outcome.done),
            "failed": len(outcome.failed),
            "blocked": len(outcome.blocked),
            "skipped": outcome.complete_before,
            "not_started": len(outcome.pending),
        },
    )
    written = not (stage or gen_ids or result.interrupted_by is not None)  # as running.run decides
    reports = paths.cohorts / cohort_id / "reports" / "report.html" if written else None
    print_summary(cohort_id, result, reports, proved)
    sys.exit(result.exit_code)


@click.command()
@cohort_option
@backend_option
@budget_option
@batch_option
@click.option(
    "--search",
    "search_name",
    metavar="NAME",
    help="Plan the search config/searches/NAME.yaml instead: its budget's worst case beside the cube's calls and cost.",
)
def plan(cohort, backend, budget, batch, search_name):
    """Dry run: generations per stage, model and pool; calls still to make; tokens and cost estimate (batched rows
    at batch price). Exit 2 when a fixed input is not neutral (config/neutrality.yaml)."""
    if search_name is not None:
        from daydream_luigi.cli.search import plan_search  # here: searching imports scipy, which `run` never needs

        plan_search(search_name, backend)
        return
    paths, cohort_plan = prepare(cohort, backend)
    require_neutral_inputs(paths, cohort_plan.spec, cohort_plan.context.catalog, cohort_plan.context.settings)
    frame = costs.plan(
        paths, cohort_plan.context.catalog, list(cohort_plan.members.values()), cohort_plan.context.settings, batch
    )
    click.echo(f"cohort {cohort_plan.spec.cohort_id}")
    if frame.empty:
        reasons = empty_reasons(cohort_plan.spec, cohort_plan.backend) or ["the cohort has no generation"]
        click.echo("nothing to plan: " + "; ".join(reasons))
        return
    click.echo(costs.shown_plan(frame))
    click.echo(costs.total_line(frame))
    if budget is not None:
        costs.check_budget(frame, budget)


@click.command()
@cohort_option
@backend_option
def status(cohort, backend):
    """Done / pending / failed generations per stage of a cohort."""
    paths, cohort_plan = prepare(cohort, backend)
    click.echo(f"cohort {cohort_plan.spec.cohort_id}")
    click.echo(operations.status(paths, list(cohort_plan.members.values())).to_string(index=False))


@click.group(invoke_without_command=True)
@click.pass_context
def pools(ctx):
    """Each pool: calls at once (config/luigi.cfg), its rate (configured, and lowered after 429s), what its window and
    day hold, and a quota pause. `daydream pools resume NAME` lifts a pause."""
    if ctx.invoked_subcommand is not None:
        return
    paths = Paths.from_env()
    settings, limits = load_settings(paths), pool_limits(paths)
    limiter = gate.limiter(paths, settings)
    rows = []
    for pool in sorted(limits):
        status = limiter.status(pool)
        paused = status.paused
        rows.append(
            {
                "pool": pool,
                "at_once": limits[pool],
                "rate": rate_text(status) if paused is None else rate_text(replace(status, paused=None)),
                "sent_in_window": status.sent_in_window,
                "sent_today": status.sent_today,
                "paused": "-" if paused is None else f"until {_pause_text(pool, paused)}",
            }
        )
    click.echo(pd.DataFrame(rows).to_string(index=False))


@pools.command("resume")
@click.argument("name")
def pools_resume(name):
    """Lift NAME's quota pause now (e.g. after buying credits): its calls start again at the next run."""
    paths = Paths.from_env()
    limits = pool_limits(paths)
    if name not in limits:
        raise InputError(f"no pool {name!r}; the pools are {', '.join(sorted(limits))} (config/luigi.cfg [resources])")
    limiter = gate.limiter(paths, load_settings(paths))
    paused = limiter.paused(name)
    if paused is None:
        click.echo(f"pool {name}: not paused, nothing to lift")
        return
    limiter.resume(name)
    click.echo(f"pool {name}: lifted the pause until {_pause_text(name, paused)}; its calls start at the next run")


def _pause_text(pool: str, paused: tuple[float, str]) -> str:
    """`HH:MM (reason)` of a pool's quota pause, as the run's quota line says it."""
    return quota_message(pool, *paused).split("resume after ", 1)[1]
