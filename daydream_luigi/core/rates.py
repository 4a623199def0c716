"""How fast the calls of a pool may start: the ``pools:`` section of config/daydream.yaml (requests per minute and
per day, tokens per minute), checked. How many may run at once is [resources] of config/luigi.cfg
(``settings.pool_limits``); ``providers.limits.ratelimit`` holds the rates at run time."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from daydream_luigi.core.errors import raise_if

POOL_SETTINGS = ("requests_per_minute", "requests_per_day", "tokens_per_minute")


@dataclass(frozen=True)
class PoolRates:
    """A pool's rates; None means no limit of that kind."""

    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_minute: int | None = None


def _unknown_pool(where: str, name: str, known: list[str]) -> str:
    return (
        f"{where}: no pool {name!r} in config/luigi.cfg [resources] (known: {', '.join(known)}); "
        f"add it there or remove it here"
    )


def pool_rates(raw: Any, source: str, known_pools: Iterable[str] | None = None) -> dict[str, PoolRates]:
    """The ``pools:`` section of daydream.yaml, validated: pool name -> PoolRates (all settings optional).

    Raises InputError with one line per problem; ``known_pools`` (the [resources] of luigi.cfg) catches typos.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise_if([f"{source}: pools must map pool names to rates, e.g. pools: {{free: {{requests_per_minute: 20}}}}"])
    known = sorted(known_pools) if known_pools is not None else None
    problems: list[str] = []
    rates: dict[str, PoolRates] = {}
    for name, settings in raw.items():
        where = f"{source}: pools.{name}"
        if known is not None and name not in known:
            problems.append(_unknown_pool(where, name, known))
            continue
        if settings is None:
            settings = {}
        if not isinstance(settings, dict):
            problems.append(f"{where} must map settings to numbers ({', '.join(POOL_SETTINGS)})")
            continue
        values = {}
        for key, value in settings.items():
            if key not in POOL_SETTINGS:
                problems.append(f"{where}.{key} is not a pool setting; use {', '.join(POOL_SETTINGS)}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{where}.{key} is {value!r}; it must be a whole number of at least 1")
            else:
                values[key] = value
        rates[str(name)] = PoolRates(**values)
    raise_if(problems)
    return rates


def unknown_pools(rates: Mapping[str, PoolRates], known_pools: Iterable[str], source: str) -> list[str]:
    """Problems: pools given rates that [resources] does not have (a typo, not a limit)."""
    known = sorted(known_pools)
    return [_unknown_pool(f"{source}: pools.{name}", name, known) for name in rates if name not in known]
