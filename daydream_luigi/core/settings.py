"""Where things live and the run settings: environment variables, config/daydream.yaml and config/luigi.cfg."""

import configparser
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from daydream_luigi.core.batch_settings import BatchSettings, batch_settings
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.model_options import EFFORTS
from daydream_luigi.core.provider_settings import Provider, parse_providers
from daydream_luigi.core.rates import PoolRates, pool_rates

STAGES = ("draft", "essay", "evaluation")
STAGE_ORDER = {stage: i for i, stage in enumerate(STAGES)}
PAIRWISE_STAGE = "pairwise"  # a tournament's judgments: generations of no cohort, in data/gens/pairwise/<judgment_id>/
PARENT_STAGE = {"essay": "draft", "evaluation": "essay"}  # the stage of a generation's parent_gen_id
LEVELS = ("sentence", "paragraph", "article")


@dataclass(frozen=True)
class Paths:
    """Every location the pipeline reads or writes, derived from two roots."""

    data_root: Path
    config_dir: Path

    @classmethod
    def from_env(cls) -> "Paths":
        data = Path(os.environ.get("DAYDREAM_DATA_ROOT", "data")).resolve()
        config = Path(os.environ.get("DAYDREAM_CONFIG_DIR", "config")).resolve()
        return cls(data, config)

    @property
    def raw(self) -> Path:
        return self.data_root / "1_raw"

    @property
    def templates_root(self) -> Path:
        return Path(os.environ.get("GEN_TEMPLATES_ROOT", self.raw / "generation_templates"))

    @property
    def gens(self) -> Path:
        return self.data_root / "gens"

    @property
    def cohorts(self) -> Path:
        return self.data_root / "cohorts"

    @property
    def embedding_cache(self) -> Path:
        """Vectors of texts that are not essays, by model and text sha256 (`providers.embeddings.cached_embedder`)."""
        return self.data_root / "cache" / "embeddings"

    @property
    def combo_mappings(self) -> Path:
        return self.data_root / "combo_mappings.csv"

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "daydream.yaml"

    @property
    def cohort_specs(self) -> Path:
        return self.config_dir / "cohorts"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Rule:
    """A setting's type and range: `accepts` decides, `expected` is what a message asks for."""

    accepts: Callable[[object], bool]
    expected: str


POSITIVE_INT = Rule(lambda v: _is_int(v) and v >= 1, "a whole number >= 1")
NON_NEGATIVE_INT = Rule(lambda v: _is_int(v) and v >= 0, "a whole number >= 0")
POSITIVE_NUMBER = Rule(lambda v: _is_number(v) and v > 0, "a number > 0")
NON_NEGATIVE_NUMBER = Rule(lambda v: _is_number(v) and v >= 0, "a number >= 0")
TEMPERATURE = Rule(lambda v: _is_number(v) and 0 <= v <= 2, "a number from 0 to 2")
BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")

REPLICATES = dict.fromkeys(STAGES, POSITIVE_INT)
_STAGE_SETTINGS = {
    "temperature": TEMPERATURE,
    "max_tokens": POSITIVE_INT,
    "connect_timeout": POSITIVE_NUMBER,
    "read_timeout": POSITIVE_NUMBER,
    "reasoning": None,  # optional: the reasoning settings of the stage's calls (`stage_reasoning`)
}
# Every key of config/daydream.yaml; None marks the two checked apart (description_level keeps its own message,
# providers are parsed by the providers module). The order is the order of the "missing setting(s)" message.
SCHEMA = {
    "k": POSITIVE_INT,
    "description_level": None,
    "min_draft_lines": POSITIVE_INT,
    "replicates": REPLICATES,
    "stages": dict.fromkeys(STAGES, _STAGE_SETTINGS),
    "retry": {
        "max_attempts": POSITIVE_INT,
        "max_total_seconds": POSITIVE_NUMBER,
        "backoff_base": POSITIVE_NUMBER,
        "backoff_max": POSITIVE_NUMBER,
    },
    "scheduling": {"part_size": POSITIVE_INT},
    "limits": {"max_prompt_chars": POSITIVE_INT},
    "allow_name_only_concepts": BOOLEAN,
    "guard": {"max_calls": NON_NEGATIVE_INT, "max_cost_usd": NON_NEGATIVE_NUMBER},
    "endpoints": None,
    "providers": None,  # the earlier name of endpoints, still read
    "pools": None,
    "batch": None,
}
OPTIONAL_SETTINGS = ("pools", "batch")  # may be left out; checked by the ratelimit and batch modules


