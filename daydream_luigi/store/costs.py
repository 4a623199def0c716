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
    "est_prompt_cost_usd",
    "est_completion_cost_usd",
    "est_cost_usd",
    "batched",
]
UNKNOWN = "unknown"  # how a cost that cannot be priced is shown (never as 0)


def usd_text(value: float | None) -> str:
    """A cost as a line shows it: dollars to 4 decimals, or unknown (never 0) when it cannot be priced."""
    return UNKNOWN if value is None else f"${value:.4f}"


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
        factor = BATCH_PRICE_FACTOR if batched else 1.0
        prompt_cost = estimate_cost_usd(model.price, prompt, 0, factor) if counts["to_call"] else 0.0
        completion_cost = estimate_cost_usd(model.price, 0, completion, factor) if counts["to_call"] else 0.0
        cost = estimate_cost_usd(model.price, prompt, completion, factor) if counts["to_call"] else 0.0
        rows.append(
            {
                "stage": stage,
                "llm_model_id": model_id,
                "pool": pool,
                "batched": batched,
                **counts,
                "est_prompt_tokens": prompt,
                "est_completion_tokens": completion,
                "est_prompt_cost_usd": prompt_cost,
                "est_completion_cost_usd": completion_cost,
                "est_cost_usd": cost,
            }
        )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def unpriced(frame: pd.DataFrame) -> dict[str, int]:
    """Models with calls to make and no known price -> how many calls (their cost is unknown, never 0)."""
    rows = frame[frame["est_cost_usd"].isna()]
    return {str(model): int(calls) for model, calls in rows.groupby("llm_model_id")["to_call"].sum().items()}


def plan_total(frame: pd.DataFrame) -> dict:
    """The plan's totals as plain Python numbers (for printing and for the budget check); the cost is that of the
    priced calls (`unpriced` names the others)."""
    total = {column: int(frame[column].sum()) for column in PLAN_COUNTS}
    total["est_cost_usd"] = float(frame["est_cost_usd"].sum())  # NaN (unknown) rows are skipped
    return total


def total_line(frame: pd.DataFrame) -> str:
    """The plan's total, the cost split into prompt and completion, with `unknown` for what cannot be priced."""
    totals = plan_total(frame)
    text = "total: " + ", ".join(f"{key} {value}" for key, value in totals.items() if key != "est_cost_usd")
    missing = unpriced(frame)
    prompt, completion = (float(frame[column].sum()) for column in ("est_prompt_cost_usd", "est_completion_cost_usd"))
    if missing and len(missing) == frame["llm_model_id"][frame["to_call"] > 0].nunique():
        return text + f", est_cost_usd {UNKNOWN}" + _unpriced_note(missing)
    text += f", est_prompt_cost_usd {prompt:g}, est_completion_cost_usd {completion:g}"
    text += f", est_cost_usd {totals['est_cost_usd']:g}"
    return text + (f" + {UNKNOWN}" + _unpriced_note(missing) if missing else "")


def _unpriced_note(missing: dict[str, int]) -> str:
    return (
        f" ({sum(missing.values())} call(s) of {', '.join(sorted(missing))} have no known price: "
        f"`daydream prices refresh`, or price columns in llm_models.csv)"
    )


# The plan's columns as `plan` prints them: short enough for a 100-column terminal (the total line and the frame keep
# the full names; tokens and dollars are estimates).
SHOWN_PLAN_HEADERS = {
    "llm_model_id": "model",
    "generations": "gens",
    "est_prompt_tokens": "prompt_tok",
    "est_completion_tokens": "completion_tok",
    "est_prompt_cost_usd": "prompt_$",
    "est_completion_cost_usd": "completion_$",
    "est_cost_usd": "cost_$",
    "batched": "batch",
}


def shown_plan(frame: pd.DataFrame) -> str:
    """The plan table as `plan` prints it: short headers, costs to 4 decimals, `unknown` where there is no price."""
    shown = frame.copy()
    for column in ("est_prompt_cost_usd", "est_completion_cost_usd", "est_cost_usd"):
        shown[column] = [UNKNOWN if pd.isna(value) else f"{value:.4f}" for value in frame[column]]
    return shown.rename(columns=SHOWN_PLAN_HEADERS).to_string(index=False)


def check_priced(frame: pd.DataFrame, option: str) -> None:
    """Refuse `option` (--budget, --max-cost) when calls are to be made whose cost cannot be estimated."""
    missing = unpriced(frame)
    raise_if(
        [
            f"{option}: model {model!r} has {calls} call(s) to make and no known price, so they cannot be held to "
            f"{option}; run `daydream prices refresh` (OpenRouter models) or give price_prompt_per_mtok and "
            f"price_completion_per_mtok in llm_models.csv"
            for model, calls in sorted(missing.items())
        ]
    )


def check_budget(frame: pd.DataFrame, budget: float) -> float:
    """Refuse a run whose estimated cost is over the budget, or cannot be estimated; returns the estimate when it
    fits."""
    check_priced(frame, "--budget")
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


def guard_reason(totals: dict, guard: Guard, unpriced_calls: int = 0) -> str | None:
    """Why a run of a plan with these totals (plan_total) needs a yes before it starts, or None when it is small.
    Calls that cannot be priced (`unpriced_calls`; or a cost of None) are over any cost threshold: unknown is not 0."""
    calls, cost = totals["to_call"], totals["est_cost_usd"]
    unknown = unpriced_calls > 0 or cost is None
    cost = round(cost or 0.0, 9)
    over = ([f"guard.max_calls ({guard.max_calls:,})"] if calls > guard.max_calls else []) + (
        [f"guard.max_cost_usd (${guard.max_cost_usd:,.2f})"] if cost > guard.max_cost_usd or unknown else []
    )
    if not over:
        return None
    if cost == 0 and unknown:
        estimate = "at an unknown cost (no known price)"
    else:
        estimate = f"estimated at ${cost:,.2f}" + (
            f" plus {unpriced_calls:,} call(s) of unknown cost (no known price)" if unknown else ""
        )
    return f"this run makes {calls:,} model call(s) {estimate}, over {' and '.join(over)} in config/daydream.yaml"


def check_guard(
    totals: dict, guard: Guard, yes: bool, ask: Callable[[str], bool] | None, unpriced_calls: int = 0
) -> None:
    """Let a run start, or raise InputError. A big run starts with --yes (`yes`) or when `ask` (a terminal prompt;
    None without a terminal) gets a yes; small runs start at once."""
    reason = guard_reason(totals, guard, unpriced_calls)
    if reason is None or yes:
        return
    if ask is None:
        raise InputError(
            f"not started: {reason}; nothing to ask without a terminal: pass --yes to start it, or raise the limits"
        )
    if not ask(f"{reason}. Start it?"):
        raise InputError(f"not started: {reason}; you answered no")
