"""Essay embeddings: the OpenAI-compatible ``POST {base_url}/embeddings`` endpoint and a per-essay cache.

Each vector is kept beside its essay in the generation store, ``data/gens/essay/<gen_id>/embedding-<slug>.json``,
written atomically, so a second dedup asks the provider only for essays it has never embedded with that model.
The cache is filled batch by batch: a run that fails halfway keeps every batch that came back. Texts that are not
essays (the fixed inputs the neutrality check compares with its target) are kept by their sha256 instead
(:func:`cached_embedder`).

An embedder is any callable from a list of texts to one vector each: :func:`request_embeddings` bound to a
provider (``functools.partial``) or the offline :class:`daydream_luigi.providers.local.minilm.MiniLMEmbedder`.

Embedding models are rows of llm_models.csv with ``for_embedding`` true; each embeds as its backend does
(``providers.backends.embedder_for``): the http backend asks its provider's ``/embeddings`` endpoint, with that
provider's key; the local backend (provider ``embedded``) runs the offline MiniLM in-process.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import requests

from daydream_luigi.core.backends import BACKENDS, backend_of
from daydream_luigi.core.catalog import Catalog, Model
from daydream_luigi.core.errors import InputError
from daydream_luigi.providers.http_errors import connection_cause, error_text, http_failure
from daydream_luigi.store.files import atomic_write_json, gen_dir, read_json

DEFAULT_BATCH_SIZE = 64  # texts per request: few requests per cohort, far below providers' input limits
TIMEOUT = (10.0, 120.0)  # connect, read seconds

Embedder = Callable[[list[str]], list[list[float]]]


class EmbeddingError(RuntimeError):
    """One line naming the model and the cause, with the fix; never contains the API key."""


_HINTS = {
    401: "check the provider's API key",
    403: "check the provider's API key",
    404: "check the base URL and that the provider serves embeddings for this model",
    400: "check the embedding model id",
    422: "check the embedding model id",
    429: "the provider is rate-limiting; run again later (embeddings already received are kept)",
}


def request_embeddings(
    base_url: str,
    api_key: str | None,
    model: str,
    texts: list[str],
    *,
    session: requests.Session | None = None,
    timeout: tuple[float, float] = TIMEOUT,
) -> list[list[float]]:
    """One request for `texts`; their vectors in input order. Raises EmbeddingError."""
    if not texts:
        return []
    api_key = api_key.strip() if api_key else None
    url = base_url.rstrip("/") + "/embeddings"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    where = f"embeddings from {model!r} at {url}"

    def fail(cause: str) -> EmbeddingError:
        return EmbeddingError(error_text(f"{where}: {cause}", api_key))

    try:
        response = (session or requests).post(
            url, json={"model": model, "input": texts}, headers=headers, timeout=timeout
        )
    except requests.ConnectTimeout:
        raise fail(f"cannot connect within {timeout[0]:g} s; check the base URL") from None
    except requests.Timeout:
        raise fail(
            f"no answer within {timeout[1]:g} s; run again later (embeddings already received are kept)"
        ) from None
    except requests.RequestException as exc:
        raise fail(f"cannot connect ({connection_cause(exc, api_key)}); check the base URL") from None
    if response.status_code != 200:
        hint = _HINTS.get(
            response.status_code,
            "the provider is failing; run again later (embeddings already received are kept)"
            if response.status_code >= 500
            else "check the request",
        )
        raise fail(f"{http_failure(response, api_key)}; {hint}")
    try:
        data = response.json()["data"]
        by_index = sorted(data, key=lambda item: item["index"]) if all("index" in d for d in data) else data
        vectors = [[float(x) for x in item["embedding"]] for item in by_index]
    except (ValueError, KeyError, TypeError):
        raise fail(
            "the answer is not an embeddings list (no data[i].embedding numbers); "
            "check that the base URL is an OpenAI-compatible API"
        ) from None
    if len(vectors) != len(texts):
        raise fail(f"the answer has {len(vectors)} embeddings for {len(texts)} texts; check the provider")
    if len({len(v) for v in vectors}) > 1 or not vectors[0] or not np.isfinite(vectors).all():
        raise fail("the answer has empty, ragged or non-finite vectors; check the provider")
    return vectors


def _slug(model: str) -> str:
    """A file-name part for a model id: readable, plus a short hash so that 'a/b' and 'a_b' differ."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._-") or "model"
    return f"{readable}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def embedding_path(gens_root: Path, essay_gen_id: str, model: str) -> Path:
    return gen_dir(gens_root, "essay", essay_gen_id) / f"embedding-{_slug(model)}.json"


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cached(path: Path, model: str, text: str) -> list[float] | None:
    """The kept vector when it was made by `model` from exactly `text`; else None (so it is made again)."""
    try:
        kept = read_json(path)
    except (OSError, ValueError):
        return None
    if kept.get("model") != model or kept.get("text_sha256") != _text_sha256(text):
        return None
    return kept.get("embedding")


