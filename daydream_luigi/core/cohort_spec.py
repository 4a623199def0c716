"""Cohort specs: the axes of a cohort (concepts or combos, templates, models, replicates) or the essays and drafts a
curated cohort lists, as the active flags, a YAML spec in config/cohorts or a recorded manifest give them, each checked
key by key before anything is written. `expansion` turns a spec into its generations; `store.cohorts` finds a spec by
name (a spec file, else the cohort recorded under data/cohorts)."""

import hashlib
import json
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.combos import Combo, enumerate_combos, read_mappings
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.gates import EXAMPLE as EXAMPLE_GATE
from daydream_luigi.core.gates import gate_names, gate_path, load_gate
from daydream_luigi.core.ids import checked_id, id_problem
from daydream_luigi.core.settings import (
    LEVELS,
    POSITIVE_INT,
    REPLICATES,
    STAGES,
    Paths,
    Settings,
    read_yaml,
    schema_problems,
    shown,
)


@dataclass
class CohortSpec:
    """The axes of a cohort. `essays` or `drafts` set means curated mode: those essays, and essays written from those
    drafts by the essay axes (essay templates x generation models), all judged by the evaluation axes.
    `recorded`: its axes were read back from data/cohorts/<id>/manifest.json (it is expanded like any spec).
    `gates`: the gates (config/gates/<name>.yaml) its reports decide every essay by, declared with the cohort."""

    cohort_id: str
    source: str  # where the spec came from, for error messages
    combos: list
    draft_templates: list
    essay_templates: list
    evaluation_templates: list
    generation_models: list
    evaluation_models: list
    replicates: dict
    essays: list | None = None
    drafts: list | None = None
    recorded: bool = False
    gates: list = field(default_factory=list)

    @property
    def curated(self) -> bool:
        return self.essays is not None or self.drafts is not None

    def manifest(self) -> dict:
        data = asdict(self)
        if self.drafts is None:
            data.pop("drafts")  # the manifests of cohorts without drafts stay as they were recorded
        if not self.gates:
            data.pop("gates")  # and so do those of cohorts without gates (an active cohort's id hashes its manifest)
        data["combos"] = {c.combo_id: list(c.concept_ids) for c in self.combos}
        data["description_level"] = self.combos[0].level if self.combos else None
        data["k"] = self.combos[0].k if self.combos else None
        data.pop("source")
        data.pop("recorded")
        return data


def backend_models(catalog: Catalog, backend: str, role: str) -> list[str]:
    """Active models for a role, restricted to those the backend runs (the embedded model for local, the providers'
    for http)."""
    flag = "for_generation" if role == "generation" else "for_evaluation"
    return sorted(
        m.model_id for m in catalog.models.values() if getattr(m, flag) and backend_of(m.endpoint).name == backend
    )


def empty_reasons(spec: CohortSpec, backend: str) -> list[str]:
    """Why a cohort has nothing to make, each with what to change (a plan with no row says this, not an empty table)."""
    other = "http" if backend == "local" else "local"
    fixes = {
        "combos": "no combination of concepts: fewer active concepts than k; set active true on more rows of "
        "concepts_metadata.csv, or lower k in config/daydream.yaml",
        "draft_templates": "no active draft template; set active true on a row of draft_templates.csv",
        "essay_templates": "no active essay template; set active true on a row of essay_templates.csv",
        "evaluation_templates": "no active evaluation template; set active true on a row of evaluation_templates.csv",
        "generation_models": f"no model of llm_models.csv has for_generation true and runs on the {backend} backend; "
        f"set for_generation true on one, or choose --backend {other}",
        "evaluation_models": f"no model of llm_models.csv has for_evaluation true and runs on the {backend} backend; "
        f"set for_evaluation true on one, or choose --backend {other}",
    }
    if spec.curated:
        return []
    return [fix for axis, fix in fixes.items() if not getattr(spec, axis)]


