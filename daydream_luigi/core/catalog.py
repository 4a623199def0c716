"""Load and validate the raw inputs in data/1_raw (concepts, templates, models) before anything runs."""

import csv
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from daydream_luigi.core.backends import DEFAULT_ENDPOINT, backend_of
from daydream_luigi.core.errors import raise_if
from daydream_luigi.core.ids import id_problem
from daydream_luigi.core.model_options import REASONING_COLUMNS, ROUTING_COLUMNS, read_options
from daydream_luigi.core.parsers import DRAFT_PARSERS, PAIRWISE_PARSERS, SCORE_PARSERS
from daydream_luigi.core.pricing import Price, cached_prices
from daydream_luigi.core.rates import unknown_pools
from daydream_luigi.core.render import template_problem
from daydream_luigi.core.settings import LEVELS, Paths, Settings, load_settings

GENERATORS = ("llm", "copy")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


@dataclass(frozen=True)
class Concept:
    concept_id: str
    name: str
    active: bool
    descriptions: dict[str, str]  # level -> text, only the levels that have a file

    def content(self, level: str) -> str:
        """The description at `level`, falling back to paragraph, then sentence, then the name."""
        for candidate in (level, "paragraph", "sentence"):
            if self.descriptions.get(candidate):
                return self.descriptions[candidate]
        return self.name


@dataclass(frozen=True)
class Template:
    stage: str
    template_id: str
    name: str
    active: bool
    kind: str  # parser name for draft/evaluation/pairwise templates, generator for essay templates
    path: Path
    source: str

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()


@dataclass(frozen=True)
class Model:
    model_id: str
    model: str
    endpoint: str  # where its calls go: an endpoint declared in config/daydream.yaml
    display_name: str
    for_generation: bool
    for_evaluation: bool
    pool: str
    price: Price | None  # None: unknown (no price in llm_models.csv nor in the price cache)
    for_embedding: bool = False  # an embedding model (`daydream dedup`), never a cohort's generator or judge
    vendor: str = ""  # who made the model (llm_models.csv `provider` in the vendor format), free text
    reasoning: dict = field(default_factory=dict)  # its reasoning request object (`model_options`), when set
    routing: dict = field(default_factory=dict)  # OpenRouter's provider preferences (`model_options`), when set


@dataclass(frozen=True)
class Catalog:
    concepts: dict
    templates: dict  # stage -> {template_id: Template}
    models: dict

    def active_concepts(self) -> list[str]:
        return sorted(cid for cid, c in self.concepts.items() if c.active)

    def active_templates(self, stage: str) -> list[str]:
        return sorted(tid for tid, t in self.templates[stage].items() if t.active)

    def draft_concepts(self, concept_ids: Iterable[str], level: str) -> list[dict]:
        """The `concepts` variable of a draft prompt: each concept's name and description at `level`, in order."""
        return [{"name": self.concepts[c].name, "content": self.concepts[c].content(level)} for c in concept_ids]


_TEMPLATE_CATALOGS = {
    "draft": ("draft_templates.csv", "parser"),
    "essay": ("essay_templates.csv", "generator"),
    "evaluation": ("evaluation_templates.csv", "parser"),
    "pairwise": ("pairwise_templates.csv", "parser"),  # judges of `daydream tournament`
}
# A catalog file a project may leave out: without pairwise templates there is no tournament to run, nothing else.
_OPTIONAL_CATALOGS = {"pairwise"}
_MODEL_COLUMNS = ["id", "model", "provider", "display_name", "for_generation", "for_evaluation"]


