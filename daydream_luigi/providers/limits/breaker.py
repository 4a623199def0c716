"""A circuit breaker per provider: after several connection failures in a row its calls fail at once.

A server that is not running, a wrong port or a host name that does not resolve fails every generation in turn, each
after its own retries. Counting consecutive connection failures per provider (in
``data/.runs/<run_id>/breaker/<provider>.json``, shared by every process of the run, on any machine, like the rate
limits, see ``shared_state``; a new run starts with a closed breaker) lets the first few failures be retried as usual
and then stops the provider's calls with one message naming it and its URL. Any answer from the server, an HTTP error
included, proves it reachable and resets the count.
"""

from __future__ import annotations

from pathlib import Path

from daydream_luigi.store.shared_state import locked_json, state_file

DEFAULT_THRESHOLD = 5  # consecutive connection failures that open a provider's breaker


class BreakerOpen(Exception):
    """The provider's breaker is open: its calls are not sent for the rest of the run."""

    def __init__(self, provider: str, url: str, failures: int, last_error: str):
        self.provider, self.url, self.failures, self.last_error = provider, url, failures, last_error
        super().__init__(
            f"provider {provider} at {url} is unreachable: {failures} connection failures in a row "
            f"(last: {last_error}); its calls stop for this run. Check that the server is running and "
            f"the base URL is right, then run again"
        )


class CircuitBreaker:
    """Consecutive connection failures per provider, kept in ``state_dir`` (``data/.breaker``)."""

    def __init__(self, state_dir: Path, threshold: int = DEFAULT_THRESHOLD):
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.state_dir = Path(state_dir)
        self.threshold = threshold

    def check(self, provider: str) -> None:
        """Raise BreakerOpen when the provider's breaker is open; call before sending."""
        with locked_json(state_file(self.state_dir, provider)) as state:
            if state.get("open"):
                raise BreakerOpen(provider, state["url"], state["failures"], state["last_error"])

    def failure(self, provider: str, url: str, cause: str) -> bool:
        """Count a connection failure (see http_errors.is_connection_failure; ``cause`` must be free of keys); True
        when this one opened the breaker."""
        with locked_json(state_file(self.state_dir, provider)) as state:
            if state.get("open"):
                return False  # its message names the failures that opened it
            state["failures"] = state.get("failures", 0) + 1
            state.update(url=url, last_error=cause)
            state["open"] = state["failures"] >= self.threshold
            return state["open"]

    def success(self, provider: str) -> None:
        """The server answered (any HTTP status, or the run's preflight check passed): the count starts again and an
        open breaker closes."""
        with locked_json(state_file(self.state_dir, provider)) as state:
            state.clear()