def active_spec(catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """The Cartesian cohort of the active flags; its id derives from its axes, so a change of flags is a new cohort."""
    spec = CohortSpec(
        cohort_id="",
        source="the active flags in data/1_raw",
        combos=enumerate_combos(catalog.active_concepts(), settings.k, settings.description_level),
        draft_templates=catalog.active_templates("draft"),
        essay_templates=catalog.active_templates("essay"),
        evaluation_templates=catalog.active_templates("evaluation"),
        generation_models=backend_models(catalog, backend, "generation"),
        evaluation_models=backend_models(catalog, backend, "evaluation"),
        replicates=settings.replicates,
    )
    digest = hashlib.sha256(json.dumps(spec.manifest(), sort_keys=True).encode()).hexdigest()[:8]
    spec.cohort_id = f"active-{digest}"
    return spec


_SPEC_KEYS = {
    "concepts",
    "combos",
    "k",
    "description_level",
    "draft_templates",
    "essay_templates",
    "evaluation_templates",
    "generation_models",
    "evaluation_models",
    "replicates",
    "essays",
    "drafts",
    "gates",
}
_FIXED_BY_COMBOS = ("concepts", "k", "description_level")  # a recorded combo carries its own
_IGNORED_WITH_DRAFTS = ("concepts", "combos", "k", "description_level", "draft_templates")  # drafts are as listed
_IGNORED_WHEN_CURATED = (*_IGNORED_WITH_DRAFTS, "essay_templates", "generation_models")  # so are essays' drafts
CURATED_LISTS = {"essay": "essays", "draft": "drafts"}  # the spec key that lists a stage's generations
_AXES = (  # spec key, what it names (a template stage, or "model"), the catalog file that lists them
    ("draft_templates", "draft", "draft_templates.csv"),
    ("essay_templates", "essay", "essay_templates.csv"),
    ("evaluation_templates", "evaluation", "evaluation_templates.csv"),
    ("generation_models", "model", "llm_models.csv"),
    ("evaluation_models", "model", "llm_models.csv"),
)


def _known(catalog: Catalog, kind: str) -> dict:
    return catalog.models if kind == "model" else catalog.templates[kind]


def id_list(raw: dict, key: str, known: Collection[str] | None, default: list, where: str, problems: list[str]) -> list:
    if key not in raw:
        return default
    values = raw[key]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        problems.append(f"{where}: {key} must be a list of ids")
        return []
    if not values:
        problems.append(f"{where}: {key} is empty; list at least one id, or remove the key")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        problems.append(f"{where}: {key} lists {', '.join(map(repr, repeated))} more than once; list each id once")
    for value in values:
        if known is not None and value not in known:
            problems.append(f"{where}: {key} lists unknown id {value!r}; known: {', '.join(sorted(known)) or 'none'}")
    return values


def spec_path(paths: Paths, name: str) -> Path:
    """config/cohorts/<name>.yaml, for a name that is a valid id."""
    return paths.cohort_specs / f"{checked_id(name, 'cohort name')}.yaml"


def _replicates(raw: dict, settings: Settings, where: str, problems: list[str]) -> dict:
    given = raw.get("replicates", {})
    if not isinstance(given, dict):
        problems.append(f"{where}: replicates must be a mapping of {', '.join(STAGES)} (found {shown(given)})")
        return settings.replicates
    problems += [f"{where}: {problem}" for problem in schema_problems(given, REPLICATES, "replicates.")[1]]
    return {**settings.replicates, **given}


def _unused_by_curated(raw: dict, where: str, key: str, what: str, unused: tuple, stages: tuple) -> list[str]:
    ignored = [name for name in unused if name in raw]
    ignored += [
        f"replicates.{stage}"
        for stage in stages
        if isinstance(raw.get("replicates"), dict) and stage in raw["replicates"]
    ]
    return (
        [
            f"{where}: {key} makes a curated cohort ({what}), so {', '.join(ignored)} "
            f"would be ignored; remove {'it' if len(ignored) == 1 else 'them'}"
        ]
        if ignored
        else []
    )


def _conflicts(raw: dict, where: str) -> list[str]:
    if "drafts" in raw:  # with or without essays: the essay axes write the drafts' essays
        return _unused_by_curated(
            raw, where, "drafts", "essays written from those drafts", _IGNORED_WITH_DRAFTS, ("draft",)
        )
    if "essays" in raw:
        return _unused_by_curated(
            raw, where, "essays", "those essays with their drafts", _IGNORED_WHEN_CURATED, ("draft", "essay")
        )
    fixed = [key for key in _FIXED_BY_COMBOS if key in raw]
    if "combos" in raw and fixed:
        return [f"{where}: combos already fix their concepts, k and description level; remove {', '.join(fixed)}"]
    return []


def spec_from_mapping(
    paths: Paths, name: str, raw: Any, where: str, catalog: Catalog, settings: Settings, backend: str
) -> CohortSpec:
    """Validate a cohort spec (as read from YAML), every key and type, before anything is written; `where` names its
    source in error messages."""
    checked_id(name, "cohort name")
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of axes (concepts, k, draft_templates, ...)")
    problems = [
        f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(_SPEC_KEYS))}"
        for key in raw
        if key not in _SPEC_KEYS
    ]
    problems += _conflicts(raw, where)
    level = raw.get("description_level", settings.description_level)
    if level not in LEVELS:
        problems.append(f"{where}: description_level {level!r} is not one of {', '.join(LEVELS)}")
    replicates = _replicates(raw, settings, where, problems)
    concepts = id_list(raw, "concepts", catalog.concepts, catalog.active_concepts(), where, problems)
    k = raw.get("k", settings.k)
    if ("k" in raw or "concepts" in raw) and concepts and not (POSITIVE_INT.accepts(k) and k <= len(concepts)):
        problems.append(
            f"{where}: k must be a whole number from 1 to {len(concepts)}, the number of concepts it "
            f"combines (found {shown(k)}{'' if 'k' in raw else ' in config/daydream.yaml'})"
        )
    combo_ids = id_list(raw, "combos", None, [], where, problems)
    axes: dict[str, Any] = {
        key: id_list(raw, key, _known(catalog, kind), default_axis(catalog, key, kind, backend), where, problems)
        for key, kind, _ in _AXES
    }
    essays, drafts = (
        id_list(raw, key, None, [], where, problems) if key in raw else None for key in ("essays", "drafts")
    )
    gates = id_list(raw, "gates", None, [], where, problems)
    problems += gate_problems(paths, gates, axes["evaluation_templates"], catalog, where)
    raise_if(problems)
    if essays is not None or drafts is not None:
        return CohortSpec(name, where, [], replicates=replicates, essays=essays, drafts=drafts, gates=gates, **axes)
    if combo_ids:
        recorded = read_mappings(paths.combo_mappings)
        unknown = [c for c in combo_ids if c not in recorded]
        if unknown:
            raise InputError(
                f"{where}: combos lists {', '.join(unknown)} not found in {paths.combo_mappings}; "
                f"run a cohort that creates them first or list concepts instead"
            )
        combos = [recorded[c] for c in combo_ids]
        raise_if(_gone_concepts(combos, catalog, where))
    else:
        combos = enumerate_combos(concepts, k, level)
    return CohortSpec(name, where, combos, replicates=replicates, gates=gates, **axes)


