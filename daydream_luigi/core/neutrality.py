"""Neutral fixed inputs: nothing we write before a run may name the idea the run hopes to see reinvented.

A "reinvention" is worthless when a template, a concept description or a system prompt already names the target or
uses its canonical phrases. config/neutrality.yaml lists what must not appear::

    forbidden:                     # case-insensitive; a plain term matches anywhere, even inside a word
      - daydream
      - /default[- ]mode network/  # between slashes: a regular expression (Python syntax), matched within a line
    target: target.txt             # optional: the target's text, relative to the config folder
    max_similarity: 0.5            # optional (needs target): the highest cosine similarity an input may have to it

The fixed inputs of a cohort are every template it renders (draft, essay and evaluation), every concept its
combinations use (its name in concepts_metadata.csv and every description level on disk, not only the level the
cohort renders: levels are switched between runs) and every system prompt sent with its calls, which the caller
passes in (they live with the providers). A forbidden term is an input error naming the file, the line and the term;
with a target, each input's cosine similarity to it (the caller's embedding function, the offline model in practice)
is listed, and above ``max_similarity`` it is the same error. Everything here is pure: it reads the inputs, writes
nothing and calls no model itself.
"""

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daydream_luigi.core.catalog import Catalog, concepts_file, description_file, read_rows
from daydream_luigi.core.cohort_spec import CohortSpec
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.settings import LEVELS, Paths, read_yaml, shown

NEUTRALITY_FILE = "neutrality.yaml"  # in the config folder
RECORD_FILE = "neutrality.json"  # in a cohort's folder, beside its manifest: the check its last run made (`record`)
_KEYS = ("forbidden", "target", "max_similarity")
Embed = Callable[[list[str]], Sequence[Sequence[float]]]  # texts -> one vector each


@dataclass(frozen=True)
class Term:
    written: str  # as the file writes it, quoted by messages
    pattern: re.Pattern


@dataclass(frozen=True)
class Rules:
    path: Path
    text: str
    terms: tuple[Term, ...]
    target: Path | None = None
    target_text: str | None = None
    max_similarity: float | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class FixedInput:
    source: str  # the file it comes from, or what it is when it lives in code (a system prompt)
    text: str
    first_line: int = 1  # the line of `source` that holds the text's first line


@dataclass(frozen=True)
class Scan:
    rules: Rules
    inputs: list[FixedInput]
    similarities: list[float] | None  # aligned with inputs; None without a target
    problems: list[str]


def rules_path(paths: Paths) -> Path:
    return paths.config_dir / NEUTRALITY_FILE


def _term(index: int, value: object, path: Path, problems: list[str]) -> Term | None:
    where = f"{path}: forbidden term {index}"
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where} must be a word or phrase, or a /regular expression/ (found {shown(value)})")
        return None
    if len(value) > 2 and value.startswith("/") and value.endswith("/"):
        try:
            return Term(value, re.compile(value[1:-1], re.IGNORECASE))
        except re.error as exc:
            problems.append(
                f"{where} {value!r} is not a valid regular expression ({exc}); fix it, or write it without the "
                f"slashes to match it as plain text"
            )
            return None
    return Term(value, re.compile(re.escape(value.strip()), re.IGNORECASE))


def _target(raw: dict, path: Path, problems: list[str]) -> tuple[Path | None, str | None]:
    value = raw.get("target")
    if value is None:
        return None, None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{path}: target must be the path of a text file (found {shown(value)})")
        return None, None
    target = path.parent / value
    try:
        return target, target.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        problems.append(f"{path}: target {target} not found; write the target's text there, or remove target")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: target {target} is not UTF-8 text ({exc.reason}); save it as UTF-8")
    return None, None


def load_rules(paths: Paths) -> Rules | None:
    """config/neutrality.yaml, validated (every problem one line naming the key and the fix); None without it."""
    path = rules_path(paths)
    if not path.exists():
        return None
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with the keys {', '.join(_KEYS)} (found {shown(raw)})")
    problems = [
        f"{path}: unknown key {key!r}; remove it (allowed: {', '.join(_KEYS)})" for key in raw if key not in _KEYS
    ]
    listed = raw.get("forbidden", [])
    if not isinstance(listed, list):
        problems.append(f"{path}: forbidden must be a list of terms (found {shown(listed)})")
        listed = []
    terms = [_term(i, value, path, problems) for i, value in enumerate(listed, start=1)]
    target, target_text = _target(raw, path, problems)
    limit = raw.get("max_similarity")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0 <= limit <= 1:
            problems.append(f"{path}: max_similarity must be a number from 0 to 1 (found {shown(limit)})")
        elif "target" not in raw:
            problems.append(f"{path}: max_similarity needs a target text to compare with; add target, or remove it")
    if not listed and "target" not in raw:
        problems.append(f"{path}: nothing to check; list forbidden terms, or give a target text")
    raise_if(problems)
    text = path.read_text(encoding="utf-8-sig")
    return Rules(
        path,
        text,
        tuple(term for term in terms if term is not None),
        target,
        target_text,
        None if limit is None else float(limit),
    )


