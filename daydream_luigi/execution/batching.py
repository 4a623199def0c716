"""Batch mode: calls sent through their provider's batch API (about half the price, answers within 24 hours), as
steps a killed run resumes without sending any request twice.

Which calls: those `batch_settings.is_batched` says (the provider has a batch API, and `daydream run --batch` or the
``batch:`` settings name the stage or model); copy essays call nothing.

Chunks and waves. The batched generations of one (cohort, stage, model), in membership order, are cut into chunks of
at most ``batch.max_requests`` (and the provider's own limit). A chunk is submitted in waves: a wave sends every
generation of the chunk that is ready (parent complete, no answer kept) and was not sent in an earlier wave that is
still running or that answered it.
Wave 0 normally takes them all; a later wave takes what an expired or cancelled batch never ran (at most
``MAX_SUBMISSIONS`` sendings in all) and what became ready later. A wave is two files in
``data/batches/<cohort>/<stage>/<model>/chunk-<c>/wave-<w>/``:

* ``submitted.json``, rewritten the moment the provider accepts each batch, before anything polls it: the batch ids
  and the gen_ids (custom ids) each carries. Waves of a chunk are submitted under one lock, so no generation is in
  two live waves, and a killed run finds the record and resumes polling. (Only a kill during the submit request
  itself, before its answer is recorded, can leave a batch the record does not know.)
* ``results.json``, written once every batch of the wave has ended and each answer is kept in its generation's
  folder (raw.txt, call.json and attempts.jsonl, as for a single call): what became of each request.

A request that failed inside a batch, or was never run once ``MAX_SUBMISSIONS`` is reached, is made again as a normal
call (which records its reason if it fails too). Costs are the provider's where it reports them, else
``price_per_mtok`` x ``pricing.BATCH_PRICE_FACTOR``.
"""

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.core.batch_settings import BatchSettings, is_batched
from daydream_luigi.core.clock import now
from daydream_luigi.core.expansion import Member, calls_model
from daydream_luigi.core.pricing import BATCH_PRICE_FACTOR, call_cost, shared_batch_cost, upper_bound_usd
from daydream_luigi.core.settings import PARENT_STAGE
from daydream_luigi.execution import generation, stages
from daydream_luigi.execution.generation import Context, Emit, GenerationFailed
from daydream_luigi.providers import batch as api
from daydream_luigi.providers import chat, endpoints
from daydream_luigi.providers.limits import gate
from daydream_luigi.providers.limits.budget import BudgetReached
from daydream_luigi.store.files import CALL, METADATA, RAW, atomic_write_json, gen_dir, read_json
from daydream_luigi.store.locks import lock

MAX_SUBMISSIONS = 3
SUBMITTED, RESULTS = "submitted.json", "results.json"
STATUS, WAITING = "daydream.batch_status", "daydream.batch_waiting"  # Luigi events (progress display)
LIVE, ANSWERED, ERRORED, MISSING, REFUSED = "live", "answered", "error", "missing", "refused"
_NEVER_RAN = ("no result for this request", "batch_expired", "batch_cancelled")  # batch.RequestResult.error starts


@dataclass(frozen=True)
class Wave:
    cohort_id: str
    stage: str
    model_id: str
    chunk: int
    wave: int

    def folder(self, paths) -> Path:
        return chunk_folder(paths, self.cohort_id, self.stage, self.model_id, self.chunk) / f"wave-{self.wave}"


def group_folder(paths, cohort_id: str, stage: str, model_id: str) -> Path:
    return paths.data_root / "batches" / cohort_id / stage / model_id


def chunk_folder(paths, cohort_id: str, stage: str, model_id: str, chunk: int) -> Path:
    return group_folder(paths, cohort_id, stage, model_id) / f"chunk-{chunk}"


def batch_api_of(ctx: Context, member: Member) -> str | None:
    return ctx.settings.providers[ctx.catalog.models[member.llm_model_id].endpoint].batch_api


def batched(ctx: Context, settings: BatchSettings, member: Member, every_call: bool) -> bool:
    if not calls_model(member, ctx.catalog):
        return False
    return is_batched(settings, batch_api_of(ctx, member), member.stage, member.llm_model_id, every_call)


