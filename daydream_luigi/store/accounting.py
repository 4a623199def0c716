"""What a run did and paid for, read back from the store: generation outcomes and the attempts it recorded.

Every request is recorded in its generation's attempts.jsonl before it is sent and its outcome after, tagged with the
run's id, so these counts are exactly what the provider received from this run, whether the generation ended
complete, failed or interrupted, and whatever other runs share the store. No clock or file time is compared.
Where the provider reports no cost, the cost is estimated from the model's prices (at batch price for a batched
answer) and counted apart, so a summary can say how much of it is an estimate; an answer of a model with no known
price adds nothing and is counted as of unknown cost.
"""

from dataclasses import dataclass, field

from daydream_luigi.core.expansion import Member
from daydream_luigi.core.pricing import Price, call_cost
from daydream_luigi.core.settings import PARENT_STAGE, STAGES, Paths
from daydream_luigi.store.files import ATTEMPTS, ERROR, METADATA, complete_ids, gen_dir, read_json, read_lines


@dataclass
class Calls:
    requests: int = 0  # requests sent (each attempt, retries included, and each request of a batch)
    batched: int = 0  # of them, sent in batches
    answers: int = 0  # answers received (a usable completion)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # reported by the provider, or estimated from the models' prices where it reported none
    estimated_cost: float = 0.0  # the estimated part of `cost`
    unreported_cost: int = 0  # answers whose cost the provider did not report
    unknown_cost: int = 0  # of them, answers that could not be priced either (the model has no known price)

    def add(self, record: dict, price: Price | None = None) -> None:
        if record.get("event") == "sent":
            self.requests += 1
            self.batched += record.get("via") == "batch"
            return
        cost, estimated = call_cost(
            record.get("cost"),
            price,
            record.get("prompt_tokens"),
            record.get("completion_tokens"),
            record.get("price_factor", 1.0),
        )
        if record.get("event") == "answered":
            self.answers += 1
            self.unreported_cost += estimated
            self.unknown_cost += cost is None
        self.prompt_tokens += record.get("prompt_tokens") or 0
        self.completion_tokens += record.get("completion_tokens") or 0
        self.cost += cost or 0.0
        self.estimated_cost += (cost or 0.0) if estimated else 0.0

    def cost_text(self) -> str:
        """The cost, saying how much of it is an estimate and how many answers could not be priced at all."""
        if self.unknown_cost and self.unknown_cost == self.answers:
            return (
                f"cost unknown: {self.unknown_cost} answer(s) without a reported cost and without a price "
                f"(`daydream prices refresh`, or price columns in llm_models.csv)"
            )
        text = self._known_cost_text()
        if self.unknown_cost:
            text += (
                f", plus {self.unknown_cost} answer(s) of unknown cost (no reported cost and no price: "
                f"`daydream prices refresh`, or price columns in llm_models.csv)"
            )
        return text

    def _known_cost_text(self) -> str:
        priced = self.unreported_cost - self.unknown_cost  # answers whose cost is a price estimate
        if not priced:
            return f"cost ${self.cost:.4f} reported"
        if priced == self.answers and self.estimated_cost == self.cost:
            return f"cost ${self.cost:.4f} estimated from the models' prices (the provider reported none)"
        return (
            f"cost ${self.cost:.4f} (${self.estimated_cost:.4f} of it estimated from the models' prices for "
            f"{priced} answer(s) without a reported cost)"
        )


@dataclass
class Outcome:
    """Where every generation of a cohort stands after a run."""

    complete_before: int = 0
    done: list = field(default_factory=list)  # gen_ids completed by this run
    failed: dict = field(default_factory=dict)  # gen_id -> (stage, reason)
    blocked: dict = field(default_factory=dict)  # gen_id -> (stage, why)
    pending: list = field(default_factory=list)  # not started (an interrupted run, a paused pool, a closed gate)
    unscored: dict = field(default_factory=dict)  # evaluation gen_id -> why it has no score (done in this run)
    calls: Calls = field(default_factory=Calls)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.blocked or self.pending)


def complete_sets(paths: Paths) -> dict[str, set[str]]:
    return {stage: complete_ids(paths.gens, stage) for stage in STAGES}


def outcome(
    paths: Paths,
    members: list[Member],
    complete_before: dict[str, set[str]],
    run_id: str,
    seen_failures: dict | None = None,
    prices: dict | None = None,
) -> Outcome:
    """Classify every member and add up the attempts this run recorded (only generations incomplete before it can have
    any, so only their folders are read). Blocked means an ancestor failed; pending, that nothing stopped it but the
    run ended first (an interrupt, a paused pool). `seen_failures` (gen_id -> reason, from the run's events) covers a
    failure whose error.json could not be written; `prices` (model id -> Price, or None when unknown) estimates
    unreported costs. Evaluations this run made without a score are counted with their reasons."""
    result = Outcome()
    complete = complete_sets(paths)
    state: dict[str, str] = {}
    for member in sorted(members, key=lambda m: STAGES.index(m.stage)):
        if member.gen_id in complete_before[member.stage]:
            result.complete_before += 1
            state[member.gen_id] = "complete"
            continue
        directory = gen_dir(paths.gens, member.stage, member.gen_id)
        for record in read_lines(directory / ATTEMPTS):
            if record.get("run_id") == run_id:
                result.calls.add(record, (prices or {}).get(member.llm_model_id))
        error = (
            None
            if member.gen_id in complete[member.stage]
            else _recorded_error(directory) or (seen_failures or {}).get(member.gen_id)
        )
        parent_state = state.get(member.parent_gen_id, "complete")
        if member.gen_id in complete[member.stage]:
            state[member.gen_id] = "complete"
            result.done.append(member.gen_id)
            if member.stage == "evaluation":
                _unscored(directory, member.gen_id, result.unscored)
        elif error is not None:
            state[member.gen_id] = "failed"
            result.failed[member.gen_id] = (member.stage, error)
        elif parent_state in ("failed", "blocked"):
            state[member.gen_id] = "blocked"
            parent_stage = PARENT_STAGE[member.stage]
            result.blocked[member.gen_id] = (
                member.stage,
                f"its {parent_stage} {member.parent_gen_id} {'failed' if parent_state == 'failed' else 'is blocked'}",
            )
        else:
            state[member.gen_id] = "pending"
            result.pending.append(member.gen_id)
    return result


def _unscored(directory, gen_id: str, found: dict) -> None:
    try:
        metadata = read_json(directory / METADATA)
    except (OSError, ValueError):
        return
    if metadata.get("score") is None:
        found[gen_id] = metadata.get("error") or "no score recorded"


def first_reasons(reasons: dict, limit: int = 3) -> list[tuple[str, int, str]]:
    """The most common reasons first: (reason, how many, one gen_id with it), at most `limit`."""
    grouped: dict[str, list[str]] = {}
    for gen_id, reason in sorted(reasons.items()):
        grouped.setdefault(reason, []).append(gen_id)
    ranked = sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))
    return [(reason, len(ids), ids[0]) for reason, ids in ranked[:limit]]


def _recorded_error(directory) -> str | None:
    try:
        return read_json(directory / ERROR)["error"]
    except (OSError, ValueError, KeyError):
        return None
