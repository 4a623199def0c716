"""The ``batch:`` section of config/daydream.yaml and the rule that decides which calls go through a provider's batch
API (``providers.batch`` holds the clients, ``execution.batching`` runs them)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daydream_luigi.core.errors import raise_if

OPENROUTER, OPENAI = "openrouter", "openai"
BATCH_APIS = (OPENROUTER, OPENAI)  # what providers.*.batch_api may name: one client each in providers.batch
DEFAULT_POLL_INTERVAL_S = 60.0
BATCH_SETTINGS = ("stages", "models", "poll_interval_s", "max_requests")


@dataclass(frozen=True)
class BatchSettings:
    """The ``batch:`` section of daydream.yaml: what is always batched, how often batches are polled, and how many
    requests a batch may carry at most (within the provider's own limit)."""

    stages: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # llm_models.csv ids
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    max_requests: int | None = None


def batch_settings(raw: Any, source: str, stages: Sequence[str]) -> BatchSettings:
    """The ``batch:`` section, validated (every key optional); InputError with one line per problem. Model ids are
    checked against the catalog by ``unknown_models``."""
    if raw is None:
        return BatchSettings()
    if not isinstance(raw, dict):
        raise_if(
            [
                f"{source}: batch must map settings ({', '.join(BATCH_SETTINGS)}) to values, e.g. batch: "
                f"{{stages: [evaluation]}}"
            ]
        )
    problems = [
        f"{source}: batch.{key} is not a batch setting; use {', '.join(BATCH_SETTINGS)}"
        for key in raw
        if key not in BATCH_SETTINGS
    ]
    lists = {}
    for key, allowed in (("stages", stages), ("models", None)):
        value = raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            problems.append(f"{source}: batch.{key} must be a list of {'stage names' if allowed else 'model ids'}")
            value = []
        problems += [
            f"{source}: batch.stages names {item!r}, not one of {', '.join(allowed)}"
            for item in value
            if allowed and item not in allowed
        ]
        lists[key] = tuple(value)
    interval = raw.get("poll_interval_s", DEFAULT_POLL_INTERVAL_S)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        problems.append(f"{source}: batch.poll_interval_s must be a number of seconds > 0 (found {interval!r})")
    size = raw.get("max_requests")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        problems.append(f"{source}: batch.max_requests must be a whole number >= 1 (found {size!r})")
    raise_if(problems)
    return BatchSettings(lists["stages"], lists["models"], float(interval), size)


def unknown_models(settings: BatchSettings, model_ids: Sequence[str], source: str) -> list[str]:
    """Problems: model ids under batch.models that llm_models.csv does not have."""
    return [
        f"{source}: batch.models names {model!r}, which is not an id in llm_models.csv; fix or remove it"
        for model in settings.models
        if model not in model_ids
    ]


def is_batched(settings: BatchSettings, batch_api: str | None, stage: str, model_id: str, every_call: bool) -> bool:
    """Whether a call goes through its provider's batch API: the provider has one, and ``--batch`` (``every_call``)
    or the settings name the call's stage or model."""
    return batch_api is not None and (every_call or stage in settings.stages or model_id in settings.models)
