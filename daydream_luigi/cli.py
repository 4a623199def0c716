"""The `daydream` command line (Click)."""

import logging
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import click
import luigi.configuration

from . import runner
from .catalog import load_catalog
from .cohort import active_spec, expand, load_spec, write_cohort
from .config import STAGES, Paths, configure_luigi, load_settings, pool_limits
from .errors import InputError
from .parsers import ParseError, parse_draft, parse_score


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for name in ("luigi", "luigi-interface"):
        logging.getLogger(name).setLevel(logging.WARNING)


def default_backend() -> str:
    return "http" if os.environ.get("OPENROUTER_API_KEY") else "local"


def prepare(cohort: str | None, backend: str):
    """Validate every input, expand the cohort and write its membership; nothing is written when input is bad."""
    paths = Paths.from_env()
    settings = load_settings(paths)
    configure_luigi(paths)
    catalog = load_catalog(paths, pool_limits())
    spec = load_spec(paths, cohort, catalog, settings, backend) if cohort else active_spec(catalog, settings, backend)
    members = expand(spec, paths)
    write_cohort(paths, spec, members)
    return paths, settings, catalog, spec, members


def central_url() -> str:
    config = luigi.configuration.get_config()
    return f"http://{config.get('core', 'scheduler_host', '127.0.0.1')}:{config.getint('core', 'scheduler_port', 8082)}/"


def _workers_needed(catalog, members) -> int:
    """Default worker count: the sum of the limits of the pools the pending work uses."""
    limits = pool_limits()
    pools = {catalog.models[m.llm_model_id].pool for m in members
             if not (m.stage == "essay" and catalog.templates["essay"][m.template_id].kind == "copy")}
    return max(1, sum(limits.get(pool, 1) for pool in pools))


def _embedded_server(catalog, pending):
    """Start the embedded model when pending work needs it; the context manager stops it on any exit."""
    if not any(catalog.models[m.llm_model_id].provider == "embedded" for m in pending):
        return nullcontext()
    from . import embedded
    reason = embedded.unavailable_reason()
    if reason:
        raise InputError(f"the embedded model is not available: {reason}")
    click.echo("starting the embedded model (Qwen2.5-Coder-1.5B, offline) ...", err=True)
    return embedded.EmbeddedServer(embedded.ensure_model_file())


def _print_summary(spec, summary, paths) -> None:
    click.echo(f"\ncohort {spec.cohort_id}: done {len(summary.done)}, skipped (already complete) {summary.skipped}, "
               f"failed {len(summary.failed)}, blocked {len(summary.blocked)}")
    click.echo(f"model calls {summary.calls}, tokens {summary.prompt_tokens} prompt + {summary.completion_tokens} "
               f"completion, reported cost ${summary.cost:.4f}")
    for gen_id, reason in sorted(summary.failed.items()):
        click.echo(f"  failed {gen_id}: {reason}")
    for gen_id, reason in sorted(summary.blocked.items()):
        click.echo(f"  blocked {gen_id}: {reason}")


@main.command()
@click.option("--cohort", help="Named cohort (config/cohorts/NAME.yaml); default: the active flags.")
@click.option("--stage", type=click.Choice([*STAGES, "results"]), help="Run only this stage.")
@click.option("--workers", type=click.IntRange(min=1), help="Luigi workers (default: sum of the pool limits in use).")
@click.option("--backend", type=click.Choice(["local", "http"]), default=default_backend, show_default="http when "
              "OPENROUTER_API_KEY is set, else local", help="local = embedded offline model; http = OpenRouter or "
              "DAYDREAM_LLM_BASE_URL.")
@click.option("--scheduler", type=click.Choice(["local", "central"]), default="local", show_default=True,
              help="central = the luigid of `make ui`, shared by every worker process and machine.")
@click.option("--scheduler-url", envvar="DAYDREAM_SCHEDULER_URL", help="luigid URL for --scheduler central "
              "[default: http://<scheduler_host>:<scheduler_port>/ from config/luigi.cfg]")
@click.option("--dry-run", is_flag=True, help="Show what would run, run nothing.")
def run(cohort, stage, workers, backend, scheduler, scheduler_url, dry_run):
    """Run a cohort end to end (drafts, essays, evaluations, then the reports)."""
    paths, settings, catalog, spec, members = prepare(cohort, backend)
    stages = [stage] if stage in STAGES else ([] if stage == "results" else list(STAGES))
    pending = [m for ms in runner.pending_by_stage(paths, members, stages).values() for m in ms]
    click.echo(f"cohort {spec.cohort_id}: {len(members)} generations, {len(pending)} to run "
               f"(membership in {paths.cohorts / spec.cohort_id})", err=True)
    if dry_run:
        for name, stage_pending in runner.pending_by_stage(paths, members, STAGES).items():
            total = sum(1 for m in members if m.stage == name)
            click.echo(f"{name}: {total} in cohort, {len(stage_pending)} to run, {total - len(stage_pending)} done")
        return
    url = (scheduler_url or central_url()) if scheduler == "central" else None
    summary = runner.RunSummary()
    if pending:
        with _embedded_server(catalog, pending) as server:
            if server is not None:
                os.environ["DAYDREAM_EMBEDDED_BASE_URL"] = server.base_url
            summary = runner.run_cohort(paths, spec.cohort_id, members, stages,
                                        workers or _workers_needed(catalog, pending), settings.window, url)
    else:
        summary.skipped = sum(1 for m in members if m.stage in stages)
    if stage in (None, "results"):
        runner.build_reports(spec.cohort_id, url)
        reports = paths.cohorts / spec.cohort_id / "reports"
        click.echo(f"reports: {reports / 'parsed_scores.csv'}, {reports / 'pivot.csv'}")
    _print_summary(spec, summary, paths)
    if not summary.ok:
        sys.exit(1)


@main.group()
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


@main.command()
@click.option("--port", type=int, default=8082, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Listen address (keep loopback unless "
              "workers on other machines must reach it).")
def ui(port, address):
    """Start the Luigi central scheduler and its web UI (state and task history under the data folder)."""
    from .central import luigid_command, luigid_config
    paths = Paths.from_env()
    os.environ["LUIGI_CONFIG_PATH"] = str(luigid_config(paths))
    click.echo(f"Luigi scheduler UI on http://{address}:{port}/ ; run with `daydream run --scheduler central`", err=True)
    command = luigid_command(paths, port, address)
    os.execv(command[0], command)
