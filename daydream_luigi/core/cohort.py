"""Cohorts: the deterministic set of generations a run makes, from the active flags, a YAML spec or an essay list."""

import csv
import hashlib
import io
import itertools
import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import yaml

from daydream_luigi.core import identity
from daydream_luigi.core.backends import backend_of
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.combos import Combo, enumerate_combos, make_combo, read_mappings
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.ids import checked_id, id_problem
from daydream_luigi.core.render import RenderError, render
from daydream_luigi.core.settings import (
    LEVELS,
    PARENT_STAGE,
    POSITIVE_INT,
    REPLICATES,
    STAGES,
    Paths,
    Settings,
    read_yaml,
    schema_problems,
    shown,
)
from daydream_luigi.store.files import METADATA, atomic_write_json, atomic_write_text, gen_dir, read_json

MEMBERSHIP, MANIFEST, RUN_RECORD = "membership.csv", "manifest.json", "last_run.json"


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


def is_imported(member: Member) -> bool:
    """A text imported from a file (see `importer`): complete from the start, made with no template and no model (an
    imported essay has no draft either)."""
    return not member.template_id


def calls_model(member: Member, catalog: Catalog) -> bool:
    """Whether making this generation calls a model: not for a copy essay (it copies its draft) nor an imported text."""
    return not is_imported(member) and catalog.templates[member.stage][member.template_id].kind != "copy"


@dataclass
class CohortSpec:
    """The axes of a cohort. `essays` or `drafts` set means curated mode: those essays, and essays written from those
    drafts by the essay axes (essay templates x generation models), all judged by the evaluation axes.
    `recorded`: its axes were read back from data/cohorts/<id>/manifest.json (it is expanded like any spec)."""

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

    @property
    def curated(self) -> bool:
        return self.essays is not None or self.drafts is not None

    def manifest(self) -> dict:
        data = asdict(self)
        if self.drafts is None:
            data.pop("drafts")  # the manifests of cohorts without drafts stay as they were recorded
        data["combos"] = {c.combo_id: list(c.concept_ids) for c in self.combos}
        data["description_level"] = self.combos[0].level if self.combos else None
        data["k"] = self.combos[0].k if self.combos else None
        data.pop("source")
        data.pop("recorded")
        return data


def _backend_models(catalog: Catalog, backend: str, role: str) -> list[str]:
    """Active models for a role, restricted to those the backend runs (the embedded model for local, the providers'
    for http)."""
    flag = "for_generation" if role == "generation" else "for_evaluation"
    return sorted(
        m.model_id for m in catalog.models.values() if getattr(m, flag) and backend_of(m.provider).name == backend
    )


def draft_prompts(spec: CohortSpec, catalog: Catalog, settings: Settings) -> dict:
    """(combo_id, template_id) -> the rendered draft prompt, for every draft of the cohort. Their inputs (template,
    concept descriptions) are all known before a run, so a template that fails, or renders longer than
    limits.max_prompt_chars, is one message per template instead of a failure per draft; and the prompt is part of
    each draft's identity. (Essay and evaluation prompts need their parents' text: the stage checks those.)"""
    problems, prompts = [], {}
    for template_id in spec.draft_templates:
        template = catalog.templates["draft"][template_id]
        for combo in spec.combos:
            try:
                prompts[combo.combo_id, template_id] = render(
                    template.source,
                    max_chars=settings.max_prompt_chars,
                    concepts=catalog.draft_concepts(combo.concept_ids, combo.level),
                )
            except RenderError as exc:
                problems.append(
                    f"{template.path}: template {template_id!r} failed to render for {combo.combo_id} "
                    f"({', '.join(combo.concept_ids)}): {exc}"
                )
                break
    raise_if(problems)
    return prompts


