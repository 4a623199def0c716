"""A tournament of a cohort's essays: its judge and template, what it will cost, its rounds, and what it paid.

The rounds are built as `daydream run` builds a cohort: through the runner (`runner.Watch`), so the judgments hold
call slots of the judge's pool, report their progress, and stop cleanly on Ctrl-C / SIGTERM (the calls in flight
finish and their answers are kept; a second Ctrl-C abandons them). Pairing and ratings are `analysis.tournament`'s and
`analysis.ratings`'; one judgment is `pairwise`'s.
"""

from daydream_luigi.core.catalog import Catalog, Model, Template
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.pricing import estimate_cost_usd
from daydream_luigi.core.settings import Paths, Settings
from daydream_luigi.execution import pairwise, tasks
from daydream_luigi.execution.knobs import Knobs
from daydream_luigi.execution.monitor import Monitor
from daydream_luigi.execution.plans import CohortPlan
from daydream_luigi.execution.runner import Watch, workers_for
from daydream_luigi.providers.limits import gate
from daydream_luigi.store import accounting
from daydream_luigi.store.files import ATTEMPTS, METADATA, gen_dir, read_json, read_lines


def pairwise_template(paths: Paths, catalog: Catalog, template_id: str | None) -> Template:
    """The tournament's pairwise template: the one named, else the only active one."""
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


def judge_model(plan: CohortPlan, judge_id: str | None) -> Model:
    """The tournament's judge: the chat model named, else the cohort's judge when it has exactly one."""
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


def kept_judgments(paths: Paths, judge: pairwise.Judge, field: set[str]) -> int:
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


def estimate(settings: Settings, judge: pairwise.Judge, texts: dict[str, str], rounds: int, kept: int) -> dict:
    """At most how many new judge calls the tournament makes, and their estimated cost (for the guard)."""
    to_call = max(0, rounds * (len(texts) // 2) * 2 - kept)
    essay_chars = sum(len(text) for text in texts.values()) / len(texts)
    prompt = (len(judge.template.source) + 2 * essay_chars) / gate.CHARS_PER_TOKEN
    completion = settings.stage(pairwise.SAMPLED_LIKE).max_tokens
    cost = estimate_cost_usd(judge.model.price, int(to_call * prompt), to_call * completion)
    return {"to_call": to_call, "est_cost_usd": cost}


def accounted(
    paths: Paths, judgments: list[pairwise.Judgment], run_id: str, judge: Model
) -> tuple[accounting.Calls, int]:
    """What this run sent for these judgments (their attempts.jsonl lines tagged with it, priced at the `judge`'s
    price where no cost was reported) and how many it made."""
    calls, made = accounting.Calls(), 0
    for gen_id in {j.gen_id for j in judgments}:
        directory = gen_dir(paths.gens, pairwise.STAGE, gen_id)
        for record in read_lines(directory / ATTEMPTS):
            if record.get("run_id") == run_id:
                calls.add(record, judge.price)
        try:
            made += read_json(directory / METADATA).get("run_id") == run_id
        except (OSError, ValueError):
            pass
    return calls, made


class Interrupted(Exception):
    """A round was stopped by `signum` (SIGINT, SIGTERM); `abandoned`: a second Ctrl-C left its calls in flight."""

    def __init__(self, signum: int, abandoned: bool):
        super().__init__(signum)
        self.signum, self.abandoned = signum, abandoned


class RoundBuilder:
    """Makes the judgments of a round that are not kept yet: one build of the runner per round (`pairwise.play` calls
    it). Raises Interrupted when the round was stopped."""

    def __init__(self, paths, settings, judge: pairwise.Judge, run: Knobs, verbosity: int, log_path):
        self.paths, self.judge, self.run, self.verbosity, self.log_path = paths, judge, run, verbosity, log_path
        self.limiter = gate.limiter(paths, settings)  # the display shows the judge's pool rate in force
        self.workers = workers_for(paths, {judge.model.pool})
        self.asked: list[pairwise.Judgment] = []
        self.rounds = 0

    def __call__(self, judgments: list[pairwise.Judgment]) -> None:
        self.asked.extend(judgments)
        self.rounds += 1
        pending = [j for j in judgments if not (gen_dir(self.paths.gens, pairwise.STAGE, j.gen_id) / METADATA).exists()]
        if not pending:
            return
        monitor = Monitor.for_members(
            pending, lambda _: self.judge.model.pool, {pairwise.STAGE: set()}, lambda _: self.judge.model.price
        )
        title = f"tournament round {self.rounds}"
        with Watch(self.paths, self.run, monitor, title, self.verbosity, self.log_path, self.limiter) as watch:
            watch.build([tasks.pairwise_task(j) for j in pending], min(self.workers, len(pending)))
        if watch.stopped:
            raise Interrupted(watch.stopper.signal, watch.stopper.abandoned)
