"""The `daydream` group: every command registered here, one module per command group (run, store, curate, report,
research, decide, search, debug); bad input ends with its message and exit code 2."""

import importlib
import logging
import sys

import click

from daydream_luigi.core.errors import InputError

# Command name -> "module:function" in daydream_luigi.cli. A command's module is imported when the command is used, so
# `daydream run` does not pay for scipy (the statistics of `report`, `compare`, `labels`) or jinja2 at every start.
COMMANDS = {
    "run": "run:run",
    "plan": "run:plan",
    "status": "run:status",
    "pools": "run:pools",
    "check": "store:check",
    "tasks": "store:tasks",
    "gens": "store:gens",
    "import": "store:import_texts",
    "select": "curate:select",
    "cohort": "curate:cohort",
    "cohorts": "curate:cohorts",
    "report": "report:report",
    "scores": "report:scores",
    "rescore": "research:rescore",
    "tournament": "research:tournament_command",
    "dedup": "research:dedup",
    "gate": "decide:gate",
    "compare": "decide:compare",
    "labels": "decide:labels",
    "search": "search:search",
    "parse": "debug:parse",
    "ui": "debug:ui",
    "prices": "debug:prices",
}


class DaydreamGroup(click.Group):
    """Commands loaded on first use (Click's lazy-loading pattern); bad input ends with its message and exit code 2,
    never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(f"daydream_luigi.cli.{module}"), name)
        return command

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
