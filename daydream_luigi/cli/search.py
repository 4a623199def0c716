"""`daydream search NAME`: a budgeted search for essays that pass a gate (config/searches/NAME.yaml), live or replayed
over a kept cohort; `plan --search NAME` shows its budget's worst case beside the cube's."""

import sys

import click

from daydream_luigi.analysis import search as strategies
from daydream_luigi.cli.common import backend_option, backend_servers, confirm
from daydream_luigi.core.backends import default_backend
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.search_spec import SearchSpec, cube_spec, load_named_search, search_dir
from daydream_luigi.core.settings import Paths
from daydream_luigi.execution.luigi_config import configure_luigi
from daydream_luigi.execution.neutrality import require_neutral_search
from daydream_luigi.execution.runner import EXIT_FAILED, EXIT_OK, EXIT_SIGNAL
from daydream_luigi.execution.search import Interrupted, LiveRounds
from daydream_luigi.report import search as record
from daydream_luigi.store import costs


def _load(name: str, backend: str | None):
    paths = Paths.from_env()
    backend = backend or default_backend()
    return paths, backend, *load_named_search(paths, name, backend)


def _totals(size: record.Cube) -> dict:
    return {"to_call": size.calls, "est_cost_usd": size.est_cost_usd}


def plan_lines(search: SearchSpec, cube: record.Cube) -> list[str]:
    """What `plan --search` prints: the budget's worst case beside the cube's calls and cost."""
    worst = record.worst_case(search, cube)
    share = f" ({worst.calls / cube.calls:.0%} of the cube's calls)" if cube.calls else ""
    return [
        f"search {search.name} ({search.strategy}, seed {search.seed}): gate {search.gate.name}, "
        f"stop after {search.stop_after_passes or 'no'} pass(es)",
        f"budget, worst case: {worst.calls:,} calls, {costs.usd_text(worst.est_cost_usd)}{share}",
        f"the cube ({cube_spec(search).cohort_id}): {cube.calls:,} calls, est. {costs.usd_text(cube.est_cost_usd)}",
    ]


def plan_search(name: str, backend: str | None) -> None:
    paths, backend, settings, catalog, search = _load(name, backend)
    cube = record.cube(search, catalog, settings)
    for line in plan_lines(search, cube):
        click.echo(line)
    reason = costs.guard_reason(_totals(record.worst_case(search, cube)), settings.guard)
    if reason:
        click.echo(f"guard: {reason.replace('this run', 'this search')}; `daydream search` asks first (or --yes)")


@click.command()
@click.argument("name")
@click.option(
    "--replay",
    "replay_cohorts",
    metavar="COHORT",
    multiple=True,
    help="No model call: run the strategy over the kept scores of COHORT (e.g. the search's exhaustive cube, "
    "already run; repeat it to take several cohorts together); a generation they lack is an error naming it.",
)
@backend_option
@click.option("--yes", is_flag=True, help="Start a search whose budget is above the guard thresholds without asking.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display; only the result line.")
def search(name, replay_cohorts, backend, yes, quiet):
    """Search config/searches/NAME.yaml round by round for essays that pass its gate, within its budget; each round
    is the cohort search-NAME-r<round>. Ends with one line: found or not, at what calls and cost, against the cube's.
    Writes data/searches/NAME/rounds.csv, result.json and report.html (a replay: under replay-COHORT/).

    Exit codes: 0 the search ended (found, budget spent, or nothing left to try: result.json says which); 1 some of
    a round's generations failed (the search stops there); 2 bad input; 130 / 143 interrupted (run it again to
    resume: no call is repeated)."""
    paths, backend, settings, catalog, spec = _load(name, backend)
    cube = record.cube(spec, catalog, settings)
    fetcher: strategies.Fetcher
    if replay_cohorts:
        cohort_ids = [checked_id(cohort, "cohort id") for cohort in replay_cohorts]
        fetcher = record.Replay(paths, spec, catalog, settings, backend, cohort_ids)
        folder = record.replay_dir(paths, name, "+".join(cohort_ids))
    else:
        configure_luigi(paths)
        tty = sys.stdin.isatty()
        costs.check_guard(_totals(record.worst_case(spec, cube)), settings.guard, yes, confirm if tty else None)
        require_neutral_search(paths, spec, catalog, settings)
        fetcher = LiveRounds(
            paths,
            spec,
            catalog,
            settings,
            backend,
            0 if quiet else 1,
            servers=backend_servers,
            announce=(lambda line: None) if quiet else (lambda line: click.echo(line, err=True)),
        )
        folder = search_dir(paths, name)
    try:
        outcome = strategies.run_search(spec, fetcher, record.empty_scores())
    except Interrupted as exc:
        click.echo(f"search {name}: interrupted; finished work is kept, run it again to resume", err=True)
        sys.exit(EXIT_SIGNAL[exc.signum])
    result = record.write_results(folder, spec, outcome, cube, record.concept_names(catalog))
    click.echo(record.one_line(spec, result, folder))
    sys.exit(EXIT_FAILED if outcome.stop_reason == strategies.FAILED else EXIT_OK)
