"""The research loop after a run: `rescore` kept judge answers, a `tournament` of pairwise judgments, `dedup` essays.

The commands only read their options and print: the tournament is `execution.tournament`'s, the tables and reports
`report.research`'s, the clusters `analysis.dedup`'s, the rescoring `store.rescore`'s.
"""

import math
import sys
import uuid

import click

from daydream_luigi.analysis.dedup import DEFAULT_THRESHOLD, dedup_clusters
from daydream_luigi.analysis.tournament import describe_position_bias
from daydream_luigi.cli.common import backend_option, backend_servers, confirm, prepare
from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.execution import pairwise, plans, runner, tournament
from daydream_luigi.execution.knobs import Knobs
from daydream_luigi.providers import endpoints
from daydream_luigi.providers.backends import embedder_for
from daydream_luigi.providers.embeddings import EmbeddingError, embedding_model, essay_embeddings
from daydream_luigi.report import collect, research
from daydream_luigi.report.tables import TOURNAMENT_MATCHES_FILE, TOURNAMENT_RATINGS_FILE
from daydream_luigi.store import accounting, costs
from daydream_luigi.store import rescore as rescoring
from daydream_luigi.store.files import complete_ids

LISTED = 20  # lines of detail a command prints per kind before "... and N more"
DEFAULT_ROUNDS = 5  # Si et al. (2024) ranked generated ideas with a 5-round Swiss tournament


def _score(value) -> str:
    return "none" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"


def _listed(lines: list[str]) -> None:
    for line in lines[:LISTED]:
        click.echo(line)
    if len(lines) > LISTED:
        click.echo(f"  ... and {len(lines) - LISTED} more")


def _report_line(paths: Paths, cohort_id: str) -> str:
    """Rewrite every table and the report of a cohort that has run, from the disk now (the reports follow)."""
    report = research.rewrite_reports(paths, cohort_id)
    if report is None:
        return f"report: none yet (cohort {cohort_id} has not run; `daydream run --cohort {cohort_id}` writes it)"
    return f"report: {report}"


def calls_line(calls: accounting.Calls) -> str:
    cost = f"cost ${calls.cost:.4f} reported"
    if calls.unreported_cost:
        cost += f" ({calls.unreported_cost} answer(s) without a reported cost)"
    return (
        f"requests sent {calls.requests}, answers received {calls.answers}, tokens {calls.prompt_tokens} prompt "
        f"+ {calls.completion_tokens} completion, {cost}"
    )


# ------------------------------------------------------------------------------------------------------- rescore


@click.command()
@click.option("--cohort", help="Only the evaluations of this cohort [default: every evaluation in the store].")
@click.option("--template", help="Only the evaluations of this evaluation template.")
@backend_option
def rescore(cohort, template, backend):
    """Parse the kept judge answers again with the current parsers (no model call); the reports follow.

    This is how a judge answer that did not parse, or that an older parser read wrong, gets its score: `gens rm`
    would pay for it again.
    """
    paths = Paths.from_env()
    catalog = load_catalog(paths, pool_limits(paths), load_settings(paths))
    if template is not None and template not in catalog.templates["evaluation"]:
        raise InputError(
            f"--template {template!r} is not in {paths.raw / 'evaluation_templates.csv'}; known: "
            f"{', '.join(sorted(catalog.templates['evaluation']))}"
        )
    if cohort is None:
        gen_ids = complete_ids(paths.gens, "evaluation")
    else:
        gen_ids = [m.gen_id for m in prepare(cohort, backend)[1].members.values() if m.stage == "evaluation"]
    result = rescoring.rescore(paths, catalog, gen_ids, template)
    click.echo(
        f"rescored {result.checked} evaluation(s) with the current parsers, no model call: "
        f"{len(result.changed)} changed, {len(result.unparsed)} without a score"
        + (f", {result.reparsed} read the same by another parser" if result.reparsed else "")
    )
    _listed(
        [
            f"  changed {c.gen_id} ({c.template_id}): {_score(c.before)} -> {_score(c.after)}"
            + (f" ({c.error})" if c.error else "")
            for c in result.changed
        ]
    )
    _listed([f"  no score {c.gen_id} ({c.template_id}): {c.error}" for c in result.unparsed])
    _listed([f"  skipped {gen_id}: {why}" for gen_id, why in result.skipped.items()])
    for cohort_id in rescoring.cohorts_with_reports(paths, {c.gen_id for c in result.changed}):
        click.echo(f"cohort {cohort_id}: {_report_line(paths, cohort_id)}")


