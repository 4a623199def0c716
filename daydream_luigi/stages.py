"""One generation end to end, without Luigi: render -> call (or reuse the kept raw answer) -> validate -> parse -> write.

Files are written in order prompt.txt, raw.txt, call.json, parsed.txt, metadata.json; metadata.json last marks the
generation complete. A kept raw.txt + call.json is reused, so a re-run after a parse failure never calls the model again.
"""

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests

from . import llm
from .catalog import Catalog, Model
from .cohort import Member
from .combos import Combo
from .config import Paths, Settings
from .ids import draft_task_id, essay_task_id, evaluation_task_id
from .parsers import SCORE_MAX, ParseError, parse_draft, parse_score
from .render import RenderError, render
from .store import (CALL, ERROR, METADATA, PARSED, PROMPT, RAW, atomic_write_json, atomic_write_text, gen_dir,
                    generation_lock, read_json, read_text, remove_stale_temps)

log = logging.getLogger("daydream")
OPENROUTER_URL = "https://openrouter.ai/api/v1"


class GenerationFailed(Exception):
    """The generation could not be completed; the reason is also kept in error.json beside any raw answer."""


@dataclass(frozen=True)
class Context:
    paths: Paths
    settings: Settings
    catalog: Catalog
    combos: dict  # combo_id -> Combo


def endpoint(model: Model) -> tuple[str, str | None]:
    """Base URL and key for a model, read from the environment at call time (the key is never stored)."""
    if model.provider == "embedded":
        url = os.environ.get("DAYDREAM_EMBEDDED_BASE_URL")
        if not url:
            raise GenerationFailed(f"model {model.model_id} needs the embedded server; run with --backend local")
        return url, None
    return os.environ.get("DAYDREAM_LLM_BASE_URL", OPENROUTER_URL), os.environ.get("OPENROUTER_API_KEY") or None


_local = threading.local()
_called: set[Path] = set()  # generation folders whose model call this process made and kept
_called_lock = threading.Lock()


def called_here(directory: Path) -> bool:
    """Whether this process paid for the answer kept in `directory` (another run sharing the store may have)."""
    with _called_lock:
        return directory in _called


def _session():
    """One HTTP session per worker thread, so calls reuse their connection (keep-alive)."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def call_settings(ctx: Context, member: Member, model: Model) -> llm.CallSettings:
    """Per-stage sampling; the embedded model also gets its tuned sampling and a seed derived from the gen_id, so
    an offline run is reproducible on the same machine (replicates differ because their gen_ids do)."""
    stage = member.stage
    config = ctx.settings.stage(stage)
    options = {key: config[key] for key in ("temperature", "max_tokens", "connect_timeout", "read_timeout")}
    if model.provider == "embedded":
        from . import embedded
        options["seed"] = int(hashlib.sha256(member.gen_id.encode()).hexdigest()[:8], 16) % 2**31
        if stage == "evaluation":
            options.update(grammar=embedded.JUDGE_GRAMMAR, system_prompt=embedded.JUDGE_SYSTEM_PROMPT)
        else:
            options.update({k: v for k, v in embedded.DRAFT_SAMPLING.items() if k != "temperature"})
    return llm.CallSettings(**options)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _fail(directory: Path, member: Member, reason: str, call: dict | None = None) -> GenerationFailed:
    atomic_write_json(directory / ERROR, {"stage": member.stage, "gen_id": member.gen_id, "error": reason,
                                          "attempts": (call or {}).get("attempts", []), "at": _now()})
    return GenerationFailed(f"{member.stage} {member.gen_id}: {reason}")


def _call(ctx: Context, member: Member, model: Model, prompt: str, directory: Path) -> tuple[str, dict]:
    """The model's answer: the kept one when raw.txt and call.json exist, else one real call (kept at once)."""
    if (directory / CALL).exists() and (directory / RAW).exists():
        return read_text(directory / RAW), read_json(directory / CALL)
    base_url, key = endpoint(model)
    settings = call_settings(ctx, member, model)
    try:
        answer = llm.chat_completion(base_url, key, model.model, prompt, settings, llm.RetryPolicy(**ctx.settings.retry),
                                     session=_session())
    except llm.LLMError as exc:
        raise _fail(directory, member, str(exc), {"attempts": exc.attempts}) from None
    call = {"model": answer.model, "provider": model.provider, "finish_reason": answer.finish_reason,
            "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens, "cost": answer.cost,
            "latency_s": round(answer.latency_s, 3), "attempts": answer.attempts, "called_at": _now(),
            "temperature": settings.temperature, "max_tokens": settings.max_tokens, "seed": settings.seed}
    atomic_write_text(directory / RAW, answer.text)
    atomic_write_json(directory / CALL, call)
    with _called_lock:
        _called.add(directory)
    return answer.text, call


def _read_parent(ctx: Context, member: Member, parent_stage: str, directory: Path) -> tuple[str, dict]:
    parent = gen_dir(ctx.paths.gens, parent_stage, member.parent_gen_id)
    try:
        return read_text(parent / PARSED), read_json(parent / METADATA)
    except (OSError, ValueError) as exc:
        raise _fail(directory, member, f"parent {parent_stage} {member.parent_gen_id} is unreadable ({exc}); "
                                       f"remove it with `daydream gens rm {member.parent_gen_id} --yes` and re-run")


