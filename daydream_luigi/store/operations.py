"""Operator commands over the store, as pure functions: plan (cost before spending) with its budget and guard, check
(what is wrong on disk), status (how far a cohort got), the cohorts on disk, and removal (a generation with everything
derived from it).

No Luigi and no Click here: the CLI prints and confirms; these functions only read plain files, and only `remove`
deletes anything.
"""

import json
import math
import os
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from daydream_luigi.core import identity
from daydream_luigi.core.batch_settings import is_batched
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.cohort_spec import CURATED_LISTS, listed_in_specs
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.expansion import Member, calls_model, is_imported
from daydream_luigi.core.ids import id_problem
from daydream_luigi.core.pricing import BATCH_PRICE_FACTOR, estimate_cost_usd
from daydream_luigi.core.settings import PARENT_STAGE, STAGES, Guard, Paths, Settings, load_settings
from daydream_luigi.store.cohorts import cohort_source
from daydream_luigi.store.files import CALL, ERROR, LOCK, METADATA, PARSED, RAW, complete_ids, gen_dir, read_text
from daydream_luigi.store.locks import exclusive_lock
from daydream_luigi.store.membership import MANIFEST, MEMBERSHIP, RUN_RECORD, load_membership

_STAGE_ORDER = {stage: i for i, stage in enumerate(STAGES)}

# Rendered prompts need their parents' text, which does not exist before a run: plan with typical sizes instead.
DEFAULT_PROMPT_TOKENS = {"draft": 400, "essay": 600, "evaluation": 700}

PLAN_COLUMNS = [
    "stage",
    "llm_model_id",
    "pool",
    "generations",
    "done",
    "to_call",
    "est_prompt_tokens",
    "est_completion_tokens",
    "est_cost_usd",
    "batched",
]
PLAN_COUNTS = ["generations", "done", "to_call", "est_prompt_tokens", "est_completion_tokens"]
STATUS_COLUMNS = ["stage", "total", "done", "failed", "pending"]
COHORT_COLUMNS = ["cohort_id", "source", "drafts", "essays", "evaluations", "complete", "last_run"]
FINDING_KINDS = (
    "corrupt",
    "incomplete",
    "missing_parent",
    "duplicate",
    "orphan",
    "template_changed",
    "unknown_template",
    "text_changed",
    "unanswered",
)
NOT_A_PROBLEM = "unanswered"  # a call stopped or killed before its answer: nothing kept, nothing to fix


def _member_list(members) -> list[Member]:
    """Accept the list `prepare` returns or the gen_id -> Member dict `load_membership` returns."""
    return list(members.values()) if isinstance(members, dict) else list(members)


# ---------------------------------------------------------------------------------------------------------- plan


def plan(
    paths: Paths, catalog: Catalog, members, settings: Settings | None = None, every_call: bool = False
) -> pd.DataFrame:
    """What a run of `members` would do and roughly cost, one row per (stage, model, pool); nothing is called.

    Only generations that would make a new model call are costed: complete ones, copy-mode essays and partial ones
    whose raw answer and call record are kept (a re-run reuses them) cost nothing. Batched rows (`batched`: the
    `batch:` settings, or `every_call` for `run --batch`) are costed at batch price.
    """
    settings = settings or load_settings(paths)
    members = [m for m in _member_list(members) if not is_imported(m)]  # complete from the start: nothing to call
    complete = {stage: complete_ids(paths.gens, stage) for stage in STAGES}
    unknown = sorted({m.llm_model_id for m in members if m.llm_model_id not in catalog.models})
    raise_if(
        [
            f"the cohort uses model {model!r}, which is not in llm_models.csv; restore its row or rebuild the cohort"
            for model in unknown
        ]
    )
    groups: dict[tuple, dict] = {}
    for member in members:
        model = catalog.models[member.llm_model_id]
        row = groups.setdefault((member.stage, model.model_id, model.pool), {"generations": 0, "done": 0, "to_call": 0})
        row["generations"] += 1
        if member.gen_id in complete[member.stage]:
            row["done"] += 1
        elif calls_model(member, catalog):
            directory = gen_dir(paths.gens, member.stage, member.gen_id)
            if not ((directory / RAW).exists() and (directory / CALL).exists()):
                row["to_call"] += 1
    rows = []
    batch = settings.batch
    for (stage, model_id, pool), counts in sorted(groups.items(), key=lambda kv: (_STAGE_ORDER[kv[0][0]], kv[0][1:])):
        model = catalog.models[model_id]
        batched = is_batched(batch, settings.providers[model.provider].batch_api, stage, model_id, every_call)
        prompt = counts["to_call"] * DEFAULT_PROMPT_TOKENS[stage]
        completion = counts["to_call"] * int(settings.stage(stage).max_tokens)
        cost = estimate_cost_usd(model.price_per_mtok, prompt, completion, BATCH_PRICE_FACTOR if batched else 1.0)
        rows.append(
            {
                "stage": stage,
                "llm_model_id": model_id,
                "pool": pool,
                "batched": batched,
                **counts,
                "est_prompt_tokens": prompt,
                "est_completion_tokens": completion,
                "est_cost_usd": cost,
            }
        )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def plan_total(frame: pd.DataFrame) -> dict:
    """The plan's totals as plain Python numbers (for printing and for the budget check)."""
    total = {column: int(frame[column].sum()) for column in PLAN_COUNTS}
    total["est_cost_usd"] = float(frame["est_cost_usd"].sum())
    return total