def read_rows(path: Path, columns: list[str], problems: list[str]) -> list[tuple[int, dict]]:
    """Rows of a CSV with their line numbers; collects a problem (and returns []) when the file cannot be used."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # spreadsheets often save a byte-order mark
            reader = csv.DictReader(handle, strict=True)
            rows = []
            try:
                header = reader.fieldnames or []
                missing = [c for c in columns if c not in header]
                if missing:
                    problems.append(
                        f"{path}: missing column(s) {', '.join(missing)}; the header must contain {','.join(columns)}"
                    )
                    return []
                while True:
                    start = reader.line_num + 1  # where the record begins (a bad quote can run to the end)
                    row = next(reader, None)
                    if row is None:
                        break
                    if None in row or any(v is None for v in row.values()):
                        problems.append(
                            f"{path}: line {start}: expected {len(header)} fields, found "
                            f"{len(header) + len(row.get(None, [])) - sum(v is None for v in row.values())}"
                            f"; quote fields that contain commas"
                        )
                        continue
                    rows.append((start, {k: v.strip() for k, v in row.items()}))
            except csv.Error as exc:
                problems.append(f"{path}: line {start}: not valid CSV ({exc}); check the quotes on that line")
                return []
            return rows
    except FileNotFoundError:
        problems.append(f"{path}: file not found; create it (see the README, 'Inputs')")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8")
    return []


def _read_text(path: Path, problems: list[str]) -> str | None:
    """A description or template file (a byte-order mark is dropped); None, with a problem, when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8")
        return None


def _flag(value: str, where: str, column: str, problems: list[str]) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered not in _FALSE:
        problems.append(f"{where}: {column} {value!r} is not true or false")
    return False


def _check_ids(rows: list[tuple[int, dict]], path: Path, column: str, problems: list[str]) -> list[tuple[int, dict]]:
    """Keep rows whose id is usable and unique; report the others."""
    seen: dict[str, int] = {}
    kept = []
    for line, row in rows:
        value = row[column]
        problem = id_problem(value)
        if problem:
            problems.append(f"{path}: line {line}: {column} {value!r} {problem}; rename it")
        elif value in seen:
            problems.append(
                f"{path}: line {line}: duplicate {column} {value!r} (first on line {seen[value]}); "
                f"remove or rename one of them"
            )
        else:
            seen[value] = line
            kept.append((line, row))
    return kept


def concepts_file(paths: Paths) -> Path:
    return paths.raw / "concepts_metadata.csv"


def description_file(paths: Paths, level: str, concept_id: str) -> Path:
    return paths.raw / "concepts" / f"descriptions-{level}" / f"{concept_id}.txt"


def _load_concepts(paths: Paths, name_only: bool, problems: list[str]) -> dict:
    path = concepts_file(paths)
    rows = _check_ids(read_rows(path, ["concept_id", "name", "active"], problems), path, "concept_id", problems)
    concepts = {}
    for line, row in rows:
        where = f"{path}: line {line}"
        descriptions = {}
        reported = len(problems)
        for level in LEVELS:
            file = description_file(paths, level, row["concept_id"])
            text = _read_text(file, problems) if file.exists() else None
            if text and text.strip():
                descriptions[level] = text.strip()
        if not descriptions and not name_only and len(problems) == reported:  # an unreadable file is reported already
            looked = paths.raw / "concepts" / f"descriptions-{{{','.join(LEVELS)}}}" / f"{row['concept_id']}.txt"
            problems.append(
                f"{where}: concept {row['concept_id']!r} has no description: none of {looked} has text; "
                f"write one, or set allow_name_only_concepts: true in {paths.settings_file}"
            )
        if not row["name"]:
            problems.append(f"{where}: concept {row['concept_id']!r} has an empty name; fill it in")
        concepts[row["concept_id"]] = Concept(
            row["concept_id"], row["name"], _flag(row["active"], where, "active", problems), descriptions
        )
    return concepts


def template_folders(paths: Paths, stage: str) -> list[Path]:
    """Where a stage's template files may be: ours (generation_templates/<stage>, or GEN_TEMPLATES_ROOT), and the
    earlier Dagster system's later (templates/<stage>) and earlier (evaluation_templates/) folders."""
    folders = [paths.templates_root / stage, paths.raw / "templates" / stage]
    return folders + ([paths.raw / "evaluation_templates"] if stage == "evaluation" else [])


