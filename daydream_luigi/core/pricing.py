"""What a call costs: the provider's reported cost, else an estimate from the model's price per million tokens
(``price_per_mtok`` in llm_models.csv), at batch price for a batched call. Plans, the spending stop and the run's
accounting all price a call here."""

BATCH_PRICE_FACTOR = 0.5  # batch APIs bill about half the per-token price (OpenRouter and OpenAI say 50%)


def estimate_cost_usd(
    price_per_mtok: float, prompt_tokens: int, completion_tokens: int, price_factor: float = 1.0
) -> float:
    """Cost from the model's price per million tokens (``llm_models.csv``), times ``price_factor`` for batches."""
    return (prompt_tokens + completion_tokens) / 1e6 * price_per_mtok * price_factor


def call_cost(
    reported_usd: float | None,
    price_per_mtok: float,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    price_factor: float = 1.0,
) -> tuple[float, bool]:
    """(cost, is_estimate) of a finished call: the reported cost when there is one, else the price estimate."""
    if reported_usd is not None:
        return float(reported_usd), False
    return estimate_cost_usd(price_per_mtok, prompt_tokens or 0, completion_tokens or 0, price_factor), True
