"""Reaching a model provider (declared under `endpoints:` in config/daydream.yaml, see `core.provider_settings`):
its base URL and key, read from the environment at call time, and a preflight check.

A key is read from the environment when it is needed, goes only to its own provider's base URL, and never travels over
plain http to a host other than this machine. `preflight` asks each provider one cheap authenticated question before a
run, so an unreachable server or a rejected key is one message instead of a failure per generation.
"""

import os
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.provider_settings import Provider, shown_url, url_problem
from daydream_luigi.providers import chat
from daydream_luigi.providers.http_errors import exception_chain, http_failure

PREFLIGHT_TIMEOUT_S = 5.0
# Hosts that answer GET {base}/key with the key's own status; other OpenAI-compatible servers are asked
# GET {base}/models (on OpenRouter /models is public, so it would not check the key).
KEY_CHECK_HOSTS = frozenset({"openrouter.ai"})


def resolve(provider: Provider, environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(base_url, key) for a call to `provider`, read from the environment now: the key is never stored, and is
    returned only together with the URL it may be sent to."""
    environ = os.environ if environ is None else environ
    name = provider.name
    url, origin = provider.base_url, f"{provider.section}.{name}.base_url"
    if provider.base_url_env and environ.get(provider.base_url_env, "").strip():
        url, origin = environ[provider.base_url_env].strip(), provider.base_url_env
    if not url:
        unset = f": {provider.base_url_env} is not set; set it, or" if provider.base_url_env else ";"
        raise InputError(
            f"provider {name!r} has no base URL{unset} give {provider.section}.{name}.base_url in config/daydream.yaml"
        )
    key = None
    if provider.api_key_env:
        key = environ.get(provider.api_key_env, "").strip() or None
        if key is None:
            raise InputError(
                f"provider {name!r} needs its key in {provider.api_key_env}, which is not set; export "
                f"it, or remove {provider.section}.{name}.api_key_env if the server needs no key"
            )
        if not all(33 <= ord(char) <= 126 for char in key):
            raise InputError(
                f"provider {name!r}: the key in {provider.api_key_env} contains spaces, line breaks or "
                f"non-ASCII characters, which no HTTP header can carry; export it again"
            )
    problem = url_problem(url, sends_key=key is not None)
    if problem:
        raise InputError(f"provider {name!r}: base URL {shown_url(url)} (from {origin}) {problem}")
    return url.rstrip("/"), key


def check_path(base_url: str, dialect: str = "openai-compatible") -> str:
    """What a preflight asks for: OpenRouter's key status (its host, or an endpoint of its dialect), else the
    OpenAI-compatible model list."""
    return "key" if dialect == "openrouter" or urlsplit(base_url).hostname in KEY_CHECK_HOSTS else "models"


def _connection_reason(exc: BaseException) -> str:
    """What went wrong below HTTP, from the chain requests and urllib3 wrap around the socket error."""
    for current in exception_chain(exc):
        if isinstance(current, socket.gaierror):
            return "host name not found"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused: nothing listens there"
        if isinstance(current, ssl.SSLError):
            return "TLS handshake failed"
    return "connection failed"


def proves_key(provider: Provider, base_url: str) -> bool:
    """Whether the preflight's GET proves the key: OpenRouter's GET /key does; GET /models does not (llama.cpp's
    server answers it without checking the key), so a keyed endpoint elsewhere is also sent a 1-token chat request."""
    return provider.api_key_env is None or check_path(base_url, provider.dialect) == "key"


def preflight(
    provider: Provider,
    environ: Mapping[str, str] | None = None,
    timeout: float = PREFLIGHT_TIMEOUT_S,
    model: str | None = None,
) -> None:
    """One authenticated GET to `provider`, and, when that GET does not prove the key and `model` (the first the run
    needs) is given, a 1-token chat completion to it; returns when they pass, else raises InputError with one message
    naming the provider and URL (never the key). Redirects are not followed, so the key cannot be carried to another
    host."""
    _get(provider, environ, timeout)
    base_url, key = resolve(provider, environ)
    if model is not None and not proves_key(provider, base_url):
        _one_token(provider, base_url, key, model, timeout)


def _request(method: str, base_url: str, path: str, key: str | None, timeout: float, **kwargs) -> requests.Response:
    """One preflight request, redirects not followed. A loopback server is reached directly: HTTP_PROXY would
    otherwise receive the key in clear text."""
    with requests.Session() as session:
        session.trust_env = urlsplit(base_url).scheme == "https"
        return session.request(
            method,
            f"{base_url}/{path}",
            timeout=timeout,
            allow_redirects=False,
            headers={"Authorization": f"Bearer {key}"} if key else {},
            **kwargs,
        )


def _one_token(provider: Provider, base_url: str, key: str | None, model: str, timeout: float) -> None:
    """A chat completion of one token to `model`, which the server must authenticate: a rejected key is one message."""
    where = f"provider {provider.name!r} at {shown_url(base_url)}"
    body = chat.request_body(
        model, "Say OK.", chat.CallSettings(temperature=0.0, max_tokens=1, dialect=provider.dialect)
    )
    try:
        response = _request("POST", base_url, "chat/completions", key, timeout, json=body)
    except requests.RequestException as exc:
        raise InputError(
            f"{where}: the 1-token check of model {model!r} failed ({type(exc).__name__}); check that the server is up"
        ) from None
    status = response.status_code
    if status in (401, 403):
        raise InputError(
            f"{where}: the key in {provider.api_key_env} was rejected (HTTP {status} to a 1-token chat completion "
            f"to {model!r}); check {provider.api_key_env}"
        )
    if status in (400, 404, 422):
        raise InputError(
            f"{where}: a 1-token chat completion to {model!r} was refused: {http_failure(response, key)}; check the "
            f"model string in llm_models.csv and the endpoint's dialect"
        )


def _get(provider: Provider, environ: Mapping[str, str] | None, timeout: float) -> None:
    base_url, key = resolve(provider, environ)
    path = check_path(base_url, provider.dialect)
    where = f"provider {provider.name!r} at {shown_url(base_url)}"
    try:
        response = _request("GET", base_url, path, key, timeout)
    except requests.Timeout:
        raise InputError(
            f"{where}: no answer to GET /{path} within {timeout:g} s; check that the server is up "
            f"and the base URL is right"
        ) from None
    except requests.ConnectionError as exc:
        raise InputError(
            f"{where}: cannot connect ({_connection_reason(exc)}); start the server or correct the base URL"
        ) from None
    except requests.RequestException as exc:
        raise InputError(f"{where}: GET /{path} failed ({type(exc).__name__}); check the base URL") from None
    status = response.status_code
    if status in (401, 403) and provider.api_key_env:
        raise InputError(
            f"{where}: the key in {provider.api_key_env} was rejected (HTTP {status}); check {provider.api_key_env}"
        )
    if status in (401, 403):
        raise InputError(
            f"{where}: the server asks for a key (HTTP {status}); name the environment variable holding "
            f"it in {provider.section}.{provider.name}.api_key_env"
        )
    if 300 <= status < 400:
        target = shown_url(response.headers.get("Location", "?"))
        raise InputError(
            f"{where}: GET /{path} is redirected (HTTP {status}) to {target}; use the address it "
            f"redirects to as the base URL"
        )
    if not 200 <= status < 300:
        raise InputError(
            f"{where}: GET /{path} answered HTTP {status}; check the base URL (an OpenAI-compatible "
            f"server answers GET /models)"
        )