def check_budget(frame: pd.DataFrame, budget: float) -> float:
    """Refuse a run whose estimated cost is over the budget; returns the estimate when it fits."""
    cost = round(plan_total(frame)["est_cost_usd"], 9)  # float noise must not make $0.0900 "exceed" $0.09
    if cost > budget:
        raise InputError(
            f"estimated cost ${cost:.4f} exceeds --budget ${budget:.2f}; lower the cohort size or raise the budget"
        )
    return cost


def checked_budget(budget: float | None, option: str = "--budget") -> float | None:
    """--budget (or --max-cost) as given: None (none) or a finite number of USD >= 0 (Click's float type lets nan and
    inf pass)."""
    if budget is not None and not (math.isfinite(budget) and budget >= 0):
        raise InputError(f"{option} must be a number of USD >= 0 (found {budget:g}); give e.g. {option} 5")
    return budget


def guard_reason(totals: dict, guard: Guard) -> str | None:
    """Why a run of a plan with these totals (plan_total) needs a yes before it starts, or None when it is small."""
    calls, cost = totals["to_call"], round(totals["est_cost_usd"], 9)
    over = ([f"guard.max_calls ({guard.max_calls:,})"] if calls > guard.max_calls else []) + (
        [f"guard.max_cost_usd (${guard.max_cost_usd:,.2f})"] if cost > guard.max_cost_usd else []
    )
    if not over:
        return None
    return (
        f"this run makes {calls:,} model call(s) estimated at ${cost:,.2f}, over {' and '.join(over)} in "
        f"config/daydream.yaml"
    )


def check_guard(totals: dict, guard: Guard, yes: bool, ask: Callable[[str], bool] | None) -> None:
    """Let a run start, or raise InputError. A big run starts with --yes (`yes`) or when `ask` (a terminal prompt;
    None without a terminal) gets a yes; small runs start at once."""
    reason = guard_reason(totals, guard)
    if reason is None or yes:
        return
    if ask is None:
        raise InputError(
            f"not started: {reason}; nothing to ask without a terminal: pass --yes to start it, or raise the limits"
        )
    if not ask(f"{reason}. Start it?"):
        raise InputError(f"not started: {reason}; you answered no")


# --------------------------------------------------------------------------------------------------- store scan


@dataclass(frozen=True)
class Entry:
    """One generation directory on disk; `meta` is None when metadata.json is missing or unreadable."""

    stage: str
    gen_id: str
    path: Path
    has_metadata: bool
    meta: dict | None
    problem: str = ""  # why metadata.json could not be read (corrupt)


