"""Expansion: a cohort spec to the generations it makes (membership rows), with their content-addressed gen_ids, in a
deterministic order. Pure: what a curated cohort lists is read from the store by the caller (`store.cohorts`)."""

from dataclasses import dataclass, fields

from daydream_luigi.core import identity
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.cohort_spec import CohortSpec
from daydream_luigi.core.combos import make_combo
from daydream_luigi.core.errors import raise_if
from daydream_luigi.core.render import RenderError, render
from daydream_luigi.core.settings import PARENT_STAGE, STAGE_ORDER, STAGES, Settings


@dataclass(frozen=True)
class Member:
    """One row of membership.csv: a generation of the cohort and its lineage."""

    stage: str
    gen_id: str
    cohort_id: str
    parent_gen_id: str
    combo_id: str
    template_id: str
    llm_model_id: str
    replicate: int


MEMBERSHIP_COLUMNS = [f.name for f in fields(Member)]


def is_imported(member: Member) -> bool:
    """A text imported from a file (see `importer`): complete from the start, made with no template and no model (an
    imported essay has no draft either)."""
    return not member.template_id


def calls_model(member: Member, catalog: Catalog) -> bool:
    """Whether making this generation calls a model: not for a copy essay (it copies its draft) nor an imported text."""
    return not is_imported(member) and catalog.templates[member.stage][member.template_id].kind != "copy"


def draft_prompts(spec: CohortSpec, catalog: Catalog, settings: Settings) -> dict:
    """(combo_id, template_id) -> the rendered draft prompt, for every draft of the cohort. Their inputs (template,
    concept descriptions) are all known before a run, so a template that fails, or renders longer than
    limits.max_prompt_chars, is one message per template instead of a failure per draft; and the prompt is part of
    each draft's identity. (Essay and evaluation prompts need their parents' text: the stage checks those.)"""
    problems, prompts = [], {}
    for template_id in spec.draft_templates:
        template = catalog.templates["draft"][template_id]
        for combo in spec.combos:
            try:
                prompts[combo.combo_id, template_id] = render(
                    template.source,
                    max_chars=settings.max_prompt_chars,
                    concepts=catalog.draft_concepts(combo.concept_ids, combo.level),
                )
            except RenderError as exc:
                problems.append(
                    f"{template.path}: template {template_id!r} failed to render for {combo.combo_id} "
                    f"({', '.join(combo.concept_ids)}): {exc}"
                )
                break
    raise_if(problems)
    return prompts


def _cartesian(spec: CohortSpec, catalog: Catalog, settings: Settings) -> list[Member]:
    rows: list[Member] = []
    cid, reps = spec.cohort_id, spec.replicates
    prompts = draft_prompts(spec, catalog, settings)
    for combo in sorted(spec.combos, key=lambda c: c.combo_id):  # the order a recorded manifest keeps them in
        for dt in spec.draft_templates:
            for model in spec.generation_models:
                shape = identity.call_shape(settings, "draft", catalog.models[model])
                for dr in range(1, reps["draft"] + 1):
                    draft = identity.draft_id(prompts[combo.combo_id, dt], shape, dr)
                    rows.append(Member("draft", draft, cid, "", combo.combo_id, dt, model, dr))
                    rows += _essays_of(spec, catalog, settings, draft, combo.combo_id, model)
    return rows


def _essays_of(
    spec: CohortSpec, catalog: Catalog, settings: Settings, draft: str, combo: str, model: str
) -> list[Member]:
    rows = []
    for et in spec.essay_templates:
        template = catalog.templates["essay"][et]
        shape = None if template.kind == "copy" else identity.call_shape(settings, "essay", catalog.models[model])
        for er in range(1, spec.replicates["essay"] + 1):
            essay = identity.essay_id(draft, template, shape, er)
            rows.append(Member("essay", essay, spec.cohort_id, draft, combo, et, model, er))
            rows += _evaluations_of(spec, catalog, settings, essay, combo)
    return rows


