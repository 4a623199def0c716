"""Luigi task classes: declarations only (parameters, requires, output, resources, priority); the work is in the core.

A cohort is one graph with a root:

    Cohort -> Report -> Pivot -> ParseScores -> Feed(0) => Lineages(0) -> EvaluationTask -> EssayTask -> DraftTask
                                                        => Feed(1) => Lineages(1) ...                -> Combinations
                                                               => Feed(2) -> Lineages(0) ...    -> CohortMembership

(=> a dynamic dependency: a Feed yields its part and the next part's Feed when it runs; see `schedule`.)

`daydream run` builds this graph, and so does the stock `luigi` command:

    LUIGI_CONFIG_PATH=config/luigi.cfg luigi --module daydream_luigi.execution.tasks Cohort --cohort-id NAME \
        --local-scheduler

and a budgeted search is a chain of `SearchRound` tasks (`... SearchRound --name NAME --round 1`). Every task class is
declared here, past 500 lines, because the stock command's `--module` names one module.

Importing this module does nothing but declare the task classes: Luigi finds our pools, worker timeout and retry
policy in config/luigi.cfg through LUIGI_CONFIG_PATH (Luigi's own documented setting; `daydream` adds the file
itself with `execution.luigi_config.configure_luigi` when a command starts), and the run-wide knobs in a [daydream]
section or on the command line (`knobs`). Generation tasks run in Luigi's own forked task processes, so Luigi's
worker timeout, retry policy and events all apply.
"""

import os
from functools import cached_property
from pathlib import Path

import luigi

from daydream_luigi.core import schedule
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import Member, calls_model
from daydream_luigi.core.search_spec import decided_inputs, load_named_search, rounds_dir
from daydream_luigi.core.settings import Paths
from daydream_luigi.execution import batching, knobs, pairwise, stages
from daydream_luigi.execution.generation import LOST_ANSWERS, GenerationFailed
from daydream_luigi.execution.neutrality import require_neutral_search
from daydream_luigi.execution.plans import CohortPlan, all_complete, batch_chunks, cohort_plan
from daydream_luigi.providers.limits.gate import Stopped
from daydream_luigi.store import freshness
from daydream_luigi.store.combo_mappings import persist_mappings
from daydream_luigi.store.files import ERROR, METADATA, atomic_write_json, atomic_write_text, gen_dir, read_json
from daydream_luigi.store.membership import MEMBERSHIP, membership_is_current, write_cohort


class CohortMembership(luigi.Task):
    """membership.csv and manifest.json of the cohort, built from its named spec (or the active flags)."""

    cohort_id = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(str(Paths.from_env().cohorts / self.cohort_id / MEMBERSHIP))

    def complete(self):
        """Written, and still what the spec expands to today (an edited spec rewrites it)."""
        plan = cohort_plan(self.cohort_id)
        return membership_is_current(plan.context.paths, plan.spec, list(plan.members.values()))

    def run(self):
        plan = cohort_plan(self.cohort_id)
        write_cohort(plan.context.paths, plan.spec, list(plan.members.values()))


class Combinations(luigi.Task):
    """Records the cohort's combinations in data/combo_mappings.csv (append-only)."""

    cohort_id = luigi.Parameter()

    def requires(self):
        return CohortMembership(cohort_id=self.cohort_id)

    def output(self):
        return luigi.LocalTarget(str(Paths.from_env().cohorts / self.cohort_id / "combos.recorded"))

    def _listing(self) -> str:
        return "".join(f"{combo_id}\n" for combo_id in sorted(cohort_plan(self.cohort_id).context.combos))

    def complete(self):
        path = Path(self.output().path)
        return path.exists() and path.read_text() == self._listing()

    def run(self):
        plan = cohort_plan(self.cohort_id)
        persist_mappings(plan.context.paths.combo_mappings, list(plan.context.combos.values()))
        atomic_write_text(Path(self.output().path), self._listing())


