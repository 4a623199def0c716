"""What a call costs: the provider's reported cost, else an estimate from the model's prompt and completion prices
(llm_models.csv, else the cache `daydream prices refresh` fills from OpenRouter's GET /models), at batch price for a
batched call. A model with no known price has no estimate: its cost is unknown (None), never 0. Plans, the spending
stop and the run's accounting all price a call here."""

import json
from dataclasses import dataclass
from pathlib import Path

BATCH_PRICE_FACTOR = 0.5  # batch APIs bill about half the per-token price (OpenRouter and OpenAI say 50%)


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Reasoning tokens are completion tokens (OpenRouter bills them as output)."""

    prompt: float
    completion: float

    @classmethod
    def flat(cls, per_mtok: float) -> "Price":
        """One price for every token (llm_models.csv `price_per_mtok`)."""
        return cls(per_mtok, per_mtok)


def estimate_cost_usd(
    price: Price | None, prompt_tokens: int, completion_tokens: int, price_factor: float = 1.0
) -> float | None:
    """Cost from the model's prices, times ``price_factor`` for batches; None when the price is unknown."""
    if price is None:
        return None
    if price.prompt == price.completion:  # one multiplication, as a flat price always computed it
        return (prompt_tokens + completion_tokens) / 1e6 * price.prompt * price_factor
    return (prompt_tokens * price.prompt + completion_tokens * price.completion) / 1e6 * price_factor


def upper_bound_usd(price: Price | None, tokens: int) -> float:
    """What `tokens` tokens cost at most (the dearer of the two prices), for reserving money before a call; 0 for an
    unknown price (a run with a spending stop refuses to start calls it cannot price)."""
    return 0.0 if price is None else tokens / 1e6 * max(price.prompt, price.completion)


def call_cost(
    reported_usd: float | None,
    price: Price | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    price_factor: float = 1.0,
) -> tuple[float | None, bool]:
    """(cost, is_estimate) of a finished call: the reported cost when there is one, else the price estimate (None:
    neither reported nor priced)."""
    if reported_usd is not None:
        return float(reported_usd), False
    return estimate_cost_usd(price, prompt_tokens or 0, completion_tokens or 0, price_factor), True


def price_cache_file(data_root: Path) -> Path:
    return data_root / "prices" / "openrouter_models.json"


def cached_prices(data_root: Path) -> dict[str, Price]:
    """model string -> its price in the cache `daydream prices refresh` writes; {} when there is none (or it cannot be
    read: prices are then unknown, which plans show)."""
    try:
        data = json.loads(price_cache_file(data_root).read_text(encoding="utf-8"))
        return {model: Price(row["prompt"], row["completion"]) for model, row in data["models"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def shared_batch_cost(batch_usd: float | None, lines: list[tuple[float | None, int]]) -> list[float | None]:
    """Each line's cost where a batch reports its own cost (OpenRouter's batch `usage.cost`) but its lines may not:
    a line's reported cost stays; the rest of the batch's cost is shared over the lines without one by their tokens
    (equally when none has tokens). `lines`: (reported cost or None, tokens) per answered line. Without a batch cost,
    or when every line reports its own, nothing changes."""
    missing = [i for i, (cost, _) in enumerate(lines) if cost is None]
    if batch_usd is None or not missing:
        return [cost for cost, _ in lines]
    rest = max(0.0, batch_usd - sum(cost for cost, _ in lines if cost is not None))
    tokens = sum(lines[i][1] for i in missing)
    shares = [cost for cost, _ in lines]
    for i in missing:
        shares[i] = rest * (lines[i][1] / tokens if tokens else 1 / len(missing))
    return shares