@dataclass(frozen=True)
class Chunks:
    """The batched generations of a cohort: (stage, model_id) -> chunks of gen_ids, and each one's chunk."""

    lists: dict
    where: dict  # gen_id -> chunk index


def chunks(ctx: Context, members: Iterable[Member], every_call: bool) -> Chunks:
    settings = ctx.settings.batch
    groups: dict[tuple[str, str], list[Member]] = {}
    for member in members:
        if batched(ctx, settings, member, every_call):
            groups.setdefault((member.stage, member.llm_model_id), []).append(member)
    lists, where = {}, {}
    for key, group in groups.items():
        size = api.chunk_size(settings, batch_api_of(ctx, group[0]))
        lists[key] = [[m.gen_id for m in group[i : i + size]] for i in range(0, len(group), size)]
        where.update({gen_id: c for c, ids in enumerate(lists[key]) for gen_id in ids})
    return Chunks(lists, where)


# -------------------------------------------------------------------------------------------------- the records


def _read(path: Path) -> dict | None:
    try:
        return read_json(path)
    except FileNotFoundError:
        return None


def _waves(folder: Path) -> list[tuple[int, dict | None, dict | None]]:
    """(wave, submitted record, results record) of every wave of a chunk, oldest first."""
    numbers = sorted(int(p.name.removeprefix("wave-")) for p in folder.glob("wave-*")) if folder.is_dir() else []
    return [(w, _read(folder / f"wave-{w}" / SUBMITTED), _read(folder / f"wave-{w}" / RESULTS)) for w in numbers]


@dataclass(frozen=True)
class Turn:
    """What one wave did with one generation."""

    chunk: int
    wave: int
    outcome: str  # LIVE (sent, no results yet), ANSWERED, ERRORED, MISSING (never ran) or REFUSED (not sent: budget)
    run_id: str
    reason: str = ""


def _turns(chunk: int, waves, gen_id: str) -> list[Turn]:
    turns = []
    for number, submitted, results in waves:
        if submitted is None:
            continue
        if any(gen_id in b["custom_ids"] for b in submitted["batches"]):
            outcome = results["outcomes"].get(gen_id, {}) if results else {"outcome": LIVE}
            turns.append(Turn(chunk, number, outcome["outcome"], submitted["run_id"], outcome.get("reason", "")))
        elif gen_id in submitted["refused"]:
            turns.append(Turn(chunk, number, REFUSED, submitted["run_id"], submitted["refused"][gen_id]))
    return turns


def turn_finder(paths, cohort_id: str, stage: str, model_id: str, chunk: int | None) -> Callable[[str], list[Turn]]:
    """gen_id -> every wave that sent (or refused) it, the chunk's records read once. Other chunks of the stage and
    model are read only for a generation its own chunk never sent (the membership, hence the chunks, may have changed
    since, and a generation in a live batch must be found wherever it is)."""
    own = [] if chunk is None else _waves(chunk_folder(paths, cohort_id, stage, model_id, chunk))
    others: list | None = None

    def turns(gen_id: str) -> list[Turn]:
        nonlocal others
        found = _turns(chunk, own, gen_id)
        if found:
            return found
        if others is None:
            group = group_folder(paths, cohort_id, stage, model_id)
            folders = sorted(group.glob("chunk-*")) if group.is_dir() else []
            others = [
                (c, _waves(folder)) for folder in folders if (c := int(folder.name.removeprefix("chunk-"))) != chunk
            ]
        return sorted((t for c, waves in others for t in _turns(c, waves, gen_id)), key=lambda t: (t.wave, t.chunk))

    return turns


def next_wave(paths, cohort_id: str, stage: str, model_id: str, chunk: int) -> int:
    """The wave a new submission of the chunk goes into: an unfinished one (a killed submit) is resumed."""
    waves = _waves(chunk_folder(paths, cohort_id, stage, model_id, chunk))
    if not waves:
        return 0
    number, submitted, _ = waves[-1]
    return number if submitted is None or not submitted["done"] else number + 1


