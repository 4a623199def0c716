"""What shapes a generation's call, and the content-addressed gen_id computed from it.

A gen_id is a hash of everything that decides what the model is asked: the stage and replicate; for a draft, its
rendered prompt (template text and concept descriptions, in order); for an essay or an evaluation, its parent's gen_id
and its template's text; and the model string, endpoint and sampling (temperature, max_tokens, and what the model's
backend adds: for the embedded model its top_p, frequency_penalty, grammar and system prompt, see `backends`), and a
model's reasoning settings and OpenRouter routing when set (`model_options`). Edit
any of them and the work affected gets new gen_ids: the old generations stay on disk for the cohorts that made them,
`plan` counts the new ones as calls to make, and nothing made from other inputs is ever reused. Timeouts and parsers
are not part of it: they change how an answer is waited for or read, not what it says (a fixed parser re-reads the
kept answer).

The parts are encoded as canonical JSON, so ids that contain the `__` of task ids can never make two generations
collide. A text imported from a file (see `importer`) is identified by its stage and the text's sha256 alone: its parts
name no prompt and no parent, so it can never share an id with generated work, and the same text always gets the
same id.
"""

import hashlib
import json

from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.catalog import Model, Template
from daydream_luigi.core.ids import gen_id
from daydream_luigi.core.settings import Settings


def call_shape(settings: Settings, stage: str, model: Model) -> dict:
    """Everything sent with a prompt besides the prompt: model string, provider, sampling, and what the model's
    backend adds to a call of this stage (the offline model's sampling, system prompt and grammar)."""
    config = settings.stage(stage)
    shape = {
        "model": model.model,
        "provider": model.endpoint,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }
    shape.update(backend_of(model.endpoint).call_shape.get(stage, {}))
    reasoning = _stage_reasoning(settings, stage, model)
    if {"effort", "max_tokens"} & set(model.reasoning):  # the model's own budget replaces the stage's
        reasoning = {k: v for k, v in reasoning.items() if k not in ("effort", "max_tokens")}
    reasoning.update(model.reasoning)
    if reasoning:  # only when set, so a configuration without reasoning or routing settings keeps its gen_ids
        shape["reasoning"] = reasoning
    if model.routing:
        shape["routing"] = dict(model.routing)
    return shape


def _stage_reasoning(settings: Settings, stage: str, model: Model) -> dict:
    """The stage's reasoning settings (stages.<stage>.reasoning) as far as the model's endpoint can send them: all of
    them to OpenRouter, `effort` to OpenAI, none to a plain OpenAI-compatible server (or a stage without them, such
    as a tournament's pairwise judgments)."""
    config = settings.stages.get(stage)
    provider = settings.providers.get(model.endpoint)
    if config is None or provider is None or not config.reasoning:
        return {}
    if provider.dialect == "openrouter":
        return dict(config.reasoning)
    if provider.dialect == "openai" and "effort" in config.reasoning:
        return {"effort": config.reasoning["effort"]}
    return {}


def _id(stage: str, replicate: int, parts: dict) -> str:
    return gen_id(stage, json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False), replicate)


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def draft_id(prompt: str, shape: dict, replicate: int) -> str:
    return _id("draft", replicate, {"prompt": text_sha(prompt), **shape})


def essay_id(draft: str, template: Template, shape: dict | None, replicate: int) -> str:
    """`shape` is None for a copy essay, which calls nothing."""
    return _id("essay", replicate, {"parent": draft, "template": template.sha256, **(shape or {"copy": True})})


def evaluation_id(essay: str, template: Template, shape: dict, replicate: int) -> str:
    return _id("evaluation", replicate, {"parent": essay, "template": template.sha256, **shape})


def imported_id(stage: str, text_sha256: str) -> str:
    """A text written elsewhere and imported as a complete generation of `stage` (no model, prompt or parent)."""
    return _id(stage, 1, {"imported": text_sha256})
