"""Luigi task classes: declarations only (parameters, requires, output, resources); the work is in stages/results."""

import os
from functools import cached_property, lru_cache

import luigi

from . import collect
from .catalog import load_catalog
from .cohort import load_manifest, load_membership
from .combos import Combo, persist_mappings
from .config import Paths, load_settings, pool_limits
from .stages import Context, run_generation
from .store import METADATA, gen_dir


def _paths() -> Paths:
    """Paths.from_env(), cached per environment: resolving the two roots costs ~50 us and each task asks several times.
    The working directory is part of the key only when a root is relative (the defaults are)."""
    data, config = os.environ.get("DAYDREAM_DATA_ROOT"), os.environ.get("DAYDREAM_CONFIG_DIR")
    absolute = data and config and os.path.isabs(data) and os.path.isabs(config)
    return _paths_for(data, config, None if absolute else os.getcwd())


@lru_cache(maxsize=8)
def _paths_for(_data_root, _config_dir, _cwd) -> Paths:
    return Paths.from_env()


class _CachedParams:
    """Luigi's Task.get_params scans dir(cls) on every call, and it runs several times per task (instantiation,
    scheduling, reporting the result): ~0.15 ms per generation. A class's parameters are fixed once it is defined, so
    they are looked up once per class."""

    @classmethod
    def get_params(cls):
        params = _PARAMS_BY_CLASS.get(cls)
        if params is None:
            params = _PARAMS_BY_CLASS[cls] = super().get_params()
        return list(params)


_PARAMS_BY_CLASS: dict[type, list] = {}


def context(cohort_id: str) -> Context:
    """Everything a task of this cohort needs, loaded once per process and cohort version (threads share it)."""
    paths = _paths()
    manifest = paths.cohorts / cohort_id / "manifest.json"
    return _context(paths, cohort_id, manifest.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _context(paths: Paths, cohort_id: str, _version: int) -> Context:
    manifest = load_manifest(paths, cohort_id)
    combos = {cid: Combo(cid, tuple(concepts), manifest["description_level"], manifest["k"])
              for cid, concepts in manifest["combos"].items()}
    return Context(paths, load_settings(paths), load_catalog(paths, pool_limits()), combos)


class Combinations(_CachedParams, luigi.Task):
    """Records the cohort's combinations in data/combo_mappings.csv (append-only)."""

    cohort_id = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(str(_paths().cohorts / self.cohort_id / "combos.recorded"))

    def run(self):
        ctx = context(self.cohort_id)
        persist_mappings(ctx.paths.combo_mappings, list(ctx.combos.values()))
        with self.output().open("w") as handle:
            handle.write("\n".join(sorted(ctx.combos)) + "\n")


class GenerationTask(_CachedParams, luigi.Task):
    """One generation, keyed by gen_id; its row (template, model, parent) comes from the cohort membership."""

    stage = ""
    gen_id = luigi.Parameter()
    cohort_id = luigi.Parameter(significant=False)

    @cached_property
    def member(self):
        return load_membership(_paths(), self.cohort_id)[self.gen_id]

    @cached_property
    def resources(self):
        model = context(self.cohort_id).catalog.models[self.member.llm_model_id]
        template = context(self.cohort_id).catalog.templates[self.stage][self.member.template_id]
        return {} if template.kind == "copy" else {model.pool: 1}

    @cached_property
    def _metadata_path(self) -> str:
        return os.path.join(gen_dir(_paths().gens, self.stage, self.gen_id), METADATA)

    def output(self):
        return luigi.LocalTarget(self._metadata_path)

    def complete(self):
        """Task.complete() for this one output, without building a target each time (the scheduler asks often)."""
        return os.path.exists(self._metadata_path)

    def run(self):
        self.set_status_message(f"{self.stage} {self.gen_id}: {self.member.template_id} / {self.member.llm_model_id}")
        self.set_progress_percentage(0)
        metadata = run_generation(context(self.cohort_id), self.member)
        self.set_progress_percentage(100)
        self.set_status_message(f"done in {metadata.get('duration_s', 0):.1f} s, {metadata.get('completion_tokens') or 0} "
                                f"completion tokens")


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


class ReportTask(_CachedParams, luigi.Task):
    """A cohort report rebuilt whenever the evaluations on disk change (complete() compares a fingerprint)."""

    cohort_id = luigi.Parameter()
    filename = ""

    def output(self):
        return luigi.LocalTarget(str(_paths().cohorts / self.cohort_id / "reports" / self.filename))

    def complete(self):
        paths = _paths()
        return collect.is_current(paths, self.cohort_id, self.output().path)


class ParseScores(ReportTask):
    """parsed_scores.csv: one row per evaluation of the cohort on disk, with lineage, score and error."""

    filename = "parsed_scores.csv"

    def run(self):
        collect.write_parsed_scores(_paths(), self.cohort_id)


class Pivot(ReportTask):
    """pivot.csv and the other tables derived from the parsed scores."""

    filename = "pivot.csv"

    def requires(self):
        return ParseScores(cohort_id=self.cohort_id)

    def run(self):
        collect.write_derived_tables(_paths(), self.cohort_id)


class Report(ReportTask):
    """report.html: the cohort's self-contained HTML report."""

    filename = "report.html"

    def requires(self):
        return Pivot(cohort_id=self.cohort_id)

    def run(self):
        collect.write_report(_paths(), self.cohort_id)