def _answered_or_kept(directory: Path) -> bool:
    return (directory / METADATA).exists() or ((directory / RAW).exists() and (directory / CALL).exists())


def _eligible(turns: list[Turn]) -> bool:
    """For a generation without a kept answer: not sent before, or only into batches that never ran it (not too
    often) or that answered it (its answer was removed since, e.g. by `daydream gens rm`)."""
    sent = [t for t in turns if t.outcome != REFUSED]
    return (
        all(t.outcome in (MISSING, ANSWERED) for t in sent)
        and sum(t.outcome == MISSING for t in sent) < MAX_SUBMISSIONS
    )


def locate(ctx: Context, found: Chunks, cohort_id: str, member: Member, run_id: str) -> tuple[str, Wave] | None:
    """The next batch step of a generation: ("submit", wave) or ("poll", wave); None when it has its answer or is
    made as a normal call (or fails with what this run recorded, e.g. a prompt that cannot be rendered). A
    generation sent in a live batch is always polled, batched now or not, so no run pays for it twice. Raises
    gate.Stopped when this run's budget refused to send it."""
    if not calls_model(member, ctx.catalog):
        return None
    directory = gen_dir(ctx.paths.gens, member.stage, member.gen_id)
    if _answered_or_kept(directory) or generation.final_failure(directory, run_id) is not None:
        return None
    chunk = found.where.get(member.gen_id)
    turns = turn_finder(ctx.paths, cohort_id, member.stage, member.llm_model_id, chunk)(member.gen_id)
    last = turns[-1] if turns else None
    if last is not None and last.outcome == LIVE:
        return "poll", Wave(cohort_id, member.stage, member.llm_model_id, last.chunk, last.wave)
    if chunk is None:
        return None
    if last is not None and last.outcome == REFUSED and last.run_id == run_id:
        raise gate.Stopped("budget", "run", run_id, last.reason)
    if not _eligible(turns):
        return None
    return "submit", Wave(
        cohort_id,
        member.stage,
        member.llm_model_id,
        chunk,
        next_wave(ctx.paths, cohort_id, member.stage, member.llm_model_id, chunk),
    )


def open_waves(ctx: Context, found: Chunks, cohort_id: str, members: dict, stage: str) -> list[Wave]:
    """The waves to submit now for a stage: one per chunk that has a ready generation no live batch carries."""
    waves = []
    for (group_stage, model_id), lists in sorted(found.lists.items()):
        if group_stage != stage:
            continue
        for chunk, gen_ids in enumerate(lists):
            turns = turn_finder(ctx.paths, cohort_id, stage, model_id, chunk)
            if any(_ready(ctx, members[g]) and _eligible(turns(g)) for g in gen_ids):
                waves.append(
                    Wave(cohort_id, stage, model_id, chunk, next_wave(ctx.paths, cohort_id, stage, model_id, chunk))
                )
    return waves


def _ready(ctx: Context, member: Member) -> bool:
    """Its prompt can be rendered (its parent is complete) and it has no answer yet."""
    if _answered_or_kept(gen_dir(ctx.paths.gens, member.stage, member.gen_id)):
        return False
    parent_stage = PARENT_STAGE.get(member.stage)
    return parent_stage is None or (gen_dir(ctx.paths.gens, parent_stage, member.parent_gen_id) / METADATA).exists()


# ------------------------------------------------------------------------------------------------ submit and poll


def client(ctx: Context, model_id: str):
    """The batch client of the model's provider, with its base URL and key (the key goes only there)."""
    provider = ctx.settings.providers[ctx.catalog.models[model_id].endpoint]
    base_url, key = endpoints.resolve(provider)
    return api.CLIENTS[provider.batch_api](base_url, key)


def _status(wave: Wave, api_name: str, batch_id: str, state: api.BatchState | None, requests: int) -> dict:
    return {
        "batch_id": batch_id,
        "api": api_name,
        "stage": wave.stage,
        "model_id": wave.model_id,
        "chunk": wave.chunk,
        "wave": wave.wave,
        "requests": requests,
        "status": state.status if state else "submitted",
        "completed": state.completed if state else 0,
        "failed": state.failed if state else 0,
    }