def _load_templates(paths: Paths, stage: str, problems: list[str]) -> dict:
    filename, kind_column = _TEMPLATE_CATALOGS[stage]
    path = paths.raw / filename
    if stage in _OPTIONAL_CATALOGS and not path.exists():
        return {}
    columns = ["template_id", "template_name", "description", "active", kind_column]
    rows = _check_ids(read_rows(path, columns, problems), path, "template_id", problems)
    allowed = {
        "draft": set(DRAFT_PARSERS) | {""},
        "essay": set(GENERATORS),
        "evaluation": set(SCORE_PARSERS),
        "pairwise": set(PAIRWISE_PARSERS),
    }[stage]
    templates = {}
    for line, row in rows:
        where = f"{path}: line {line}"
        tid, kind = row["template_id"], row[kind_column]
        if kind not in allowed:
            known = ", ".join(sorted(k for k in allowed if k)) + (" or blank" if "" in allowed else "")
            problems.append(f"{where}: unknown {kind_column} {kind!r} for template {tid!r}; use one of: {known}")
        found = [folder / f"{tid}.txt" for folder in template_folders(paths, stage) if (folder / f"{tid}.txt").exists()]
        if len(found) > 1:
            problems.append(
                f"{where}: template {tid!r} has a file in more than one folder ({', '.join(map(str, found))}); "
                f"keep one of them"
            )
            continue
        file = found[0] if found else paths.templates_root / stage / f"{tid}.txt"
        if not found and stage == "essay" and kind == "copy":  # it calls nothing, so it needs no text
            templates[tid] = Template(
                stage, tid, row["template_name"], _flag(row["active"], where, "active", problems), kind, file, ""
            )
            continue
        if not found:
            problems.append(
                f"{where}: template file {file} not found for template {tid!r}; create it or remove the row"
            )
            continue
        source = _read_text(file, problems)
        if source is None:
            continue
        problem = template_problem(source, stage)
        if problem:
            problems.append(f"{file}: template {tid!r} {problem}; fix the template")
        templates[tid] = Template(
            stage, tid, row["template_name"], _flag(row["active"], where, "active", problems), kind, file, source
        )
    return templates


def _endpoint_and_vendor(row: dict, header: set) -> tuple[str, str]:
    """Where a model's calls go and who made it. With an `endpoint` column, `provider` is the vendor (free text) and a
    blank endpoint means openrouter; a file with neither `endpoint` nor `pool` column (the earlier Dagster system's)
    routes every model through openrouter; a file with `pool` and no `endpoint` is this project's earlier format, whose
    `provider` names the endpoint."""
    if "endpoint" in header:
        return row["endpoint"] or DEFAULT_ENDPOINT, row["provider"]
    if "pool" not in header:
        return DEFAULT_ENDPOINT, row["provider"]
    return row["provider"], ""


def _default_pool(model: str, endpoint: str) -> str:
    """The pool of a model whose row names none: the offline model's own, free for OpenRouter's `:free` variants."""
    if backend_of(endpoint).starts_server:
        return "local"
    return "free" if model.endswith(":free") else "paid"


def _options_problem(model: Model, providers: dict) -> str | None:
    """Why the model's reasoning or routing columns cannot be sent to its endpoint (with the fix), else None."""
    if model.endpoint not in providers:
        return None
    dialect = providers[model.endpoint].dialect
    if model.routing and dialect != "openrouter":
        return (
            f"sets provider_* routing columns, which only OpenRouter takes, but endpoint {model.endpoint!r} speaks "
            f"{dialect}; clear them"
        )
    if model.reasoning and dialect == "openai-compatible":
        return (
            f"sets reasoning_* columns, but endpoint {model.endpoint!r} speaks openai-compatible, whose chat API has "
            f"no reasoning setting; clear them (the thinking a server returns is kept anyway)"
        )
    if dialect == "openai" and set(model.reasoning) - {"effort"}:
        return (
            f"sets reasoning_max_tokens or reasoning_exclude, which only OpenRouter takes, but endpoint "
            f"{model.endpoint!r} speaks openai (reasoning_effort only); use reasoning_effort"
        )
    return None


def _number(row: dict, column: str, where: str, problems: list[str]) -> float | None:
    text = row.get(column) or ""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        problems.append(f"{where}: {column} {text!r} is not a number >= 0 (USD per million tokens)")
        return None
    return value


