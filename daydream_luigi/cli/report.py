"""Results: a cohort's `report`, and `scores aggregate` across every cohort."""

from pathlib import Path

import click

from daydream_luigi.analysis.aggregate import aggregate_cross_experiment
from daydream_luigi.cli.common import backend_option, cohort_option, prepare
from daydream_luigi.core.settings import Paths
from daydream_luigi.report import collect, folder
from daydream_luigi.store.membership import has_membership


def all_scores(paths: Paths):
    frames = [
        collect.collect_scores(paths, folder.name)[0]
        for folder in sorted(paths.cohorts.glob("*"))
        if has_membership(paths, folder.name)
    ]
    return aggregate_cross_experiment(frames)


@click.command()
@cohort_option
@backend_option
def report(cohort, backend):
    """Write the cohort's tables, the decisions of the gates its spec names (gate-NAME.csv, dossiers) and its
    judges against people's labels, and its self-contained HTML report, from what is on disk now."""
    paths, plan = prepare(cohort, backend)
    cohort_id = plan.spec.cohort_id
    if not has_membership(paths, cohort_id):
        click.echo(f"cohort {cohort_id} has not run yet: `daydream run --cohort {cohort_id}` first", err=True)
        raise SystemExit(1)
    folder.write_all(paths, cohort_id, plan.spec.gates)  # the spec's gates as it is now, validated by prepare
    click.echo(f"report: {collect.reports_dir(paths, cohort_id) / 'report.html'}")


@click.group()
def scores():
    """Scores across cohorts."""


@scores.command("aggregate")
@click.option("--out", type=click.Path(path_type=Path), help="Default: data/cross_experiment/parsed_scores.csv")
def scores_aggregate(out):
    """One parsed-scores table over every cohort's evaluations."""
    paths = Paths.from_env()
    frame = all_scores(paths)
    out = out or paths.data_root / "cross_experiment" / "parsed_scores.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    cohorts = {c for ids in frame["cohorts"] for c in str(ids).split(";") if c}
    click.echo(f"{frame['gen_id'].nunique()} evaluations from {len(cohorts)} cohort(s) -> {out}")
