"""Where things live and the run settings: environment variables, config/daydream.yaml and config/luigi.cfg."""

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import luigi.configuration
import yaml

from .errors import InputError

STAGES = ("draft", "essay", "evaluation")
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
    def combo_mappings(self) -> Path:
        return self.data_root / "combo_mappings.csv"

    @property
    def settings_file(self) -> Path:
        return self.config_dir / "daydream.yaml"

    @property
    def cohort_specs(self) -> Path:
        return self.config_dir / "cohorts"


@dataclass(frozen=True)
class Settings:
    """The parsed run settings (config/daydream.yaml)."""

    raw: dict

    @cached_property
    def k(self) -> int:
        return int(self.raw["k"])

    @property
    def description_level(self) -> str:
        return self.raw["description_level"]

    @property
    def min_draft_lines(self) -> int:
        return int(self.raw["min_draft_lines"])

    @property
    def replicates(self) -> dict[str, int]:
        return {stage: int(self.raw["replicates"][stage]) for stage in STAGES}

    def stage(self, stage: str) -> dict:
        return dict(self.raw["stages"][stage])

    @property
    def retry(self) -> dict:
        return dict(self.raw["retry"])

    @property
    def part_size(self) -> int:
        return int(self.raw["scheduling"]["part_size"])


_REQUIRED = ("k", "description_level", "min_draft_lines", "replicates", "stages", "retry", "scheduling")


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line description of a YAML error, with its line."""
    mark = getattr(exc, "problem_mark", None)
    where = f" on line {mark.line + 1}" if mark else ""
    return f"not valid YAML{where} ({getattr(exc, 'problem', None) or exc}); fix the syntax"


def load_settings(paths: Paths) -> Settings:
    path = paths.settings_file
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; restore it from git or set DAYDREAM_CONFIG_DIR") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: {yaml_problem(exc)}") from None
    missing = [key for key in _REQUIRED if not isinstance(raw, dict) or key not in raw]
    if missing:
        raise InputError(f"{path}: missing setting(s) {', '.join(missing)}; add them (see the README)")
    if raw["description_level"] not in LEVELS:
        raise InputError(f"{path}: description_level {raw['description_level']!r} is not one of {', '.join(LEVELS)}")
    return Settings(raw)


def configure_luigi(paths: Paths) -> None:
    """Use config/luigi.cfg unless LUIGI_CONFIG_PATH names another file (then that file replaces ours)."""
    if os.environ.get("LUIGI_CONFIG_PATH"):
        return
    config_file = str(paths.config_dir / "luigi.cfg")
    if config_file not in _added_config_files:
        _added_config_files.add(config_file)
        luigi.configuration.add_config_path(config_file)


_added_config_files: set[str] = set()


def pool_limits() -> dict[str, int]:
    """The [resources] section: pool name -> how many calls may run at once."""
    config = luigi.configuration.get_config()
    if not config.has_section("resources"):
        return {}
    return {name: int(value) for name, value in config.items("resources")}


BACKENDS = ("local", "http")


def default_backend() -> str:
    """`DAYDREAM_BACKEND` when set (the CLI sets it for the task processes of a run), else http when a provider key is
    in the environment and the embedded offline model otherwise."""
    chosen = os.environ.get("DAYDREAM_BACKEND")
    if chosen:
        if chosen not in BACKENDS:
            raise InputError(f"DAYDREAM_BACKEND={chosen!r} is not one of {', '.join(BACKENDS)}")
        return chosen
    return "http" if os.environ.get("OPENROUTER_API_KEY") else "local"
