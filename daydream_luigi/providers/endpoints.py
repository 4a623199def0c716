"""Model providers, declared under `providers:` in config/daydream.yaml: where a provider's requests go and which
environment variable holds its key.

A key is read from the environment when it is needed, goes only to its own provider's base URL, and never travels over
plain http to a host other than this machine. `preflight` asks each provider one cheap authenticated question before a
run, so an unreachable server or a rejected key is one message instead of a failure per generation.
"""

import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from daydream_luigi.core.errors import InputError
from daydream_luigi.core.ids import id_problem
from daydream_luigi.providers.batch import CLIENTS
from daydream_luigi.providers.limits.breaker import exception_chain

PREFLIGHT_TIMEOUT_S = 5.0
LOOPBACK_NAMES = frozenset({"localhost"})  # besides the addresses 127.0.0.0/8 and ::1
# Hosts that answer GET {base}/key with the key's own status; other OpenAI-compatible servers are asked
# GET {base}/models (on OpenRouter /models is public, so it would not check the key).
KEY_CHECK_HOSTS = frozenset({"openrouter.ai"})
FIELDS = ("api_key_env", "base_url", "base_url_env", "batch_api")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_EXAMPLES = "like https://openrouter.ai/api/v1 or http://127.0.0.1:8000/v1"


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str | None  # None: only base_url_env supplies it (the embedded server's URL is known once it runs)
    api_key_env: str | None  # the environment variable holding the key; None for a server that needs no key
    base_url_env: str | None = None  # an environment variable that, when set, replaces base_url
    batch_api: str | None = None  # its batch API (batch.CLIENTS: openrouter, openai); None: no batches


def is_loopback(host: str) -> bool:
    """Whether `host` (as urlsplit gives it: lower case, no brackets) names this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_url(url: str) -> str:
    """The URL as it may appear in a message: a user name or password in it is replaced by ***."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def url_problem(url: str, sends_key: bool) -> str | None:
    """Why `url` cannot be a provider's base URL (with the fix), or None. `sends_key`: a key would be sent to it."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        return f"has an invalid port; write it {_URL_EXAMPLES}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"is not a well-formed base URL (it needs http:// or https:// and a host); write it {_URL_EXAMPLES}"
    if parts.username is not None or parts.password is not None:
        return "carries a user name or password; remove them and put the key in the variable named by api_key_env"
    if sends_key and parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            "is plain http to another machine, so the key would travel unencrypted; use https://, or a loopback "
            "address (127.0.0.1, ::1, localhost), e.g. through an SSH tunnel"
        )
    return None


def parse_providers(raw, where: str) -> tuple[dict[str, Provider], list[str]]:
    """The `providers:` mapping of the settings file `where`, with every problem found (messages never quote a value
    that could be a key)."""
    if not isinstance(raw, dict) or not raw:
        return {}, [
            f"{where}: providers must map each provider id to its base_url and api_key_env "
            f"(see the README, 'Providers')"
        ]
    providers: dict[str, Provider] = {}
    problems: list[str] = []
    for name, fields in raw.items():
        key = f"providers.{name}"
        problem = id_problem(name) if isinstance(name, str) else "is not text"
        if problem:
            problems.append(f"{where}: provider id {name!r} {problem}; rename it")
            continue
        fields = {} if fields is None else fields
        if not isinstance(fields, dict):
            problems.append(f"{where}: {key} must be a mapping with base_url and api_key_env")
            continue
        found = len(problems)
        for field in fields:
            if field not in FIELDS:
                secret = (
                    " (a key never goes in this file: put it in an environment variable and name that "
                    "variable in api_key_env)"
                    if "key" in str(field).lower()
                    else ""
                )
                problems.append(f"{where}: {key}: unknown key {field!r}; allowed: {', '.join(FIELDS)}{secret}")
        for field in ("api_key_env", "base_url_env"):
            value = fields.get(field)
            if value is not None and not (isinstance(value, str) and _ENV_NAME.fullmatch(value)):
                problems.append(
                    f"{where}: {key}.{field} must be the name of an environment variable (letters, "
                    f"digits and _, e.g. OPENROUTER_API_KEY), not its value"
                )
        if fields.get("batch_api") is not None and fields["batch_api"] not in CLIENTS:
            problems.append(
                f"{where}: {key}.batch_api must be one of {', '.join(CLIENTS)} (found "
                f"{fields['batch_api']!r}), or left out when the provider has no batch API"
            )
        base_url = fields.get("base_url")
        if base_url is not None:
            if not isinstance(base_url, str):
                problems.append(f"{where}: {key}.base_url must be a URL, {_URL_EXAMPLES}")
            else:
                problem = url_problem(base_url, sends_key=fields.get("api_key_env") is not None)
                if problem:
                    problems.append(f"{where}: {key}.base_url {shown_url(base_url)} {problem}")
        elif fields.get("base_url_env") is None:
            problems.append(f"{where}: {key} has no base_url; add one, {_URL_EXAMPLES}")
        if len(problems) == found:
            providers[name] = Provider(
                name, base_url, fields.get("api_key_env"), fields.get("base_url_env"), fields.get("batch_api")
            )
    return providers, problems


def resolve(provider: Provider, environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(base_url, key) for a call to `provider`, read from the environment now: the key is never stored, and is
    returned only together with the URL it may be sent to."""
    environ = os.environ if environ is None else environ
    name = provider.name
    url, origin = provider.base_url, f"providers.{name}.base_url"
    if provider.base_url_env and environ.get(provider.base_url_env, "").strip():
        url, origin = environ[provider.base_url_env].strip(), provider.base_url_env
    if not url:
        unset = f": {provider.base_url_env} is not set; set it, or" if provider.base_url_env else ";"
        raise InputError(
            f"provider {name!r} has no base URL{unset} give providers.{name}.base_url in config/daydream.yaml"
        )
    key = None
    if provider.api_key_env:
        key = environ.get(provider.api_key_env, "").strip() or None
        if key is None:
            raise InputError(
                f"provider {name!r} needs its key in {provider.api_key_env}, which is not set; export "
                f"it, or remove providers.{name}.api_key_env if the server needs no key"
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


def check_path(base_url: str) -> str:
    """What a preflight asks for: OpenRouter's key status, else the OpenAI-compatible model list."""
    return "key" if urlsplit(base_url).hostname in KEY_CHECK_HOSTS else "models"


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


def preflight(
    provider: Provider, environ: Mapping[str, str] | None = None, timeout: float = PREFLIGHT_TIMEOUT_S
) -> None:
    """One authenticated GET to `provider`; returns when it answers 2xx, else raises InputError with one message naming
    the provider and URL (never the key). Redirects are not followed, so the key cannot be carried to another host."""
    base_url, key = resolve(provider, environ)
    path = check_path(base_url)
    where = f"provider {provider.name!r} at {shown_url(base_url)}"
    with requests.Session() as session:
        # A loopback server is reached directly: HTTP_PROXY would otherwise receive the key in clear text.
        session.trust_env = urlsplit(base_url).scheme == "https"
        try:
            response = session.get(
                f"{base_url}/{path}",
                timeout=timeout,
                allow_redirects=False,
                headers={"Authorization": f"Bearer {key}"} if key else {},
            )
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
            f"it in providers.{provider.name}.api_key_env"
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
