"""Search specs: `config/searches/<name>.yaml`, a budgeted search for essays that pass a gate, checked key by key like a
cohort spec (every problem one line naming the file, the key and the fix) before anything is written.

A search looks at combinations of concepts a round at a time (`analysis.search` decides each round from the scores so
far); a round is an ordinary cohort (`round_spec`), so its generations are content-addressed and shared with every
cohort and search that asks for the same work. The cube (`cube_spec`) is what the full Cartesian cohort would make:
every candidate combination at the replication the gate is judged on, the yardstick a search's cost is told against.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daydream_luigi.core.catalog import Catalog, load_catalog
from daydream_luigi.core.cohort_spec import CohortSpec, default_axis, id_list
from daydream_luigi.core.combos import Combo, enumerate_combos
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.gates import Gate, load_gate
from daydream_luigi.core.ids import checked_id
from daydream_luigi.core.settings import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    Paths,
    Settings,
    load_settings,
    pool_limits,
    read_yaml,
    shown,
)

SEARCHES_FOLDER = "searches"  # under the config folder (specs) and the data folder (what searches wrote)
ROUNDS_FOLDER = "rounds"  # under data/searches/<name>/: each round's record
STRATEGIES = ("halving", "beam", "random", "exhaustive")
ROUND_PREFIX = "search-"  # a round's cohort: search-<name>-r<round>
_KEYS = (
    "concepts",
    "k",
    "k_min",
    "k_max",
    "draft_templates",
    "essay_templates",
    "generation_models",
    "screen",
    "gate",
    "evaluation_models",
    "replicates",
    "budget",
    "strategy",
    "seed",
    "stop_after_passes",
    "eta",
    "beam_width",
    "batch",
)
_SCREEN_KEYS = ("evaluation_templates", "evaluation_models")
_REPLICATE_KEYS = ("draft", "evaluation")
_BUDGET_KEYS = ("max_calls", "max_cost_usd")
_REQUIRED = {
    "screen": "the cheap look: {evaluation_templates: [...], evaluation_models: [...]}",
    "gate": "what counts as found: a gate of config/gates/",
    "budget": "{max_calls: N} and/or {max_cost_usd: X}",
}
_BEAM_ONLY = ("k_min", "k_max", "beam_width")


@dataclass(frozen=True)
class Budget:
    max_calls: int | None
    max_cost_usd: float | None


@dataclass(frozen=True)
class SearchSpec:
    """A validated search spec. `k_min` = `k_max` = k except for beam."""

    name: str
    path: Path
    concepts: tuple[str, ...]
    k_min: int
    k_max: int
    level: str
    draft_templates: tuple[str, ...]
    essay_templates: tuple[str, ...]
    generation_models: tuple[str, ...]
    screen_templates: tuple[str, ...]
    screen_models: tuple[str, ...]
    gate: Gate
    evaluation_models: tuple[str, ...]
    draft_replicates: int
    evaluation_replicates: int
    budget: Budget
    strategy: str
    seed: int
    stop_after_passes: int
    eta: int
    beam_width: int
    batch: int

    @property
    def gate_templates(self) -> tuple[str, ...]:
        return tuple(criterion.template for criterion in self.gate.criteria)

    @property
    def final_templates(self) -> tuple[str, ...]:
        """What a finalist is judged on: the gate's templates, then the screen's (its ranking keeps its scores)."""
        return _union(self.gate_templates, self.screen_templates)

    @property
    def final_models(self) -> tuple[str, ...]:
        return _union(self.evaluation_models, self.screen_models)

    def candidates(self, k: int | None = None) -> list[Combo]:
        """The combinations of k concepts (default: the spec's k, k_max for beam), in combo_id order."""
        combos = enumerate_combos(list(self.concepts), self.k_max if k is None else k, self.level)
        return sorted(combos, key=lambda c: c.combo_id)


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return first + tuple(value for value in second if value not in first)


@dataclass(frozen=True)
class RoundRequest:
    """One round's work: these combinations, each with `draft_replicates` drafts (one essay each per essay template
    and model), judged on `evaluation_templates` by `evaluation_models`, `evaluation_replicates` times. `phase` says
    why (screen, final, ...)."""

    phase: str
    combos: tuple[Combo, ...]
    draft_replicates: int
    evaluation_templates: tuple[str, ...]
    evaluation_models: tuple[str, ...]
    evaluation_replicates: int


def searches_dir(paths: Paths) -> Path:
    return paths.config_dir / SEARCHES_FOLDER


def search_dir(paths: Paths, name: str) -> Path:
    """Where search `name` writes: data/searches/<name>/."""
    return paths.data_root / SEARCHES_FOLDER / name


def rounds_dir(paths: Paths, name: str) -> Path:
    return search_dir(paths, name) / ROUNDS_FOLDER


def search_path(paths: Paths, name: str) -> Path:
    return searches_dir(paths) / f"{checked_id(name, 'search name')}.yaml"


def search_names(paths: Paths) -> list[str]:
    return sorted(path.stem for path in searches_dir(paths).glob("*.yaml"))


def round_cohort_id(name: str, number: int) -> str:
    return f"{ROUND_PREFIX}{name}-r{number}"


def round_spec(search: SearchSpec, number: int, request: RoundRequest) -> CohortSpec:
    """The cohort a round is recorded as (`search-<name>-r<round>`): its combinations x the search's draft axes,
    one essay replicate, judged as the request says."""
    return CohortSpec(
        cohort_id=round_cohort_id(search.name, number),
        source=f"{search.path} (round {number})",
        combos=list(request.combos),
        draft_templates=list(search.draft_templates),
        essay_templates=list(search.essay_templates),
        evaluation_templates=list(request.evaluation_templates),
        generation_models=list(search.generation_models),
        evaluation_models=list(request.evaluation_models),
        replicates={"draft": request.draft_replicates, "essay": 1, "evaluation": request.evaluation_replicates},
    )


def cube_spec(search: SearchSpec) -> CohortSpec:
    """The exhaustive cube of the same spec: every candidate combination (of k_max for beam) judged as a finalist.
    It holds every generation any strategy of this spec can ask for (a replay reads it)."""
    request = RoundRequest(
        "cube",
        tuple(search.candidates()),
        search.draft_replicates,
        search.final_templates,
        search.final_models,
        search.evaluation_replicates,
    )
    spec = round_spec(search, 0, request)
    spec.cohort_id, spec.source = f"{ROUND_PREFIX}{search.name}-cube", f"{search.path} (the cube)"
    return spec


def _whole(raw: dict, key: str, rule: Any, default: int, where: str, problems: list[str]) -> int:
    value = raw.get(key, default)
    if not rule.accepts(value):
        problems.append(f"{where}: {key} must be {rule.expected} (found {shown(value)})")
        return default
    return int(value)


def _mapping(raw: dict, key: str, allowed: tuple[str, ...], where: str, problems: list[str]) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{where}: {key} must be a mapping of {', '.join(allowed)} (found {shown(value)})")
        return {}
    problems += [
        f"{where}: unknown key {key}.{name}; remove it (allowed: {', '.join(allowed)})"
        for name in value
        if name not in allowed
    ]
    return value


def _budget(raw: dict, where: str, problems: list[str]) -> Budget:
    given = _mapping(raw, "budget", _BUDGET_KEYS, where, problems)
    if "budget" in raw and isinstance(raw["budget"], dict) and not any(key in given for key in _BUDGET_KEYS):
        problems.append(f"{where}: budget sets no limit; give max_calls, max_cost_usd or both")
    calls, cost = given.get("max_calls"), given.get("max_cost_usd")
    if calls is not None and not POSITIVE_INT.accepts(calls):
        problems.append(f"{where}: budget.max_calls must be {POSITIVE_INT.expected} (found {shown(calls)})")
        calls = None
    if cost is not None and not POSITIVE_NUMBER.accepts(cost):
        problems.append(f"{where}: budget.max_cost_usd must be {POSITIVE_NUMBER.expected} (found {shown(cost)})")
        cost = None
    return Budget(calls, None if cost is None else float(cost))


def _sizes(raw: dict, strategy: str, settings: Settings, concepts: list, where: str, problems: list[str]) -> tuple:
    """(k_min, k_max): k for every strategy but beam, k_min..k_max for beam; each within the number of concepts."""
    if strategy == "beam":
        wrong = ["k"] if "k" in raw else []
        missing = [key for key in ("k_min", "k_max") if key not in raw]
        if wrong or missing:
            problems.append(
                f"{where}: strategy beam grows combinations from k_min to k_max; "
                + "; ".join([f"remove {key}" for key in wrong] + [f"add {key}" for key in missing])
            )
            return 1, 1
        sizes = (raw["k_min"], raw["k_max"])
    else:
        given = [key for key in _BEAM_ONLY if key in raw]
        if given:
            problems.append(f"{where}: {', '.join(given)} only apply to strategy beam; remove them or use k")
        sizes = (raw.get("k", settings.k),) * 2
    n = len(concepts)
    if not all(POSITIVE_INT.accepts(k) and k <= n for k in sizes):
        if strategy == "beam":
            rule, values = f"k_min and k_max must be whole numbers from 1 to {n}", list(sizes)
        else:
            rule, values = f"k must be a whole number from 1 to {n}", list(sizes[:1])
        problems.append(f"{where}: {rule}, the number of concepts (found {', '.join(shown(k) for k in values)})")
        return 1, 1
    if sizes[0] > sizes[1]:
        problems.append(f"{where}: k_min ({sizes[0]}) is above k_max ({sizes[1]}); swap them")
        return 1, 1
    return sizes


def search_from_mapping(
    paths: Paths, name: str, raw: Any, where: str, catalog: Catalog, settings: Settings, backend: str
) -> SearchSpec:
    """Validate a search spec (as read from YAML); InputError listing every problem, one line each."""
    checked_id(name, "search name")
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a search spec must be a mapping (concepts, k, screen, gate, budget, strategy, ...)")
    problems = [f"{where}: unknown key {key!r}; allowed: {', '.join(_KEYS)}" for key in raw if key not in _KEYS]
    problems += [f"{where}: {key} is missing; add it ({fix})" for key, fix in _REQUIRED.items() if key not in raw]
    strategy = raw.get("strategy", "halving")
    if strategy not in STRATEGIES:
        problems.append(f"{where}: strategy must be one of {', '.join(STRATEGIES)} (found {shown(strategy)})")
        strategy = "halving"
    concepts = id_list(raw, "concepts", catalog.concepts, catalog.active_concepts(), where, problems)
    k_min, k_max = _sizes(raw, strategy, settings, concepts, where, problems) if concepts else (1, 1)

    def axis(key: str, kind: str, source: dict, default: list, label: str) -> tuple[str, ...]:
        known = catalog.models if kind == "model" else catalog.templates[kind]
        return tuple(id_list(source, key, known, default, f"{where}: {label}" if label else where, problems))

    def default(key: str, kind: str) -> list:
        return default_axis(catalog, key, kind, backend)

    drafts = axis("draft_templates", "draft", raw, default("draft_templates", "draft"), "")
    essays = axis("essay_templates", "essay", raw, default("essay_templates", "essay"), "")
    generators = axis("generation_models", "model", raw, default("generation_models", "model"), "")
    screen = _mapping(raw, "screen", _SCREEN_KEYS, where, problems)
    if "screen" in raw and isinstance(raw["screen"], dict):
        problems += [f"{where}: screen.{key} is missing; add it" for key in _SCREEN_KEYS if key not in screen]
    screen_templates = axis("evaluation_templates", "evaluation", screen, [], "screen") if screen else ()
    screen_models = axis("evaluation_models", "model", screen, [], "screen") if screen else ()
    judges = axis("evaluation_models", "model", raw, list(screen_models), "")
    replicates = _mapping(raw, "replicates", _REPLICATE_KEYS, where, problems)
    reps = {
        stage: _whole(replicates, stage, POSITIVE_INT, settings.replicates[stage], f"{where}: replicates", problems)
        for stage in _REPLICATE_KEYS
    }
    budget = _budget(raw, where, problems)
    seed = _whole(raw, "seed", NON_NEGATIVE_INT, 1, where, problems)
    stop_after = _whole(raw, "stop_after_passes", NON_NEGATIVE_INT, 1, where, problems)
    eta = _whole(raw, "eta", POSITIVE_INT, 3, where, problems)
    if eta == 1:
        problems.append(f"{where}: eta must be 2 or more (each round keeps 1/eta of the combinations); found 1")
    beam_width = _whole(raw, "beam_width", POSITIVE_INT, 2, where, problems)
    batch = _whole(raw, "batch", POSITIVE_INT, 1, where, problems)
    if "batch" in raw and strategy != "random":
        problems.append(f"{where}: batch (combinations per round) only applies to strategy random; remove it")
    gate = None
    if isinstance(raw.get("gate"), str):
        try:
            gate = load_gate(paths, raw["gate"], catalog.templates["evaluation"])
        except InputError as exc:
            problems += [f"{where}: gate {raw['gate']!r}: {problem}" for problem in exc.problems]
    elif "gate" in raw:
        problems.append(f"{where}: gate must be the name of a gate in config/gates/ (found {shown(raw['gate'])})")
    raise_if(problems)
    assert gate is not None  # "gate" is required and a string once no problem was found
    return SearchSpec(
        name,
        Path(where),
        tuple(sorted(concepts)),
        k_min,
        k_max,
        settings.description_level,
        drafts,
        essays,
        generators,
        screen_templates,
        screen_models,
        gate,
        judges,
        reps["draft"],
        reps["evaluation"],
        budget,
        strategy,
        seed,
        stop_after,
        eta,
        beam_width,
        batch,
    )


def load_search(paths: Paths, name: str, catalog: Catalog, settings: Settings, backend: str) -> SearchSpec:
    """config/searches/<name>.yaml, validated against the catalog and the gates."""
    path = search_path(paths, name)
    if not path.exists():
        known = ", ".join(search_names(paths)) or f"none yet in {searches_dir(paths)}"
        raise InputError(f"{path}: search spec not found; write it (see docs/search.md) or name one of: {known}")
    raw = read_yaml(path)
    return search_from_mapping(paths, name, {} if raw is None else raw, str(path), catalog, settings, backend)


def load_named_search(paths: Paths, name: str, backend: str) -> tuple[Settings, Catalog, SearchSpec]:
    """The settings, the catalog and the search spec config/searches/<name>.yaml, checked."""
    settings = load_settings(paths)
    catalog = load_catalog(paths, pool_limits(paths), settings)
    return settings, catalog, load_search(paths, name, catalog, settings, backend)


def decided_inputs(search: SearchSpec) -> dict[str, str]:
    """What a search's decisions rest on besides the kept scores: the sha256 of its spec file and of its gate."""
    return {"spec_sha256": hashlib.sha256(search.path.read_bytes()).hexdigest(), "gate_sha256": search.gate.sha256}