class Embeddings(NamedTuple):
    gen_ids: list[str]
    vectors: np.ndarray  # one row per gen_id, as the embedder returned it
    computed: int  # how many were embedded now (the rest came from the cache)


def essay_embeddings(
    gens_root: Path, texts: Mapping[str, str], model: str, embed: Embedder, batch_size: int = DEFAULT_BATCH_SIZE
) -> Embeddings:
    """Vectors of every essay in `texts` (gen_id -> essay text), from the cache where kept, else from `embed`
    in batches of `batch_size`, each batch written to the cache as soon as it arrives."""
    ids = list(texts)
    vectors: dict[str, list[float]] = {}
    missing = []
    for gen_id in ids:
        kept = _cached(embedding_path(gens_root, gen_id, model), model, texts[gen_id])
        if kept is None:
            missing.append(gen_id)
        else:
            vectors[gen_id] = kept
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        for gen_id, vector in zip(batch, embed([texts[g] for g in batch]), strict=True):
            atomic_write_json(
                embedding_path(gens_root, gen_id, model),
                {
                    "model": model,
                    "text_sha256": _text_sha256(texts[gen_id]),
                    "dimensions": len(vector),
                    "embedding": vector,
                },
            )
            vectors[gen_id] = vector
    matrix = np.array([vectors[g] for g in ids], dtype=np.float64).reshape(len(ids), -1)
    return Embeddings(ids, matrix, len(missing))


def text_embedding_path(cache_root: Path, model: str, text: str) -> Path:
    """Where the vector of `text` by `model` is kept: named by the text's sha256, so the same text is embedded once."""
    return cache_root / _slug(model) / f"{_text_sha256(text)}.json"


def cached_embedder(cache_root: Path, model: str, make: Callable[[], Embedder]) -> Embedder:
    """An embedder that keeps every vector under `cache_root` (:func:`text_embedding_path`) and calls `make()` for the
    real embedder (loading a model takes seconds) only the first time a text has no kept vector, so checking the same
    texts again costs one small file read each."""
    made: list[Embedder] = []

    def embed(texts: list[str]) -> list[list[float]]:
        kept = {text: _cached(text_embedding_path(cache_root, model, text), model, text) for text in texts}
        vectors = {text: vector for text, vector in kept.items() if vector is not None}
        missing = [text for text in kept if text not in vectors]
        if missing:
            if not made:
                made.append(make())
            for text, vector in zip(missing, made[0](missing), strict=True):
                vector = [float(x) for x in vector]
                atomic_write_json(
                    text_embedding_path(cache_root, model, text),
                    {"model": model, "text_sha256": _text_sha256(text), "dimensions": len(vector), "embedding": vector},
                )
                vectors[text] = vector
        return [vectors[text] for text in texts]

    return embed


def embedding_model(catalog: Catalog, backend: str, model_id: str | None) -> Model:
    """The embedding model named by `model_id`, else the one for_embedding model of the backend (the offline one for
    local, a provider's for http); InputError naming the fix when there is none or a choice to make."""
    models = {m.model_id: m for m in catalog.models.values() if m.for_embedding}
    if model_id is not None:
        if model_id not in models:
            raise InputError(
                f"--embedding-model {model_id!r} is not an embedding model of llm_models.csv; use one of "
                f"{', '.join(sorted(models)) or 'none'} (a row with for_embedding true)"
            )
        return models[model_id]
    candidates = sorted(m for m, model in models.items() if backend_of(model.endpoint).name == backend)
    if len(candidates) != 1:
        kind = BACKENDS[backend].embedding_models
        found = f"{len(candidates)}: {', '.join(candidates)}" if candidates else "none"
        raise InputError(
            f"the {backend} backend needs one {kind} embedding model in llm_models.csv (a row with "
            f"for_embedding true), found {found}; name one with --embedding-model"
        )
    return models[candidates[0]]
