"""Cohorts: the deterministic set of generations a run makes, from the active flags, a YAML spec or an essay list."""

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import yaml

from .catalog import Catalog
from .combos import enumerate_combos, make_combo, read_mappings
from .config import LEVELS, STAGES, Paths, Settings, yaml_problem
from .errors import InputError, raise_if
from .ids import checked_id, draft_task_id, evaluation_task_id, gen_id, id_problem
from .store import METADATA, atomic_write_json, atomic_write_text, gen_dir, read_json


@dataclass(frozen=True)
class Member:
    """One row of membership.csv: a generation of the cohort and its lineage."""

    stage: str
    gen_id: str
    cohort_id: str
    parent_gen_id: str
    combo_id: str
    template_id: str
    llm_model_id: str
    replicate: int


MEMBERSHIP_COLUMNS = [f.name for f in fields(Member)]


@dataclass
class CohortSpec:
    """The axes of a cohort. `essays` set means curated mode: those essays, judged by the evaluation axes."""

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

    def manifest(self) -> dict:
        data = asdict(self)
        data["combos"] = {c.combo_id: list(c.concept_ids) for c in self.combos}
        data["description_level"] = self.combos[0].level if self.combos else None
        data["k"] = self.combos[0].k if self.combos else None
        data.pop("source")
        return data


def _backend_models(catalog: Catalog, backend: str, role: str) -> list[str]:
    """Active models for a role, restricted to the embedded model (local backend) or to providers (http)."""
    flag = "for_generation" if role == "generation" else "for_evaluation"
    return sorted(m.model_id for m in catalog.models.values()
                  if getattr(m, flag) and (m.provider == "embedded") == (backend == "local"))