def _read_meta(path: str) -> tuple[bool, dict | None, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return False, None, ""
    except (OSError, UnicodeDecodeError) as exc:
        return True, None, f"metadata.json is unreadable ({exc})"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return True, None, f"metadata.json is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return True, None, f"metadata.json holds a {type(data).__name__}, not an object"
    return True, data, ""


def scan(paths: Paths) -> dict[tuple[str, str], Entry]:
    """Every generation directory, one os.scandir per stage and each metadata.json read once (fast on big stores)."""
    entries = {}
    for stage in STAGES:
        root = paths.gens / stage
        if not root.is_dir():
            continue
        with os.scandir(root) as listing:
            for item in listing:
                if item.name.startswith(".") or not item.is_dir():
                    continue
                has_metadata, meta, problem = _read_meta(os.path.join(item.path, METADATA))
                entries[(stage, item.name)] = Entry(stage, item.name, Path(item.path), has_metadata, meta, problem)
    return entries


def all_memberships(paths: Paths) -> dict[tuple[str, str], Member]:
    """(stage, gen_id) -> Member over every cohort under data/cohorts (the first cohort wins for shared rows)."""
    found: dict[tuple[str, str], Member] = {}
    if not paths.cohorts.is_dir():
        return found
    for folder in sorted(paths.cohorts.iterdir()):
        if folder.is_dir() and (folder / MEMBERSHIP).exists() and id_problem(folder.name) is None:
            for member in load_membership(paths, folder.name).values():
                found.setdefault((member.stage, member.gen_id), member)
    return found


def _links(entry: Entry, memberships: dict) -> tuple[str, str]:
    """(template_id, parent_gen_id) from metadata, else from a cohort row (partial dirs have no metadata)."""
    if entry.meta is not None:
        return str(entry.meta.get("template_id") or ""), str(entry.meta.get("parent_gen_id") or "")
    member = memberships.get((entry.stage, entry.gen_id))
    return (member.template_id, member.parent_gen_id) if member else ("", "")


# --------------------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class Finding:
    kind: str
    stage: str
    gen_id: str
    detail: str

    def sort_key(self):
        return FINDING_KINDS.index(self.kind), _STAGE_ORDER.get(self.stage, 99), self.gen_id, self.detail


def _incomplete_detail(entry: Entry) -> str:
    if not (entry.path / RAW).exists():
        detail = "no metadata.json; no raw.txt"
    elif (entry.path / CALL).exists():
        detail = "no metadata.json; raw.txt and call.json kept (a re-run reuses them, no new call)"
    else:
        detail = "no metadata.json; raw.txt kept"
    try:
        with open(entry.path / ERROR, encoding="utf-8") as handle:
            detail += f"; last error: {json.load(handle).get('error', '?')}"
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError):
        detail += "; error.json is unreadable"
    return detail


def _imported_text_problem(entry: Entry) -> str | None:
    """Why an imported generation's parsed.txt is not the text it was imported as (its gen_id is that text's)."""
    try:
        text = read_text(entry.path / PARSED)
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"parsed.txt is unreadable ({exc})"
    else:
        if identity.text_sha(text) == entry.meta.get("text_sha256"):
            return None
        problem = f"parsed.txt is not the text imported from {entry.meta.get('source_file')} (sha256 differs)"
    return f"{problem}; remove it with `daydream gens rm {entry.gen_id} --yes` and import the text again"


