"""The `daydream` group: every command registered here, one module per command group (run, store, curate, report,
research, decide, debug); bad input ends with its message and exit code 2."""

import logging
import sys

import click

from daydream_luigi.cli import curate, debug, decide, report, research, run, store
from daydream_luigi.core.errors import InputError


class DaydreamGroup(click.Group):
    """Bad input ends with its message and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(2)


@click.group(cls=DaydreamGroup)
def main():
    """daydream-luigi: combine concepts, draft, write essays, judge them, keep the best."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)


COMMANDS = (
    run.run,
    run.plan,
    run.status,
    run.pools,
    store.check,
    store.tasks,
    store.gens,
    store.import_texts,
    curate.select,
    curate.cohort,
    curate.cohorts,
    report.report,
    report.scores,
    research.rescore,
    research.tournament_command,
    research.dedup,
    decide.gate,
    decide.compare,
    decide.labels,
    debug.parse,
    debug.ui,
    debug.prices,
)
for command in COMMANDS:
    main.add_command(command)
