"""The research loop after a run: `rescore` kept judge answers, a `tournament` of pairwise judgments, `dedup` essays."""

import math
import os
import sys
import uuid

import click
import luigi

from daydream_luigi.analysis import results
from daydream_luigi.analysis.dedup import DEFAULT_THRESHOLD, dedup_clusters
from daydream_luigi.analysis.ratings import matches_table, ratings_table
from daydream_luigi.analysis.tournament import describe_position_bias, position_bias
from daydream_luigi.cli.common import backend_option, prepare
from daydream_luigi.cli.run import backend_servers, confirm
from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.execution import pairwise, tasks
from daydream_luigi.execution import runner as running
from daydream_luigi.execution.monitor import Listening, Monitor
from daydream_luigi.execution.progress import Display
from daydream_luigi.providers import endpoints
from daydream_luigi.providers.backends import embedder_for
from daydream_luigi.providers.embeddings import EmbeddingError, embedding_model, essay_embeddings
from daydream_luigi.report import collect
from daydream_luigi.report.page import (
    DEDUP_CLUSTERS_FILE,
    DEDUP_SUMMARY_FILE,
    TOURNAMENT_MATCHES_FILE,
    TOURNAMENT_RATINGS_FILE,
    TOURNAMENT_SUMMARY_FILE,
)
from daydream_luigi.store import accounting, costs
from daydream_luigi.store import rescore as rescoring
from daydream_luigi.store.files import (
    ATTEMPTS,
    METADATA,
    PARSED,
    atomic_write_json,
    atomic_write_text,
    complete_ids,
    gen_dir,
    read_json,
    read_lines,
    read_text,
)
from daydream_luigi.store.membership import has_membership

LISTED = 20  # lines of detail a command prints per kind before "... and N more"
DEFAULT_ROUNDS = 5  # Si et al. (2024) ranked generated ideas with a 5-round Swiss tournament
PROMPT_CHARS_PER_TOKEN = 4  # for the guard's cost estimate of a tournament


def _score(value) -> str:
    return "none" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"


def _listed(lines: list[str]) -> None:
    for line in lines[:LISTED]:
        click.echo(line)
    if len(lines) > LISTED:
        click.echo(f"  ... and {len(lines) - LISTED} more")


def _report_line(paths: Paths, cohort_id: str) -> str:
    """Rewrite every table and the report of a cohort that has run, from the disk now (the reports follow)."""
    if not has_membership(paths, cohort_id):
        return f"report: none yet (cohort {cohort_id} has not run; `daydream run --cohort {cohort_id}` writes it)"
    collect.write_all(paths, cohort_id)
    return f"report: {collect.reports_dir(paths, cohort_id) / 'report.html'}"


def complete_essays(paths: Paths, plan) -> list[str]:
    done = complete_ids(paths.gens, "essay")
    return sorted(m.gen_id for m in plan.members.values() if m.stage == "essay" and m.gen_id in done)


def _concepts(plan) -> dict[str, str]:
    """essay gen_id -> the names of its combo's concepts, as the report labels them."""
    concepts = results.ConceptMap(
        {cid: combo.concept_ids for cid, combo in plan.context.combos.items()},
        {cid: concept.name for cid, concept in plan.context.catalog.concepts.items()},
    )
    return {m.gen_id: concepts.label(m.combo_id) for m in plan.members.values() if m.stage == "essay"}


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


def _pairwise_template(paths: Paths, catalog, template_id):
    templates = catalog.templates[pairwise.STAGE]
    where = paths.raw / "pairwise_templates.csv"
    if template_id is not None:
        if template_id not in templates:
            raise InputError(
                f"--template {template_id!r} is not in {where}; known: {', '.join(sorted(templates)) or 'none'}"
            )
        return templates[template_id]
    if not templates:
        raise InputError(
            f"{where}: no pairwise template (the file is missing or has no row); add a row with parser "
            f"winner and its file generation_templates/pairwise/<template_id>.txt (see the README)"
        )
    active = catalog.active_templates(pairwise.STAGE)
    if len(active) != 1:
        found = f"{len(active)} active ({', '.join(active)})" if active else "none active"
        raise InputError(f"{where}: {found}; name the pairwise template with --template, or leave exactly one active")
    return templates[active[0]]


