"""The `daydream` command line (Click)."""

import logging
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import click
import luigi.configuration
import yaml

from . import collect, operations, results, runner
from .catalog import load_catalog
from .cohort import active_spec, expand, load_spec, spec_from_mapping, write_cohort
from .config import STAGES, Paths, configure_luigi, load_settings, pool_limits
from .errors import InputError
from .parsers import ParseError, parse_draft, parse_score
from .stages import GenerationFailed


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
        logging.getLogger(name).addFilter(_skip_reported_failures)


def _skip_reported_failures(record: logging.LogRecord) -> bool:
    """Luigi logs a traceback per failed task; ours are one-line reasons the run summary already lists."""
    return not (record.exc_info and isinstance(record.exc_info[1], GenerationFailed))


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


cohort_option = click.option("--cohort", help="Named cohort (config/cohorts/NAME.yaml); default: the active flags.")
backend_option = click.option(
    "--backend", type=click.Choice(["local", "http"]), default=default_backend,
    show_default="http when OPENROUTER_API_KEY is set, else local",
    help="local = embedded offline model; http = OpenRouter or DAYDREAM_LLM_BASE_URL.")


@main.command()
@cohort_option
@click.option("--stage", type=click.Choice([*STAGES, "results"]), help="Run only this stage.")
@click.option("--workers", type=click.IntRange(min=1), help="Luigi workers (default: sum of the pool limits in use).")
@backend_option
@click.option("--scheduler", type=click.Choice(["local", "central"]), default="local", show_default=True,
              help="central = the luigid of `make ui`, shared by every worker process and machine.")
@click.option("--scheduler-url", envvar="DAYDREAM_SCHEDULER_URL", help="luigid URL for --scheduler central "
              "[default: http://<scheduler_host>:<scheduler_port>/ from config/luigi.cfg]")
@click.option("--budget", type=float, help="Refuse to start when the estimated cost (USD) is above this.")
@click.option("--dry-run", is_flag=True, help="Show what would run, run nothing.")
def run(cohort, stage, workers, backend, scheduler, scheduler_url, budget, dry_run):
    """Run a cohort end to end (drafts, essays, evaluations, then the reports)."""
    paths, settings, catalog, spec, members = prepare(cohort, backend)
    if budget is not None:
        operations.check_budget(operations.plan(paths, catalog, members, settings), budget)
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
        click.echo(f"reports: {reports / 'parsed_scores.csv'}, {reports / 'pivot.csv'}, {reports / 'report.html'}")
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


@main.command()
@cohort_option
@backend_option
@click.option("--budget", type=float, help="Exit 2 when the estimated cost (USD) is above this.")
def plan(cohort, backend, budget):
    """Dry run: generations per stage, model and pool; calls still to make; tokens and cost estimate."""
    paths, settings, catalog, spec, members = prepare(cohort, backend)
    frame = operations.plan(paths, catalog, members, settings)
    click.echo(f"cohort {spec.cohort_id}")
    click.echo(frame.to_string(index=False))
    totals = operations.plan_total(frame)
    click.echo("total: " + ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                                     for key, value in totals.items()))
    if budget is not None:
        operations.check_budget(frame, budget)


@main.command()
def check():
    """Integrity of the store: missing parents, orphans, duplicates, incomplete, changed templates (exit 1 if any)."""
    paths = Paths.from_env()
    configure_luigi(paths)
    findings = operations.check(paths, load_catalog(paths, pool_limits()))
    for finding in findings:
        click.echo(f"{finding.kind:17} {finding.stage:10} {finding.gen_id}  {finding.detail}")
    click.echo(f"{len(findings)} problem(s) found")
    if findings:
        sys.exit(1)


@main.command()
@cohort_option
@backend_option
def status(cohort, backend):
    """Done / pending / failed generations per stage of a cohort."""
    paths, settings, catalog, spec, members = prepare(cohort, backend)
    click.echo(f"cohort {spec.cohort_id}")
    click.echo(operations.status(paths, members).to_string(index=False))


@main.command()
def tasks():
    """Each Luigi task class: its group, parameters, target and where it is defined."""
    import inspect

    from . import tasks as task_module
    for cls in (task_module.Combinations, task_module.DraftTask, task_module.EssayTask, task_module.EvaluationTask,
                task_module.ParseScores, task_module.Pivot, task_module.Report):
        group = "generation" if issubclass(cls, task_module.GenerationTask) else \
            "results" if issubclass(cls, task_module.ReportTask) else "setup"
        params = ", ".join(name for name, _ in cls.get_params())
        target = {"setup": "data/cohorts/<cohort_id>/combos.recorded (+ data/combo_mappings.csv)",
                  "generation": f"data/gens/{getattr(cls, 'stage', '')}/<gen_id>/metadata.json",
                  "results": f"data/cohorts/<cohort_id>/reports/{getattr(cls, 'filename', '')}"}[group]
        line = inspect.getsourcelines(cls)[1]
        source = Path(inspect.getsourcefile(cls)).relative_to(Path(__file__).resolve().parents[1])
        click.echo(f"{cls.__name__:15} {group:11} ({params}) -> {target}  {source}:{line}")


