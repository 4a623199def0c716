"""Operator commands over the store, as pure functions: check (what is wrong on disk), status (how far a cohort got),
the cohorts on disk, and removal (a generation with everything derived from it). What a run would cost is `costs`.

No Luigi and no Click here: the CLI prints and confirms; these functions only read plain files, and only `remove`
deletes anything.
"""

import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from daydream_luigi.core import identity
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.cohort_spec import CURATED_LISTS, listed_in_specs
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.expansion import Member
from daydream_luigi.core.ids import id_problem
from daydream_luigi.core.settings import PARENT_STAGE, STAGE_ORDER, STAGES, Paths
from daydream_luigi.store.cohorts import cohort_source
from daydream_luigi.store.files import CALL, ERROR, LOCK, METADATA, PARSED, RAW, complete_ids, gen_dir, read_text
from daydream_luigi.store.locks import exclusive_lock
from daydream_luigi.store.membership import MANIFEST, MEMBERSHIP, RUN_RECORD, load_membership, member_list

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
    "mixed_hosts",
    "unanswered",
)
NOT_A_PROBLEM = "unanswered"  # a call stopped or killed before its answer: nothing kept, nothing to fix


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
        return FINDING_KINDS.index(self.kind), STAGE_ORDER.get(self.stage, 99), self.gen_id, self.detail


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
    findings += mixed_hosts(entries)
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


def mixed_hosts(entries: dict[tuple[str, str], Entry]) -> list[Finding]:
    """Judges whose evaluations in one cohort were served by more than one upstream host (OpenRouter's `provider` in
    the answer, recorded as served_by): a judge that changed host mid-study may have changed the experiment."""
    hosts: dict[tuple[str, str], dict[str, int]] = {}
    for (stage, _gid), entry in entries.items():
        meta = entry.meta
        if stage == "evaluation" and meta and meta.get("served_by"):
            key = (str(meta.get("cohort_id")), str(meta.get("llm_model_id")))
            counts = hosts.setdefault(key, {})
            counts[meta["served_by"]] = counts.get(meta["served_by"], 0) + 1
    return [
        Finding(
            "mixed_hosts",
            "evaluation",
            judge,
            f"judge {judge}'s evaluations in cohort {cohort} were served by {len(counts)} hosts ("
            + ", ".join(f"{host}: {n}" for host, n in sorted(counts.items()))
            + "); pin one with provider_only (or provider_order and provider_allow_fallbacks false) in llm_models.csv",
        )
        for (cohort, judge), counts in sorted(hosts.items())
        if len(counts) > 1
    ]


# -------------------------------------------------------------------------------------------------------- status


def status(paths: Paths, members) -> pd.DataFrame:
    """Per stage of a cohort: how many generations are complete, failed (error.json, no metadata) and still to do."""
    members = member_list(members)
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
    return sorted(result, key=lambda key: (STAGE_ORDER[key[0]], key[1]))


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
    for stage, gid in sorted(items, key=lambda key: (-STAGE_ORDER[key[0]], key[1])):
        directory = gen_dir(paths.gens, stage, gid)
        if not directory.is_dir():
            continue
        with ExitStack() as stack:
            _lock_for_removal(directory, stack)
            (directory / METADATA).unlink(missing_ok=True)
            shutil.rmtree(directory)
        count += 1
    return count