def _judge_model(plan, judge_id):
    models = plan.context.catalog.models
    if judge_id is not None:
        if judge_id not in models or models[judge_id].for_embedding:
            known = ", ".join(sorted(m for m, model in models.items() if not model.for_embedding))
            raise InputError(f"--judge {judge_id!r} is not a chat model of llm_models.csv; known: {known}")
        return models[judge_id]
    judges = plan.spec.evaluation_models
    if len(judges) != 1:
        raise InputError(
            f"cohort {plan.spec.cohort_id} has {len(judges)} judges ({', '.join(judges) or 'none'}); "
            f"choose the tournament's with --judge"
        )
    return models[judges[0]]


def _kept_judgments(paths: Paths, judge: pairwise.Judge, field: set[str]) -> int:
    """Judgments of this judge between essays of the field already in the store (a re-run asks for none of them)."""
    root = paths.gens / pairwise.STAGE
    kept = 0
    for metadata in root.glob(f"*/{METADATA}") if root.is_dir() else []:
        try:
            data = read_json(metadata)
        except (OSError, ValueError):
            continue
        first, second = data.get("essay_a"), data.get("essay_b")
        if first in field and second in field and judge.judgment(first, second).gen_id == metadata.parent.name:
            kept += 1
    return kept


def _tournament_plan(settings, judge: pairwise.Judge, texts: dict[str, str], rounds: int, kept: int) -> dict:
    """At most how many new judge calls the tournament makes, and their estimated cost (for the guard)."""
    to_call = max(0, rounds * (len(texts) // 2) * 2 - kept)
    essay_chars = sum(len(text) for text in texts.values()) / len(texts)
    prompt = (len(judge.template.source) + 2 * essay_chars) / PROMPT_CHARS_PER_TOKEN
    completion = settings.stage(pairwise.SAMPLED_LIKE).max_tokens
    return {"to_call": to_call, "est_cost_usd": to_call * (prompt + completion) / 1e6 * judge.model.price_per_mtok}


def calls_line(calls: accounting.Calls) -> str:
    cost = f"cost ${calls.cost:.4f} reported"
    if calls.unreported_cost:
        cost += f" ({calls.unreported_cost} answer(s) without a reported cost)"
    return (
        f"requests sent {calls.requests}, answers received {calls.answers}, tokens {calls.prompt_tokens} prompt "
        f"+ {calls.completion_tokens} completion, {cost}"
    )


def _accounted(paths: Paths, judgments, run_id: str) -> tuple[accounting.Calls, int]:
    """What this run sent for these judgments (their attempts.jsonl lines tagged with it) and how many it made."""
    calls, made = accounting.Calls(), 0
    for gen_id in {j.gen_id for j in judgments}:
        directory = gen_dir(paths.gens, pairwise.STAGE, gen_id)
        for record in read_lines(directory / ATTEMPTS):
            if record.get("run_id") == run_id:
                calls.add(record)
        try:
            made += read_json(directory / METADATA).get("run_id") == run_id
        except (OSError, ValueError):
            pass
    return calls, made


class Interrupted(Exception):
    def __init__(self, signum: int, abandoned: bool):
        super().__init__(signum)
        self.signum, self.abandoned = signum, abandoned


class RoundBuilder:
    """Makes the judgments of a round that are not kept yet: one Luigi build, watched as `daydream run` watches its
    graph (progress from Luigi's events, answers lost by a full disk never asked for again, Ctrl-C / SIGTERM: the
    calls in flight finish and their answers are kept, a second Ctrl-C abandons them)."""

    def __init__(self, paths: Paths, judge: pairwise.Judge, verbosity: int):
        self.paths, self.judge, self.verbosity = paths, judge, verbosity
        self.workers = pool_limits(paths).get(judge.model.pool, 1)
        self.asked: list[pairwise.Judgment] = []
        self.rounds = 0

    def __call__(self, judgments: list[pairwise.Judgment]) -> None:
        self.asked.extend(judgments)
        self.rounds += 1
        pending = [j for j in judgments if not (gen_dir(self.paths.gens, pairwise.STAGE, j.gen_id) / METADATA).exists()]
        if not pending:
            return
        monitor = Monitor.for_members(pending, lambda _: self.judge.model.pool, {pairwise.STAGE: set()})
        display = Display(monitor, f"tournament round {self.rounds}", self.verbosity)
        with display, Listening(monitor), running.Stopper(display) as stopper:
            try:
                luigi.build(
                    [tasks.pairwise_task(j) for j in pending],
                    workers=min(self.workers, len(pending)),
                    local_scheduler=True,
                )
            except KeyboardInterrupt:
                stopper.abandoned = True
            luigi.task_register.Register.clear_instance_cache()
        if stopper.signal is not None:
            raise Interrupted(stopper.signal, stopper.abandoned)


def _tournament_tables(paths: Paths, cohort_id: str, judge: pairwise.Judge, played, rounds: int):
    """Write tournament_matches.csv, tournament_ratings.csv and tournament.json; returns the ratings and the
    position bias."""
    out = collect.reports_dir(paths, cohort_id)
    matches = matches_table(played.matches, lambda first, second: judge.judgment(first, second).gen_id)
    ratings, bias = ratings_table(played.essay_ids, played.matches), position_bias(played.matches)
    atomic_write_text(out / TOURNAMENT_MATCHES_FILE, matches.to_csv(index=False))
    atomic_write_text(out / TOURNAMENT_RATINGS_FILE, ratings.to_csv(index=False))
    atomic_write_json(
        out / TOURNAMENT_SUMMARY_FILE,
        {
            "template_id": judge.template.template_id,
            "judge": judge.model.model_id,
            "model": judge.model.model,
            "essays": len(played.essay_ids),
            "rounds_asked": rounds,
            "rounds_played": len(played.rounds),
            "matches": len(played.matches),
            "judgments": len(matches),
            "stopped_early": played.stopped_early,
            "position_bias": bias,
        },
    )
    return ratings, bias


@click.command()
@click.option("--cohort", required=True, help="The cohort whose complete essays play.")
@click.option("--template", help="Pairwise template [default: the active one of pairwise_templates.csv].")
@click.option("--judge", help="Judge model id [default: the cohort's judge, when it has one].")
@click.option("--rounds", type=click.IntRange(min=1), default=DEFAULT_ROUNDS, show_default=True)
@backend_option
@click.option("--yes", is_flag=True, help="Start a tournament above the guard thresholds without asking.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display; only the summary.")
def tournament(cohort, template, judge, rounds, backend, yes, quiet):
    """A Swiss tournament of pairwise judgments over the cohort's essays, every match judged in both orders.

    Each judgment is a Luigi task throttled by the judge's pool and kept in data/gens/pairwise/ like any generation,
    so running it again makes no call. Writes tournament_matches.csv and tournament_ratings.csv (Bradley-Terry, 95%
    intervals) to the cohort's reports and prints the ladder and the judge's position bias. Exit codes: 0; 1 some
    judgments failed (run again to retry them: kept ones are reused); 2 bad input; 130 / 143 interrupted.
    """
    paths, plan = prepare(cohort, backend)
    cohort_id, settings = plan.spec.cohort_id, plan.context.settings
    template, model = _pairwise_template(paths, plan.context.catalog, template), _judge_model(plan, judge)
    essays = complete_essays(paths, plan)
    if len(essays) < 2:
        raise InputError(
            f"cohort {cohort_id} has {len(essays)} complete essay(s); a tournament needs 2 or more "
            f"(`daydream run --cohort {cohort_id}` first)"
        )
    texts = {e: read_text(gen_dir(paths.gens, "essay", e) / PARSED) for e in essays}
    judge = pairwise.judge_for(plan.context, cohort_id, template, model, texts)
    totals = _tournament_plan(settings, judge, texts, rounds, _kept_judgments(paths, judge, set(essays)))
    costs.check_guard(totals, settings.guard, yes, confirm if sys.stdin.isatty() else None)
    running.check_worker_timeout(paths, settings, {pairwise.SAMPLED_LIKE})
    if totals["to_call"] and not backend_of(judge.model.provider).starts_server:
        endpoints.preflight(settings.providers[judge.model.provider])
    run_id = uuid.uuid4().hex[:12]
    tasks.RUN_ID = run_id  # the task processes inherit it when Luigi forks them
    log_path = running.log_to_file(paths, run_id)
    build = RoundBuilder(paths, judge, 0 if quiet else 1)
    click.echo(
        f"tournament of cohort {cohort_id}: {len(essays)} essays, up to {rounds} round(s), judge "
        f"{judge.model.model_id} with {judge.template.template_id}",
        err=True,
    )
    with backend_servers(plan, [judge.judgment(*essays[:2])] if totals["to_call"] else []):
        try:
            played = pairwise.play(essays, rounds, judge, paths.gens, build)
        except pairwise.RoundFailed as exc:
            click.echo(
                f"{exc}; nothing written. Run the same command again to retry them (kept judgments are "
                f"reused, none is paid twice):"
            )
            _listed([f"  failed pairwise {gen_id}: {reason}" for gen_id, reason in sorted(exc.failures.items())])
            click.echo(calls_line(_accounted(paths, build.asked, run_id)[0]))
            click.echo(f"log: {log_path}")
            sys.exit(running.EXIT_FAILED)
        except Interrupted as exc:
            calls, made = _accounted(paths, build.asked, run_id)
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
            sys.exit(running.EXIT_SIGNAL[exc.signum])
    calls, made = _accounted(paths, build.asked, run_id)
    ratings, bias = _tournament_tables(paths, cohort_id, judge, played, rounds)
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
    concepts = _concepts(plan)
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


def _representative_scores(paths: Paths, plan, template_id):
    """(evaluation template, essay gen_id -> mean score on it): the scores that pick each cluster's representative,
    aggregated as `select top` ranks (the mean over judges and replicates)."""
    cohort_id = plan.spec.cohort_id
    frame = collect.collect_scores(paths, cohort_id)[0] if has_membership(paths, cohort_id) else None
    present = sorted(set(frame.loc[frame["score"].notna(), "evaluation_template"])) if frame is not None else []
    if template_id is None:
        if not present:
            return None, {}
        # never a mix of two scales: the cohort's first evaluation template that has scores
        template_id = next((t for t in plan.spec.evaluation_templates if t in present), present[0])
        if len(present) > 1:
            click.echo(
                f"representatives by their mean score on {template_id}, the first of the cohort's "
                f"{len(present)} scored evaluation templates ({', '.join(present)}); choose another with "
                f"--template"
            )
    elif template_id not in present:
        raise InputError(
            f"--template {template_id!r}: cohort {cohort_id} has no score on it; scored templates: "
            f"{', '.join(present) or 'none'}"
        )
    ranked = results.select_top(frame, [template_id], top_n=frame["parent_gen_id"].nunique())
    return template_id, dict(zip(ranked["gen_id"], ranked["mean"]))


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
    model = embedding_model(plan.context.catalog, os.environ["DAYDREAM_BACKEND"], embedding_model_id)
    template_id, scores = _representative_scores(paths, plan, template)
    essays = complete_essays(paths, plan)
    texts = {e: read_text(gen_dir(paths.gens, "essay", e) / PARSED) for e in essays}
    try:
        embedded = essay_embeddings(paths.gens, texts, model.model, embedder_for(model, plan.context.settings))
    except EmbeddingError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    table = dedup_clusters(embedded.gen_ids, embedded.vectors, scores, threshold)
    out = collect.reports_dir(paths, cohort_id)
    atomic_write_text(out / DEDUP_CLUSTERS_FILE, table.to_csv(index=False))
    clusters = table["cluster"].nunique()
    atomic_write_json(
        out / DEDUP_SUMMARY_FILE,
        {
            "threshold": threshold,
            "embedding_model": model.model_id,
            "model": model.model,
            "template_id": template_id,
            "essays": len(table),
            "clusters": clusters,
        },
    )
    click.echo(
        f"dedup of cohort {cohort_id}: {len(table)} essays in {clusters} cluster(s) at cosine >= "
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
    click.echo(f"table: {out / DEDUP_CLUSTERS_FILE}")
    click.echo(_report_line(paths, cohort_id))
