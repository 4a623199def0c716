"""Deterministic identifiers: combos, task signatures and content-addressed gen_ids."""

import hashlib
import re

from daydream_luigi.core.errors import InputError

_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
SEPARATOR = "__"  # joins the parts of a task id (combo__template__model): an id containing it would be ambiguous
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def id_problem(value: str) -> str | None:
    """Why `value` cannot be used as an id (it becomes a path component), or None when it can."""
    if not value:
        return "is empty"
    if not _ID_RE.fullmatch(value):
        return "may only contain letters, digits, '.', '_' and '-'"
    if ".." in value or value.startswith("."):
        return "may not start with '.' or contain '..'"
    if SEPARATOR in value:
        return f"may not contain {SEPARATOR!r} (it separates the parts of task ids)"
    return None


def checked_id(value: str, what: str) -> str:
    problem = id_problem(value)
    if problem:
        raise InputError(f"{what} {value!r} {problem}; rename it to something like 'my-id_1'")
    return value


def combo_id(concept_ids: list[str] | tuple[str, ...], level: str, k: int) -> str:
    """Stable id of a combination, independent of the order the concepts are listed in."""
    key = "|".join(sorted(concept_ids)) + f"|{level}|{k}"
    return "combo_v1_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def draft_task_id(combo: str, template: str, model: str) -> str:
    return SEPARATOR.join((combo, template, model))


def essay_task_id(draft_task: str, template: str) -> str:
    return SEPARATOR.join((draft_task, template))


def evaluation_task_id(essay_gen_id: str, template: str, model: str) -> str:
    return SEPARATOR.join((essay_gen_id, template, model))


def gen_id(stage: str, signature: str, replicate: int) -> str:
    """16 base-36 characters derived from what the generation is, so identical work gets the same id everywhere."""
    number = int.from_bytes(hashlib.sha256(f"{stage}|{signature}|{replicate}".encode()).digest()[:11], "big")
    chars = []
    for _ in range(16):
        number, digit = divmod(number, 36)
        chars.append(_BASE36[digit])
    return "".join(chars)
