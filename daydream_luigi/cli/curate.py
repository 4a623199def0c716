"""Curating the next round: `select top` essays, `cohort build` a curated cohort from them, `cohorts` on disk."""

import math
from pathlib import Path

import click
import pandas as pd
import yaml

from daydream_luigi.analysis import gates, selection
from daydream_luigi.cli.common import backend_option, id_list
from daydream_luigi.cli.report import all_scores
from daydream_luigi.core.backends import default_backend
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.cohort_spec import read_essay_list, spec_from_mapping
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.gates import load_gate
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.report import collect
from daydream_luigi.report.tables import DEDUP_CLUSTERS_FILE as DEDUP_FILE
from daydream_luigi.store import operations
from daydream_luigi.store.cohorts import expand_cohort, new_spec_path
from daydream_luigi.store.files import atomic_write_text


@click.group()
def select():
    """Choose essays for a curated cohort."""


@select.command("top")
@click.option("--templates", multiple=True, required=True, help="Evaluation template(s) to rank by (repeat or comma).")
@click.option("--cohort", help="Only essays of this cohort (default: every cohort on disk).")
@click.option(
    "--by",
    type=click.Choice(selection.SELECT_TOP_ORDERS),
    default="mean",
    show_default=True,
    help="mean: the mean over judges and replicates; lower-bound: the low end of its 95% interval.",
)
@click.option(
    "--min-judges",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Only essays scored by at least this many judges.",
)
@click.option(
    "--max-judge-range",
    type=click.FloatRange(min=0),
    help="Only essays whose judges' means differ by at most this many points (an agreement filter).",
)
@click.option("--dedup", is_flag=True, help="One essay per near-duplicate cluster (`daydream dedup` first).")
@click.option("--gate", "gate_name", help="Only essays that pass this gate (config/gates/NAME.yaml).")
@click.option("--exclude-judge", help="Glob of judge model ids to ignore, e.g. 'free-*'.")
@click.option("--top-n", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Default: data/selected_essays.txt")
def select_top(templates, cohort, by, min_judges, max_judge_range, dedup, gate_name, exclude_judge, top_n, out):
    """Top essays by their mean score over judges and replicates on the chosen templates; ties by id. Prints the
    scores it ranked by."""
    paths = Paths.from_env()
    scores = all_scores(paths)
    if cohort is not None:
        scores = scores[scores["cohorts"].str.split(";").apply(lambda ids: cohort in ids)]
    if dedup:
        scores = scores[scores["parent_gen_id"].isin(dedup_representatives(paths, cohort))]
    if gate_name is not None:
        catalog = load_catalog(paths, pool_limits(paths), load_settings(paths))
        declared = load_gate(paths, gate_name, catalog.templates["evaluation"])
        scores = scores[scores["parent_gen_id"].isin(gates.passing(gates.decide(scores, declared)))]
    try:
        chosen = selection.select_top(
            scores,
            id_list(templates),
            exclude_judge,
            top_n,
            by=by,
            min_judges=min_judges,
            max_judge_range=max_judge_range,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    out = out or paths.data_root / "selected_essays.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(f"{gen_id}\n" for gen_id in chosen["gen_id"]))
    for row in chosen.itertuples():
        interval = "no interval" if math.isnan(row.ci_low) else f"[{row.ci_low:.2f}, {row.ci_high:.2f}]"
        spread = "" if math.isnan(row.judge_range) else f"  range={row.judge_range:.2f}"
        click.echo(f"{row.gen_id}  mean {row.mean:.2f} {interval}  n={row.n}  judges={row.n_judges}{spread}")
    click.echo(f"{len(chosen)} essay(s) -> {out}")


def dedup_representatives(paths: Paths, cohort: str | None) -> set:
    """Essays that represent their near-duplicate cluster in the dedup tables of the cohort (or of every cohort)."""
    files = (
        [collect.reports_dir(paths, cohort) / DEDUP_FILE]
        if cohort
        else sorted(paths.cohorts.glob(f"*/reports/{DEDUP_FILE}"))
    )
    files = [path for path in files if path.exists()]
    if not files:
        raise InputError(
            f"no {DEDUP_FILE} for {'cohort ' + cohort if cohort else 'any cohort'}; run "
            f"`daydream dedup --cohort NAME` first"
        )
    frames = [pd.read_csv(path, dtype=str) for path in files]
    return {row.gen_id for frame in frames for row in frame.itertuples() if row.gen_id == row.representative}


@click.group()
def cohort():
    """Build named cohorts."""


@cohort.command("build")
@click.argument("name")
@click.option(
    "--from-essays",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="File with one essay gen_id per line (e.g. from `daydream select top`).",
)
@click.option("--eval-templates", multiple=True, required=True, help="Evaluation template(s) (repeat or comma).")
@click.option("--eval-models", multiple=True, required=True, help="Judge model id(s) (repeat or comma).")
@click.option("--force", is_flag=True, help="Replace an existing spec or recorded cohort of that name.")
@backend_option
def cohort_build(name, from_essays, eval_templates, eval_models, force, backend):
    """A curated cohort: the listed essays (with their drafts) judged by the chosen templates and judges."""
    paths = Paths.from_env()
    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits(paths), settings)
    path = new_spec_path(paths, name, force)
    raw = {
        "essays": read_essay_list(from_essays),
        "evaluation_templates": id_list(eval_templates),
        "evaluation_models": id_list(eval_models),
    }
    spec = spec_from_mapping(
        paths, name, raw, f"cohort {name} (from {from_essays})", catalog, settings, backend or default_backend()
    )
    members = expand_cohort(spec, paths, catalog, settings)  # validates every essay before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        path,
        f"# Curated cohort built by `daydream cohort build` from {from_essays}\n"
        + yaml.safe_dump(raw, sort_keys=False),
    )
    new = sum(1 for m in members if m.stage == "evaluation")
    click.echo(
        f"cohort {name}: {len(raw['essays'])} essays, {new} evaluations -> {path}; run it with "
        f"`daydream run --cohort {name}`"
    )


@click.command()
def cohorts():
    """Every cohort on disk: id, where it came from, generations per stage, how many complete, last run."""
    frame = operations.list_cohorts(Paths.from_env())
    click.echo(frame.to_string(index=False) if len(frame) else "no cohort has been recorded yet under data/cohorts")