def _price(row: dict, endpoint: str, cache: dict[str, Price], where: str, problems: list[str]) -> Price | None:
    """The model's price: its own columns (prompt and completion, or one price_per_mtok for both), else the price
    cache (OpenRouter's list), else free for a `:free` model or the offline one; else unknown (None)."""
    prompt, completion = (_number(row, f"price_{part}_per_mtok", where, problems) for part in ("prompt", "completion"))
    flat = _number(row, "price_per_mtok", where, problems)
    if (prompt is None) != (completion is None):
        problems.append(
            f"{where}: model {row['id']!r} has only one of price_prompt_per_mtok and price_completion_per_mtok; "
            f"give both (or neither)"
        )
    elif prompt is not None and completion is not None:
        return Price(prompt, completion)
    if flat is not None:
        return Price.flat(flat)
    if endpoint == DEFAULT_ENDPOINT and row["model"] in cache:
        return cache[row["model"]]
    if row["model"].endswith(":free") or backend_of(endpoint).starts_server:
        return Price(0.0, 0.0)
    return None


def _load_models(paths: Paths, pools: dict, providers: dict, problems: list[str]) -> dict:
    path = paths.raw / "llm_models.csv"
    cache = cached_prices(paths.data_root)
    section = next((provider.section for provider in providers.values()), "endpoints")  # as the settings file says
    rows = _check_ids(read_rows(path, _MODEL_COLUMNS, problems), path, "id", problems)
    header = set(rows[0][1]) if rows else set()
    models = {}
    for line, row in rows:
        where = f"{path}: line {line}"
        endpoint, vendor = _endpoint_and_vendor(row, header)
        if endpoint not in providers:
            kind = "endpoint" if "endpoint" in header else "provider"
            problems.append(
                f"{where}: model {row['id']!r} uses unknown {kind} {endpoint!r}; use one of "
                f"{', '.join(sorted(providers))} or declare it under {section}: in {paths.settings_file}"
            )
        pool = row.get("pool") or _default_pool(row["model"], endpoint)
        if pool not in pools:
            problems.append(
                f"{where}: model {row['id']!r} uses unknown pool {pool!r}; use one of "
                f"{', '.join(sorted(pools))} or add it to [resources] in config/luigi.cfg"
            )
        if not row["model"]:
            problems.append(
                f"{where}: model {row['id']!r} has an empty model string; fill in the provider's model name"
            )
        price = _price(row, endpoint, cache, where, problems)
        model = Model(
            row["id"],
            row["model"],
            endpoint,
            row["display_name"],
            _flag(row["for_generation"], where, "for_generation", problems),
            _flag(row["for_evaluation"], where, "for_evaluation", problems),
            pool,
            price,
            _flag(row.get("for_embedding", ""), where, "for_embedding", problems),
            vendor,
            read_options(row, REASONING_COLUMNS, where, problems),
            read_options(row, ROUTING_COLUMNS, where, problems),
        )
        problem = _options_problem(model, providers)
        if problem:
            problems.append(f"{where}: model {row['id']!r} {problem}")
        if model.for_embedding and (model.for_generation or model.for_evaluation):
            problems.append(
                f"{where}: model {row['id']!r} is for_embedding, so it cannot also be for_generation or "
                f"for_evaluation (an embedding model does not chat); set those to false"
            )
        models[row["id"]] = model
    return models


def load_catalog(paths: Paths, pools: dict, settings: Settings | None = None) -> Catalog:
    """Everything in data/1_raw, validated; raises InputError listing every problem found.

    `settings` (read from `paths` when not given) says whether name-only concepts are allowed and which providers exist.
    """
    settings = settings or load_settings(paths)
    problems: list[str] = []
    concepts = _load_concepts(paths, settings.allow_name_only_concepts, problems)
    templates = {stage: _load_templates(paths, stage, problems) for stage in _TEMPLATE_CATALOGS}
    models = _load_models(paths, pools, settings.providers, problems)
    problems += unknown_pools(settings.pools, pools, "config/daydream.yaml")  # a rate for no pool is a typo
    raise_if(problems)
    return Catalog(concepts, templates, models)