class GenerationTask(luigi.Task):
    """One generation, keyed by gen_id; its row (template, model, parent) comes from the cohort's membership."""

    stage = ""
    gen_id = luigi.Parameter()
    cohort_id = luigi.Parameter(significant=False)

    @cached_property
    def _plan(self) -> CohortPlan:
        return cohort_plan(self.cohort_id)

    @cached_property
    def member(self) -> Member:
        return self._plan.members[self.gen_id]

    @property
    def priority(self):
        return self._plan.priority[self.gen_id]

    @cached_property
    def pool(self) -> str | None:
        """The throttling pool of this generation's model; None for one that calls nothing (a copy essay, an imported
        text: Luigi asks a complete task for its resources too)."""
        catalog = self._plan.context.catalog
        return catalog.models[self.member.llm_model_id].pool if calls_model(self.member, catalog) else None

    @property
    def resources(self):
        return {self.pool: 1} if self.pool else {}

    @property
    def retry_count(self):
        """1 (no retry) when the recorded failure cannot be helped by trying again; else the configured policy."""
        if self.gen_id in LOST_ANSWERS:
            return 1
        try:
            return None if read_json(self.directory / ERROR).get("retryable", True) else 1
        except (OSError, ValueError):
            return None

    @cached_property
    def directory(self):
        return gen_dir(self._plan.context.paths.gens, self.stage, self.gen_id)

    def output(self):
        return luigi.LocalTarget(str(self.directory / METADATA))

    def complete(self):
        return os.path.exists(self.directory / METADATA)

    def run(self):
        """The generation, its answer taken from a batch when it is batched (batch steps are dynamic dependencies).
        A request a gate refused (a paused pool, an unreachable provider, the budget) leaves it pending: it then
        depends on a GateClosed task that never completes, so Luigi neither fails nor retries it."""
        member = self.member
        self.set_status_message(f"{self.stage} {self.gen_id}: {member.template_id} / {member.llm_model_id}")
        try:
            yield from batch_steps(self)
            context = knobs.context_for_run(self._plan.context)
            metadata = stages.make_generation(context, member, knobs.current().run_id, self._emit)
        except Stopped as stop:
            self._emit(STOPPED, {"kind": stop.kind})
            yield GateClosed(kind=stop.kind, name=stop.name, key=stop.key, message=str(stop))
            return
        self.set_progress_percentage(100)
        self.set_status_message(
            f"done in {metadata.get('duration_s', 0):.1f} s, {metadata.get('completion_tokens') or 0} completion tokens"
        )

    def _emit(self, event: str, details: dict) -> None:
        self.trigger_event(event, self, details)

    def on_failure(self, exception):
        """The scheduler (and luigid's UI) shows the reason, not a traceback, for failures the core explains."""
        if isinstance(exception, GenerationFailed):
            return f"{self.stage} {self.gen_id}: {exception}"
        return super().on_failure(exception)


class DraftTask(GenerationTask):
    stage = "draft"

    def requires(self):
        return Combinations(cohort_id=self.cohort_id)


class EssayTask(GenerationTask):
    stage = "essay"

    def requires(self):
        return DraftTask(gen_id=self.member.parent_gen_id, cohort_id=self.cohort_id)


class EvaluationTask(GenerationTask):
    stage = "evaluation"

    def requires(self):
        return EssayTask(gen_id=self.member.parent_gen_id, cohort_id=self.cohort_id)


STAGE_TASKS = {"draft": DraftTask, "essay": EssayTask, "evaluation": EvaluationTask}


def generation_task(member: Member, cohort_id: str) -> GenerationTask:
    return STAGE_TASKS[member.stage](gen_id=member.gen_id, cohort_id=cohort_id)


class Lineages(luigi.WrapperTask):
    """Part `part` of the cohort: whole lineages (drafts with their essays and evaluations), about
    `scheduling.part_size` generations; with `stage`, only that stage of them (and what it needs)."""

    cohort_id = luigi.Parameter()
    part = luigi.IntParameter(default=0)
    stage = luigi.Parameter(default="")

    def requires(self):
        """Every member, not only the last of each chain: a generation missing under complete children (one removed
        by hand) is found and made again too."""
        lineages = cohort_plan(self.cohort_id).parts[self.part]
        return [generation_task(member, self.cohort_id) for member in schedule.part_members(lineages, self.stage)]


