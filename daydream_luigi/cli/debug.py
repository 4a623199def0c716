"""Looking inside: `parse` one answer with one parser, `ui`, Luigi's central scheduler with its web UI, and `prices`,
the price cache."""

import sys
from pathlib import Path

import click

from daydream_luigi.core.backends import DEFAULT_ENDPOINT
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.clock import now
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.parsers import ParseError, parse_draft, parse_score
from daydream_luigi.core.pricing import price_cache_file
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.providers.prices import fetch_prices
from daydream_luigi.store.files import atomic_write_json


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
@click.option(
    "--no-history",
    is_flag=True,
    help="No SQLite task history: luigid commits one transaction per task event, most of its CPU with wide pools.",
)
def ui(port, address, no_history):
    """Start the Luigi central scheduler and its web UI (state and task history under the data folder)."""
    from daydream_luigi.execution.central import exec_luigid

    click.echo(
        f"Luigi scheduler UI on http://{address}:{port}/ ; run with `daydream run --scheduler central`", err=True
    )
    exec_luigid(Paths.from_env(), port, address, history=not no_history)


@click.group()
def prices():
    """Model prices: `prices refresh` reads OpenRouter's model list into data/prices/openrouter_models.json."""


@prices.command("refresh")
def prices_refresh():
    """Read each model's prompt, completion, reasoning and request prices from the openrouter endpoint's GET /models
    into the price cache (with its date); llm_models.csv price columns still win over it."""
    paths = Paths.from_env()
    settings = load_settings(paths)
    if DEFAULT_ENDPOINT not in settings.providers:
        raise InputError(f"no {DEFAULT_ENDPOINT} endpoint under endpoints: in {paths.settings_file}; declare it")
    url, listed = fetch_prices(settings.providers[DEFAULT_ENDPOINT])
    target = price_cache_file(paths.data_root)
    atomic_write_json(target, {"fetched_at": now(), "source": url, "models": listed})
    catalog = load_catalog(paths, pool_limits(paths), settings)
    ours = [m for m in catalog.models.values() if m.endpoint == DEFAULT_ENDPOINT and not m.for_embedding]
    unpriced = sorted(m.model_id for m in ours if m.price is None)
    click.echo(f"prices of {len(listed)} models from {url} written to {target}")
    click.echo(
        f"{len(ours) - len(unpriced)} of {len(ours)} {DEFAULT_ENDPOINT} models of llm_models.csv have a price"
        + (f"; none for {', '.join(unpriced)} (give price columns in llm_models.csv)" if unpriced else "")
    )
