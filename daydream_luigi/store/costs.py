"""What a run would call and cost before it spends anything (`daydream plan`), and the checks that let it start: the
--budget, the guard thresholds of config/daydream.yaml, a --max-cost given as a number. Reads the store to count what
is done already; calls nothing.
"""

import math
from collections.abc import Callable

import pandas as pd

from daydream_luigi.core.batch_settings import is_batched
from daydream_luigi.core.catalog import Catalog
from daydream_luigi.core.errors import InputError, raise_if
from daydream_luigi.core.expansion import calls_model, is_imported
from daydream_luigi.core.pricing import BATCH_PRICE_FACTOR, estimate_cost_usd
from daydream_luigi.core.settings import STAGE_ORDER, STAGES, Guard, Paths, Settings, load_settings
from daydream_luigi.store.files import CALL, RAW, complete_ids, gen_dir
from daydream_luigi.store.membership import member_list

# Rendered prompts need their parents' text, which does not exist before a run: plan with typical sizes instead.
DEFAULT_PROMPT_TOKENS = {"draft": 400, "essay": 600, "evaluation": 700}

PLAN_COLUMNS = [
    "stage",
    "llm_model_id",
    "pool",
    "generations",
    "done",
    "to_call",
    "est_prompt_tokens",
    "est_completion_tokens",
    "est_cost_usd",
    "batched",
]
PLAN_COUNTS = ["generations", "done", "to_call", "est_prompt_tokens", "est_completion_tokens"]


def plan(
    paths: Paths, catalog: Catalog, members, settings: Settings | None = None, every_call: bool = False
) -> pd.DataFrame:
    """What a run of `members` would do and roughly cost, one row per (stage, model, pool); nothing is called.

    Only generations that would make a new model call are costed: complete ones, copy-mode essays and partial ones
    whose raw answer and call record are kept (a re-run reuses them) cost nothing. Batched rows (`batched`: the
    `batch:` settings, or `every_call` for `run --batch`) are costed at batch price.
    """
    settings = settings or load_settings(paths)
    members = [m for m in member_list(members) if not is_imported(m)]  # complete from the start: nothing to call
    complete = {stage: complete_ids(paths.gens, stage) for stage in STAGES}
    unknown = sorted({m.llm_model_id for m in members if m.llm_model_id not in catalog.models})
    raise_if(
        [
            f"the cohort uses model {model!r}, which is not in llm_models.csv; restore its row or rebuild the cohort"
            for model in unknown
        ]
    )
    groups: dict[tuple, dict] = {}
    for member in members:
        model = catalog.models[member.llm_model_id]
        row = groups.setdefault((member.stage, model.model_id, model.pool), {"generations": 0, "done": 0, "to_call": 0})
        row["generations"] += 1
        if member.gen_id in complete[member.stage]:
            row["done"] += 1
        elif calls_model(member, catalog):
            directory = gen_dir(paths.gens, member.stage, member.gen_id)
            if not ((directory / RAW).exists() and (directory / CALL).exists()):
                row["to_call"] += 1
    rows = []
    batch = settings.batch
    for (stage, model_id, pool), counts in sorted(groups.items(), key=lambda kv: (STAGE_ORDER[kv[0][0]], kv[0][1:])):
        model = catalog.models[model_id]
        batched = is_batched(batch, settings.providers[model.endpoint].batch_api, stage, model_id, every_call)
        prompt = counts["to_call"] * DEFAULT_PROMPT_TOKENS[stage]
        completion = counts["to_call"] * int(settings.stage(stage).max_tokens)
        cost = estimate_cost_usd(model.price_per_mtok, prompt, completion, BATCH_PRICE_FACTOR if batched else 1.0)
        rows.append(
            {
                "stage": stage,
                "llm_model_id": model_id,
                "pool": pool,
                "batched": batched,
                **counts,
                "est_prompt_tokens": prompt,
                "est_completion_tokens": completion,
                "est_cost_usd": cost,
            }
        )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def plan_total(frame: pd.DataFrame) -> dict:
    """The plan's totals as plain Python numbers (for printing and for the budget check)."""
    total = {column: int(frame[column].sum()) for column in PLAN_COUNTS}
    total["est_cost_usd"] = float(frame["est_cost_usd"].sum())
    return total


def check_budget(frame: pd.DataFrame, budget: float) -> float:
    """Refuse a run whose estimated cost is over the budget; returns the estimate when it fits."""
    cost = round(plan_total(frame)["est_cost_usd"], 9)  # float noise must not make $0.0900 "exceed" $0.09
    if cost > budget:
        raise InputError(
            f"estimated cost ${cost:.4f} exceeds --budget ${budget:.2f}; lower the cohort size or raise the budget"
        )
    return cost


def checked_budget(budget: float | None, option: str = "--budget") -> float | None:
    """--budget (or --max-cost) as given: None (none) or a finite number of USD >= 0 (Click's float type lets nan and
    inf pass)."""
    if budget is not None and not (math.isfinite(budget) and budget >= 0):
        raise InputError(f"{option} must be a number of USD >= 0 (found {budget:g}); give e.g. {option} 5")
    return budget


def guard_reason(totals: dict, guard: Guard) -> str | None:
    """Why a run of a plan with these totals (plan_total) needs a yes before it starts, or None when it is small."""
    calls, cost = totals["to_call"], round(totals["est_cost_usd"], 9)
    over = ([f"guard.max_calls ({guard.max_calls:,})"] if calls > guard.max_calls else []) + (
        [f"guard.max_cost_usd (${guard.max_cost_usd:,.2f})"] if cost > guard.max_cost_usd else []
    )
    if not over:
        return None
    return (
        f"this run makes {calls:,} model call(s) estimated at ${cost:,.2f}, over {' and '.join(over)} in "
        f"config/daydream.yaml"
    )


def check_guard(totals: dict, guard: Guard, yes: bool, ask: Callable[[str], bool] | None) -> None:
    """Let a run start, or raise InputError. A big run starts with --yes (`yes`) or when `ask` (a terminal prompt;
    None without a terminal) gets a yes; small runs start at once."""
    reason = guard_reason(totals, guard)
    if reason is None or yes:
        return
    if ask is None:
        raise InputError(
            f"not started: {reason}; nothing to ask without a terminal: pass --yes to start it, or raise the limits"
        )
    if not ask(f"{reason}. Start it?"):
        raise InputError(f"not started: {reason}; you answered no")