class Feed(luigi.Task):
    """Brings part `part` into the running graph when it runs, and behind it the next part's Feed, which waits for
    this part's predecessor to be complete (see `schedule`). `first` is the part a build starts at: the Feeds of it
    and of the part after it wait for nothing. Priority 0, below every generation: a worker runs a Feed only when no
    generation it could start is left.

    `feeder` is the run whose worker brings the parts in (its run id, `knobs`): every run process has its own chain
    of Feeds, and all of them yield the same Lineages. Only the worker that runs a Feed learns of what it yields, so
    with one chain shared by several processes on one luigid, the others would never be handed a generation; with a
    chain each, every process registers every generation and luigid hands each to whichever asks first (scale-out,
    docs/operations.md)."""

    cohort_id = luigi.Parameter()
    part = luigi.IntParameter(default=0)
    stage = luigi.Parameter(default="")
    first = luigi.IntParameter(default=0)
    feeder = luigi.Parameter(default="")

    def requires(self):
        if self.part - 2 < self.first:
            return []
        return Lineages(cohort_id=self.cohort_id, part=self.part - 2, stage=self.stage)

    def complete(self):
        """This part and every later one complete."""
        plan = cohort_plan(self.cohort_id)
        later = [lineage for part in plan.parts[self.part :] for lineage in part]
        return all_complete(plan.context.paths, schedule.part_members(later, self.stage))

    def run(self):
        following = [
            Feed(cohort_id=self.cohort_id, part=self.part + 1, stage=self.stage, first=self.first, feeder=self.feeder)
        ]
        yield [
            Lineages(cohort_id=self.cohort_id, part=self.part, stage=self.stage),
            *(following if self.part + 1 < len(cohort_plan(self.cohort_id).parts) else []),
        ]


class ReportTask(luigi.Task):
    """A cohort table that is current when every generation of the cohort is complete and the evaluations on disk are
    the ones it was built from (a fingerprint), so a new or rescored evaluation rebuilds it."""

    cohort_id = luigi.Parameter()
    filename = ""
    decides = False  # whether it shows the decisions (gates, labels), whose inputs its fingerprint then covers

    def output(self):
        return luigi.LocalTarget(str(freshness.reports_dir(Paths.from_env(), self.cohort_id) / self.filename))

    def complete(self):
        plan = cohort_plan(self.cohort_id)
        paths = plan.context.paths
        return all_complete(paths, plan.members.values()) and freshness.is_current(
            paths, self.cohort_id, self.output().path, self.decides
        )

    def write(self, paths: Paths) -> None:
        raise NotImplementedError

    def run(self):
        self.write(Paths.from_env())


class ParseScores(ReportTask):
    """parsed_scores.csv: one row per evaluation of the cohort, with lineage, score and error."""

    filename = "parsed_scores.csv"

    def write(self, paths: Paths) -> None:
        from daydream_luigi.report import collect  # pandas and scipy only in the task process that writes the table

        collect.write_parsed_scores(paths, self.cohort_id)

    def requires(self):
        """Every generation (through this run's chain of Feeds), and the membership itself (a cohort whose generations
        all exist already, such as a curated one, still needs its membership recorded). Several runs on one luigid
        share this task, each requiring its own Feeds: luigid keeps the dependencies the last one sent, and any chain
        of Feeds is done only once every part of the cohort is."""
        return [
            CohortMembership(cohort_id=self.cohort_id),
            Feed(cohort_id=self.cohort_id, feeder=knobs.current().run_id),
        ]


class Pivot(ReportTask):
    """pivot.csv and the other tables derived from the parsed scores."""

    filename = "pivot.csv"

    def write(self, paths: Paths) -> None:
        from daydream_luigi.report import collect

        collect.write_derived_tables(paths, self.cohort_id)

    def requires(self):
        return ParseScores(cohort_id=self.cohort_id)


class Report(ReportTask):
    """report.html: the cohort's self-contained HTML report, after the decisions its spec asks for (its gates'
    tables and dossiers, its judges against people's labels)."""

    filename = "report.html"
    decides = True

    def write(self, paths: Paths) -> None:
        from daydream_luigi.report import folder

        folder.write_report(paths, self.cohort_id)

    def requires(self):
        return Pivot(cohort_id=self.cohort_id)


