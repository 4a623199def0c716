"""Run-wide knobs as a `luigi.Config`: what every task of one run shares (its id, its backend, its `--max-cost`, its
`--batch`, whether its calls hold call slots).

The runner sets them in Luigi's configuration for its builds (`applied`), so the task processes Luigi forks read
them as any Luigi setting is read; the stock `luigi` command takes them from a `[daydream]` section of luigi.cfg or
from its command line (`--daydream-max-cost-usd 0.5`, `--daydream-backend local`). The tasks read them and hand the
values down (`context_for_run`): nothing below `execution/` knows of Luigi. Knobs applied by the runner are also kept
as they are, so a task process (forked after they were applied) reads them without parsing Luigi's configuration for
every parameter each time (four times a generation: a tenth of a task process's Python time).
"""

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import luigi

from daydream_luigi.core.backends import BACKENDS, default_backend
from daydream_luigi.core.settings import pool_limits
from daydream_luigi.execution import slots
from daydream_luigi.execution.generation import Context
from daydream_luigi.providers.limits import gate


class daydream(luigi.Config):
    """The knobs, section [daydream]. A stock `luigi` run that sets no run_id gets one id for all its task processes:
    the default is drawn once, when the class is declared, and forked task processes inherit it."""

    run_id = luigi.Parameter(
        default=uuid.uuid4().hex[:12],
        description="Tags every attempt and failure the run records: how its summary counts its own calls.",
    )
    backend = luigi.OptionalChoiceParameter(
        default=None,
        choices=BACKENDS,
        description="How the cohort resolves: local = the embedded offline model, http = the providers "
        "[default: http when OPENROUTER_API_KEY is set, else local].",
    )
    max_cost_usd = luigi.OptionalFloatParameter(
        default=None, description="Spending stop: no new call starts once this run's spending would exceed it."
    )
    batch = luigi.BoolParameter(
        default=False, description="Every eligible call through its provider's batch API (`daydream run --batch`)."
    )
    call_slots = luigi.BoolParameter(
        default=False,
        description="Calls hold call slots in the run's folder (`daydream run` with Luigi's local scheduler).",
    )


@dataclass(frozen=True)
class Knobs:
    """The knobs one run sets for its builds (see `daydream`)."""

    run_id: str
    backend: str
    max_cost_usd: float | None = None
    batch: bool = False
    call_slots: bool = False


_applied: list[Knobs] = []  # the knobs `applied` in this process (or in the one that forked it), innermost last


@contextmanager
def applied(knobs: Knobs) -> Iterator[None]:
    """Set the knobs in Luigi's configuration for the builds inside (and the processes Luigi forks for them); the
    configuration is as before afterwards."""
    config = luigi.configuration.get_config()
    section = daydream.get_task_family()
    params = dict(daydream.get_params())
    before = {name: config.get(section, name, None) for name in params}
    for name, value in asdict(knobs).items():
        config.set(section, name, params[name].serialize(value))
    _applied.append(knobs)
    try:
        yield
    finally:
        _applied.pop()
        for name, value in before.items():
            if value is None:
                config.remove_option(section, name)
            else:
                config.set(section, name, value)


def current() -> Knobs | daydream:
    """The run's knobs: those applied in this process or the one that forked it, else Luigi's configuration's (the
    stock `luigi` command, its [daydream] section or command line)."""
    return _applied[-1] if _applied else daydream()


def backend() -> str:
    """The run's backend, else the default one (`core.settings.default_backend`)."""
    return current().backend or default_backend()


def context_for_run(ctx: Context) -> Context:
    """The context a task makes its generation in: its cohort's, with the run's --max-cost and call slots."""
    run = current()
    return replace(
        ctx, max_cost_usd=run.max_cost_usd, call_slots=_call_slots(ctx.paths, run.run_id) if run.call_slots else None
    )


@functools.cache
def _call_slots(paths, run_id: str) -> slots.CallSlots:
    """A run's call slots, with the pools' limits read from luigi.cfg once (the build process reads them before it
    forks the first task process, which inherits them)."""
    return slots.CallSlots(gate.run_dir(paths, run_id) / slots.FOLDER, pool_limits(paths))
