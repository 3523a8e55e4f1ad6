"""Time in one place: UTC everywhere, RFC 3339 on the wire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

Clock = Callable[[], datetime]

# A longer Retry-After is a broken or hostile server: it would stop refreshing for good, and
# past year 9999 it overflows datetime arithmetic. No real rate limit window is this long.
MAX_RETRY_AFTER = timedelta(hours=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """`Retry-After` as seconds from `now`: either delta-seconds or an HTTP-date (RFC 9110),
    at most `MAX_RETRY_AFTER`."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER.total_seconds())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER.total_seconds())