class Cohort(luigi.WrapperTask):
    """The root of a cohort: its reports, which require every generation of it."""

    cohort_id = luigi.Parameter()

    def requires(self):
        return Report(cohort_id=self.cohort_id)


# ------------------------------------------------------------------------------------------------ search rounds


class SearchRound(luigi.Task):
    """Round `round` of the search config/searches/<name>.yaml: decided by replaying the rounds made so far over their
    kept scores (no call; `report.search_rounds`), recorded as the cohort search-<name>-r<round>, whose root (its
    generations and reports) it yields; then it yields the next round, or the search stopped and it writes rounds.csv,
    result.json and report.html as `daydream search` does. Complete (its marker under data/searches/<name>/rounds/)
    once it and every later round are decided, so round 1 is the whole search."""

    name = luigi.Parameter()
    round = luigi.IntParameter(default=1)
    retry_count = 1  # a bad spec or a round planned for other combinations is not helped by trying again

    def output(self):
        return luigi.LocalTarget(str(rounds_dir(Paths.from_env(), self.name) / f"r{self.round}.decided.json"))

    def complete(self):
        """Its marker, written for today's spec and gate (an edited one decides again, over the rounds made)."""
        path = Path(self.output().path)
        if not path.exists():
            return False
        try:
            search = load_named_search(Paths.from_env(), self.name, knobs.backend())[2]
        except InputError:
            return False  # run() says what is wrong
        return read_json(path).get("inputs") == decided_inputs(search)

    def run(self):
        """Every round up to this one made (a round not made yet is yielded, then the decision is taken again; Luigi
        runs the task anew once a yielded dependency is complete), then the next round or the search's record."""
        from daydream_luigi.report import search_rounds  # pandas only in the task process that decides

        paths = Paths.from_env()
        settings, catalog, search = load_named_search(paths, self.name, knobs.backend())
        require_neutral_search(paths, search, catalog, settings)
        made = None
        while True:
            step = search_rounds.step(
                paths, search, catalog, settings, self.round, lambda cohort_id: Cohort(cohort_id=cohort_id).complete()
            )
            if step.make is None:
                break
            if step.make == made:
                raise RuntimeError(f"cohort {step.make} was built but is still not complete")
            made = step.make
            self.set_status_message(f"search {self.name}: making {step.make}")
            yield Cohort(cohort_id=step.make)
        if step.next_round is not None:
            yield SearchRound(name=self.name, round=step.next_round)
        decided = {"round": self.round, "next_round": step.next_round, "inputs": decided_inputs(search)}
        if step.record is not None:
            decided["stop_reason"] = step.record["stop_reason"]
        atomic_write_json(Path(self.output().path), decided)

    def on_failure(self, exception):
        """A bad spec (or a round planned for other combinations) is its one message, not a traceback."""
        if isinstance(exception, InputError):
            return f"search {self.name} round {self.round}: {exception}"
        return super().on_failure(exception)


# ---------------------------------------------------------------------------------------- batches and closed gates
# Batch mode (see `batching`): a batched generation depends, dynamically, on the BatchSubmit of its chunk's wave and
# then on its BatchPoll; a generation a gate stopped depends on a GateClosed that fails once, with the one message.

STOPPED = "daydream.stopped"  # a generation's request was refused by a gate (event for the progress display)


def batch_steps(task: GenerationTask):
    """Yield the batch tasks a generation waits for, until its answer is kept or it is to be called normally."""
    plan = task._plan
    while True:
        run = knobs.current()
        found = batch_chunks(task.cohort_id, run.batch)
        step = batching.locate(plan.context, found, task.cohort_id, task.member, run.run_id)
        if step is None:
            return
        action, wave = step
        dependency = (BatchSubmit if action == "submit" else BatchPoll)(**vars(wave))
        if not dependency.complete():
            task._emit(batching.WAITING, {"action": action, **vars(wave)})
        yield dependency


def open_submits(cohort_id: str, stage: str) -> list:
    """BatchSubmit tasks for every chunk of `stage` with requests still to send (the run builds them first, so that
    every chunk's batch runs at the provider at once)."""
    plan = cohort_plan(cohort_id)
    found = batch_chunks(cohort_id, knobs.current().batch)
    return [
        BatchSubmit(**vars(wave)) for wave in batching.open_waves(plan.context, found, cohort_id, plan.members, stage)
    ]