class _ChunkLock:
    """Waves of one chunk are submitted one at a time, by any process or machine sharing the data folder."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".lock"

    def __enter__(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o666)
        lock(self.fd)

    def __exit__(self, *exc):
        os.close(self.fd)  # closing the descriptor releases the lock


def submit(ctx: Context, members: dict, found: Chunks, wave: Wave, run_id: str, emit: Emit) -> None:
    """Send the wave's requests (splitting it where the provider's size limit asks) and record each batch id the
    moment it is known. The run's budget reserves each request's estimate at batch price; one that does not fit is
    recorded as refused and not sent."""
    folder = wave.folder(ctx.paths)
    gen_ids = found.lists[(wave.stage, wave.model_id)][wave.chunk]
    model = ctx.catalog.models[wave.model_id]
    api_name = ctx.settings.providers[model.endpoint].batch_api
    with _ChunkLock(folder.parent):
        path = folder / SUBMITTED
        record = _read(path) or {
            "cohort_id": wave.cohort_id,
            "stage": wave.stage,
            "model_id": wave.model_id,
            "chunk": wave.chunk,
            "wave": wave.wave,
            "api": api_name,
            "model": model.model,
            "run_id": run_id,
            "started_at": now(),
            "batches": [],
            "refused": {},
            "done": False,
        }
        if record["done"]:
            return
        turns = turn_finder(ctx.paths, wave.cohort_id, wave.stage, wave.model_id, wave.chunk)  # read under the lock
        ledger = gate.budget(ctx.paths, run_id, ctx.max_cost_usd)
        items = []
        for gen_id in gen_ids:
            member = members[gen_id]
            if not (_ready(ctx, member) and _eligible(turns(gen_id))):
                continue
            try:
                body = stages.batch_request(ctx, member, run_id)
            except GenerationFailed:
                continue  # recorded in its error.json; its task reports it
            if ledger is not None:
                limit = body.get("max_completion_tokens", body.get("max_tokens"))  # the openai dialect's name first
                tokens = gate.estimated_tokens(body["messages"][-1]["content"], limit)
                try:
                    ledger.reserve(f"{gen_id}#batch", upper_bound_usd(model.price, tokens) * BATCH_PRICE_FACTOR)
                except BudgetReached as exc:
                    record["refused"][gen_id] = str(exc)
                    continue
            items.append((gen_id, body))
        batches = client(ctx, wave.model_id)
        for part in api.split(items, batches.limits) if items else []:
            sent = batches.submit(model.model, part)
            record["batches"].append(
                {"batch_id": sent.batch_id, "custom_ids": list(sent.custom_ids), "submitted_at": now()}
            )
            atomic_write_json(path, record)  # the id is on disk before anything else happens
            emit(STATUS, _status(wave, api_name, sent.batch_id, None, len(sent.custom_ids)))
            for gen_id in sent.custom_ids:
                generation.record_batch_attempt(
                    ctx, members[gen_id], run_id, {"event": "sent", "n": 1, "batch_id": sent.batch_id}, emit
                )
        record["done"] = True
        atomic_write_json(path, record)


def is_submitted(paths, wave: Wave) -> bool:
    record = _read(wave.folder(paths) / SUBMITTED)
    return record is not None and record["done"]


class PollingStopped(Exception):
    """The run was asked to stop while its batches were still running (they go on at the provider)."""


def poll(ctx: Context, members: dict, wave: Wave, run_id: str, emit: Emit) -> None:
    """Wait for every batch of the wave to end (asking every ``batch.poll_interval_s``), then keep each answer in its
    generation's folder and write results.json."""
    folder = wave.folder(ctx.paths)
    record = read_json(folder / SUBMITTED)
    model = ctx.catalog.models[wave.model_id]
    batches = client(ctx, wave.model_id)
    interval = ctx.settings.batch.poll_interval_s
    states: dict[str, api.BatchState] = {}
    while True:
        for entry in record["batches"]:
            batch_id = entry["batch_id"]
            if batch_id in states and states[batch_id].done:
                continue
            state = batches.poll(batch_id)
            if states.get(batch_id) != state:
                emit(STATUS, _status(wave, record["api"], batch_id, state, len(entry["custom_ids"])))
            states[batch_id] = state
        if all(state.done for state in states.values()):
            break
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            if gate.stop_requested(ctx.paths, run_id):
                raise PollingStopped(
                    f"stopped polling batch(es) {', '.join(states)} of {wave.stage} "
                    f"{wave.model_id}: they keep running at the provider, and the next run resumes "
                    f"polling them"
                )
            time.sleep(min(0.5, interval))
    ledger = gate.budget(ctx.paths, run_id, ctx.max_cost_usd)
    outcomes = {}
    for entry in record["batches"]:
        state = states[entry["batch_id"]]
        batch = {"api": record["api"], "batch_id": entry["batch_id"]}
        results = list(batches.results(entry["batch_id"], entry["custom_ids"]))
        for result, share in zip(results, _batch_shares(state, results), strict=True):
            member = members[result.custom_id]
            outcome, cost, estimated = _keep(ctx, member, run_id, result, state, batch, model, emit, share)
            outcomes[result.custom_id] = outcome
            if ledger is not None:
                ledger.settle(f"{result.custom_id}#batch", cost or 0.0, estimated)
    atomic_write_json(
        folder / RESULTS,
        {
            "batches": [
                {"batch_id": s.batch_id, "status": s.status, "cost_usd": s.cost_usd, "error": s.error}
                for s in states.values()
            ],
            "outcomes": outcomes,
            "run_id": run_id,
            "at": now(),
        },
    )


