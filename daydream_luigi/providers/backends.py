"""What each backend declared in `core.backends` does at run time: the server `daydream run` starts for it, and how
its embedding models embed texts. Registered by backend name with the imports inside, so llama.cpp's server and the
MiniLM weights are loaded only by a process that uses them (Inspect registers its model providers the same way)."""

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import requests

from daydream_luigi.core.backends import HTTP, LOCAL, Backend, backend_of
from daydream_luigi.core.catalog import Model
from daydream_luigi.core.errors import InputError
from daydream_luigi.core.settings import Settings
from daydream_luigi.providers import endpoints
from daydream_luigi.providers.embeddings import Embedder, request_embeddings

Announce = Callable[[str], None]  # tells the user what is starting (the CLI prints it)


class RunningServer(Protocol):
    base_url: str  # where its OpenAI-compatible API answers


@contextmanager
def _local_server(backend: Backend, announce: Announce) -> Iterator[RunningServer]:
    from daydream_luigi.providers.local import server, weights

    reason = weights.unavailable_reason()
    if reason:
        raise InputError(f"the embedded model is not available: {reason}")
    announce("starting the embedded model (Qwen2.5-Coder-1.5B, offline) ...")
    with server.EmbeddedServer(weights.ensure_model_file()) as running:
        yield running


def _local_embedder(model: Model, settings: Settings) -> Embedder:
    """The offline MiniLM, run in this process."""
    from daydream_luigi.providers.local import minilm

    if model.model != minilm.MODEL_ID:
        raise InputError(
            f"embedding model {model.model_id!r}: the offline backend runs {minilm.MODEL_ID} only; "
            f"set its model to {minilm.MODEL_ID} in llm_models.csv, or use another provider"
        )
    reason = minilm.unavailable_reason()
    if reason:
        raise InputError(reason)
    return minilm.MiniLMEmbedder()


def _http_embedder(model: Model, settings: Settings) -> Embedder:
    """The provider's /embeddings endpoint, with that provider's key read now (it goes nowhere else)."""
    base_url, key = endpoints.resolve(settings.providers[model.endpoint])
    return functools.partial(request_embeddings, base_url, key, model.model, session=requests.Session())


SERVERS: dict[str, Callable[[Backend, Announce], AbstractContextManager[RunningServer]]] = {LOCAL.name: _local_server}
EMBEDDERS: dict[str, Callable[[Model, Settings], Embedder]] = {LOCAL.name: _local_embedder, HTTP.name: _http_embedder}


@contextmanager
def server(backend: Backend, announce: Announce) -> Iterator[None]:
    """Start the server of a backend that starts its own (`backend.starts_server`) and point its provider at it
    (the provider's base_url_env, inherited by the task processes Luigi forks) until the block ends; InputError, with
    the fix, when it cannot run on this machine."""
    with SERVERS[backend.name](backend, announce) as running:
        os.environ[backend.server_url_env] = running.base_url
        yield


def embedder_for(model: Model, settings: Settings) -> Embedder:
    """How `model` (an llm_models.csv row with for_embedding true) embeds texts: as its backend does."""
    return EMBEDDERS[backend_of(model.endpoint).name](model, settings)
