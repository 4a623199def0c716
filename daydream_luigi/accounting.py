"""What a run did and paid for, read back from the store: generation outcomes and the attempts it recorded.

Every request is recorded in its generation's attempts.jsonl before it is sent and its outcome after, tagged with the
run's id, so these counts are exactly what the provider received from this run, whether the generation ended
complete, failed or interrupted, and whatever other runs share the store. No clock or file time is compared.
"""

from dataclasses import dataclass, field

from .cohort import Member
from .config import STAGES, Paths
from .store import ATTEMPTS, ERROR, complete_ids, gen_dir, read_json, read_lines

PARENT_STAGE = {"essay": "draft", "evaluation": "essay"}


@dataclass
class Calls:
    requests: int = 0  # requests sent (each attempt, retries included)
    answers: int = 0  # answers received (a usable completion)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # reported by the provider
    unreported_cost: int = 0  # answers whose cost the provider did not report

    def add(self, record: dict) -> None:
        if record.get("event") == "sent":
            self.requests += 1
            return
        if record.get("event") == "answered":
            self.answers += 1
            if record.get("cost") is None:
                self.unreported_cost += 1
        self.prompt_tokens += record.get("prompt_tokens") or 0
        self.completion_tokens += record.get("completion_tokens") or 0
        self.cost += record.get("cost") or 0.0


@dataclass
class Outcome:
    """Where every generation of a cohort stands after a run."""

    complete_before: int = 0
    done: list = field(default_factory=list)  # gen_ids completed by this run
    failed: dict = field(default_factory=dict)  # gen_id -> (stage, reason)
    blocked: dict = field(default_factory=dict)  # gen_id -> (stage, why)
    pending: list = field(default_factory=list)  # not started (an interrupted run, or a paused pool)
    calls: Calls = field(default_factory=Calls)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.blocked or self.pending)


def complete_sets(paths: Paths) -> dict[str, set[str]]:
    return {stage: complete_ids(paths.gens, stage) for stage in STAGES}


def outcome(paths: Paths, members: list[Member], complete_before: dict[str, set[str]], run_id: str,
            seen_failures: dict | None = None) -> Outcome:
    """Classify every member and add up the attempts this run recorded (only generations incomplete before it can have
    any, so only their folders are read). Blocked means an ancestor failed; pending, that nothing stopped it but the
    run ended first (an interrupt, a paused pool). `seen_failures` (gen_id -> reason, from the run's events) covers a
    failure whose error.json could not be written."""
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
                result.calls.add(record)
        error = None if member.gen_id in complete[member.stage] else \
            _recorded_error(directory) or (seen_failures or {}).get(member.gen_id)
        parent_state = state.get(member.parent_gen_id, "complete")
        if member.gen_id in complete[member.stage]:
            state[member.gen_id] = "complete"
            result.done.append(member.gen_id)
        elif error is not None:
            state[member.gen_id] = "failed"
            result.failed[member.gen_id] = (member.stage, error)
        elif parent_state in ("failed", "blocked"):
            state[member.gen_id] = "blocked"
            parent_stage = PARENT_STAGE[member.stage]
            result.blocked[member.gen_id] = (member.stage, f"its {parent_stage} {member.parent_gen_id} "
                                                           f"{'failed' if parent_state == 'failed' else 'is blocked'}")
        else:
            state[member.gen_id] = "pending"
            result.pending.append(member.gen_id)
    return result


def _recorded_error(directory) -> str | None:
    try:
        return read_json(directory / ERROR)["error"]
    except (OSError, ValueError, KeyError):
        return None
