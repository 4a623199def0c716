"""`daydream rescore`: read kept judge answers again with today's parsers, without calling any model.

A parser that was fixed, or replaced in the `parser` column of evaluation_templates.csv, applies to answers already
paid for: each evaluation's raw.txt is parsed again and, when its score, error or parser changes, parsed.txt and then
metadata.json are rewritten (each atomically, under the generation's lock, so a run never sees half a change). An
answer that did not parse is complete with its error; this is how it gets a score, instead of `gens rm`, which would
pay for it again. Reports notice: a cohort's report fingerprint covers its evaluations' metadata files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.clock import now
from daydream_luigi.core.parsers import SCORE_MAX, ParseError, parse_score, truncation_problem
from daydream_luigi.core.settings import Paths
from daydream_luigi.store.files import (
    CALL,
    METADATA,
    PARSED,
    RAW,
    atomic_write_json,
    atomic_write_text,
    gen_dir,
    generation_lock,
    read_json,
    read_text,
)
from daydream_luigi.store.membership import MEMBERSHIP, load_membership

STAGE = "evaluation"


def read_answer(
    parse: Callable[[str, str], object], parser: str, raw: str, call: dict, gen_id: str
) -> tuple[object | None, str]:
    """What a judge's kept answer says, as (value, "") or (None, why not): `parse(parser, raw)`, unless the answer
    was cut at max_tokens (then its end, where a verdict stands, is missing and nothing is read)."""
    truncated = truncation_problem(call, gen_id)
    if truncated:
        return None, truncated
    try:
        return parse(parser, raw), ""
    except ParseError as exc:
        return None, f"parser {parser!r}: {exc}"


def parsed_text(value) -> str:
    """parsed.txt of a judgment: the value on one line, empty when there is none."""
    if value is None:
        return ""
    return f"{value:g}\n" if isinstance(value, float) else f"{value}\n"


@dataclass(frozen=True)
class Change:
    gen_id: str
    template_id: str
    before: float | None
    after: float | None
    error: str  # why `after` is None, else ""


@dataclass
class Rescored:
    checked: int = 0  # evaluations parsed again
    changed: list[Change] = field(default_factory=list)  # whose score or error changed (rewritten)
    reparsed: int = 0  # rewritten only to record the parser that read them now (same score)
    unparsed: list[Change] = field(default_factory=list)  # without a score after rescoring
    skipped: dict[str, str] = field(default_factory=dict)  # gen_id -> why it could not be parsed again


def _rewrite(directory: Path, score, error: str, parser: str) -> bool:
    """parsed.txt, then metadata.json (the mark of a complete generation) last; False when it vanished meanwhile."""
    with generation_lock(directory):
        try:
            metadata = read_json(directory / METADATA)
        except FileNotFoundError:
            return False
        atomic_write_text(directory / PARSED, parsed_text(score))
        atomic_write_json(
            directory / METADATA,
            {
                **metadata,
                "score": score,
                "score_max": SCORE_MAX,
                "error": error,
                "parser": parser,
                "rescored_at": now(),
            },
        )
    return True


def rescore(paths: Paths, catalog: Catalog, gen_ids: Iterable[str], template_id: str | None = None) -> Rescored:
    """Parse the kept answers of the complete evaluations among `gen_ids` (only those of `template_id` when given)
    with the parser their template names in the catalog now; rewrite those whose reading changed. No model call."""
    result = Rescored()
    templates = catalog.templates[STAGE]
    for gen_id in sorted(set(gen_ids)):
        directory = gen_dir(paths.gens, STAGE, gen_id)
        try:
            metadata = read_json(directory / METADATA)
        except FileNotFoundError:
            continue  # not complete: its answer is parsed when it completes
        except (OSError, ValueError) as exc:
            result.skipped[gen_id] = f"metadata.json is unreadable ({exc}); run `daydream check`"
            continue
        tid = metadata.get("template_id")
        if template_id is not None and tid != template_id:
            continue
        if tid not in templates:
            result.skipped[gen_id] = f"template {tid!r} is no longer in evaluation_templates.csv"
            continue
        try:
            raw = read_text(directory / RAW)
            call = read_json(directory / CALL) if (directory / CALL).exists() else {}
        except (OSError, ValueError) as exc:
            result.skipped[gen_id] = f"the kept answer is unreadable ({exc})"
            continue
        parser = templates[tid].kind
        score, error = read_answer(parse_score, parser, raw, call, gen_id)
        result.checked += 1
        change = Change(gen_id, tid, metadata.get("score"), score, error)
        if score is None:
            result.unparsed.append(change)
        reading_changed = (score, error) != (metadata.get("score"), metadata.get("error") or "")
        if (reading_changed or parser != metadata.get("parser")) and _rewrite(directory, score, error, parser):
            if reading_changed:
                result.changed.append(change)
            else:
                result.reparsed += 1
    return result


def cohorts_with_reports(paths: Paths, gen_ids: set[str]) -> list[str]:
    """The cohorts that hold any of these generations and have reports to bring up to date."""
    found = []
    for folder in sorted(paths.cohorts.glob("*/reports")):
        cohort_id = folder.parent.name
        if (folder.parent / MEMBERSHIP).exists() and gen_ids & set(load_membership(paths, cohort_id)):
            found.append(cohort_id)
    return found