def active_spec(catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """The Cartesian cohort of the active flags; its id derives from its axes, so a change of flags is a new cohort."""
    spec = CohortSpec(
        cohort_id="",
        source="the active flags in data/1_raw",
        combos=enumerate_combos(catalog.active_concepts(), settings.k, settings.description_level),
        draft_templates=catalog.active_templates("draft"),
        essay_templates=catalog.active_templates("essay"),
        evaluation_templates=catalog.active_templates("evaluation"),
        generation_models=_backend_models(catalog, backend, "generation"),
        evaluation_models=_backend_models(catalog, backend, "evaluation"),
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


def _id_list(raw: dict, key: str, known, default: list, where: str, problems: list[str]) -> list:
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


def _spec_path(paths: Paths, name: str) -> Path:
    return paths.cohort_specs / f"{checked_id(name, 'cohort name')}.yaml"


def known_cohorts(paths: Paths) -> list[str]:
    """Every cohort a command can name: the spec files and the cohorts recorded under data/cohorts."""
    specs = {p.stem for p in paths.cohort_specs.glob("*.yaml")}
    recorded = {p.parent.name for p in paths.cohorts.glob("*/manifest.json")}
    return sorted(specs | recorded)


def load_spec(paths: Paths, name: str, catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """A named cohort: config/cohorts/<name>.yaml (axes it leaves out come from the active flags), else the cohort
    recorded under data/cohorts/<name>/ (an old active-* cohort after a flag flip, a spec file since removed)."""
    path = _spec_path(paths, name)
    if not path.exists():
        if (paths.cohorts / name / MANIFEST).exists():
            return recorded_spec(paths, name, catalog, settings)
        raise InputError(
            f"unknown cohort {name!r}: {path} does not exist; known cohorts: "
            f"{', '.join(known_cohorts(paths)) or 'none'} (or build one with `daydream cohort build`)"
        )
    raw = read_yaml(path)
    return spec_from_mapping(paths, name, {} if raw is None else raw, str(path), catalog, settings, backend)


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
    paths: Paths, name: str, raw, where: str, catalog: Catalog, settings: Settings, backend: str
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
    concepts = _id_list(raw, "concepts", catalog.concepts, catalog.active_concepts(), where, problems)
    k = raw.get("k", settings.k)
    if ("k" in raw or "concepts" in raw) and concepts and not (POSITIVE_INT.accepts(k) and k <= len(concepts)):
        problems.append(
            f"{where}: k must be a whole number from 1 to {len(concepts)}, the number of concepts it "
            f"combines (found {shown(k)}{'' if 'k' in raw else ' in config/daydream.yaml'})"
        )
    combo_ids = _id_list(raw, "combos", None, [], where, problems)
    axes = {
        key: _id_list(raw, key, _known(catalog, kind), _default_axis(catalog, key, kind, backend), where, problems)
        for key, kind, _ in _AXES
    }
    essays, drafts = (
        _id_list(raw, key, None, None, where, problems) if key in raw else None for key in ("essays", "drafts")
    )
    raise_if(problems)
    if essays is not None or drafts is not None:
        return CohortSpec(name, where, [], replicates=replicates, essays=essays, drafts=drafts, **axes)
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
    spec = CohortSpec(name, where, combos, replicates=replicates, **axes)
    return spec


def _default_axis(catalog: Catalog, key: str, kind: str, backend: str) -> list:
    """What a spec that leaves out axis `key` gets: the active templates, or the backend's models for the role."""
    if kind == "model":
        return _backend_models(catalog, backend, "generation" if key == "generation_models" else "evaluation")
    return catalog.active_templates(kind)


def _gone_concepts(combos, catalog: Catalog, where: str) -> list[str]:
    """A combo whose concepts left concepts_metadata.csv could not be rendered."""
    return [
        f"{where}: combo {combo.combo_id} combines {', '.join(gone)}, no longer in concepts_metadata.csv; "
        f"restore {'it' if len(gone) == 1 else 'them'} or leave the combo out"
        for combo in combos
        if (gone := [c for c in combo.concept_ids if c not in catalog.concepts])
    ]


def recorded_spec(paths: Paths, cohort_id: str, catalog: Catalog, settings: Settings) -> CohortSpec:
    """A cohort as recorded in data/cohorts/<id>/manifest.json, checked against today's catalog (every template and
    model it uses must still exist); its membership is the recorded membership.csv."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / MANIFEST
    try:
        manifest = read_json(path)
        combos = [
            Combo(cid, tuple(concepts), manifest["description_level"], manifest["k"])
            for cid, concepts in manifest["combos"].items()
        ]
        axes = {key: list(manifest[key]) for key, _, _ in _AXES}
        replicates, essays, drafts = dict(manifest["replicates"]), manifest["essays"], manifest.get("drafts")
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise InputError(
            f"{path}: not a readable cohort manifest ({type(exc).__name__}: {exc}); rebuild the cohort "
            f"from its spec, or remove {path.parent}"
        ) from None
    problems = [
        f"{path}: cohort {cohort_id} uses {key[:-1].replace('_', ' ')} {value!r}, which is no longer in "
        f"{filename}; restore its row to use this cohort"
        for key, kind, filename in _AXES
        for value in axes[key]
        if value not in _known(catalog, kind)
    ]
    problems += [] if essays is not None or drafts is not None else _gone_concepts(combos, catalog, str(path))
    raise_if(problems)
    return CohortSpec(
        cohort_id, str(path), combos, replicates=replicates, essays=essays, drafts=drafts, recorded=True, **axes
    )


def new_spec_path(paths: Paths, name: str, force: bool) -> Path:
    """Where `cohort build NAME` may write its spec: never outside config/cohorts, and, without --force, never over
    an existing spec or a cohort already recorded under that name."""
    path = _spec_path(paths, name)
    if not force:
        if path.exists():
            raise InputError(f"{path} already exists; choose another name, or pass --force to replace it")
        if (paths.cohorts / name).exists():
            raise InputError(
                f"cohort {name!r} is already recorded in {paths.cohorts / name}; choose another name, "
                f"or pass --force to replace it"
            )
    return path


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
    listed = set()
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


def curated_listing(
    paths: Paths, name: str, stage: str, gen_ids: list[str], catalog: Catalog, settings: Settings, backend: str
) -> tuple[Path, str | None, list[str]]:
    """config/cohorts/<name>.yaml with `gen_ids` added to its essays (or drafts) list, validated, written by nobody:
    (its path, its new text or None when every id is listed already, the ids added). Only a curated cohort's spec
    takes them: the other cohorts make their essays and drafts from their axes. Its leading comment lines are kept;
    the rest of the file is written out again as plain YAML."""
    path = _spec_path(paths, name)
    if not path.exists():
        if (paths.cohorts / name / MANIFEST).exists():
            raise InputError(
                f"cohort {name!r} is recorded in {paths.cohorts / name} but has no spec file {path} to "
                f"add to; build a curated cohort with `daydream cohort build NAME --from-essays FILE`"
            )
        raise InputError(
            f"unknown cohort {name!r}: {path} does not exist; known cohorts: "
            f"{', '.join(known_cohorts(paths)) or 'none'} (or build a curated one with "
            f"`daydream cohort build {name} --from-essays FILE`)"
        )
    raw = read_yaml(path)
    raw = {} if raw is None else raw
    if isinstance(raw, dict) and not any(key in raw for key in CURATED_LISTS.values()):
        raise InputError(
            f"{path}: cohort {name} is not curated (it lists no essays or drafts): it makes its {stage}s "
            f"from its axes, so imported ones cannot join it; give a curated cohort, or build one with "
            f"`daydream cohort build NAME --from-essays FILE`"
        )
    spec_from_mapping(paths, name, raw, str(path), catalog, settings, backend)  # a broken spec is not added to
    key = CURATED_LISTS[stage]
    listed = raw.get(key) or []
    added = [gen_id for gen_id in gen_ids if gen_id not in listed]
    if not added:
        return path, None, []
    updated = {**raw, key: [*listed, *added]}
    spec_from_mapping(paths, name, updated, str(path), catalog, settings, backend)
    original = path.read_text(encoding="utf-8-sig")
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), original.splitlines(keepends=True)))
    return path, header + yaml.safe_dump(updated, sort_keys=False, allow_unicode=True), added


def _cartesian(spec: CohortSpec, catalog: Catalog, settings: Settings) -> list[Member]:
    rows: list[Member] = []
    cid, reps = spec.cohort_id, spec.replicates
    prompts = draft_prompts(spec, catalog, settings)
    for combo in sorted(spec.combos, key=lambda c: c.combo_id):  # the order a recorded manifest keeps them in
        for dt in spec.draft_templates:
            for model in spec.generation_models:
                shape = identity.call_shape(settings, "draft", catalog.models[model])
                for dr in range(1, reps["draft"] + 1):
                    draft = identity.draft_id(prompts[combo.combo_id, dt], shape, dr)
                    rows.append(Member("draft", draft, cid, "", combo.combo_id, dt, model, dr))
                    rows += _essays_of(spec, catalog, settings, draft, combo.combo_id, model)
    return rows


def _essays_of(
    spec: CohortSpec, catalog: Catalog, settings: Settings, draft: str, combo: str, model: str
) -> list[Member]:
    rows = []
    for et in spec.essay_templates:
        template = catalog.templates["essay"][et]
        shape = None if template.kind == "copy" else identity.call_shape(settings, "essay", catalog.models[model])
        for er in range(1, spec.replicates["essay"] + 1):
            essay = identity.essay_id(draft, template, shape, er)
            rows.append(Member("essay", essay, spec.cohort_id, draft, combo, et, model, er))
            rows += _evaluations_of(spec, catalog, settings, essay, combo)
    return rows


def _evaluations_of(spec: CohortSpec, catalog: Catalog, settings: Settings, essay: str, combo: str) -> list[Member]:
    rows = []
    for vt in spec.evaluation_templates:
        template = catalog.templates["evaluation"][vt]
        for judge in spec.evaluation_models:
            shape = identity.call_shape(settings, "evaluation", catalog.models[judge])
            rows += [
                Member(
                    "evaluation",
                    identity.evaluation_id(essay, template, shape, vr),
                    spec.cohort_id,
                    essay,
                    combo,
                    vt,
                    judge,
                    vr,
                )
                for vr in range(1, spec.replicates["evaluation"] + 1)
            ]
    return rows


def _complete_metadata(paths: Paths, stage: str, gen_id: str, source: str, problems: list[str]) -> dict | None:
    """The metadata of a generation a curated cohort lists, or None (and a problem) when it is not complete."""
    problem = id_problem(gen_id)
    if problem:
        problems.append(f"{source}: {stage} id {gen_id!r} {problem}")
        return None
    path = gen_dir(paths.gens, stage, gen_id) / METADATA
    if not path.exists():
        problems.append(
            f"{source}: {stage} {gen_id} has no complete generation at {path.parent}; remove it from the "
            f"list, run its cohort first, or import its text again"
        )
        return None
    return read_json(path)


def _draft_row(spec: CohortSpec, meta: dict) -> Member:
    """A listed draft as it is on disk; a generated one also brings its combination (an imported one has none)."""
    if not meta.get("imported"):
        spec.combos.append(make_combo(meta["concept_ids"], meta["description_level"], meta["k"]))
    return Member(
        "draft",
        meta["gen_id"],
        spec.cohort_id,
        "",
        meta["combo_id"],
        meta["template_id"],
        meta["llm_model_id"],
        meta["replicate"],
    )


def _curated(spec: CohortSpec, paths: Paths, catalog: Catalog, settings: Settings) -> list[Member]:
    """The listed essays with their drafts (already complete; an imported essay has no draft), the essays asked of
    the listed drafts (essay templates x generation models), and the evaluations asked of every essay."""
    rows: list[Member] = []
    problems: list[str] = []
    for essay in spec.essays or []:
        meta = _complete_metadata(paths, "essay", essay, spec.source, problems)
        if meta is None:
            continue
        if not meta.get("imported"):
            draft_path = gen_dir(paths.gens, "draft", meta["parent_gen_id"]) / METADATA
            if not draft_path.exists():
                problems.append(
                    f"{spec.source}: essay {essay} has parent draft {meta['parent_gen_id']}, which has no "
                    f"complete generation at {draft_path.parent}; remove the essay from the list"
                )
                continue
            rows.append(_draft_row(spec, read_json(draft_path)))
        rows.append(
            Member(
                "essay",
                essay,
                spec.cohort_id,
                meta["parent_gen_id"],
                meta["combo_id"],
                meta["template_id"],
                meta["llm_model_id"],
                meta["replicate"],
            )
        )
        rows += _evaluations_of(spec, catalog, settings, essay, meta["combo_id"])
    for draft in spec.drafts or []:
        meta = _complete_metadata(paths, "draft", draft, spec.source, problems)
        if meta is None:
            continue
        rows.append(_draft_row(spec, meta))
        for model in spec.generation_models:
            rows += _essays_of(spec, catalog, settings, draft, meta["combo_id"], model)
    raise_if(problems)
    return rows


def expand(spec: CohortSpec, paths: Paths, catalog: Catalog, settings: Settings) -> list[Member]:
    """All generations of the cohort, drafts first; duplicates (a draft shared by two essays) appear once. A recorded
    cohort is expanded again from its recorded axes too, so a template edited since gives new gen_ids (see identity)."""
    if spec.curated:
        rows = _curated(spec, paths, catalog, settings)
    else:
        rows = _cartesian(spec, catalog, settings)
    unique = list({(m.stage, m.gen_id): m for m in rows}.values())
    stage_order = {stage: i for i, stage in enumerate(STAGES)}
    unique.sort(key=lambda m: stage_order[m.stage])
    spec.combos = sorted(set(spec.combos), key=lambda c: c.combo_id)
    check_integrity(unique, spec.source)
    return unique


def check_integrity(rows: list[Member], source: str) -> None:
    """Every essay's parent is a draft (an imported essay has none) and every evaluation's parent an essay of the same
    cohort."""
    by_stage = {stage: {m.gen_id for m in rows if m.stage == stage} for stage in STAGES}
    problems = [
        f"{source}: {m.stage} {m.gen_id} has parent {m.parent_gen_id!r}, which is not a "
        f"{PARENT_STAGE[m.stage]} of cohort {m.cohort_id}; rebuild the cohort"
        for m in rows
        if m.stage in PARENT_STAGE and not is_imported(m) and m.parent_gen_id not in by_stage[PARENT_STAGE[m.stage]]
    ]
    raise_if(problems)


def _membership_text(rows: list[Member]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MEMBERSHIP_COLUMNS)
    writer.writerows([getattr(m, c) for c in MEMBERSHIP_COLUMNS] for m in rows)
    return buffer.getvalue()


def write_cohort(paths: Paths, spec: CohortSpec, rows: list[Member]) -> Path:
    folder = paths.cohorts / checked_id(spec.cohort_id, "cohort id")
    atomic_write_json(folder / MANIFEST, spec.manifest())
    atomic_write_text(folder / MEMBERSHIP, _membership_text(rows))  # last: a membership.csv means a whole cohort
    return folder


def membership_is_current(paths: Paths, spec: CohortSpec, rows: list[Member]) -> bool:
    """Whether the recorded membership is exactly what the spec expands to now."""
    folder = paths.cohorts / checked_id(spec.cohort_id, "cohort id")
    try:
        return (folder / MEMBERSHIP).read_text() == _membership_text(rows) and read_json(
            folder / MANIFEST
        ) == json.loads(json.dumps(spec.manifest()))
    except (OSError, ValueError):
        return False


def record_run(paths: Paths, cohort_id: str, started_at: str, finished_at: str, counts: dict) -> None:
    """Note a finished run of the cohort (ISO times, counts such as done/failed), for `daydream cohorts`."""
    atomic_write_json(
        paths.cohorts / checked_id(cohort_id, "cohort id") / RUN_RECORD,
        {"started_at": started_at, "finished_at": finished_at, **counts},
    )


def cohort_source(paths: Paths, cohort_id: str, manifest: dict) -> str:
    """Where a recorded cohort came from: the active flags, a spec file or a curated list (a spec file that no longer
    exists is said so)."""
    curated = manifest.get("essays") is not None or manifest.get("drafts") is not None
    if not curated and cohort_id.startswith("active-"):
        return "active flags"
    path = paths.cohort_specs / f"{cohort_id}.yaml"
    kind = "curated list" if curated else "spec"
    return f"{kind} {path}" + ("" if path.exists() else " (file removed)")


def load_membership(paths: Paths, cohort_id: str) -> dict[str, Member]:
    """gen_id -> Member for a written cohort (cached per file version; Luigi tasks look their row up here)."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / MEMBERSHIP
    if not path.exists():
        raise InputError(f"cohort {cohort_id!r} has no membership at {path}; run `daydream run --cohort NAME` first")
    return _read_membership(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _read_membership(path: Path, _mtime: int) -> dict[str, Member]:
    with path.open(newline="") as handle:
        return {row["gen_id"]: Member(**{**row, "replicate": int(row["replicate"])}) for row in csv.DictReader(handle)}


def load_manifest(paths: Paths, cohort_id: str) -> dict:
    return read_json(paths.cohorts / checked_id(cohort_id, "cohort id") / MANIFEST)


def resolve(paths: Paths, cohort_id: str, catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """The spec of a cohort named by id: config/cohorts/<id>.yaml, the active flags when the id is theirs (so the
    stock luigi command can run the active cohort from a clean data folder), else the cohort as recorded."""
    if not _spec_path(paths, cohort_id).exists():
        active = active_spec(catalog, settings, backend)
        if cohort_id == active.cohort_id:
            return active
    return load_spec(paths, cohort_id, catalog, settings, backend)