def active_spec(catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """The Cartesian cohort of the active flags; its id is derived from its axes so a change of flags is a new cohort."""
    spec = CohortSpec(
        cohort_id="", source="the active flags in data/1_raw",
        combos=enumerate_combos(catalog.active_concepts(), settings.k, settings.description_level),
        draft_templates=catalog.active_templates("draft"),
        essay_templates=catalog.active_templates("essay"),
        evaluation_templates=catalog.active_templates("evaluation"),
        generation_models=_backend_models(catalog, backend, "generation"),
        evaluation_models=_backend_models(catalog, backend, "evaluation"),
        replicates=settings.replicates)
    digest = hashlib.sha256(json.dumps(spec.manifest(), sort_keys=True).encode()).hexdigest()[:8]
    spec.cohort_id = f"active-{digest}"
    return spec


_SPEC_KEYS = {"concepts", "combos", "k", "description_level", "draft_templates", "essay_templates",
              "evaluation_templates", "generation_models", "evaluation_models", "replicates", "essays"}


def _id_list(raw: dict, key: str, known, default: list, where: str, problems: list[str]) -> list:
    if key not in raw:
        return default
    values = raw[key]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        problems.append(f"{where}: {key} must be a list of ids")
        return []
    for value in values:
        if known is not None and value not in known:
            problems.append(f"{where}: {key} lists unknown id {value!r}; known: {', '.join(sorted(known)) or 'none'}")
    return values


def load_spec(paths: Paths, name: str, catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """A named cohort from config/cohorts/<name>.yaml; axes it leaves out come from the active flags."""
    checked_id(name, "cohort name")
    path = paths.cohort_specs / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in paths.cohort_specs.glob("*.yaml"))
        raise InputError(f"unknown cohort {name!r}: {path} does not exist; known cohorts: {', '.join(known) or 'none'}"
                         f" (or build one with `daydream cohort build`)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: {yaml_problem(exc)}") from None
    return spec_from_mapping(paths, name, raw, str(path), catalog, settings, backend)


def spec_from_mapping(paths: Paths, name: str, raw, where: str, catalog: Catalog, settings: Settings,
                      backend: str) -> CohortSpec:
    """Validate a cohort spec's axes (as read from YAML); `where` names its source in error messages."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of axes (concepts, k, draft_templates, ...)")
    problems = [f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(_SPEC_KEYS))}" for key in raw
                if key not in _SPEC_KEYS]
    level = raw.get("description_level", settings.description_level)
    if level not in LEVELS:
        problems.append(f"{where}: description_level {level!r} is not one of {', '.join(LEVELS)}")
    k = raw.get("k", settings.k)
    if not isinstance(k, int) or isinstance(k, bool):
        problems.append(f"{where}: k must be an integer")
    replicates = dict(settings.replicates)
    replicates.update(raw.get("replicates") or {})
    if set(replicates) - set(STAGES) or not all(isinstance(v, int) and v >= 1 for v in replicates.values()):
        problems.append(f"{where}: replicates must map draft/essay/evaluation to integers >= 1")
    concepts = _id_list(raw, "concepts", catalog.concepts, catalog.active_concepts(), where, problems)
    combo_ids = _id_list(raw, "combos", None, [], where, problems)
    axes = {key: _id_list(raw, key, known, default, where, problems) for key, known, default in [
        ("draft_templates", catalog.templates["draft"], catalog.active_templates("draft")),
        ("essay_templates", catalog.templates["essay"], catalog.active_templates("essay")),
        ("evaluation_templates", catalog.templates["evaluation"], catalog.active_templates("evaluation")),
        ("generation_models", catalog.models, _backend_models(catalog, backend, "generation")),
        ("evaluation_models", catalog.models, _backend_models(catalog, backend, "evaluation"))]}
    essays = _id_list(raw, "essays", None, None, where, problems) if "essays" in raw else None
    raise_if(problems)
    if essays is not None:
        combos = []
    elif combo_ids:
        recorded = read_mappings(paths.combo_mappings)
        unknown = [c for c in combo_ids if c not in recorded]
        if unknown:
            raise InputError(f"{where}: combos lists {', '.join(unknown)} not found in {paths.combo_mappings}; "
                             f"run a cohort that creates them first or list concepts instead")
        combos = [recorded[c] for c in combo_ids]
    else:
        combos = enumerate_combos(concepts, k, level)
    return CohortSpec(name, where, combos, replicates=replicates, essays=essays, **axes)


def _cartesian(spec: CohortSpec) -> list[Member]:
    rows: list[Member] = []
    cid, reps = spec.cohort_id, spec.replicates
    for combo in spec.combos:
        for dt in spec.draft_templates:
            for model in spec.generation_models:
                dtask = draft_task_id(combo.combo_id, dt, model)
                for dr in range(1, reps["draft"] + 1):
                    draft = gen_id("draft", dtask, dr)
                    rows.append(Member("draft", draft, cid, "", combo.combo_id, dt, model, dr))
                    rows += _essays_of(spec, draft, combo.combo_id, model)
    return rows


def _essays_of(spec: CohortSpec, draft: str, combo: str, model: str) -> list[Member]:
    rows = []
    for et in spec.essay_templates:
        for er in range(1, spec.replicates["essay"] + 1):
            essay = gen_id("essay", f"{draft}__{et}", er)
            rows.append(Member("essay", essay, spec.cohort_id, draft, combo, et, model, er))
            rows += _evaluations_of(spec, essay, combo)
    return rows


def _evaluations_of(spec: CohortSpec, essay: str, combo: str) -> list[Member]:
    return [Member("evaluation", gen_id("evaluation", evaluation_task_id(essay, vt, judge), vr), spec.cohort_id,
                   essay, combo, vt, judge, vr)
            for vt in spec.evaluation_templates
            for judge in spec.evaluation_models
            for vr in range(1, spec.replicates["evaluation"] + 1)]


def _curated(spec: CohortSpec, paths: Paths) -> list[Member]:
    """The listed essays with their drafts (already generated), plus the evaluations asked for."""
    rows: list[Member] = []
    problems = []
    for essay in spec.essays:
        problem = id_problem(essay)
        if problem:
            problems.append(f"{spec.source}: essay id {essay!r} {problem}")
            continue
        essay_meta = gen_dir(paths.gens, "essay", essay) / METADATA
        if not essay_meta.exists():
            problems.append(f"{spec.source}: essay {essay} has no complete generation at {essay_meta.parent}; "
                            f"remove it from the list or run its cohort first")
            continue
        meta = read_json(essay_meta)
        draft_path = gen_dir(paths.gens, "draft", meta["parent_gen_id"]) / METADATA
        if not draft_path.exists():
            problems.append(f"{spec.source}: essay {essay} has parent draft {meta['parent_gen_id']}, which has no "
                            f"complete generation at {draft_path.parent}; remove the essay from the list")
            continue
        draft_meta = read_json(draft_path)
        rows.append(Member("draft", draft_meta["gen_id"], spec.cohort_id, "", draft_meta["combo_id"],
                           draft_meta["template_id"], draft_meta["llm_model_id"], draft_meta["replicate"]))
        rows.append(Member("essay", essay, spec.cohort_id, meta["parent_gen_id"], meta["combo_id"],
                           meta["template_id"], meta["llm_model_id"], meta["replicate"]))
        rows += _evaluations_of(spec, essay, meta["combo_id"])
        spec.combos.append(make_combo(draft_meta["concept_ids"], draft_meta["description_level"], draft_meta["k"]))
    raise_if(problems)
    return rows


def expand(spec: CohortSpec, paths: Paths) -> list[Member]:
    """All generations of the cohort, drafts first; duplicates (a draft shared by two essays) appear once."""
    rows = _curated(spec, paths) if spec.essays is not None else _cartesian(spec)
    unique = list({(m.stage, m.gen_id): m for m in rows}.values())
    stage_order = {stage: i for i, stage in enumerate(STAGES)}
    unique.sort(key=lambda m: stage_order[m.stage])
    spec.combos = sorted(set(spec.combos), key=lambda c: c.combo_id)
    check_integrity(unique, spec.source)
    return unique


def check_integrity(rows: list[Member], source: str) -> None:
    """Every essay's parent is a draft and every evaluation's parent an essay of the same cohort."""
    by_stage = {stage: {m.gen_id for m in rows if m.stage == stage} for stage in STAGES}
    parent_stage = {"essay": "draft", "evaluation": "essay"}
    problems = [f"{source}: {m.stage} {m.gen_id} has parent {m.parent_gen_id!r}, which is not a "
                f"{parent_stage[m.stage]} of cohort {m.cohort_id}; rebuild the cohort"
                for m in rows if m.stage in parent_stage and m.parent_gen_id not in by_stage[parent_stage[m.stage]]]
    raise_if(problems)


def _membership_text(rows: list[Member]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MEMBERSHIP_COLUMNS)
    writer.writerows([getattr(m, c) for c in MEMBERSHIP_COLUMNS] for m in rows)
    return buffer.getvalue()


def write_cohort(paths: Paths, spec: CohortSpec, rows: list[Member]) -> Path:
    folder = paths.cohorts / checked_id(spec.cohort_id, "cohort id")
    atomic_write_json(folder / "manifest.json", spec.manifest())
    atomic_write_text(folder / "membership.csv", _membership_text(rows))
    return folder


def membership_is_current(paths: Paths, spec: CohortSpec, rows: list[Member]) -> bool:
    """Whether the recorded membership is exactly what the spec expands to now (membership.csv is written last)."""
    folder = paths.cohorts / checked_id(spec.cohort_id, "cohort id")
    try:
        return ((folder / "membership.csv").read_text() == _membership_text(rows)
                and read_json(folder / "manifest.json") == json.loads(json.dumps(spec.manifest())))
    except (OSError, ValueError):
        return False


def load_membership(paths: Paths, cohort_id: str) -> dict[str, Member]:
    """gen_id -> Member for a written cohort (cached per file version; Luigi tasks look their row up here)."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / "membership.csv"
    if not path.exists():
        raise InputError(f"cohort {cohort_id!r} has no membership at {path}; run `daydream run --cohort NAME` first")
    return _read_membership(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _read_membership(path: Path, _mtime: int) -> dict[str, Member]:
    with path.open(newline="") as handle:
        return {row["gen_id"]: Member(**{**row, "replicate": int(row["replicate"])}) for row in csv.DictReader(handle)}


def load_manifest(paths: Paths, cohort_id: str) -> dict:
    return read_json(paths.cohorts / checked_id(cohort_id, "cohort id") / "manifest.json")


def recorded_spec(paths: Paths, cohort_id: str) -> CohortSpec | None:
    """A cohort as it was recorded (manifest.json), e.g. an `active-*` cohort of flags that have changed since."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / "manifest.json"
    if not path.exists():
        return None
    manifest = read_json(path)
    level, k = manifest["description_level"], manifest["k"]
    combos = [make_combo(concepts, level, k) for concepts in manifest["combos"].values()]
    fields_ = {f.name for f in fields(CohortSpec)} - {"cohort_id", "source", "combos"}
    return CohortSpec(cohort_id, f"the recorded cohort {path}", combos, **{key: manifest[key] for key in fields_})


def resolve(paths: Paths, cohort_id: str, catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """The spec of a cohort named by id: config/cohorts/<id>.yaml, the active flags when the id is theirs, else the
    cohort as recorded under data/cohorts/<id>/."""
    if (paths.cohort_specs / f"{cohort_id}.yaml").exists():
        return load_spec(paths, cohort_id, catalog, settings, backend)
    active = active_spec(catalog, settings, backend)
    if cohort_id == active.cohort_id:
        return active
    recorded = recorded_spec(paths, cohort_id)
    if recorded is None:
        return load_spec(paths, cohort_id, catalog, settings, backend)  # raises: unknown cohort, with the known ones
    return recorded