def check(paths: Paths, catalog: Catalog) -> list[Finding]:
    """Everything on disk that is inconsistent, stale or paid twice, sorted by kind, stage and gen_id.

    An imported text has no parent, template or model to check; its parsed.txt must still be the text its gen_id
    was computed from, and it is an orphan only while no cohort (a membership, or a curated spec not run yet)
    lists it."""
    entries = scan(paths)
    memberships = all_memberships(paths)
    listed = listed_in_specs(paths)
    complete = {key for key, entry in entries.items() if entry.has_metadata}
    findings: list[Finding] = []
    by_task: dict[tuple, list[str]] = {}
    for (stage, gid), entry in entries.items():
        if not entry.has_metadata:
            if (entry.path / RAW).exists() or (entry.path / ERROR).exists():
                findings.append(Finding("incomplete", stage, gid, _incomplete_detail(entry)))
            else:
                findings.append(
                    Finding(
                        NOT_A_PROBLEM,
                        stage,
                        gid,
                        "no answer yet (its call was stopped, killed or never made); the next run makes it",
                    )
                )
            continue
        if entry.meta is None:
            findings.append(Finding("corrupt", stage, gid, entry.problem))
            continue
        meta = entry.meta
        imported = bool(meta.get("imported"))
        parent = meta.get("parent_gen_id") or ""
        if stage in PARENT_STAGE and not imported and (PARENT_STAGE[stage], parent) not in complete:
            findings.append(
                Finding(
                    "missing_parent",
                    stage,
                    gid,
                    f"parent {PARENT_STAGE[stage]} {parent or '(none recorded)'} has no complete generation",
                )
            )
        if (stage, gid) not in memberships and (stage, gid) not in listed:
            findings.append(
                Finding(
                    "orphan",
                    stage,
                    gid,
                    (
                        f"imported from {meta.get('source_file')} but in no cohort; list it in a curated cohort's "
                        f"{CURATED_LISTS[stage]} (or import it again with --cohort NAME), or remove it with "
                        f"`daydream gens rm {gid} --yes`"
                    )
                    if imported
                    else f"complete but in no cohort membership under {paths.cohorts}",
                )
            )
        # parent_gen_id is part of the key because an essay's task_id names its draft's task, not the draft
        # replicate: essays of two draft replicates share task_id and replicate without being the same work.
        task = (stage, parent, meta.get("task_id"), meta.get("replicate"))
        by_task.setdefault(task, []).append(gid)
        if imported:
            problem = _imported_text_problem(entry)
            if problem:
                findings.append(Finding("text_changed", stage, gid, problem))
            continue
        template_id = meta.get("template_id")
        template = catalog.templates.get(stage, {}).get(template_id)
        if template is None:
            findings.append(
                Finding(
                    "unknown_template", stage, gid, f"template {template_id!r} is not in the {stage} template catalog"
                )
            )
        elif meta.get("template_sha256") != template.sha256:
            findings.append(
                Finding(
                    "template_changed",
                    stage,
                    gid,
                    f"template {template_id} is now sha256 {template.sha256[:12]}, this generation "
                    f"used {str(meta.get('template_sha256'))[:12]} ({template.path})",
                )
            )
    for (stage, _parent, task_id, replicate), gids in by_task.items():
        if len(gids) > 1:
            for gid in gids:
                others = ", ".join(sorted(g for g in gids if g != gid))
                findings.append(
                    Finding(
                        "duplicate", stage, gid, f"task_id {task_id} replicate {replicate} is also complete as {others}"
                    )
                )
    return sorted(findings, key=Finding.sort_key)


# -------------------------------------------------------------------------------------------------------- status


def status(paths: Paths, members) -> pd.DataFrame:
    """Per stage of a cohort: how many generations are complete, failed (error.json, no metadata) and still to do."""
    members = _member_list(members)
    rows = []
    for stage in STAGES:
        complete = complete_ids(paths.gens, stage)
        ids = [m.gen_id for m in members if m.stage == stage]
        done = sum(1 for gid in ids if gid in complete)
        failed = sum(1 for gid in ids if gid not in complete and (gen_dir(paths.gens, stage, gid) / ERROR).exists())
        rows.append(
            {"stage": stage, "total": len(ids), "done": done, "failed": failed, "pending": len(ids) - done - failed}
        )
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


# ------------------------------------------------------------------------------------------------------- cohorts


