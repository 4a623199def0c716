"""The time as every file of the store records it: ISO 8601, UTC, to the millisecond."""

from datetime import UTC, datetime


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
