"""Naming a cohort: its spec file in config/cohorts, or the cohort recorded under data/cohorts/<id>/ (an old active-*
cohort after a flag flip, a spec file since removed); the generations a curated spec lists, read from the store; and
the spec text `import --cohort` would write."""

import itertools
from pathlib import Path

import yaml

from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.cohort_spec import (
    CURATED_LISTS,
    CohortSpec,
    active_spec,
    spec_from_manifest,
    spec_from_mapping,
    spec_path,
    unreadable_manifest,
)
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.expansion import Listed, Member, expand
from daydream_luigi.core.ids import checked_id, id_problem
from daydream_luigi.core.settings import Paths, Settings, read_yaml
from daydream_luigi.store.files import METADATA, gen_dir, read_json
from daydream_luigi.store.membership import MANIFEST, read_manifest


def known_cohorts(paths: Paths) -> list[str]:
    """Every cohort a command can name: the spec files and the cohorts recorded under data/cohorts."""
    specs = {p.stem for p in paths.cohort_specs.glob("*.yaml")}
    recorded = {p.parent.name for p in paths.cohorts.glob("*/manifest.json")}
    return sorted(specs | recorded)


def load_spec(paths: Paths, name: str, catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """A named cohort: config/cohorts/<name>.yaml (axes it leaves out come from the active flags), else the cohort
    recorded under data/cohorts/<name>/ (an old active-* cohort after a flag flip, a spec file since removed)."""
    path = spec_path(paths, name)
    if not path.exists():
        if (paths.cohorts / name / MANIFEST).exists():
            return recorded_spec(paths, name, catalog)
        raise InputError(
            f"unknown cohort {name!r}: {path} does not exist; known cohorts: "
            f"{', '.join(known_cohorts(paths)) or 'none'} (or build one with `daydream cohort build`)"
        )
    raw = read_yaml(path)
    return spec_from_mapping(paths, name, {} if raw is None else raw, str(path), catalog, settings, backend)


def recorded_spec(paths: Paths, cohort_id: str, catalog: Catalog) -> CohortSpec:
    """A cohort as recorded in data/cohorts/<id>/manifest.json, checked against today's catalog (every template and
    model it uses must still exist); its membership is the recorded membership.csv."""
    path = paths.cohorts / checked_id(cohort_id, "cohort id") / MANIFEST
    try:
        manifest, _ = read_manifest(paths, cohort_id)
    except (OSError, ValueError) as exc:
        raise unreadable_manifest(path, exc) from None
    return spec_from_manifest(cohort_id, manifest, path, catalog, paths)


def resolve(paths: Paths, cohort_id: str, catalog: Catalog, settings: Settings, backend: str) -> CohortSpec:
    """The spec of a cohort named by id: config/cohorts/<id>.yaml, the active flags when the id is theirs (so the
    stock luigi command can run the active cohort from a clean data folder), else the cohort as recorded."""
    if not spec_path(paths, cohort_id).exists():
        active = active_spec(catalog, settings, backend)
        if cohort_id == active.cohort_id:
            return active
    return load_spec(paths, cohort_id, catalog, settings, backend)


def new_spec_path(paths: Paths, name: str, force: bool) -> Path:
    """Where `cohort build NAME` may write its spec: never outside config/cohorts, and, without --force, never over
    an existing spec or a cohort already recorded under that name."""
    path = spec_path(paths, name)
    if not force:
        if path.exists():
            raise InputError(f"{path} already exists; choose another name, or pass --force to replace it")
        if (paths.cohorts / name).exists():
            raise InputError(
                f"cohort {name!r} is already recorded in {paths.cohorts / name}; choose another name, "
                f"or pass --force to replace it"
            )
    return path


def curated_listing(
    paths: Paths, name: str, stage: str, gen_ids: list[str], catalog: Catalog, settings: Settings, backend: str
) -> tuple[Path, str | None, list[str]]:
    """config/cohorts/<name>.yaml with `gen_ids` added to its essays (or drafts) list, validated, written by nobody:
    (its path, its new text or None when every id is listed already, the ids added). Only a curated cohort's spec
    takes them: the other cohorts make their essays and drafts from their axes. Its leading comment lines are kept;
    the rest of the file is written out again as plain YAML."""
    path = spec_path(paths, name)
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


def cohort_source(paths: Paths, cohort_id: str, manifest: dict) -> str:
    """Where a recorded cohort came from: the active flags, a spec file or a curated list (a spec file that no longer
    exists is said so)."""
    curated = manifest.get("essays") is not None or manifest.get("drafts") is not None
    if not curated and cohort_id.startswith("active-"):
        return "active flags"
    path = paths.cohort_specs / f"{cohort_id}.yaml"
    kind = "curated list" if curated else "spec"
    return f"{kind} {path}" + ("" if path.exists() else " (file removed)")


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


def listed_generations(spec: CohortSpec, paths: Paths) -> Listed:
    """The complete generations a curated spec lists, as the store has them: each essay with its draft (an imported
    essay has none) and each draft; InputError naming every one that is not complete."""
    essays: list[tuple[str, dict, dict | None]] = []
    drafts: list[tuple[str, dict]] = []
    problems: list[str] = []
    for essay in spec.essays or []:
        meta = _complete_metadata(paths, "essay", essay, spec.source, problems)
        if meta is None:
            continue
        draft_meta = None
        if not meta.get("imported"):
            draft_path = gen_dir(paths.gens, "draft", meta["parent_gen_id"]) / METADATA
            if not draft_path.exists():
                problems.append(
                    f"{spec.source}: essay {essay} has parent draft {meta['parent_gen_id']}, which has no "
                    f"complete generation at {draft_path.parent}; remove the essay from the list"
                )
                continue
            draft_meta = read_json(draft_path)
        essays.append((essay, meta, draft_meta))
    for draft in spec.drafts or []:
        meta = _complete_metadata(paths, "draft", draft, spec.source, problems)
        if meta is not None:
            drafts.append((draft, meta))
    raise_if(problems)
    return Listed(essays, drafts)


def expand_cohort(spec: CohortSpec, paths: Paths, catalog: Catalog, settings: Settings) -> list[Member]:
    """All generations of the cohort (`expansion.expand`), a curated one's listed generations read from the store."""
    return expand(spec, catalog, settings, listed_generations(spec, paths) if spec.curated else None)
