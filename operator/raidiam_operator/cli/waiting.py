"""`refresh --wait`: has the operator answered a refresh request yet, and how?

Pure: it reads a RaidiamClient's status as the API server returns it. The operator records the
moment it issued a token (`status.lastRefreshTime`) or last failed (`status.lastFailureTime`),
to the second; an answer at or after the request's second is the answer to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from raidiam_operator.cli.tables import condition
from raidiam_operator.core.times import parse_rfc3339

EXIT_OK = 0
EXIT_CONFIGURATION = 2
EXIT_REJECTED = 3
EXIT_TRANSIENT = 4
#: Degraded reasons of failures that retrying may cure (errors.TransientError and subclasses).
TRANSIENT_REASONS = frozenset(
    {
        "TransientFailure",
        "AuthorizationServerUnavailable",
        "AuthorizationServerUnreachable",
        "InvalidTokenResponse",
    }
)


@dataclass(frozen=True)
class RefreshOutcome:
    exit_code: int
    message: str


def refresh_outcome(client: Mapping[str, Any], *, requested_at: datetime) -> RefreshOutcome | None:
    """The answer to a refresh requested at `requested_at`, or None while there is none."""
    status = client.get("status") or {}
    since = requested_at.replace(microsecond=0)
    if (client.get("spec") or {}).get("suspend"):
        return RefreshOutcome(
            EXIT_CONFIGURATION, "suspended: not refreshed until spec.suspend is false"
        )
    issued = _moment(status.get("lastRefreshTime"))
    failed = _moment(status.get("lastFailureTime"))
    degraded = condition(status, "Degraded")
    if issued is not None and issued >= since and (failed is None or issued >= failed):
        return RefreshOutcome(EXIT_OK, f"new token, valid until {status.get('expiresAt')}")
    if degraded.get("status") == "True" and failed is not None and failed >= since:
        reason = str(degraded.get("reason", "Unknown"))
        return RefreshOutcome(failure_exit_code(reason), f"{reason}: {degraded.get('message')}")
    return None


def timeout_outcome(client: Mapping[str, Any], *, waited: float) -> RefreshOutcome:
    """No answer in time: what stands in the way, if the status says (a missing Secret is found
    before any request, so it sets no lastFailureTime), else that the operator did not answer."""
    degraded = condition(client.get("status") or {}, "Degraded")
    if degraded.get("status") == "True":
        reason = str(degraded.get("reason", "Unknown"))
        return RefreshOutcome(
            failure_exit_code(reason),
            f"no new token after {waited:.0f} s; {reason}: {degraded.get('message')}",
        )
    return RefreshOutcome(
        EXIT_TRANSIENT,
        f"no answer from the operator after {waited:.0f} s: is it running, and does it serve "
        "this namespace?",
    )


def failure_exit_code(reason: str) -> int:
    """3 for the server's refusal (an OAuth error code), 4 for what may pass, 2 for the rest."""
    if reason in TRANSIENT_REASONS:
        return EXIT_TRANSIENT
    if reason[:1].islower():  # OAuth error codes (invalid_client, ...) are the rejections
        return EXIT_REJECTED
    return EXIT_CONFIGURATION


def _moment(value: object) -> datetime | None:
    return parse_rfc3339(value) if isinstance(value, str) else None