# ---------------------------------------------------------------------------------------------------- tournament


@click.command("tournament")
@click.option("--cohort", required=True, help="The cohort whose complete essays play.")
@click.option("--template", help="Pairwise template [default: the active one of pairwise_templates.csv].")
@click.option("--judge", help="Judge model id [default: the cohort's judge, when it has one].")
@click.option("--rounds", type=click.IntRange(min=1), default=DEFAULT_ROUNDS, show_default=True)
@backend_option
@click.option("--yes", is_flag=True, help="Start a tournament above the guard thresholds without asking.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display; only the summary.")
def tournament_command(cohort, template, judge, rounds, backend, yes, quiet):
    """A Swiss tournament of pairwise judgments over the cohort's essays, every match judged in both orders.

    Each judgment is a Luigi task throttled by the judge's pool and kept in data/gens/pairwise/ like any generation,
    so running it again makes no call. Writes tournament_matches.csv and tournament_ratings.csv (Bradley-Terry, 95%
    intervals) to the cohort's reports and prints the ladder and the judge's position bias. Exit codes: 0; 1 some
    judgments failed (run again to retry them: kept ones are reused); 2 bad input; 130 / 143 interrupted.
    """
    paths, plan = prepare(cohort, backend)
    cohort_id, settings = plan.spec.cohort_id, plan.context.settings
    template = tournament.pairwise_template(paths, plan.context.catalog, template)
    model = tournament.judge_model(plan, judge)
    essays = plans.complete_essays(paths, plan)
    if len(essays) < 2:
        raise InputError(
            f"cohort {cohort_id} has {len(essays)} complete essay(s); a tournament needs 2 or more "
            f"(`daydream run --cohort {cohort_id}` first)"
        )
    texts = plans.essay_texts(paths, essays)
    judge = pairwise.judge_for(plan.context, cohort_id, template, model, texts)
    totals = tournament.estimate(settings, judge, texts, rounds, tournament.kept_judgments(paths, judge, set(essays)))
    costs.check_guard(totals, settings.guard, yes, confirm if sys.stdin.isatty() else None)
    runner.check_worker_timeout(paths, settings, {pairwise.SAMPLED_LIKE}, with_slots=True)
    if totals["to_call"] and not backend_of(judge.model.endpoint).starts_server:
        endpoints.preflight(settings.providers[judge.model.endpoint], model=judge.model.model)
    run = Knobs(uuid.uuid4().hex[:12], plan.backend, call_slots=True)
    with runner.started(paths, run) as log_path:
        _play(paths, plan, judge, essays, rounds, totals["to_call"], run, 0 if quiet else 1, log_path)


def _play(
    paths: Paths, plan, judge: pairwise.Judge, essays, rounds: int, to_call: int, run: Knobs, verbosity, log_path
):
    cohort_id, run_id = plan.spec.cohort_id, run.run_id
    build = tournament.RoundBuilder(paths, plan.context.settings, judge, run, verbosity, log_path)
    click.echo(
        f"tournament of cohort {cohort_id}: {len(essays)} essays, up to {rounds} round(s), judge "
        f"{judge.model.model_id} with {judge.template.template_id}",
        err=True,
    )
    with backend_servers(plan, [judge.judgment(*essays[:2])] if to_call else []):
        try:
            played = pairwise.play(essays, rounds, judge, paths.gens, build)
        except pairwise.RoundFailed as exc:
            click.echo(
                f"{exc}; nothing written. Run the same command again to retry them (kept judgments are "
                f"reused, none is paid twice):"
            )
            _listed([f"  failed pairwise {gen_id}: {reason}" for gen_id, reason in sorted(exc.failures.items())])
            click.echo(calls_line(tournament.accounted(paths, build.asked, run_id, judge.model)[0]))
            click.echo(f"log: {log_path}")
            sys.exit(runner.EXIT_FAILED)
        except tournament.Interrupted as exc:
            calls, made = tournament.accounted(paths, build.asked, run_id, judge.model)
            finished = (
                "calls still in flight were abandoned"
                if exc.abandoned
                else "every call in flight finished and its answer is kept"
            )
            click.echo(
                f"interrupted in round {build.rounds}: {made} judgment(s) made in this run; {finished}; "
                f"nothing written. Resume with the same command: kept judgments are reused."
            )
            click.echo(calls_line(calls))
            click.echo(f"log: {log_path}")
            sys.exit(runner.EXIT_SIGNAL[exc.signum])
    calls, made = tournament.accounted(paths, build.asked, run_id, judge.model)
    about = {"template_id": judge.template.template_id, "judge": judge.model.model_id, "model": judge.model.model}

    def judgment_id(first: str, second: str) -> str:
        return judge.judgment(first, second).gen_id

    ratings, bias = research.write_tournament_tables(paths, cohort_id, played, rounds, judgment_id, about)
    judgments = 2 * len(played.matches)
    click.echo(
        f"tournament of cohort {cohort_id}: {len(essays)} essays, {len(played.rounds)} round(s), "
        f"{judgments} judgments by {judge.model.model_id} with {judge.template.template_id} "
        f"({made} made now, {judgments - made} kept)"
    )
    click.echo(calls_line(calls))
    if played.stopped_early:
        click.echo(played.stopped_early)
    unjudged = sum(m.outcome == "none" for m in played.matches)
    if unjudged:
        click.echo(f"{unjudged} match(es) unjudged: a judgment had no verdict (its error is in its metadata.json)")
    concepts = research.essay_concepts(
        {cid: combo.concept_ids for cid, combo in plan.context.combos.items()},
        {cid: concept.name for cid, concept in plan.context.catalog.concepts.items()},
        [m for m in plan.members.values() if m.stage == "essay"],
    )
    _listed(
        [
            f"  {rank:>3}. {r.gen_id}  rating {r.rating:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]  "
            f"W-L-T {r.wins}-{r.losses}-{r.ties}  {concepts.get(r.gen_id, '')}".rstrip()
            for rank, r in enumerate(ratings.itertuples(), 1)
        ]
    )
    click.echo(f"position bias: {describe_position_bias(bias)}")
    out = collect.reports_dir(paths, cohort_id)
    click.echo(f"tables: {out / TOURNAMENT_MATCHES_FILE}, {out / TOURNAMENT_RATINGS_FILE}")
    click.echo(_report_line(paths, cohort_id))
    click.echo(f"log: {log_path}")


