"""What several commands share: the --cohort and --backend options, id lists, resolving the cohort a command works
on, asking before a big run, and starting the servers of the backends that start their own."""

from contextlib import ExitStack, contextmanager

import click

from daydream_luigi.core.backends import BACKENDS, backend_of, default_backend
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.cohort_spec import active_spec
from daydream_luigi.core.expansion import calls_model
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.providers import backends

cohort_option = click.option(
    "--cohort",
    help="Cohort id: a spec in config/cohorts/, or any cohort recorded under data/cohorts/; default: the active flags.",
)
backend_option = click.option(
    "--backend",
    type=click.Choice(tuple(BACKENDS)),
    default=None,
    help="local = embedded offline model; http = the providers of llm_models.csv  "
    "[default: http when OPENROUTER_API_KEY is set, else local]",
)


def id_list(value: tuple) -> list[str]:
    """Accept repeated options and comma-separated lists alike."""
    return [item for chunk in value for item in chunk.split(",") if item]


def prepare(cohort: str | None, backend: str | None):
    """Validate every input and resolve the cohort; writes nothing (a run's Luigi graph records the membership)."""
    from daydream_luigi.execution import plans
    from daydream_luigi.execution.luigi_config import configure_luigi

    paths = Paths.from_env()
    backend = backend or default_backend()
    configure_luigi(paths)
    if cohort is None:
        settings = load_settings(paths)
        cohort = active_spec(load_catalog(paths, pool_limits(paths), settings), settings, backend).cohort_id
    plans.forget_plans()
    return paths, plans.cohort_plan(checked_id(cohort, "cohort name"), backend)


def confirm(question: str) -> bool:
    return click.confirm(question, default=False, err=True)


@contextmanager
def backend_servers(plan, pending):
    """Start the server of each backend that starts its own (the embedded model) when pending work needs it; they
    stop on any exit from the block."""
    catalog = plan.context.catalog
    needed = {backend_of(catalog.models[m.llm_model_id].endpoint).name for m in pending if calls_model(m, catalog)}
    with ExitStack() as stack:
        for name in sorted(needed):
            if BACKENDS[name].starts_server:
                stack.enter_context(backends.server(BACKENDS[name], lambda line: click.echo(line, err=True)))
        yield
