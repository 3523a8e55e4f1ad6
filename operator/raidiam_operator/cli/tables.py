"""The `status` table: what a person on call reads first. Pure: `now` comes from the caller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from raidiam_operator.core.times import parse_rfc3339

# READY and REASON: is there a valid token now. REFRESH: can the operator get the next one (the
# Degraded condition's reason), so a client whose renewals fail does not hide behind a valid token.
HEADERS = (
    "NAME",
    "READY",
    "REASON",
    "REFRESH",
    "EXPIRES IN",
    "NEXT REFRESH",
    "CERTIFICATE EXPIRES IN",
)
ISSUER_HEADERS = ("CLUSTERRAIDIAMISSUER", "ISSUER", "READY", "REASON", "LAST CHECK")


def human(delta: timedelta) -> str:
    """A short signed duration: '4m10s', '3d2h', or 'expired 5m ago'."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return f"{human(-delta)} ago"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def until(value: object, now: datetime) -> str:
    """An RFC 3339 time as a duration from now ('4m10s', '5m0s ago'), or '-'."""
    moment = parse_rfc3339(value) if isinstance(value, str) else None
    return human(moment - now) if moment else "-"


def moment_text(value: object, now: datetime) -> str:
    """An RFC 3339 time with its distance from now: '2026-03-02T10:14:10Z (in 4m10s)'."""
    moment = parse_rfc3339(value) if isinstance(value, str) else None
    if moment is None:
        return "-"
    delta = moment - now
    return f"{value} ({human(delta) if delta.total_seconds() < 0 else 'in ' + human(delta)})"


def condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] = next(
        (c for c in status.get("conditions", []) if c.get("type") == kind), {}
    )
    return found


def status_rows(
    clients: Sequence[Mapping[str, Any]], *, now: datetime, with_namespace: bool
) -> list[list[str]]:
    rows = []
    for client in sorted(
        clients, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"])
    ):
        status = client.get("status") or {}
        ready = condition(status, "Ready")
        row = [
            client["metadata"]["name"],
            ready.get("status", "Unknown"),
            ready.get("reason", "Pending"),
            condition(status, "Degraded").get("reason", "-"),
            until(status.get("expiresAt"), now),
            until(status.get("nextRefreshTime"), now),
            until(status.get("certificateNotAfter"), now),
        ]
        rows.append([client["metadata"]["namespace"], *row] if with_namespace else row)
    return rows


def issuer_rows(issuers: Sequence[Mapping[str, Any]], *, now: datetime) -> list[list[str]]:
    rows = []
    for issuer in sorted(issuers, key=lambda i: str(i["metadata"]["name"])):
        status = issuer.get("status") or {}
        ready = condition(status, "Ready")
        rows.append(
            [
                issuer["metadata"]["name"],
                str((issuer.get("spec") or {}).get("issuer", "-")),
                ready.get("status", "Unknown"),
                ready.get("reason", "Pending"),
                until(status.get("lastCheckTime"), now),
            ]
        )
    return rows


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)