def shown(value: object) -> str:
    """A value as a message quotes it, spelled the way YAML writes it."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "nothing"}[value]
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def schema_problems(raw: dict, schema: dict, prefix: str = "") -> tuple[list[str], list[str]]:
    """(missing key paths, other problems) of `raw` against `schema`; each problem names its key path and the fix."""
    missing: list[str] = []
    problems: list[str] = []
    level = f"in {prefix[:-1]}" if prefix else "at the top level"
    problems += [
        f"unknown setting {prefix}{key}; remove it (allowed {level}: {', '.join(schema)})"
        for key in raw
        if key not in schema
    ]
    for key, rule in schema.items():
        path = f"{prefix}{key}"
        if key not in raw:
            missing.append(path)
        elif isinstance(rule, dict):
            value = raw[key]
            if isinstance(value, dict):
                nested_missing, nested = schema_problems(value, rule, f"{path}.")
                missing += nested_missing
                problems += nested
            else:
                problems.append(f"{path} must be a mapping of {', '.join(rule)} (found {shown(value)})")
        elif rule is not None and not rule.accepts(raw[key]):
            problems.append(f"{path} must be {rule.expected} (found {shown(raw[key])})")
    return missing, problems


@dataclass(frozen=True)
class Guard:
    """Above either threshold a run asks before it starts (guard: in config/daydream.yaml)."""

    max_calls: int
    max_cost_usd: float


@dataclass(frozen=True)
class StageSettings:
    """How a stage's calls are sampled and waited for (stages.<stage> in config/daydream.yaml)."""

    temperature: float
    max_tokens: int
    connect_timeout: float
    read_timeout: float
    reasoning: Mapping[str, object] = field(default_factory=dict)  # effort | max_tokens, exclude; {} when not set


_REASONING = {
    "effort": Rule(lambda v: v in EFFORTS, f"one of {', '.join(EFFORTS)}"),
    "max_tokens": POSITIVE_INT,
    "exclude": BOOLEAN,
}


def stage_reasoning(raw: object, where: str, problems: list[str]) -> dict:
    """A stage's `reasoning:` mapping (OpenRouter's reasoning object: effort or max_tokens, exclude), checked."""
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a mapping of {', '.join(_REASONING)} (found {shown(raw)})")
        return {}
    found = len(problems)
    for key, value in raw.items():
        if key not in _REASONING:
            problems.append(f"unknown setting {where}.{key}; remove it (allowed in {where}: {', '.join(_REASONING)})")
        elif not _REASONING[key].accepts(value):
            problems.append(f"{where}.{key} must be {_REASONING[key].expected} (found {shown(value)})")
    if "effort" in raw and "max_tokens" in raw:
        problems.append(f"{where}: set effort or max_tokens, not both (OpenRouter takes one)")
    return dict(raw) if len(problems) == found else {}


@dataclass(frozen=True)
class RetryPolicy:
    """How a call retries a provider's transient faults (retry: in config/daydream.yaml)."""

    max_attempts: int = 6
    max_total_seconds: float = 300.0  # bound on the total time spent waiting between attempts
    backoff_base: float = 1.0  # exponential backoff base seconds, full jitter, capped by backoff_max
    backoff_max: float = 60.0


@dataclass(frozen=True)
class Settings:
    """The parsed, validated run settings (config/daydream.yaml). Numbers are kept as written (an int stays an int):
    the sampling settings are part of every gen_id (see identity)."""

    k: int
    description_level: str
    min_draft_lines: int
    replicates: dict[str, int]  # stage -> how many independent generations
    stages: dict[str, StageSettings]
    retry: RetryPolicy
    part_size: int  # scheduling.part_size
    max_prompt_chars: int  # limits.max_prompt_chars
    allow_name_only_concepts: bool
    guard: Guard
    providers: dict[str, Provider]  # provider id -> its declaration
    pools: dict[str, PoolRates]  # pool -> its rates (pools:; a pool left out has no rate limit)
    batch: BatchSettings

    def stage(self, stage: str) -> StageSettings:
        return self.stages[stage]


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error, with its line."""
    mark = getattr(exc, "problem_mark", None)
    where = f" on line {mark.line + 1}" if mark else ""
    return f"not valid YAML{where} ({getattr(exc, 'problem', None) or exc}); fix the syntax"


def read_yaml(path: Path) -> Any:
    """A YAML file's contents (a byte-order mark is fine); InputError naming the file when it cannot be read."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None


