"""OpenRouter's prices, read from its model list: `GET {base}/models` lists each model's `pricing` as strings of USD
per token (`prompt`, `completion`, `request` per request, `internal_reasoning`, ...;
https://openrouter.ai/docs/api-reference/list-available-models). `daydream prices refresh` keeps them, per million
tokens, in the cache `core.pricing` reads."""

from collections.abc import Mapping
from urllib.parse import urlsplit

import requests

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.provider_settings import Provider, shown_url
from daydream_luigi.providers.endpoints import resolve
from daydream_luigi.providers.http_errors import connection_cause, http_failure

PER_TOKEN_FIELDS = ("prompt", "completion", "internal_reasoning")  # kept per million tokens
PER_REQUEST_FIELDS = ("request",)  # kept as listed (USD per request)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None  # OpenRouter lists -1 for routers whose price depends on the model chosen


def model_prices(listing: object) -> dict[str, dict[str, float]]:
    """model string -> its prices (per million tokens; per request for `request`) from a GET /models answer; models
    without both a prompt and a completion price are left out (their price stays unknown)."""
    found: dict[str, dict[str, float]] = {}
    rows = listing.get("data") if isinstance(listing, dict) else None
    for row in rows if isinstance(rows, list) else []:
        pricing = row.get("pricing") if isinstance(row, dict) else None
        if not isinstance(pricing, dict) or not isinstance(row.get("id"), str):
            continue
        prices = {field: _number(pricing.get(field)) for field in PER_TOKEN_FIELDS + PER_REQUEST_FIELDS}
        if prices["prompt"] is None or prices["completion"] is None:
            continue
        found[row["id"]] = {
            field: round(value * 1e6, 9) if field in PER_TOKEN_FIELDS else value
            for field, value in prices.items()
            if value is not None
        }
    return found


def fetch_prices(
    provider: Provider, environ: Mapping[str, str] | None = None, timeout: float = 30.0
) -> tuple[str, dict[str, dict[str, float]]]:
    """(the URL asked, model string -> prices) from `provider`'s GET /models; InputError (one line, key-free) when it
    cannot be read."""
    base_url, key = resolve(provider, environ)
    url = f"{base_url}/models"
    where = f"provider {provider.name!r} at {shown_url(base_url)}"
    with requests.Session() as session:
        session.trust_env = urlsplit(base_url).scheme == "https"
        try:
            response = session.get(
                url, timeout=timeout, allow_redirects=False, headers={"Authorization": f"Bearer {key}"} if key else {}
            )
        except requests.RequestException as exc:
            raise InputError(
                f"{where}: GET /models failed ({connection_cause(exc, key)}); check the base URL"
            ) from None
    if response.status_code != 200:
        raise InputError(f"{where}: GET /models answered {http_failure(response, key)}; check the base URL")
    try:
        listing = response.json()
    except ValueError:
        raise InputError(f"{where}: GET /models did not answer JSON; check the base URL") from None
    prices = model_prices(listing)
    if not prices:
        raise InputError(f"{where}: GET /models lists no model with prices; is it OpenRouter's API?")
    return shown_url(url), prices
