"""One generation end to end, without Luigi: render -> call (or reuse the kept answer) -> validate -> parse -> write.

Files are written in this order: prompt.txt; a line in attempts.jsonl before every request and one for its outcome;
raw.txt and call.json the moment an answer arrives; parsed.txt; metadata.json last (it marks the generation complete).
Anything that goes wrong once an answer has arrived becomes a recorded failure (error.json, with its reason) and never
a second call: a later try takes the kept answer, and an answer that could not even be stored is remembered by the run
(`LOST_ANSWERS`) so that no retry in it pays for the same generation again.

Every attempt passes the call's `gate.Gate` (breaker, quota pause, budget, rate) before its "sent" line is written;
a refusal (`gate.Stopped`) leaves the generation pending, not failed. The call holds a slot of its pool (`slots`)
from its first attempt to its answer. What is particular to a stage (its template's variables, validation, parsing)
is its `StageWork` (`stages`, `pairwise`). A batched generation's answer is kept by `keep_batch_answer`, into the same
files as a single call's.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from daydream_luigi.core import identity
from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.catalog import Catalog, Model
from daydream_luigi.core.clock import now
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.expansion import Member
from daydream_luigi.core.render import RenderError, compiled, render
from daydream_luigi.core.settings import Paths, Settings
from daydream_luigi.execution import slots
from daydream_luigi.providers import chat, endpoints
from daydream_luigi.providers.limits.gate import Gate, Stopped, estimated_tokens, stop_requested
from daydream_luigi.store.files import (
    ATTEMPTS,
    CALL,
    ERROR,
    METADATA,
    PROMPT,
    RAW,
    REASONING,
    append_line,
    atomic_write_json,
    atomic_write_text,
    gen_dir,
    generation_lock,
    read_json,
    read_text,
    remove_stale_temps,
)

# gen_ids whose answer arrived in this run but could not be stored. The run's parent process learns of them from its
# task processes (an event) and adds them here, so every task process it forks afterwards inherits the set.
LOST_ANSWERS: set[str] = set()


class GenerationFailed(Exception):
    """The generation could not be completed; the reason is kept in error.json beside any raw answer.

    `retryable` says whether trying again could help without a new paid answer (a transport failure can; a kept answer
    that fails validation, a configuration error or an answer that could not be stored cannot).
    """

    def __init__(self, message: str, kind: str, retryable: bool):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


@dataclass(frozen=True)
class Context:
    paths: Paths
    settings: Settings
    catalog: Catalog
    combos: dict  # combo_id -> Combo
    max_cost_usd: float | None = None  # the run's --max-cost: no new call once it would not fit
    call_slots: slots.CallSlots | None = None  # the run's call slots (None: Luigi's resources alone limit the pools)


Emit = Callable[[str, dict], None]  # (event name, details): how a generation reports progress to whoever runs it
ATTEMPT, ANSWER_LOST = "daydream.attempt", "daydream.answer_lost"  # the events it emits (Luigi events of its task)
SLOT = "daydream.slot"  # ... and {"waiting": True / False} around a wait for a call slot (see slots)


def ignore(event: str, details: dict) -> None:
    """An Emit for work nobody watches."""


def endpoint(ctx: Context, model: Model) -> tuple[str, str | None]:
    """Base URL and key of the model's provider, read from the environment at call time (the key is never stored,
    and goes only to its own provider's URL)."""
    try:
        return endpoints.resolve(ctx.settings.providers[model.endpoint])
    except InputError as exc:
        raise GenerationFailed(str(exc), "config", False) from None


def call_settings(ctx: Context, member: Member, model: Model) -> chat.CallSettings:
    """What the generation's identity says shapes its call (identity.call_shape), plus the stage's timeouts; a seeded
    backend's call (the embedded model's) also gets a seed derived from the gen_id, so an offline run is reproducible
    on the same machine (replicates differ because their gen_ids do)."""
    config = ctx.settings.stage(member.stage)
    shape = identity.call_shape(ctx.settings, member.stage, model)
    options = {key: value for key, value in shape.items() if key not in ("model", "provider")}
    options.update(
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        dialect=ctx.settings.providers[model.endpoint].dialect,
    )
    if backend_of(model.endpoint).seeded:
        options["seed"] = int(hashlib.sha256(member.gen_id.encode()).hexdigest()[:8], 16) % 2**31
    return chat.CallSettings(**options)


