"""The generation store: `check` its integrity (and `check inputs`: the fixed inputs are neutral), `gens rm` to redo
work on purpose, `tasks` to see the Luigi classes, `import` texts written elsewhere."""

import inspect
import sys
from pathlib import Path

import click

from daydream_luigi.cli.common import backend_option, cohort_option
from daydream_luigi.core.backends import default_backend
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.cohort_spec import active_spec
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.neutrality import rules_path
from daydream_luigi.core.settings import STAGES, Paths, load_settings, pool_limits
from daydream_luigi.execution.neutrality import check_inputs
from daydream_luigi.store import importer, operations
from daydream_luigi.store.cohorts import resolve


@click.group(invoke_without_command=True)
@click.pass_context
def check(ctx):
    """Integrity of the store: missing parents, orphans, duplicates, incomplete, changed templates, imported texts
    edited since (exit 1 if any). Generations whose call was stopped before an answer are listed, not counted.
    `daydream check inputs`: the fixed inputs are neutral (config/neutrality.yaml)."""
    if ctx.invoked_subcommand is not None:
        return
    paths = Paths.from_env()
    findings = operations.check(paths, load_catalog(paths, pool_limits(paths), load_settings(paths)))
    for finding in findings:
        click.echo(f"{finding.kind:17} {finding.stage:10} {finding.gen_id}  {finding.detail}")
    problems = [finding for finding in findings if finding.kind != operations.NOT_A_PROBLEM]
    click.echo(f"{len(problems)} problem(s) found")
    if problems:
        sys.exit(1)


_TARGETS = {
    "CohortMembership": "data/cohorts/<cohort_id>/membership.csv (+ manifest.json)",
    "Combinations": "data/cohorts/<cohort_id>/combos.recorded (+ data/combo_mappings.csv)",
    "Lineages": "(wrapper) the generations of one part of the cohort",
    "Feed": "(no target) brings its part and the next part's Feed into the running graph",
    "Cohort": "(wrapper) the cohort's reports",
}


@click.command()
def tasks():
    """Each Luigi task class: its group, parameters, target and where it is defined."""
    from daydream_luigi.execution import tasks as task_module

    classes = (
        task_module.Cohort,
        task_module.Report,
        task_module.Pivot,
        task_module.ParseScores,
        task_module.Feed,
        task_module.Lineages,
        task_module.EvaluationTask,
        task_module.EssayTask,
        task_module.DraftTask,
        task_module.Combinations,
        task_module.CohortMembership,
        task_module.PairwiseJudgment,
    )
    for cls in classes:
        if issubclass(cls, task_module.GenerationTask):
            group, target = "generation", f"data/gens/{cls.stage}/<gen_id>/metadata.json"
        elif issubclass(cls, task_module.ReportTask):
            group, target = "results", f"data/cohorts/<cohort_id>/reports/{cls.filename}"
        else:
            group, target = "cohort", _TARGETS[cls.__name__]
        params = ", ".join(name for name, _ in cls.get_params())
        line = inspect.getsourcelines(cls)[1]
        source = Path(inspect.getsourcefile(cls)).relative_to(Path(__file__).resolve().parents[2])
        click.echo(f"{cls.__name__:16} {group:10} ({params}) -> {target}  {source}:{line}")


@click.group()
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


@click.command("import")
@click.option(
    "--stage",
    type=click.Choice(importer.IMPORT_STAGES),
    required=True,
    help="What the texts are: finished essays (to judge) or drafts (to write essays from).",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--cohort",
    help="Also add them to this curated cohort's spec (config/cohorts/NAME.yaml): essays to its "
    "essays list, drafts to its drafts list.",
)
@click.option("--label", help="A short note shown with them in reports, e.g. 'winner of project X'.")
def import_texts(stage, files, cohort, label):
    """Register texts written elsewhere as complete essays or drafts, judged and ranked beside generated ones.

    Each text gets a gen_id from its content: importing it again writes nothing. Prints the gen_ids on stdout, one per
    line in the order given (e.g. `> imported.txt` for `cohort build --from-essays`); what it did goes to stderr.
    """
    paths = Paths.from_env()
    done = importer.import_texts(paths, stage, list(files), label, cohort, default_backend())
    for text in done.texts:
        state = "imported" if text.gen_id in done.written else "already imported (nothing written):"
        click.echo(f"{state} {stage} {text.gen_id} <- {text.path}", err=True)
        click.echo(text.gen_id)
    if done.spec is not None:
        what = f"added {len(done.added)} {stage}(s) to" if done.added else f"already lists every {stage}; unchanged:"
        click.echo(f"cohort {cohort}: {what} {done.spec}; run it with `daydream run --cohort {cohort}`", err=True)


@check.command("inputs")
@cohort_option
@backend_option
def check_inputs_command(cohort, backend):
    """Scan the fixed inputs of the cohort (templates, every description of every concept it uses, system prompts) for
    the terms config/neutrality.yaml forbids and, with a target text, their similarity to it. Exit 2 on a problem."""
    paths = Paths.from_env()
    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits(paths), settings)
    backend = backend or default_backend()
    spec = (
        active_spec(catalog, settings, backend)
        if cohort is None
        else resolve(paths, checked_id(cohort, "cohort id"), catalog, settings, backend)
    )
    scan = check_inputs(paths, spec, catalog, settings)
    if scan is None:
        click.echo(f"no {rules_path(paths)}: nothing to check (list forbidden terms there, or a target text)")
        return
    for index, item in enumerate(scan.inputs):
        similarity = "" if scan.similarities is None else f"  similarity {scan.similarities[index]:.3f}"
        line = f": line {item.first_line}" if item.first_line != 1 else ""
        click.echo(f"{item.source}{line}{similarity}")
    click.echo(
        f"cohort {spec.cohort_id}: {len(scan.inputs)} fixed input(s) checked against {scan.rules.path} (sha256 "
        f"{scan.rules.sha256[:12]}): {len(scan.problems)} problem(s)"
    )
    raise_if(scan.problems)
