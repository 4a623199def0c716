"""A cohort resolved once per process (`CohortPlan`): what its tasks, the runner and the research commands need of it.

The run computes it before Luigi forks the task processes, which inherit it; the backend it resolves with is the
run's (`knobs`) unless a caller names one.
"""

from dataclasses import dataclass
from functools import lru_cache

from daydream_luigi.core import schedule
from daydream_luigi.core.catalog import load_catalog
from daydream_luigi.core.expansion import Member
from daydream_luigi.core.settings import Paths, load_settings, pool_limits
from daydream_luigi.execution import batching, knobs
from daydream_luigi.execution.generation import Context
from daydream_luigi.store.cohorts import expand_cohort, resolve
from daydream_luigi.store.files import PARSED, complete_ids, gen_dir, read_text


@dataclass(frozen=True)
class CohortPlan:
    """A cohort resolved once per process: its members, lineages, parts and the context its generations need."""

    context: Context
    backend: str
    spec: object
    members: dict  # gen_id -> Member
    lineages: list
    parts: list  # lists of lineages
    priority: dict  # gen_id -> Luigi priority


@lru_cache(maxsize=8)
def _plan(paths: Paths, cohort_id: str, backend: str) -> CohortPlan:
    settings = load_settings(paths)
    limits = pool_limits(paths)
    catalog = load_catalog(paths, limits, settings)
    spec = resolve(paths, cohort_id, catalog, settings, backend)
    members = expand_cohort(spec, paths, catalog, settings)
    all_lineages = schedule.lineages(members)
    context = Context(paths, settings, catalog, {combo.combo_id: combo for combo in spec.combos})

    def lookahead(draft: Member) -> int:  # a pool-full of lineages (an imported draft calls nothing: none)
        model = catalog.models.get(draft.llm_model_id)
        return limits.get(model.pool, 1) if model else 0

    parts = schedule.parts(all_lineages, settings.part_size)
    return CohortPlan(
        context,
        backend,
        spec,
        {m.gen_id: m for m in members},
        all_lineages,
        parts,
        schedule.priorities(all_lineages, lookahead, schedule.last_parts_start(parts)),
    )


def cohort_plan(cohort_id: str, backend: str | None = None) -> CohortPlan:
    """The plan of a cohort for the current data and config folders (computed once per process and backend); the
    backend is the run's (`knobs`) unless given."""
    return _plan(Paths.from_env(), cohort_id, backend or knobs.backend())


def forget_plans() -> None:
    """Drop cached plans (a new run in the same process may see changed inputs)."""
    _plan.cache_clear()
    _batch_chunks.cache_clear()


def batch_chunks(cohort_id: str, every_call: bool, backend: str | None = None) -> batching.Chunks:
    """The cohort's batched generations in chunks (computed by the run before Luigi forks, then inherited); the
    backend is the run's (`knobs`) unless given."""
    return _batch_chunks(cohort_id, every_call, backend or knobs.backend())


@lru_cache(maxsize=8)
def _batch_chunks(cohort_id: str, every_call: bool, backend: str) -> batching.Chunks:
    plan = cohort_plan(cohort_id, backend)
    return batching.chunks(plan.context, plan.members.values(), every_call)


def all_complete(paths: Paths, members) -> bool:
    complete = {}
    for member in members:
        if member.stage not in complete:
            complete[member.stage] = complete_ids(paths.gens, member.stage)
        if member.gen_id not in complete[member.stage]:
            return False
    return True


def complete_essays(paths: Paths, plan: CohortPlan) -> list[str]:
    """The cohort's complete essays, by gen_id."""
    done = complete_ids(paths.gens, "essay")
    return sorted(m.gen_id for m in plan.members.values() if m.stage == "essay" and m.gen_id in done)


def essay_texts(paths: Paths, essays: list[str]) -> dict[str, str]:
    """essay gen_id -> its text."""
    return {e: read_text(gen_dir(paths.gens, "essay", e) / PARSED) for e in essays}