def _batch_shares(state: api.BatchState, results: list[api.RequestResult]) -> list[float | None]:
    """Each result's cost: its own `usage.cost`, else its share by tokens of what the batch reported it cost
    (`pricing.shared_batch_cost`); None for a line neither reports nor shares (it is priced from the model's prices)."""
    lines = []
    for result in results:
        usage = (result.response or {}).get("usage") if isinstance(result.response, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        cost = usage.get("cost") if isinstance(usage.get("cost"), (int, float)) else None
        tokens = sum(v for v in (usage.get("prompt_tokens"), usage.get("completion_tokens")) if isinstance(v, int))
        lines.append((None if result.response is None else cost, tokens))
    answered = [i for i, result in enumerate(results) if result.response is not None]
    shared = shared_batch_cost(state.cost_usd, [lines[i] for i in answered])
    shares: list[float | None] = [None] * len(results)
    for i, cost in zip(answered, shared, strict=True):
        shares[i] = cost
    return shares


def _keep(
    ctx: Context,
    member: Member,
    run_id: str,
    result: api.RequestResult,
    state: api.BatchState,
    batch: dict,
    model,
    emit: Emit,
    share: float | None = None,
) -> tuple[dict, float | None, bool]:
    """One request's result, kept in its generation's folder: (its outcome, its cost, whether that is an estimate).
    `share`: its cost as reported, or its share of the batch's reported cost, when it carries none."""
    reason = result.error
    if result.response is not None:
        try:
            answer = chat.answer_of(result.response, model.model)
        except chat.LLMError as exc:
            reason = str(exc)
        else:
            if answer.cost is None and share is not None:
                answer.cost = share  # the batch reported what it cost, its lines did not
            generation.keep_batch_answer(ctx, member, run_id, answer, batch, BATCH_PRICE_FACTOR, emit)
            cost, estimated = call_cost(
                answer.cost, model.price, answer.prompt_tokens, answer.completion_tokens, BATCH_PRICE_FACTOR
            )
            return {"outcome": ANSWERED}, cost, estimated
    never_ran = state.status in ("expired", "cancelled") and reason.startswith(_NEVER_RAN)
    outcome = MISSING if never_ran else ERRORED
    generation.record_batch_attempt(
        ctx,
        member,
        run_id,
        {
            "event": "failed",
            "n": 1,
            "outcome": f"batch_{outcome}",
            "status": None,
            "batch_id": batch["batch_id"],
            "error": reason,
        },
        emit,
    )
    return {"outcome": outcome, "reason": reason}, 0.0, False