def load_settings(paths: Paths) -> Settings:
    """config/daydream.yaml, typed and ranged; raises InputError listing every problem, one line each."""
    path = paths.settings_file
    try:
        raw = read_yaml(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; restore it from git or set DAYDREAM_CONFIG_DIR") from None
    raw = raw if isinstance(raw, dict) else {}
    missing, problems = schema_problems(raw, SCHEMA)
    section = "providers" if "providers" in raw and "endpoints" not in raw else "endpoints"
    missing = [
        key
        for key in missing
        if key not in OPTIONAL_SETTINGS and not key.endswith(".reasoning") and key not in ("providers", "endpoints")
    ]
    missing += [] if section in raw else ["endpoints"]
    if missing:
        problems.insert(0, f"missing setting(s) {', '.join(missing)}; add them (see the README)")
    if "description_level" in raw and raw["description_level"] not in LEVELS:
        problems.append(f"description_level {raw['description_level']!r} is not one of {', '.join(LEVELS)}")
    stages = raw["stages"] if isinstance(raw.get("stages"), dict) else {}
    for stage in STAGES:
        config = stages.get(stage)
        if isinstance(config, dict) and "reasoning" in config:
            config["reasoning"] = stage_reasoning(config["reasoning"], f"stages.{stage}.reasoning", problems)
    problems = [f"{path}: {problem}" for problem in problems]
    providers: dict[str, Provider] = {}
    if "providers" in raw and "endpoints" in raw:
        problems.append(
            f"{path}: both endpoints: and providers: (its earlier name) are set; keep endpoints: and move every entry "
            f"of providers: into it"
        )
    elif section in raw:
        providers, provider_problems = parse_providers(raw[section], str(path), section)
        problems += provider_problems
    pools: dict[str, PoolRates] = {}
    batch = BatchSettings()
    try:
        pools = pool_rates(raw.get("pools"), str(path))
    except InputError as exc:
        problems += exc.problems
    try:
        batch = batch_settings(raw.get("batch"), str(path), STAGES)
    except InputError as exc:
        problems += exc.problems
    raise_if(problems)
    return Settings(
        k=raw["k"],
        description_level=raw["description_level"],
        min_draft_lines=raw["min_draft_lines"],
        replicates=dict(raw["replicates"]),
        stages={stage: StageSettings(**raw["stages"][stage]) for stage in STAGES},
        retry=RetryPolicy(**raw["retry"]),
        part_size=raw["scheduling"]["part_size"],
        max_prompt_chars=raw["limits"]["max_prompt_chars"],
        allow_name_only_concepts=raw["allow_name_only_concepts"],
        guard=Guard(**raw["guard"]),
        providers=providers,
        pools=pools,
        batch=batch,
    )


def luigi_config_file(paths: Paths) -> Path:
    """The Luigi config file in use: LUIGI_CONFIG_PATH when set, else config/luigi.cfg."""
    return Path(os.environ.get("LUIGI_CONFIG_PATH") or paths.config_dir / "luigi.cfg")


def check_pool_limits(resources: Mapping[str, str], source: str) -> dict[str, int]:
    """A [resources] section (pool -> limit, as text) as integers >= 1; InputError naming `source` and each bad key.

    Luigi would wait forever on a limit of 0 and fail with a traceback on `five`; `5_0` or `+5` are not limits either.
    """
    limits: dict[str, int] = {}
    problems = []
    for name, value in resources.items():
        text = str(value).strip()
        if re.fullmatch(r"[0-9]+", text) and int(text) >= 1:
            limits[name] = int(text)
        else:
            problems.append(
                f"{source}: [resources] {name} must be a whole number >= 1 (found {text!r}); it is how "
                f"many calls of pool {name!r} may run at once"
            )
    raise_if(problems)
    return limits


def pool_limits(paths: Paths) -> dict[str, int]:
    """The [resources] section of the Luigi config file in use: pool name -> how many calls may run at once.

    Read here, without Luigi, from the one file daydream points Luigi at (`luigi_config_file`; see
    `execution.luigi_config.configure_luigi`): Luigi itself would also read /etc/luigi/*.cfg and a luigi.cfg in the
    working directory, but the pools are this project's and declared in its file. So every layer checks a model's pool
    (the catalog of an import or a report) without importing Luigi, against the limits Luigi's scheduler gets (the
    local one has them raised per run by `execution.runner.call_slots`, the central one is configured from the same
    file by `execution.central`).
    """
    path = luigi_config_file(paths)
    config = configparser.ConfigParser()
    config.read(path)
    if not config.has_section("resources"):
        return {}
    return check_pool_limits(dict(config.items("resources")), str(path))