def list_cohorts(paths: Paths) -> pd.DataFrame:
    """Every cohort folder under data/cohorts: where it came from, its generations per stage, how many of them are
    complete, and when a run of it last finished ("never" when no run recorded one)."""
    complete = {stage: complete_ids(paths.gens, stage) for stage in STAGES}
    rows = []
    folders = sorted(p for p in paths.cohorts.iterdir() if p.is_dir()) if paths.cohorts.exists() else []
    for folder in folders:
        try:
            source = cohort_source(paths, folder.name, json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError):
            source = f"unknown ({MANIFEST} missing or unreadable)"
        try:
            members = list(load_membership(paths, folder.name).values())
        except (InputError, OSError, ValueError, KeyError, TypeError):
            members, source = [], f"{source}; {MEMBERSHIP} missing or unreadable"
        try:
            last_run = json.loads((folder / RUN_RECORD).read_text(encoding="utf-8"))["finished_at"]
        except (OSError, ValueError, KeyError, TypeError):
            last_run = "never"
        per_stage = [sum(1 for m in members if m.stage == stage) for stage in STAGES]
        rows.append(
            [folder.name, source, *per_stage, sum(1 for m in members if m.gen_id in complete[m.stage]), last_run]
        )
    return pd.DataFrame(rows, columns=COHORT_COLUMNS)


# ------------------------------------------------------------------------------------------------------- removal


def removal_set(
    paths: Paths, gen_ids=None, cohort_id: str | None = None, stage: str | None = None, template_id: str | None = None
) -> list[tuple[str, str]]:
    """The selected generations (complete or partial) plus every descendant on disk, parents first.

    Selectors combine as an intersection. Descendants are removed too because a regenerated parent gets the same
    gen_id: a child left behind would silently describe the old parent (and a partial child's kept raw answer would
    be reused). Children are linked by metadata parent_gen_id, or by a cohort row when they have no metadata.
    """
    gen_ids = [gen_ids] if isinstance(gen_ids, str) else list(gen_ids or [])
    if not gen_ids and cohort_id is None and stage is None and template_id is None:
        raise InputError("name what to remove: gen_id(s), a cohort, a stage and/or a template")
    if stage is not None and stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    raise_if([f"gen_id {g!r} {id_problem(g)}" for g in gen_ids if id_problem(g)])
    entries = scan(paths)
    memberships = all_memberships(paths)
    on_disk = {gid for _stage, gid in entries}
    raise_if(
        [
            f"unknown gen_id {g!r}: no generation directory under {paths.gens}; check the id (`daydream check` "
            f"lists what is on disk)"
            for g in gen_ids
            if g not in on_disk
        ]
    )
    selected = set(entries)
    if gen_ids:
        wanted = set(gen_ids)
        selected = {key for key in selected if key[1] in wanted}
    if cohort_id is not None:
        cohort = {(m.stage, m.gen_id) for m in load_membership(paths, cohort_id).values()}
        selected &= cohort
    if stage is not None:
        selected = {key for key in selected if key[0] == stage}
    if template_id is not None:
        selected = {key for key in selected if _links(entries[key], memberships)[0] == template_id}
    children: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, entry in entries.items():
        parent = _links(entry, memberships)[1]
        if key[0] in PARENT_STAGE and parent:
            children.setdefault((PARENT_STAGE[key[0]], parent), []).append(key)
    result, todo = set(selected), list(selected)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in result:
                result.add(child)
                todo.append(child)
    return sorted(result, key=lambda key: (_STAGE_ORDER[key[0]], key[1]))


def _lock_for_removal(directory: Path, stack: ExitStack) -> None:
    """Hold the generation's lock until `stack` closes (none is needed when nobody ever locked it); InputError while a
    run holds it."""
    if not (directory / LOCK).exists():
        return
    try:
        stack.enter_context(exclusive_lock(directory / LOCK, wait=False))
    except BlockingIOError:
        raise InputError(
            f"{directory} is being generated by a running `daydream run`; wait for it or stop it, then remove again"
        ) from None


def remove(paths: Paths, items) -> int:
    """Delete the listed generation directories, children before parents; returns how many were deleted.

    metadata.json goes first, so an interrupted removal leaves an incomplete generation (re-made by the next run),
    never a 'complete' one with files missing; a generation a run is working on is refused, not torn down under it.
    """
    count = 0
    for stage, gid in sorted(items, key=lambda key: (-_STAGE_ORDER[key[0]], key[1])):
        directory = gen_dir(paths.gens, stage, gid)
        if not directory.is_dir():
            continue
        with ExitStack() as stack:
            _lock_for_removal(directory, stack)
            (directory / METADATA).unlink(missing_ok=True)
            shutil.rmtree(directory)
        count += 1
    return count
