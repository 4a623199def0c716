"""Looking inside: `parse` one answer with one parser, and `ui`, Luigi's central scheduler with its web UI."""

import sys
from pathlib import Path

import click

from daydream_luigi.core.parsers import ParseError, parse_draft, parse_score
from daydream_luigi.core.settings import Paths


@click.group()
def parse():
    """Run one parser on a file (for debugging parsers)."""


def _parse_file(parse_fn, parser: str, file: Path) -> str:
    try:
        return parse_fn(parser, file.read_text(encoding="utf-8"))
    except ParseError as exc:
        click.echo(f"error: {file}: {exc}", err=True)
        sys.exit(1)


@parse.command("score")
@click.option("--parser", required=True, help="Score parser name (in_last_line, complex).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def parse_score_cmd(parser, file):
    """Print the judge's final score in FILE."""
    click.echo(f"{_parse_file(parse_score, parser, file):g}")


@parse.command("draft")
@click.option("--parser", required=True, help="Draft parser name (essay_idea_last, essay_block) or '' for none.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def parse_draft_cmd(parser, file):
    """Print what the draft parser extracts from FILE."""
    click.echo(_parse_file(parse_draft, parser, file))


@click.command()
@click.option("--port", type=int, default=8082, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Listen address (keep loopback unless workers on other machines must reach it).",
)
def ui(port, address):
    """Start the Luigi central scheduler and its web UI (state and task history under the data folder)."""
    from daydream_luigi.execution.central import exec_luigid

    click.echo(
        f"Luigi scheduler UI on http://{address}:{port}/ ; run with `daydream run --scheduler central`", err=True
    )
    exec_luigid(Paths.from_env(), port, address)
