"""What the cohort's stages make of their call: a draft, an essay, an evaluation (the pairwise stage of a tournament is
`pairwise`). Each renders its template with what its parent left, calls the model through `generation.call_model`,
validates and parses the answer and returns the stage's part of the metadata; `generation.run_generation` does the
rest, alike for every stage.
"""

from daydream_luigi.core.combos import Combo
from daydream_luigi.core.expansion import Member
from daydream_luigi.core.ids import draft_task_id, essay_task_id, evaluation_task_id
from daydream_luigi.core.parsers import SCORE_MAX, ParseError, parse_draft, parse_score, truncation_problem
from daydream_luigi.execution import generation
from daydream_luigi.execution.generation import Context, Emit, Generation, StageWork
from daydream_luigi.providers import chat
from daydream_luigi.store.files import (
    METADATA,
    PARSED,
    RAW,
    atomic_write_text,
    gen_dir,
    generation_lock,
    read_json,
    read_text,
)


def _variables(gen: Generation) -> tuple[dict, dict | None]:
    """What the generation's template is rendered with, and its parent's metadata (None for a draft)."""
    ctx, member = gen.ctx, gen.member
    if member.stage == "draft":
        combo: Combo = ctx.combos[member.combo_id]
        return {"concepts": ctx.catalog.draft_concepts(combo.concept_ids, combo.level)}, None
    if member.stage == "essay":  # the earlier Dagster system's essay templates name the draft links_block
        text, meta = _read_parent(gen, "draft")
        return {"draft_block": text, "links_block": text}, meta
    text, meta = _read_parent(gen, "essay")
    return {"response": text}, meta


def _read_parent(gen: Generation, parent_stage: str) -> tuple[str, dict]:
    parent = gen_dir(gen.ctx.paths.gens, parent_stage, gen.member.parent_gen_id)
    try:
        return read_text(parent / PARSED), read_json(parent / METADATA)
    except (OSError, ValueError) as exc:
        raise gen.fail(
            f"parent {parent_stage} {gen.member.parent_gen_id} is unreadable ({exc}); remove it with "
            f"`daydream gens rm {gen.member.parent_gen_id} --yes` and re-run",
            "parent",
            False,
        ) from None


def _draft(gen: Generation) -> dict:
    ctx, member = gen.ctx, gen.member
    combo: Combo = ctx.combos[member.combo_id]
    template = ctx.catalog.templates["draft"][member.template_id]
    model = ctx.catalog.models[member.llm_model_id]
    prompt = generation.render_prompt(gen, template, _variables(gen)[0])
    raw, call = generation.call_model(gen, model, prompt)
    lines = sum(1 for line in raw.splitlines() if line.strip())
    problem = truncation_problem(call, member.gen_id)
    if not problem and lines < ctx.settings.min_draft_lines:
        problem = f"draft has {lines} non-empty line(s), fewer than min_draft_lines={ctx.settings.min_draft_lines}"
    if not problem:
        try:
            parsed = parse_draft(template.kind, raw)
        except ParseError as exc:
            problem = f"parser {template.kind!r} failed: {exc}; raw answer kept in {gen.directory / RAW}"
    if problem:
        raise gen.fail(problem, "validation", False)
    atomic_write_text(gen.directory / PARSED, parsed)
    return {
        **call,
        "task_id": draft_task_id(combo.combo_id, template.template_id, model.model_id),
        "parser": template.kind,
        "concept_ids": list(combo.concept_ids),
        "description_level": combo.level,
        "k": combo.k,
    }


def _essay(gen: Generation) -> dict:
    ctx, member = gen.ctx, gen.member
    template = ctx.catalog.templates["essay"][member.template_id]
    variables, draft_meta = _variables(gen)
    draft_block = variables["draft_block"]
    # a copy template without a file renders nothing (no prompt.txt): it only hands the draft on
    prompt = generation.render_prompt(gen, template, variables) if template.source else ""
    common = {"task_id": essay_task_id(draft_meta["task_id"], template.template_id), "mode": template.kind}
    if template.kind == "copy":
        atomic_write_text(gen.directory / RAW, draft_block)
        atomic_write_text(gen.directory / PARSED, draft_block)
        return {**common, "model": None, "provider": None, "finish_reason": None, "attempts": []}
    raw, call = generation.call_model(gen, ctx.catalog.models[member.llm_model_id], prompt)
    problem = truncation_problem(call, member.gen_id) or (None if raw.strip() else "the model returned an empty essay")
    if problem:
        raise gen.fail(problem, "validation", False)
    atomic_write_text(gen.directory / PARSED, raw.strip() + "\n")
    return {**call, **common}


def _evaluation(gen: Generation) -> dict:
    ctx, member = gen.ctx, gen.member
    template = ctx.catalog.templates["evaluation"][member.template_id]
    prompt = generation.render_prompt(gen, template, _variables(gen)[0])
    raw, call = generation.call_model(gen, ctx.catalog.models[member.llm_model_id], prompt)
    truncated = truncation_problem(call, member.gen_id)
    try:
        score, error = (None, truncated) if truncated else (parse_score(template.kind, raw), "")
    except ParseError as exc:
        score, error = None, f"parser {template.kind!r}: {exc}"
    atomic_write_text(gen.directory / PARSED, "" if score is None else f"{score:g}\n")
    return {
        **call,
        "task_id": evaluation_task_id(member.parent_gen_id, template.template_id, member.llm_model_id),
        "parser": template.kind,
        "score": score,
        "score_max": SCORE_MAX,
        "error": error,
    }


WORK: dict[str, StageWork] = {"draft": _draft, "essay": _essay, "evaluation": _evaluation}


def make_generation(ctx: Context, member: Member, run_id: str, emit: Emit) -> dict:
    """Make one draft, essay or evaluation unless it is complete; returns its metadata. Raises GenerationFailed."""
    return generation.run_generation(ctx, member, run_id, WORK[member.stage], emit)


def batch_request(ctx: Context, member: Member, run_id: str) -> dict:
    """The chat-completions body a batched generation sends, rendered now (prompt.txt written) but not
    sent. Raises GenerationFailed (recorded) when it cannot be rendered."""
    directory = gen_dir(ctx.paths.gens, member.stage, member.gen_id)
    with generation_lock(directory):
        gen = Generation(ctx, member, directory, run_id, generation.ignore)
        prompt = generation.render_prompt(
            gen, ctx.catalog.templates[member.stage][member.template_id], _variables(gen)[0]
        )
    model = ctx.catalog.models[member.llm_model_id]
    return chat.request_body(model.model, prompt, generation.call_settings(ctx, member, model))