def warm_up(ctx: Context) -> None:
    """Do once, in the process Luigi forks every task process from, what each of them would otherwise repeat: compile
    the templates and run the lazy first-use paths of requests (its imports, its ABC caches). Forked task processes
    inherit all of it; a generation then reaches its request a few milliseconds sooner."""
    for templates in ctx.catalog.templates.values():
        for template in templates.values():
            compiled(template.source)
    with requests.Session() as session:
        request = requests.Request(
            "POST",
            "http://127.0.0.1/v1/chat/completions",
            json={"model": "warm-up"},
            headers={"Authorization": "Bearer warm-up"},
        )
        prepared = session.prepare_request(request)
        session.merge_environment_settings(prepared.url, {}, None, None, None)
        session.get_adapter(prepared.url)


def call_time_limit(settings: Settings, stage: str) -> float:
    """The longest one call may legitimately take with its retries: every attempt timing out plus all the waiting the
    retry budget allows. Luigi's worker timeout must be longer, so that it only ends a hung call."""
    config, retry = settings.stage(stage), settings.retry
    attempt = float(config.connect_timeout) + float(config.read_timeout)
    return int(retry.max_attempts) * attempt + float(retry.max_total_seconds)


def record_failure(
    directory: Path, member: Member, reason: str, kind: str, retryable: bool, run_id: str
) -> GenerationFailed:
    """Write error.json (the reason a generation is not complete) and return the exception that reports it."""
    atomic_write_json(
        directory / ERROR,
        {
            "stage": member.stage,
            "gen_id": member.gen_id,
            "error": reason,
            "kind": kind,
            "retryable": retryable,
            "run_id": run_id,
            "at": now(),
        },
    )
    return GenerationFailed(reason, kind, retryable)


@dataclass
class Generation:
    """What one run of one generation needs: where it lives, who runs it, how it reports."""

    ctx: Context
    member: Member
    directory: Path
    run_id: str
    emit: Emit
    prompt_sha256: str | None = None  # of the prompt rendered for it (recorded in its metadata)

    def fail(self, reason: str, kind: str, retryable: bool) -> GenerationFailed:
        """Record the failure in error.json when the disk lets us (the failure may be the disk's) and return it."""
        try:
            return record_failure(self.directory, self.member, reason, kind, retryable, self.run_id)
        except OSError as exc:
            return GenerationFailed(f"{reason} (error.json could not be written either: {exc})", kind, retryable)


def _kept_answer(gen: Generation) -> tuple[str, dict] | None:
    directory = gen.directory
    if (directory / CALL).exists() and (directory / RAW).exists():
        return read_text(directory / RAW), read_json(directory / CALL)
    return None


def _call_record(answer: chat.Completion, model: Model, settings: chat.CallSettings, run_id: str, **extra) -> dict:
    """call.json: what was asked of whom and what it cost; the vendor, the host that served it and its reasoning tokens
    only when known (a record of a call without them stays as it was)."""
    known = {
        "vendor": model.vendor or None,
        "served_by": answer.served_by,
        "reasoning_tokens": answer.reasoning_tokens,
    }
    return {
        "model": answer.model,
        "provider": model.endpoint,
        "finish_reason": answer.finish_reason,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "cost": answer.cost,
        "latency_s": round(answer.latency_s, 3),
        "attempts": answer.attempts,
        "called_at": now(),
        "run_id": run_id,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "seed": settings.seed,
        **{key: value for key, value in known.items() if value is not None},
        **extra,
    }


def _keep(gen: Generation, answer: chat.Completion, call: dict) -> None:
    """reasoning.txt (when the model showed its thinking), raw.txt and call.json the moment an answer arrives; an
    answer that cannot be stored is never asked again."""
    try:
        if answer.reasoning is not None:
            atomic_write_text(gen.directory / REASONING, answer.reasoning)
        atomic_write_text(gen.directory / RAW, answer.text)
        atomic_write_json(gen.directory / CALL, call)
    except OSError as exc:
        LOST_ANSWERS.add(gen.member.gen_id)
        gen.emit(ANSWER_LOST, {"gen_id": gen.member.gen_id})
        raise gen.fail(
            f"the answer arrived but could not be stored ({exc}); it was paid for and is not asked for again in this "
            f"run; free the disk (or fix the folder's permissions) and re-run",
            "answer_lost",
            False,
        ) from None


