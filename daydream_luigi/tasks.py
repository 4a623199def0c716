"""Luigi task classes: declarations only (parameters, requires, output, resources); the work is in stages/results."""

from functools import cached_property, lru_cache

import luigi

from . import collect
from .catalog import load_catalog
from .cohort import load_manifest, load_membership
from .combos import Combo, persist_mappings
from .config import Paths, load_settings, pool_limits
from .stages import Context, run_generation
from .store import METADATA, gen_dir


def context(cohort_id: str) -> Context:
    """Everything a task of this cohort needs, loaded once per process and cohort version (threads share it)."""
    paths = Paths.from_env()
    manifest = paths.cohorts / cohort_id / "manifest.json"
    return _context(paths, cohort_id, manifest.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _context(paths: Paths, cohort_id: str, _version: int) -> Context:
    manifest = load_manifest(paths, cohort_id)
    combos = {cid: Combo(cid, tuple(concepts), manifest["description_level"], manifest["k"])
              for cid, concepts in manifest["combos"].items()}
    return Context(paths, load_settings(paths), load_catalog(paths, pool_limits()), combos)


class Combinations(luigi.Task):
    """Records the cohort's combinations in data/combo_mappings.csv (append-only)."""

    cohort_id = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(str(Paths.from_env().cohorts / self.cohort_id / "combos.recorded"))

    def run(self):
        ctx = context(self.cohort_id)
        persist_mappings(ctx.paths.combo_mappings, list(ctx.combos.values()))
        with self.output().open("w") as handle:
            handle.write("\n".join(sorted(ctx.combos)) + "\n")


class GenerationTask(luigi.Task):
    """One generation, keyed by gen_id; its row (template, model, parent) comes from the cohort membership."""

    stage = ""
    gen_id = luigi.Parameter()
    cohort_id = luigi.Parameter(significant=False)

    @cached_property
    def member(self):
        return load_membership(Paths.from_env(), self.cohort_id)[self.gen_id]

    @property
    def resources(self):
        model = context(self.cohort_id).catalog.models[self.member.llm_model_id]
        template = context(self.cohort_id).catalog.templates[self.stage][self.member.template_id]
        return {} if template.kind == "copy" else {model.pool: 1}

    def output(self):
        return luigi.LocalTarget(str(gen_dir(Paths.from_env().gens, self.stage, self.gen_id) / METADATA))

    def run(self):
        self.set_status_message(f"{self.stage} {self.gen_id}: {self.member.template_id} / {self.member.llm_model_id}")
        run_generation(context(self.cohort_id), self.member)


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


class ReportTask(luigi.Task):
    """A cohort report rebuilt whenever the evaluations on disk change (complete() compares a fingerprint)."""

    cohort_id = luigi.Parameter()
    filename = ""

    def output(self):
        return luigi.LocalTarget(str(Paths.from_env().cohorts / self.cohort_id / "reports" / self.filename))

    def complete(self):
        paths = Paths.from_env()
        return collect.is_current(paths, self.cohort_id, self.output().path)


class ParseScores(ReportTask):
    """parsed_scores.csv: one row per evaluation of the cohort on disk, with lineage, score and error."""

    filename = "parsed_scores.csv"

    def run(self):
        collect.write_parsed_scores(Paths.from_env(), self.cohort_id)


class Pivot(ReportTask):
    """pivot.csv and the other tables derived from the parsed scores."""

    filename = "pivot.csv"

    def requires(self):
        return ParseScores(cohort_id=self.cohort_id)

    def run(self):
        collect.write_derived_tables(Paths.from_env(), self.cohort_id)


class Report(ReportTask):
    """report.html: the cohort's self-contained HTML report."""

    filename = "report.html"

    def requires(self):
        return Pivot(cohort_id=self.cohort_id)

    def run(self):
        collect.write_report(Paths.from_env(), self.cohort_id)