def _concept_lines(paths: Paths) -> dict[str, int]:
    """concept_id -> its line in concepts_metadata.csv (the catalog, already loaded, has validated the file)."""
    return {row["concept_id"]: line for line, row in read_rows(concepts_file(paths), ["concept_id"], [])}


def fixed_inputs(
    paths: Paths, spec: CohortSpec, catalog: Catalog, system_prompts: Mapping[str, str]
) -> list[FixedInput]:
    """What the cohort `spec` (a cohort.CohortSpec) sends that we wrote: its templates, its concepts' names and
    descriptions, and `system_prompts` (what it is -> text), in that order."""
    inputs = []
    for stage, ids in (
        ("draft", spec.draft_templates),
        ("essay", spec.essay_templates),
        ("evaluation", spec.evaluation_templates),
    ):
        inputs += [
            FixedInput(str(catalog.templates[stage][tid].path), catalog.templates[stage][tid].source) for tid in ids
        ]
    concept_ids = sorted({cid for combo in spec.combos for cid in combo.concept_ids})
    lines = _concept_lines(paths) if concept_ids else {}
    for cid in concept_ids:
        inputs.append(FixedInput(str(concepts_file(paths)), catalog.concepts[cid].name, lines.get(cid, 1)))
        for level in LEVELS:
            file = description_file(paths, level, cid)
            if file.exists():
                inputs.append(FixedInput(str(file), file.read_text(encoding="utf-8-sig")))
    inputs += [FixedInput(source, text) for source, text in system_prompts.items()]
    return inputs


def forbidden_problems(inputs: list[FixedInput], rules: Rules) -> list[str]:
    """One problem per (input line, term) found: the file, the line, the term and what matched."""
    problems = []
    for item in inputs:
        for number, line in enumerate(item.text.splitlines(), start=item.first_line):
            for term in rules.terms:
                found = term.pattern.search(line)
                if found:
                    problems.append(
                        f"{item.source}: line {number}: forbidden term {term.written!r} ({found.group(0)!r}); "
                        f"reword it (the terms are listed in {rules.path})"
                    )
    return problems


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b)) / norm if norm else 0.0


def scan(inputs: list[FixedInput], rules: Rules, embed: Embed | None = None) -> Scan:
    """Every forbidden term in `inputs` and, with a target (then `embed` is required), every input's cosine
    similarity to it and each one above max_similarity, as problems."""
    problems = forbidden_problems(inputs, rules)
    similarities = None
    if rules.target_text is not None:
        if embed is None:
            raise ValueError("a target text needs an embedding function")
        target, *vectors = embed([rules.target_text, *(item.text for item in inputs)])
        similarities = [cosine(target, vector) for vector in vectors]
        if rules.max_similarity is not None:
            problems += [
                f"{item.source}: cosine similarity {similarity:.3f} to the target text {rules.target} is above "
                f"max_similarity {rules.max_similarity:g} ({rules.path}); reword it so it does not describe the target"
                for item, similarity in zip(inputs, similarities)
                if similarity > rules.max_similarity
            ]
    return Scan(rules, inputs, similarities, problems)


def record(scan: Scan | None, rules_file: Path) -> dict:
    """What a run keeps of its check, for the report: the rules file applied (path, sha256, terms, target) and each
    input checked (where it is, its text's sha256, its similarity to the target); ``checked`` false when there was no
    rules file (`rules_file`) to apply. No time in it: the same check writes the same record."""
    if scan is None:
        return {"checked": False, "rules_file": str(rules_file)}
    rules = scan.rules
    similarities: Sequence[float | None] = scan.similarities or [None] * len(scan.inputs)
    return {
        "checked": True,
        "rules_file": str(rules.path),
        "sha256": rules.sha256,
        "forbidden": [term.written for term in rules.terms],
        "target": None if rules.target is None else str(rules.target),
        "max_similarity": rules.max_similarity,
        "inputs": [
            {
                "source": item.source,
                "line": item.first_line,
                "sha256": hashlib.sha256(item.text.encode("utf-8")).hexdigest(),
                "similarity": similarity,
            }
            for item, similarity in zip(scan.inputs, similarities)
        ],
        "problems": scan.problems,
    }