def call_model(gen: Generation, model: Model, prompt: str) -> tuple[str, dict]:
    """The model's answer: the kept one when raw.txt and call.json exist, else one real call, kept at once."""
    kept = _kept_answer(gen)
    if kept is not None:
        return kept
    member, directory = gen.member, gen.directory
    if member.gen_id in LOST_ANSWERS:
        raise gen.fail(
            "an answer for this generation arrived earlier in this run but could not be stored, so it is "
            "not asked for again in this run; free the disk (or fix the folder's permissions) and re-run",
            "answer_lost",
            False,
        )
    base_url, key = endpoint(gen.ctx, model)
    settings = call_settings(gen.ctx, member, model)
    gate = Gate(
        gen.ctx.paths,
        gen.ctx.settings,
        gen.run_id,
        provider=model.endpoint,
        url=base_url,
        pool=model.pool,
        price=model.price,
        call_id=member.gen_id,
        tokens=estimated_tokens(prompt, settings.max_tokens),
        max_cost_usd=gen.ctx.max_cost_usd,
    )

    def on_attempt(record: dict) -> None:
        line = {**record, "run_id": gen.run_id, "at": now()}
        if record["event"] == "sent":
            gate.before(record["n"])  # Stopped: not sent, and no line says it was
            try:
                append_line(directory / ATTEMPTS, line)  # no record, no request: an OSError here stops the call
            except OSError:
                gate.cancel(record["n"])
                raise
        else:
            try:
                append_line(directory / ATTEMPTS, line)
            except OSError:
                pass  # the answer itself must still be kept; its call.json records every attempt too
        gen.emit(ATTEMPT, line)

    def stopping() -> bool:
        return stop_requested(gen.ctx.paths, gen.run_id)

    kept: list[dict] = []

    def keep(answer: chat.Completion) -> None:
        """The answer is stored the moment it arrives, before the gate's bookkeeping and the slot's release."""
        kept.append(_call_record(answer, model, settings, gen.run_id))
        _keep(gen, answer, kept[0])

    try:
        with slots.call_slot(
            gen.ctx.call_slots, model.pool, stopping, lambda waiting: gen.emit(SLOT, {"waiting": waiting})
        ):
            answer = chat.chat_completion(
                base_url,
                key,
                model.model,
                prompt,
                settings,
                gen.ctx.settings.retry,
                on_attempt=on_attempt,
                on_reply=gate.after,
                on_answer=keep,
            )
    except slots.StopRequested:
        raise Stopped(
            "stop",
            "run",
            f"stop-{gen.run_id}",
            "stopping: generations ready to call when the stop was "
            "asked for did not send their call; the next run makes them",
        ) from None
    except chat.LLMError as exc:
        kind = "transport" if exc.retryable else "config"
        raise gen.fail(str(exc), kind, exc.retryable) from None
    except OSError as exc:  # attempts.jsonl could not be written: nothing was sent
        raise gen.fail(
            f"could not record the request before sending it ({exc}); nothing was sent", "storage", True
        ) from None
    return answer.text, kept[0]


def render_prompt(gen: Generation, template, variables: dict) -> str:
    """The prompt, written to prompt.txt; a kept answer is reused only for exactly the prompt it answered."""
    try:
        prompt = render(template.source, max_chars=gen.ctx.settings.max_prompt_chars, **variables)
    except RenderError as exc:
        raise gen.fail(
            f"template {template.template_id} ({template.path}) failed to render: {exc}", "render", False
        ) from None
    path = gen.directory / PROMPT
    if (gen.directory / CALL).exists() and path.exists() and read_text(path) != prompt:
        raise gen.fail(
            f"the kept answer in {gen.directory} was given for another prompt than this generation's now; "
            f"remove it with `daydream gens rm {gen.member.gen_id} --yes` and re-run",
            "stale",
            False,
        )
    atomic_write_text(path, prompt)
    gen.prompt_sha256 = identity.text_sha(prompt)
    return prompt


StageWork = Callable[[Generation], dict]  # renders, calls, validates and parses; returns the stage's metadata


def final_failure(directory: Path, run_id: str) -> dict | None:
    """The failure this run already recorded for the generation, when trying again cannot help."""
    try:
        error = read_json(directory / ERROR)
    except (OSError, ValueError):
        return None
    return error if error.get("run_id") == run_id and error.get("retryable") is False else None