@main.group()
def gens():
    """Manage generations in the store."""


@gens.command("rm")
@click.argument("gen_ids", nargs=-1)
@click.option("--cohort", help="Only generations of this cohort.")
@click.option("--stage", type=click.Choice(STAGES))
@click.option("--template", help="Only generations made with this template.")
@click.option("--yes", is_flag=True, help="Really delete (default: only list what would go).")
def gens_rm(gen_ids, cohort, stage, template, yes):
    """Remove generations (and their descendants) so the next run makes them again."""
    paths = Paths.from_env()
    if not (gen_ids or cohort or stage or template):
        raise InputError("say what to remove: gen ids, --cohort, --stage or --template")
    items = operations.removal_set(paths, list(gen_ids) or None, cohort, stage, template)
    for item_stage, gen_id in items:
        click.echo(f"{'removing' if yes else 'would remove'} {item_stage} {gen_id}")
    if yes:
        click.echo(f"removed {operations.remove(paths, items)} generation(s)")
    else:
        click.echo(f"{len(items)} generation(s); add --yes to delete them")


def _id_list_option(value: tuple) -> list[str]:
    """Accept repeated options and comma-separated lists alike."""
    return [item for chunk in value for item in chunk.split(",") if item]


@main.group()
def scores():
    """Scores across cohorts."""


def _all_scores(paths: Paths):
    frames = [collect.collect_scores(paths, folder.name)[0] for folder in sorted(paths.cohorts.glob("*"))
              if (folder / "membership.csv").exists()]
    return results.aggregate_cross_experiment(frames)


@scores.command("aggregate")
@click.option("--out", type=click.Path(path_type=Path), help="Default: data/cross_experiment/parsed_scores.csv")
def scores_aggregate(out):
    """One parsed-scores table over every cohort's evaluations (each evaluation once)."""
    paths = Paths.from_env()
    frame = _all_scores(paths)
    out = out or paths.data_root / "cross_experiment" / "parsed_scores.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    click.echo(f"{len(frame)} evaluations from {frame['cohort_id'].nunique()} cohort(s) -> {out}")


@main.group()
def select():
    """Choose essays for a curated cohort."""


@select.command("top")
@click.option("--templates", multiple=True, required=True, help="Evaluation template(s) to rank by (repeat or comma).")
@click.option("--exclude-judge", help="Glob of judge model ids to ignore, e.g. 'free-*'.")
@click.option("--top-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Default: data/selected_essays.txt")
def select_top(templates, exclude_judge, top_n, out):
    """Top essays by their best score on the chosen templates, over every cohort; ties by id."""
    paths = Paths.from_env()
    try:
        chosen = results.select_top(_all_scores(paths), _id_list_option(templates), exclude_judge, top_n)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    out = out or paths.data_root / "selected_essays.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{gen_id}\n" for gen_id in chosen))
    click.echo(f"{len(chosen)} essay(s) -> {out}")


@main.group()
def cohort():
    """Build named cohorts."""


@cohort.command("build")
@click.argument("name")
@click.option("--from-essays", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="File with one essay gen_id per line (e.g. from `daydream select top`).")
@click.option("--eval-templates", multiple=True, required=True, help="Evaluation template(s) (repeat or comma).")
@click.option("--eval-models", multiple=True, required=True, help="Judge model id(s) (repeat or comma).")
@backend_option
def cohort_build(name, from_essays, eval_templates, eval_models, backend):
    """A curated cohort: the listed essays (with their drafts) judged by the chosen templates and judges."""
    paths = Paths.from_env()
    settings = load_settings(paths)
    configure_luigi(paths)
    catalog = load_catalog(paths, pool_limits())
    essays = [line.strip() for line in from_essays.read_text().splitlines() if line.strip()]
    raw = {"essays": essays, "evaluation_templates": _id_list_option(eval_templates),
           "evaluation_models": _id_list_option(eval_models)}
    spec = spec_from_mapping(paths, name, raw, f"cohort {name} (from {from_essays})", catalog, settings, backend)
    members = expand(spec, paths)
    path = paths.cohort_specs / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Curated cohort built by `daydream cohort build` from {from_essays}\n" +
                    yaml.safe_dump(raw, sort_keys=False))
    write_cohort(paths, spec, members)
    new = sum(1 for m in members if m.stage == "evaluation")
    click.echo(f"cohort {name}: {len(essays)} essays, {new} evaluations -> {path}; run it with "
               f"`daydream run --cohort {name}`")


@main.command()
@cohort_option
@backend_option
def report(cohort, backend):
    """Write the cohort's tables and its self-contained HTML report."""
    paths, settings, catalog, spec, members = prepare(cohort, backend)
    runner.build_reports(spec.cohort_id)
    click.echo(f"report: {collect.reports_dir(paths, spec.cohort_id) / 'report.html'}")