def gate_problems(
    paths: Paths, names: list[str], evaluation_templates: list[str], catalog: Catalog, where: str
) -> list[str]:
    """The gates a cohort names, each file validated (`load_gate`) and each criterion's template one the cohort
    evaluates with (else no essay could pass): every problem one line."""
    problems: list[str] = []
    known = set(catalog.templates["evaluation"])
    for name in names:
        problem = id_problem(name)
        if problem is None and not gate_path(paths, name).exists():
            problem = (
                f"has no gate file {gate_path(paths, name)}; write it (like config/gates/{EXAMPLE_GATE}.yaml) or "
                f"name one of: {', '.join(gate_names(paths)) or 'none'}"
            )
        if problem is not None:
            problems.append(f"{where}: gates lists {name!r}, which {problem}")
            continue
        try:
            gate = load_gate(paths, name, known)
        except InputError as exc:
            problems += exc.problems
            continue
        problems += [
            f"{where}: gate {name} ({gate.path}) needs evaluation template {criterion.template!r}, which this "
            f"cohort does not evaluate with; add it to evaluation_templates, or remove the gate"
            for criterion in gate.criteria
            if criterion.template not in evaluation_templates
        ]
    return problems


def default_axis(catalog: Catalog, key: str, kind: str, backend: str) -> list:
    """What a spec that leaves out axis `key` gets: the active templates, or the backend's models for the role."""
    if kind == "model":
        return backend_models(catalog, backend, "generation" if key == "generation_models" else "evaluation")
    return catalog.active_templates(kind)


