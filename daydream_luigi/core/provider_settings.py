"""Model endpoints, declared under `endpoints:` (earlier name: `providers:`) in config/daydream.yaml: where a
provider's requests go, which environment variable holds its key, its batch API and its dialect; checked here before
anything runs (`providers.endpoints` reaches them). A message never quotes a value that could be a key.
"""

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from daydream_luigi.core.batch_settings import BATCH_APIS
from daydream_luigi.core.ids import id_problem

LOOPBACK_NAMES = frozenset({"localhost"})  # besides the addresses 127.0.0.0/8 and ::1
FIELDS = ("api_key_env", "base_url", "base_url_env", "batch_api", "dialect")
DIALECTS = ("openrouter", "openai", "openai-compatible")  # whose documented request fields its calls use
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_EXAMPLES = "like https://openrouter.ai/api/v1 or http://127.0.0.1:8000/v1"


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str | None  # None: only base_url_env supplies it (the embedded server's URL is known once it runs)
    api_key_env: str | None  # the environment variable holding the key; None for a server that needs no key
    base_url_env: str | None = None  # an environment variable that, when set, replaces base_url
    batch_api: str | None = None  # its batch API (core.batch_settings.BATCH_APIS); None: no batches
    dialect: str = "openai-compatible"  # DIALECTS: which API's documented fields its requests carry
    section: str = dataclasses.field(
        default="providers", compare=False
    )  # the settings key it was declared under, for messages


def default_dialect(base_url: str | None) -> str:
    """openrouter for an openrouter.ai URL, else the standard fields every OpenAI-compatible server takes."""
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    return "openrouter" if host == "openrouter.ai" or host.endswith(".openrouter.ai") else "openai-compatible"


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


def parse_providers(raw: Any, where: str, section: str = "providers") -> tuple[dict[str, Provider], list[str]]:
    """The `endpoints:` (or, by its earlier name, `providers:`: `section`) mapping of the settings file `where`, with
    every problem found (messages never quote a value that could be a key)."""
    if not isinstance(raw, dict) or not raw:
        return {}, [
            f"{where}: {section} must map each provider id to its base_url and api_key_env "
            f"(see the README, 'Providers')"
        ]
    providers: dict[str, Provider] = {}
    problems: list[str] = []
    for name, fields in raw.items():
        key = f"{section}.{name}"
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
        if fields.get("batch_api") is not None and fields["batch_api"] not in BATCH_APIS:
            problems.append(
                f"{where}: {key}.batch_api must be one of {', '.join(BATCH_APIS)} (found "
                f"{fields['batch_api']!r}), or left out when the provider has no batch API"
            )
        if fields.get("dialect") is not None and fields["dialect"] not in DIALECTS:
            problems.append(
                f"{where}: {key}.dialect must be one of {', '.join(DIALECTS)} (found {fields['dialect']!r}), or left "
                f"out (openrouter for an openrouter.ai base_url, else openai-compatible)"
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
                name,
                base_url,
                fields.get("api_key_env"),
                fields.get("base_url_env"),
                fields.get("batch_api"),
                fields.get("dialect") or default_dialect(base_url if isinstance(base_url, str) else None),
                section,
            )
    return providers, problems
