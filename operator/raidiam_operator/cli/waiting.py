"""`refresh --wait`: has the operator answered a refresh request yet, and how?

Pure: it reads a RaidiamClient's or RaidiamRegistration's status as the API server returns it.
For a client, the operator records the moment it issued a token (`status.lastRefreshTime`) or
last failed (`status.lastFailureTime`), to the second; an answer at or after the request's
second is the answer to it. For a registration, it records the request it answered
(`status.lastRefreshRequest`, the annotation's value) when the read succeeds; a failure shows
as a Degraded condition that turned True since the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TRANSIENT,
)
from raidiam_operator.cli.tables import condition
from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    RaidiamOperatorError,
    RegistrationGone,
)
from raidiam_operator.core.reasons import TRANSIENT_REASONS, Reason, reason_named
from raidiam_operator.core.times import parse_rfc3339

#: shown for a Degraded condition without a reason
NO_REASON = "Unknown"


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
        reason = str(degraded.get("reason", NO_REASON))
        return RefreshOutcome(failure_exit_code(reason), f"{reason}: {degraded.get('message')}")
    return None


def timeout_outcome(client: Mapping[str, Any], *, waited: float) -> RefreshOutcome:
    """No answer in time: what stands in the way, if the status says (a missing Secret is found
    before any request, so it sets no lastFailureTime), else that the operator did not answer."""
    return _stuck(client, f"no new token after {waited:.0f} s", failure_exit_code, waited)


def _stuck(
    body: Mapping[str, Any], missing: str, exit_code: Callable[[str], int], waited: float
) -> RefreshOutcome:
    """A Degraded condition still True names what stands in the way; else the operator is
    silent."""
    degraded = condition(body.get("status") or {}, "Degraded")
    if degraded.get("status") == "True":
        reason = str(degraded.get("reason", NO_REASON))
        return RefreshOutcome(exit_code(reason), f"{missing}; {reason}: {degraded.get('message')}")
    return RefreshOutcome(
        EXIT_TRANSIENT,
        f"no answer from the operator after {waited:.0f} s: is it running, and does it serve "
        "this namespace?",
    )


def failure_exit_code(reason: str) -> int:
    """3 for the server's refusal (an OAuth error code), 4 for what may pass, 2 for the rest."""
    if reason in TRANSIENT_REASONS:
        return EXIT_TRANSIENT
    if reason_named(reason) is None and reason != NO_REASON:
        return EXIT_REJECTED  # not ours: the server's OAuth error code (invalid_client, ...)
    return EXIT_CONFIGURATION


def _moment(value: object) -> datetime | None:
    return parse_rfc3339(value) if isinstance(value, str) else None


def registration_refresh_outcome(
    registration: Mapping[str, Any], *, requested: str, requested_at: datetime
) -> RefreshOutcome | None:
    """The answer to the read requested with annotation value `requested`, or None while there
    is none."""
    status = registration.get("status") or {}
    ready, degraded = condition(status, "Ready"), condition(status, "Degraded")
    if status.get("lastRefreshRequest") == requested and ready.get("status") == "True":
        return RefreshOutcome(EXIT_OK, f"{ready.get('reason')}: {ready.get('message')}")
    turned = _moment(degraded.get("lastTransitionTime"))
    if (
        degraded.get("status") == "True"
        and turned
        and turned >= requested_at.replace(microsecond=0)
    ):
        reason = str(degraded.get("reason", NO_REASON))
        return RefreshOutcome(
            registration_exit_code(reason), f"{reason}: {degraded.get('message')}"
        )
    return None


def registration_timeout_outcome(
    registration: Mapping[str, Any], *, waited: float
) -> RefreshOutcome:
    """No answer in time: a Degraded condition that was already True says what stands in the way
    (it does not turn True again), else the operator did not answer."""
    return _stuck(registration, f"not read after {waited:.0f} s", registration_exit_code, waited)


def _reasons(kind: type[RaidiamOperatorError]) -> frozenset[Reason]:
    found = {kind.reason}
    for subclass in kind.__subclasses__():
        found |= _reasons(subclass)
    return frozenset(found)


#: A registration's Degraded reason is its error's class reason (core.errors): the refusals of the
#: bank or the directory, as `register` counts them.
REGISTRATION_REJECTED_REASONS = _reasons(AuthorizationServerRejection) | {RegistrationGone.reason}


def registration_exit_code(reason: str) -> int:
    """3 for a refusal by the bank or the directory, 4 for what may pass, 2 for the rest."""
    if reason in REGISTRATION_REJECTED_REASONS:
        return EXIT_REJECTED
    if reason in TRANSIENT_REASONS:
        return EXIT_TRANSIENT
    return EXIT_CONFIGURATION
