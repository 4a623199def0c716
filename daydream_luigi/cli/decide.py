"""Deciding from a cohort's scores: `gate` (criteria declared in advance), `compare` (paired, with an interval),
`labels` (people's scores, and the judges against them). `check inputs` is with `check`, in `store`."""

from pathlib import Path

import click

from daydream_luigi.analysis.compare import AXES
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.gates import GATE_LABEL_PREFIX, gate_path, load_gate
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.report import decisions
from daydream_luigi.store import labels as label_store

required_cohort = click.option("--cohort", required=True, help="Cohort id (data/cohorts/<id>, after a run).")


def _catalog_and_settings(paths: Paths):
    settings = load_settings(paths)
    return load_catalog(paths, pool_limits(paths), settings), settings


def _evaluation_templates(paths: Paths) -> list[str]:
    return sorted(_catalog_and_settings(paths)[0].templates["evaluation"])


@click.command()
@click.argument("name")
@required_cohort
def gate(name, cohort):
    """Decide every essay of the cohort by the gate config/gates/NAME.yaml: reports/gate-NAME.csv gives each
    criterion's value and `pass` or the first failing reason; reports/dossiers/<gen_id>.json explains each essay that
    passes."""
    paths = Paths.from_env()
    declared = load_gate(paths, name, _evaluation_templates(paths))
    files = decisions.write_gate(paths, checked_id(cohort, "cohort id"), declared)
    passed = files.decisions[files.decisions["decision"] == "pass"]["gen_id"].tolist()
    for gen_id in passed:
        click.echo(f"pass {gen_id}")
    click.echo(
        f"{len(passed)} of {len(files.decisions)} essays pass gate {name} ({declared.path}, sha256 "
        f"{declared.sha256[:12]}) -> {files.table}"
    )
    if files.dossiers or files.withdrawn:
        withdrawn = f"; gate {name} withdrawn from {len(files.withdrawn)}" if files.withdrawn else ""
        click.echo(f"dossiers: {len(files.dossiers)} in {files.table.parent / decisions.DOSSIERS}{withdrawn}")


@click.command()
@required_cohort
@click.option("--by", "axis", type=click.Choice(list(AXES)), required=True, help="What A and B are.")
@click.argument("a")
@click.argument("b")
@click.option("--template", help="Only this evaluation template (default: each template of the cohort in turn).")
def compare(cohort, axis, a, b, template):
    """Paired comparison of A against B on the units that have both: the mean difference A - B with its 95% paired
    t interval and a sign test, per evaluation template."""
    paths = Paths.from_env()
    summary, files = decisions.write_comparison(paths, checked_id(cohort, "cohort id"), axis, a, b, template)
    for line in summary["verdict"]:
        click.echo(line)
    left_out = summary[(summary["only_a"] > 0) | (summary["only_b"] > 0)]
    for row in left_out.itertuples():
        click.echo(
            f"  left out on {row.evaluation_template}: {row.only_a} unit(s) with {a} only, {row.only_b} with {b} only"
        )
    click.echo(f"tables: {files[0]}, {files[1]}")


@click.group()
def labels():
    """People's scores of essays (data/labels/labels.csv), and the judges measured against them."""


def _added(result: label_store.Added) -> None:
    click.echo(f"{len(result.added)} label(s) added, {len(result.already)} already stored (unchanged) -> {result.path}")


@labels.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def labels_import(file):
    """Import a CSV with the columns gen_id,template,score,rater[,note]. The template is an evaluation template (a
    0-10 score) or gate:NAME (the person's verdict on that gate: 10 pass, 0 fail). Rows already stored are skipped; a
    different score for a stored (essay, template, rater) is an error."""
    paths = Paths.from_env()
    _added(label_store.import_labels(paths, file, _evaluation_templates(paths)))


@labels.command("add")
@click.argument("gen_id")
@click.option("--template", required=True, help="An evaluation template, or gate:NAME for a pass/fail verdict.")
@click.option("--score", required=True, help="0-10 (for gate:NAME, 10 pass or 0 fail).")
@click.option("--rater", required=True, help="Who scored it, e.g. 'ana'.")
@click.option("--note", default="", help="Optional: why.")
def labels_add(gen_id, template, score, rater, note):
    """Record one person's score of one essay."""
    paths = Paths.from_env()
    row = {"gen_id": gen_id, "template": template, "score": score, "rater": rater, "note": note}
    _added(label_store.add_label(paths, row, _evaluation_templates(paths)))


@labels.command("compare")
@required_cohort
@click.option(
    "--gate",
    "gate_names",
    multiple=True,
    help="Gate(s) to hold against people's pass/fail labels (default: every gate some label names).",
)
def labels_compare(cohort, gate_names):
    """reports/judge_vs_human.csv: per judge and template, n, mean absolute difference, Spearman's rho and
    Krippendorff's alpha against the people's mean score; per gate, its precision and recall against their verdicts."""
    paths = Paths.from_env()
    templates = _evaluation_templates(paths)
    if not gate_names:
        templates_labelled = {label.template for _, label in label_store.stored_labels(paths)}
        named = {t[len(GATE_LABEL_PREFIX) :] for t in templates_labelled if t.startswith(GATE_LABEL_PREFIX)}
        gate_names = sorted(name for name in named if gate_path(paths, name).exists())
    declared = [load_gate(paths, name, templates) for name in gate_names]
    table, path = decisions.write_judge_vs_human(paths, checked_id(cohort, "cohort id"), declared)
    measured = table[table["n"] > 0]
    click.echo(f"{len(measured)} of {len(table)} judge/template and gate rows have essays scored by people -> {path}")