def _gone_concepts(combos: Iterable[Combo], catalog: Catalog, where: str) -> list[str]:
    """A combo whose concepts left concepts_metadata.csv could not be rendered."""
    return [
        f"{where}: combo {combo.combo_id} combines {', '.join(gone)}, no longer in concepts_metadata.csv; "
        f"restore {'it' if len(gone) == 1 else 'them'} or leave the combo out"
        for combo in combos
        if (gone := [c for c in combo.concept_ids if c not in catalog.concepts])
    ]


def unreadable_manifest(path: Path, exc: Exception) -> InputError:
    return InputError(
        f"{path}: not a readable cohort manifest ({type(exc).__name__}: {exc}); rebuild the cohort "
        f"from its spec, or remove {path.parent}"
    )


def spec_from_manifest(cohort_id: str, manifest: Any, path: Path, catalog: Catalog, paths: Paths) -> CohortSpec:
    """A cohort as its manifest.json (`path`, read by `store.cohorts.recorded_spec`) records it, checked against
    today's catalog and config (every template and model it uses must still exist, and every gate it names)."""
    try:
        combos = [
            Combo(cid, tuple(concepts), manifest["description_level"], manifest["k"])
            for cid, concepts in manifest["combos"].items()
        ]
        axes: dict[str, Any] = {key: list(manifest[key]) for key, _, _ in _AXES}
        replicates, essays, drafts = dict(manifest["replicates"]), manifest["essays"], manifest.get("drafts")
        gates = [str(name) for name in manifest.get("gates", [])]
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise unreadable_manifest(path, exc) from None
    problems = [
        f"{path}: cohort {cohort_id} uses {key[:-1].replace('_', ' ')} {value!r}, which is no longer in "
        f"{filename}; restore its row to use this cohort"
        for key, kind, filename in _AXES
        for value in axes[key]
        if value not in _known(catalog, kind)
    ]
    problems += [] if essays is not None or drafts is not None else _gone_concepts(combos, catalog, str(path))
    problems += gate_problems(paths, gates, axes["evaluation_templates"], catalog, str(path))
    raise_if(problems)
    return CohortSpec(
        cohort_id,
        str(path),
        combos,
        replicates=replicates,
        essays=essays,
        drafts=drafts,
        recorded=True,
        gates=gates,
        **axes,
    )


def read_essay_list(path: Path) -> list[str]:
    """The essay gen_ids of a list file (one per line, blank lines ignored, a byte-order mark is fine)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def listed_in_specs(paths: Paths) -> set[tuple[str, str]]:
    """(stage, gen_id) of every essay and draft a curated spec in config/cohorts lists. A spec that cannot be read
    lists nothing here; using it says why."""
    listed: set[tuple[str, str]] = set()
    for path in sorted(paths.cohort_specs.glob("*.yaml")):
        try:
            raw = read_yaml(path)
        except (InputError, OSError):
            continue
        for stage, key in CURATED_LISTS.items():
            values = raw.get(key) if isinstance(raw, dict) else None
            if isinstance(values, list):
                listed.update((stage, value) for value in values if isinstance(value, str))
    return listed