def _render(directory: Path, member: Member, template, variables: dict) -> str:
    try:
        prompt = render(template.source, **variables)
    except RenderError as exc:
        raise _fail(directory, member, f"template {template.template_id} ({template.path}) failed to render: {exc}")
    atomic_write_text(directory / PROMPT, prompt)
    return prompt


def _truncated(call: dict, gen_id: str) -> str | None:
    if call.get("finish_reason") == "length":
        return (f"answer truncated at max_tokens={call.get('max_tokens')} (finish_reason=length); raise max_tokens "
                f"in config/daydream.yaml, then `daydream gens rm {gen_id} --yes` and re-run")
    return None


def _draft(ctx: Context, member: Member, directory: Path) -> dict:
    combo: Combo = ctx.combos[member.combo_id]
    template = ctx.catalog.templates["draft"][member.template_id]
    model = ctx.catalog.models[member.llm_model_id]
    concepts = [{"name": ctx.catalog.concepts[c].name, "content": ctx.catalog.concepts[c].content(combo.level)}
                for c in combo.concept_ids]
    prompt = _render(directory, member, template, {"concepts": concepts})
    raw, call = _call(ctx, member, model, prompt, directory)
    lines = sum(1 for line in raw.splitlines() if line.strip())
    problem = _truncated(call, member.gen_id)
    if not problem and lines < ctx.settings.min_draft_lines:
        problem = f"draft has {lines} non-empty line(s), fewer than min_draft_lines={ctx.settings.min_draft_lines}"
    if not problem:
        try:
            parsed = parse_draft(template.kind, raw)
        except ParseError as exc:
            problem = f"parser {template.kind!r} failed: {exc}; raw answer kept in {directory / RAW}"
    if problem:
        raise _fail(directory, member, problem, call)
    atomic_write_text(directory / PARSED, parsed)
    return {**call, "task_id": draft_task_id(combo.combo_id, template.template_id, model.model_id),
            "parser": template.kind, "concept_ids": list(combo.concept_ids), "description_level": combo.level,
            "k": combo.k}


def _essay(ctx: Context, member: Member, directory: Path) -> dict:
    template = ctx.catalog.templates["essay"][member.template_id]
    draft_block, draft_meta = _read_parent(ctx, member, "draft", directory)
    prompt = _render(directory, member, template, {"draft_block": draft_block})
    common = {"task_id": essay_task_id(draft_meta["task_id"], template.template_id), "mode": template.kind}
    if template.kind == "copy":
        atomic_write_text(directory / RAW, draft_block)
        atomic_write_text(directory / PARSED, draft_block)
        return {**common, "model": None, "provider": None, "finish_reason": None, "attempts": []}
    raw, call = _call(ctx, member, ctx.catalog.models[member.llm_model_id], prompt, directory)
    problem = _truncated(call, member.gen_id) or (None if raw.strip() else "the model returned an empty essay")
    if problem:
        raise _fail(directory, member, problem, call)
    atomic_write_text(directory / PARSED, raw.strip() + "\n")
    return {**call, **common}


def _evaluation(ctx: Context, member: Member, directory: Path) -> dict:
    template = ctx.catalog.templates["evaluation"][member.template_id]
    essay, _ = _read_parent(ctx, member, "essay", directory)
    prompt = _render(directory, member, template, {"response": essay})
    raw, call = _call(ctx, member, ctx.catalog.models[member.llm_model_id], prompt, directory)
    truncated = _truncated(call, member.gen_id)
    try:
        score, error = (None, truncated) if truncated else (parse_score(template.kind, raw), "")
    except ParseError as exc:
        score, error = None, f"parser {template.kind!r}: {exc}"
    atomic_write_text(directory / PARSED, "" if score is None else f"{score:g}\n")
    return {**call, "task_id": evaluation_task_id(member.parent_gen_id, template.template_id, member.llm_model_id),
            "parser": template.kind, "score": score, "score_max": SCORE_MAX, "error": error}


_RUNNERS = {"draft": _draft, "essay": _essay, "evaluation": _evaluation}


def run_generation(ctx: Context, member: Member) -> dict:
    """Make one generation unless it is already complete; returns its metadata. Raises GenerationFailed."""
    directory = gen_dir(ctx.paths.gens, member.stage, member.gen_id)
    with generation_lock(directory):
        if (directory / METADATA).exists():
            return read_json(directory / METADATA)
        remove_stale_temps(directory)  # a killed run may have left some; they are never read, only litter
        started = _now(), time.monotonic()
        details = _RUNNERS[member.stage](ctx, member, directory)
        template = ctx.catalog.templates[member.stage][member.template_id]
        model = ctx.catalog.models.get(member.llm_model_id)
        metadata = {
            "stage": member.stage, "gen_id": member.gen_id, "parent_gen_id": member.parent_gen_id,
            "cohort_id": member.cohort_id, "combo_id": member.combo_id, "template_id": member.template_id,
            "template_sha256": template.sha256, "llm_model_id": member.llm_model_id, "replicate": member.replicate,
            "model": model.model if model else None, "started_at": started[0], "finished_at": _now(),
            "duration_s": round(time.monotonic() - started[1], 3), **details}
        (directory / ERROR).unlink(missing_ok=True)
        atomic_write_json(directory / METADATA, metadata)
        log.info("%s %s done (%s, %s, %.1f s)", member.stage, member.gen_id, member.template_id,
                 member.llm_model_id, metadata["duration_s"])
        return metadata
