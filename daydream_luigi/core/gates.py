"""Gates: the criteria an essay must all meet, declared in config/gates/<name>.yaml before the scores are read.

A ranking says which essays scored best; a claim ("this essay reinvents X") needs thresholds fixed in advance, on every
rubric at once, with agreement among judges. A gate file states them::

    criteria:
      - {template: novelty-judge, min: 8, by: lower-bound}   # on 0-10; by: mean | lower-bound
      - {template: coherence-judge, min: 6, by: mean}
    min_judges: 2          # distinct judges per criterion
    max_judge_range: 3     # optional: the judges' means within this many points

It is validated like every input (one line per problem naming the file, the key and the fix); the decision itself is
`analysis.gates.decide`, and its record keeps the file's text and sha256 so a claim names the thresholds it was made
under.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.parsers import SCORE_MAX, SCORE_MIN
from daydream_luigi.core.settings import NON_NEGATIVE_NUMBER, POSITIVE_INT, Paths, read_yaml, shown

GATES_FOLDER = "gates"  # under the config folder
EXAMPLE = "reinvention"  # the gate shipped in config/gates/, named by messages as the example to follow
BY = ("mean", "lower-bound")  # what a criterion compares with its min: the mean, or the low end of its 95% interval
_GATE_KEYS = ("criteria", "min_judges", "max_judge_range")
_REQUIRED = {
    "criteria": "list at least one {template, min, by}",
    "min_judges": "how many distinct judges a criterion needs",
}
_CRITERION_KEYS = ("template", "min", "by")
GATE_LABEL_PREFIX = "gate:"  # a person's pass/fail for a gate is a label on template "gate:<name>" (store.labels)


@dataclass(frozen=True)
class Criterion:
    template: str  # an evaluation template
    min: float  # on the 0..10 scale every score parser maps to; the value must be >= min
    by: str  # one of BY


@dataclass(frozen=True)
class Gate:
    name: str
    path: Path
    text: str  # the file as written, kept in every dossier
    criteria: tuple[Criterion, ...]
    min_judges: int
    max_judge_range: float | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def gates_dir(paths: Paths) -> Path:
    return paths.config_dir / GATES_FOLDER


def gate_path(paths: Paths, name: str) -> Path:
    return gates_dir(paths) / f"{checked_id(name, 'gate name')}.yaml"


def gate_names(paths: Paths) -> list[str]:
    return sorted(path.stem for path in gates_dir(paths).glob("*.yaml"))


def _is_score(value: Any) -> bool:
    return NON_NEGATIVE_NUMBER.accepts(value) and SCORE_MIN <= value <= SCORE_MAX


def _criterion(
    index: int, raw: object, path: Path, known: set[str], seen: dict[str, int], problems: list[str]
) -> Criterion | None:
    where = f"{path}: criterion {index}"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a mapping of {', '.join(_CRITERION_KEYS)} (found {shown(raw)})")
        return None
    reported = len(problems)
    problems += [
        f"{where}: unknown key {key!r}; remove it (allowed: {', '.join(_CRITERION_KEYS)})"
        for key in raw
        if key not in _CRITERION_KEYS
    ]
    problems += [f"{where}: {key} is missing; add it" for key in _CRITERION_KEYS if key not in raw]
    template, minimum, by = raw.get("template"), raw.get("min"), raw.get("by")
    if "template" in raw:
        if not isinstance(template, str) or template not in known:
            problems.append(
                f"{where}: template {shown(template)} is not an evaluation template; use one of: "
                f"{', '.join(sorted(known)) or 'none (evaluation_templates.csv lists none)'}"
            )
        elif template in seen:
            problems.append(
                f"{where}: template {template!r} is already criterion {seen[template]}; one criterion per template"
            )
        else:
            seen[template] = index
    if "min" in raw and not _is_score(minimum):
        problems.append(f"{where}: min must be a number from {SCORE_MIN:g} to {SCORE_MAX:g} (found {shown(minimum)})")
    if "by" in raw and by not in BY:
        problems.append(f"{where}: by must be {' or '.join(BY)} (found {shown(by)})")
    return Criterion(raw["template"], float(raw["min"]), raw["by"]) if len(problems) == reported else None


def parse_gate(name: str, path: Path, text: str, raw: object, evaluation_templates: Iterable[str]) -> Gate:
    """The gate in `raw` (the file's parsed YAML); InputError listing every problem, one line each."""
    known = set(evaluation_templates)
    if not isinstance(raw, dict):
        raise InputError(
            f"{path}: a gate must be a mapping with the keys {', '.join(_GATE_KEYS)} (found {shown(raw)}); "
            f"see config/gates/{EXAMPLE}.yaml"
        )
    problems = [
        f"{path}: unknown key {key!r}; remove it (allowed: {', '.join(_GATE_KEYS)})"
        for key in raw
        if key not in _GATE_KEYS
    ]
    problems += [f"{path}: {key} is missing; add it ({fix})" for key, fix in _REQUIRED.items() if key not in raw]
    criteria: list = []
    seen: dict[str, int] = {}
    if "criteria" in raw:
        listed = raw["criteria"]
        if not isinstance(listed, list) or not listed:
            problems.append(
                f"{path}: criteria must be a list of {{template, min, by}} mappings (found {shown(listed)})"
            )
        else:
            criteria = [_criterion(i, item, path, known, seen, problems) for i, item in enumerate(listed, start=1)]
    if "min_judges" in raw and not POSITIVE_INT.accepts(raw["min_judges"]):
        problems.append(f"{path}: min_judges must be {POSITIVE_INT.expected} (found {shown(raw['min_judges'])})")
    spread = raw.get("max_judge_range")
    if spread is not None and not NON_NEGATIVE_NUMBER.accepts(spread):
        problems.append(f"{path}: max_judge_range must be {NON_NEGATIVE_NUMBER.expected} (found {shown(spread)})")
    raise_if(problems)
    return Gate(name, path, text, tuple(criteria), raw["min_judges"], None if spread is None else float(spread))


def load_gate(paths: Paths, name: str, evaluation_templates: Iterable[str]) -> Gate:
    """config/gates/<name>.yaml, validated against the catalog's evaluation templates."""
    path = gate_path(paths, name)
    if not path.exists():
        known = ", ".join(gate_names(paths)) or f"none yet in {gates_dir(paths)}"
        raise InputError(
            f"{path}: gate file not found; write it (like config/gates/{EXAMPLE}.yaml) or name one of: {known}"
        )
    raw = read_yaml(path)
    return parse_gate(name, path, path.read_text(encoding="utf-8-sig"), raw, evaluation_templates)