def _evaluations_of(spec: CohortSpec, catalog: Catalog, settings: Settings, essay: str, combo: str) -> list[Member]:
    rows = []
    for vt in spec.evaluation_templates:
        template = catalog.templates["evaluation"][vt]
        for judge in spec.evaluation_models:
            shape = identity.call_shape(settings, "evaluation", catalog.models[judge])
            rows += [
                Member(
                    "evaluation",
                    identity.evaluation_id(essay, template, shape, vr),
                    spec.cohort_id,
                    essay,
                    combo,
                    vt,
                    judge,
                    vr,
                )
                for vr in range(1, spec.replicates["evaluation"] + 1)
            ]
    return rows


def _draft_row(spec: CohortSpec, meta: dict) -> Member:
    """A listed draft as it is on disk; a generated one also brings its combination (an imported one has none)."""
    if not meta.get("imported"):
        spec.combos.append(make_combo(meta["concept_ids"], meta["description_level"], meta["k"]))
    return Member(
        "draft",
        meta["gen_id"],
        spec.cohort_id,
        "",
        meta["combo_id"],
        meta["template_id"],
        meta["llm_model_id"],
        meta["replicate"],
    )


@dataclass(frozen=True)
class Listed:
    """What the store holds for the generations a curated spec lists (`store.cohorts.listed_generations` reads it):
    each listed essay's id and metadata with its draft's metadata (None for an imported essay, which has no draft),
    and each listed draft's id and metadata."""

    essays: list[tuple[str, dict, dict | None]]
    drafts: list[tuple[str, dict]]


def _curated(spec: CohortSpec, catalog: Catalog, settings: Settings, listed: Listed) -> list[Member]:
    """The listed essays with their drafts (already complete; an imported essay has no draft), the essays asked of
    the listed drafts (essay templates x generation models), and the evaluations asked of every essay."""
    rows: list[Member] = []
    for essay, meta, draft_meta in listed.essays:
        if draft_meta is not None:
            rows.append(_draft_row(spec, draft_meta))
        rows.append(
            Member(
                "essay",
                essay,
                spec.cohort_id,
                meta["parent_gen_id"],
                meta["combo_id"],
                meta["template_id"],
                meta["llm_model_id"],
                meta["replicate"],
            )
        )
        rows += _evaluations_of(spec, catalog, settings, essay, meta["combo_id"])
    for draft, meta in listed.drafts:
        rows.append(_draft_row(spec, meta))
        for model in spec.generation_models:
            rows += _essays_of(spec, catalog, settings, draft, meta["combo_id"], model)
    return rows


def expand(spec: CohortSpec, catalog: Catalog, settings: Settings, listed: Listed | None = None) -> list[Member]:
    """All generations of the cohort, drafts first; duplicates (a draft shared by two essays) appear once. A recorded
    cohort is expanded again from its recorded axes too, so a template edited since gives new gen_ids (see identity).
    A curated cohort's `listed` generations come from the store (`store.cohorts.expand_cohort` reads them)."""
    if spec.curated:
        if listed is None:
            raise ValueError("a curated cohort expands from its listed generations (store.cohorts.listed_generations)")
        rows = _curated(spec, catalog, settings, listed)
    else:
        rows = _cartesian(spec, catalog, settings)
    unique = list({(m.stage, m.gen_id): m for m in rows}.values())
    unique.sort(key=lambda m: STAGE_ORDER[m.stage])
    spec.combos = sorted(set(spec.combos), key=lambda c: c.combo_id)
    check_integrity(unique, spec.source)
    return unique


def check_integrity(rows: list[Member], source: str) -> None:
    """Every essay's parent is a draft (an imported essay has none) and every evaluation's parent an essay of the same
    cohort."""
    by_stage = {stage: {m.gen_id for m in rows if m.stage == stage} for stage in STAGES}
    problems = [
        f"{source}: {m.stage} {m.gen_id} has parent {m.parent_gen_id!r}, which is not a "
        f"{PARENT_STAGE[m.stage]} of cohort {m.cohort_id}; rebuild the cohort"
        for m in rows
        if m.stage in PARENT_STAGE and not is_imported(m) and m.parent_gen_id not in by_stage[PARENT_STAGE[m.stage]]
    ]
    raise_if(problems)