def run_generation(ctx: Context, member: Member, run_id: str, work: StageWork, emit: Emit = ignore) -> dict:
    """Make one generation unless it is already complete; returns its metadata. Raises GenerationFailed.

    `work` is what its stage does (`stages` for a cohort's, `pairwise` for a tournament's judgments), so every stage's
    calls are recorded, kept and never paid for twice alike. Every failure leaves error.json with its reason; an
    unexpected exception is recorded too.
    """
    directory = gen_dir(ctx.paths.gens, member.stage, member.gen_id)
    with generation_lock(directory):
        if (directory / METADATA).exists():
            return read_json(directory / METADATA)
        remove_stale_temps(directory)  # a killed run may have left some; they are never read, only litter
        gen = Generation(ctx, member, directory, run_id, emit)
        final = final_failure(directory, run_id)
        if final is not None:  # Luigi retries a task once before it learns that trying again cannot help
            raise GenerationFailed(final["error"], final.get("kind", ""), False)
        started = now(), time.monotonic()
        try:
            details = work(gen)
            template = ctx.catalog.templates[member.stage][member.template_id]
            model = ctx.catalog.models.get(member.llm_model_id)
            metadata = {
                "stage": member.stage,
                "gen_id": member.gen_id,
                "parent_gen_id": member.parent_gen_id,
                "cohort_id": member.cohort_id,
                "combo_id": member.combo_id,
                "template_id": member.template_id,
                "template_sha256": template.sha256,
                "llm_model_id": member.llm_model_id,
                "replicate": member.replicate,
                "model": model.model if model else None,
                "started_at": started[0],
                "finished_at": now(),
                "duration_s": round(time.monotonic() - started[1], 3),
                "run_id": run_id,
                "prompt_sha256": gen.prompt_sha256,
                **details,
            }
            (directory / ERROR).unlink(missing_ok=True)
            atomic_write_json(directory / METADATA, metadata)
        except GenerationFailed:
            raise
        except Stopped:  # not sent: the generation is pending, whatever failure an earlier try recorded
            (directory / ERROR).unlink(missing_ok=True)
            raise
        except Exception as exc:  # a bug or a full disk after the call: recorded with its reason, never re-paid
            reason = f"unexpected {type(exc).__name__}: {exc}"
            if member.gen_id in LOST_ANSWERS:
                raise gen.fail(reason, "answer_lost", False) from None
            kept = (directory / CALL).exists() and (directory / RAW).exists()  # then a retry reuses it, for free
            raise gen.fail(
                reason + ("; the answer is kept and a re-run reuses it" if kept else " (no answer had arrived)"),
                "internal",
                True,
            ) from None
        return metadata


# ----------------------------------------------------------------------------------------------- batched calls


def record_batch_attempt(ctx: Context, member: Member, run_id: str, record: dict, emit: Emit = ignore) -> None:
    """One line of a batched request in attempts.jsonl ("sent" when its batch was accepted, "failed" when the batch
    ended without its answer), tagged with the run, so the store adds up to what the provider received."""
    line = {**record, "via": "batch", "run_id": run_id, "at": now()}
    append_line(gen_dir(ctx.paths.gens, member.stage, member.gen_id) / ATTEMPTS, line)
    emit(ATTEMPT, {**line, "gen_id": member.gen_id})


def keep_batch_answer(
    ctx: Context,
    member: Member,
    run_id: str,
    answer: chat.Completion,
    batch: dict,
    price_factor: float,
    emit: Emit = ignore,
) -> None:
    """A batch's answer for one generation, kept as a single call's would be (raw.txt, call.json and its
    "answered" line); a later run of the generation validates and parses it without calling."""
    directory = gen_dir(ctx.paths.gens, member.stage, member.gen_id)
    model = ctx.catalog.models[member.llm_model_id]
    with generation_lock(directory):
        gen = Generation(ctx, member, directory, run_id, emit)
        if (directory / METADATA).exists() or _kept_answer(gen):
            return
        answer.attempts = [{"n": 1, "outcome": "ok", "via": "batch", "batch_id": batch["batch_id"]}]
        call = _call_record(
            answer, model, call_settings(ctx, member, model), run_id, batch=batch, price_factor=price_factor
        )
        call["latency_s"] = None  # the batch's turnaround, not one request's
        record_batch_attempt(
            ctx,
            member,
            run_id,
            {
                "event": "answered",
                "n": 1,
                "outcome": "ok",
                "status": 200,
                "batch_id": batch["batch_id"],
                "finish_reason": answer.finish_reason,
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "cost": answer.cost,
                "price_factor": price_factor,
            },
            emit,
        )
        _keep(gen, answer, call)