# --------------------------------------------------------------------------------------------------------- dedup


@click.command()
@click.option("--cohort", required=True, help="The cohort whose complete essays are compared.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_THRESHOLD,
    show_default=True,
    help="Cosine similarity at or above which two essays are near-duplicates.",
)
@click.option(
    "--embedding-model",
    "embedding_model_id",
    help="An llm_models.csv row with for_embedding true [default: the backend's one].",
)
@click.option(
    "--template",
    help="Evaluation template whose mean score picks each cluster's representative "
    "[default: the cohort's first evaluation template with scores].",
)
@backend_option
def dedup(cohort, threshold, embedding_model_id, template, backend):
    """Near-duplicate essays of a cohort: embeddings (cached per essay), clusters at cosine >= threshold, one
    representative per cluster (its best mean score). Writes dedup_clusters.csv; `select top --dedup` keeps the
    representatives."""
    paths, plan = prepare(cohort, backend)
    cohort_id = plan.spec.cohort_id
    model = embedding_model(plan.context.catalog, plan.backend, embedding_model_id)
    template_id, scores, note = research.representative_scores(
        paths, cohort_id, plan.spec.evaluation_templates, template
    )
    if note:
        click.echo(note)
    texts = plans.essay_texts(paths, plans.complete_essays(paths, plan))
    try:
        embedded = essay_embeddings(paths.gens, texts, model.model, embedder_for(model, plan.context.settings))
    except EmbeddingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    table = dedup_clusters(embedded.gen_ids, embedded.vectors, scores, threshold)
    summary = {
        "threshold": threshold,
        "embedding_model": model.model_id,
        "model": model.model,
        "template_id": template_id,
    }
    written = research.write_dedup_tables(paths, cohort_id, table, summary)
    click.echo(
        f"dedup of cohort {cohort_id}: {len(table)} essays in {table['cluster'].nunique()} cluster(s) at cosine >= "
        f"{threshold:g}; embeddings by {model.model_id}: {embedded.computed} computed, "
        f"{len(table) - embedded.computed} from the cache"
    )
    if template_id is None:
        click.echo("no scores yet: each cluster is represented by its first essay by gen_id")
    lines = []
    for cluster, members in table.groupby("cluster", sort=True):
        if len(members) > 1:
            kept = members.iloc[0]
            score = f" (mean {_score(kept.mean_score)} on {template_id})" if template_id else ""
            dropped = ", ".join(members["gen_id"].iloc[1:])
            lines.append(f"  cluster {cluster}: keeps {kept.gen_id}{score}, drops {dropped}")
    _listed(lines)
    click.echo(f"table: {written}")
    click.echo(_report_line(paths, cohort_id))