class _BatchTask(luigi.Task):
    cohort_id = luigi.Parameter()
    stage = luigi.Parameter()
    model_id = luigi.Parameter()
    chunk = luigi.IntParameter()
    wave = luigi.IntParameter()

    @property
    def _wave(self) -> batching.Wave:
        return batching.Wave(self.cohort_id, self.stage, self.model_id, self.chunk, self.wave)

    def _emit(self, event: str, details: dict) -> None:
        self.trigger_event(event, self, details)


class BatchSubmit(_BatchTask):
    """One wave of one chunk sent as batch(es); its output records every batch id before anything polls it."""

    retry_count = 1  # a submit that failed may have reached the provider: not repeated in this run

    def output(self):
        return luigi.LocalTarget(str(self._wave.folder(Paths.from_env()) / batching.SUBMITTED))

    def complete(self):
        return batching.is_submitted(Paths.from_env(), self._wave)

    def run(self):
        plan, run = cohort_plan(self.cohort_id), knobs.current()
        batching.submit(
            knobs.context_for_run(plan.context),
            plan.members,
            batch_chunks(self.cohort_id, run.batch),
            self._wave,
            run.run_id,
            self._emit,
        )


class BatchPoll(_BatchTask):
    """Waits for the wave's batches to end, then keeps every answer in its generation's folder."""

    worker_timeout = 0  # a batch may take 24 hours; Luigi's worker timeout is for hung calls

    def requires(self):
        return BatchSubmit(**vars(self._wave))

    def output(self):
        return luigi.LocalTarget(str(self._wave.folder(Paths.from_env()) / batching.RESULTS))

    def run(self):
        plan = cohort_plan(self.cohort_id)
        batching.poll(knobs.context_for_run(plan.context), plan.members, self._wave, knobs.current().run_id, self._emit)


class GateClosed(luigi.Task):
    """A closed gate (a pool paused for a quota, an unreachable provider, a reached budget): never complete, it fails
    once with its message and Luigi disables it, so the generations that depend on it stay pending."""

    kind = luigi.Parameter()
    name = luigi.Parameter()
    key = luigi.Parameter()
    message = luigi.Parameter(significant=False)
    retry_count = 1

    def complete(self):
        return False

    def run(self):
        raise Stopped(self.kind, self.name, self.key, self.message)

    def on_failure(self, exception):
        return self.message


# ------------------------------------------------------------------------------------------ tournaments (pairwise)


class PairwiseJudgment(GenerationTask):
    """One judgment of a tournament over the cohort's essays: `first` shown as A, `second` as B, keyed by its content
    (tournament.judgment_id), throttled by the judge's pool and kept in data/gens/pairwise/<gen_id>/."""

    stage = pairwise.STAGE
    first = luigi.Parameter(significant=False)
    second = luigi.Parameter(significant=False)
    template_id = luigi.Parameter(significant=False)
    judge = luigi.Parameter(significant=False)
    priority = 0  # a round's judgments are independent of each other

    @cached_property
    def member(self) -> pairwise.Judgment:
        return pairwise.Judgment(
            self.stage, self.gen_id, self.cohort_id, "", "", self.template_id, self.judge, 1, self.first, self.second
        )

    @cached_property
    def pool(self) -> str:
        return self._plan.context.catalog.models[self.judge].pool

    def run(self):
        self.set_status_message(f"pairwise {self.gen_id}: {self.first} vs {self.second} / {self.judge}")
        pairwise.make_judgment(
            knobs.context_for_run(self._plan.context), self.member, knobs.current().run_id, self._emit
        )
        self.set_progress_percentage(100)


def pairwise_task(judgment: pairwise.Judgment) -> PairwiseJudgment:
    return PairwiseJudgment(
        gen_id=judgment.gen_id,
        cohort_id=judgment.cohort_id,
        first=judgment.first,
        second=judgment.second,
        template_id=judgment.template_id,
        judge=judgment.llm_model_id,
    )
