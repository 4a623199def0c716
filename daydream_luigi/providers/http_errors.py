"""What an HTTP failure says, in one line that never holds the key: the provider's own error text, why no connection
was made, when to try again. Every client of a provider (chat, embeddings, batches, rate limits, the breaker) reads
its failures here, so a key is always scrubbed before a message is cut to length, never after: a cut through the
middle of a key would leave half of it behind, which no later replace can find.
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import requests
import urllib3.exceptions

MAX_PROVIDER_MESSAGE = 300  # characters of the provider's own text kept in a message


def one_line(text: str, limit: int = MAX_PROVIDER_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def scrub(text: str, api_key: str | None) -> str:
    return text.replace(api_key, "***") if api_key else text


def error_text(msg: str, api_key: str | None) -> str:
    """A final one-line error message: scrubbed before and after truncation."""
    return scrub(one_line(scrub(msg, api_key), 1000), api_key)


def provider_message(resp: requests.Response, api_key: str | None) -> str:
    """The provider's own error text: JSON error.message when present, else a short body excerpt.

    The key is scrubbed before truncating, so a cut can never leave part of it behind.
    """
    text = scrub(resp.text or "", api_key)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            msg = str(err["message"])
            raw = (err.get("metadata") or {}).get("raw") if isinstance(err.get("metadata"), dict) else None
            if raw:  # OpenRouter passes the upstream provider's text here
                msg = f"{msg} ({raw})"
            return one_line(msg)
        if isinstance(err, str) and err:
            return one_line(err)
        for key in ("message", "detail"):
            if data.get(key):
                return one_line(str(data[key]))
        return one_line(json.dumps(data))
    ctype = resp.headers.get("Content-Type", "")
    if "html" in ctype.lower() or text.lstrip().startswith("<"):
        return f"non-JSON error page ({ctype or 'no content type'})"
    return one_line(text) if text.strip() else "empty body"


def http_failure(resp: requests.Response, api_key: str | None) -> str:
    """An error response as every client names it: ``HTTP <status>: <the provider's text>``, key-free."""
    return f"HTTP {resp.status_code}: {provider_message(resp, api_key)}"


def connection_cause(exc: Exception, api_key: str | None) -> str:
    """Why a request got no response (refused, reset, unresolvable host ...), in a few key-free words."""
    text = scrub(str(exc), api_key)
    m = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    if m:
        return m.group(0).strip()
    if "Remote end closed connection" in text or "RemoteDisconnected" in text:
        return "remote end closed connection without response"
    if "Connection aborted" in text or "Connection reset" in text:
        return "connection reset"
    return one_line(f"{type(exc).__name__}: {text}", 200)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (args, urllib3's ``reason``) and its causes."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (getattr(current, "reason", None), current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                stack.append(linked)


def is_connection_failure(exc: BaseException) -> bool:
    """True when no connection was made: refused, unresolvable host, unreachable network, connect timeout.

    A read timeout, a connection reset after connecting or any HTTP status means the server is there: False.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    return any(
        isinstance(link, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
        for link in exception_chain(exc)
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
