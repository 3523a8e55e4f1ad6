"""The refresh policy: pure decisions over one frozen view of a client. No I/O, no clock reads.

As in cert-manager's policy chain, each check returns a reason and a message, and the first one
that applies names the decision:

- `refresh_reason`: why a new token is needed now (`REFRESH_CHECKS`, in order), or None;
- `held_back_until`: after a failure, when the next request may go out;
- `after_failure` / `after_success` / `after_blocked`: what an outcome means for the backoff
  and the conditions;
- `certificate_warning`, `next_renewal`, `renewal_in_status`, `blocked_retry`: the rest of the
  timing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    KeyCheckDeferred,
    RaidiamOperatorError,
    TransientError,
)
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.spec import RefreshPolicy, TokenSecretTemplate
from raidiam_operator.core.times import parse_rfc3339, rfc3339
from raidiam_operator.refresh.inputs import Inputs, expiring_certificates
from raidiam_operator.refresh.render import Problem, TokenRecord
from raidiam_operator.refresh.renewal import (
    CONFIGURATION_RETRY,
    MINIMUM_REQUEST_INTERVAL,
    REJECTION_RETRY,
    renewal_time,
    retry_delay,
    retry_once_expired,
)
from raidiam_operator.refresh.state import Backoff

# A CertificateExpiringSoon Warning Event at most this often.
CERTIFICATE_WARNING_REPEAT = timedelta(days=1)
# A missing Secret wakes the client through the watch when it appears; this is a safety net.
SECRET_NOT_FOUND_RETRY = timedelta(seconds=60)
# Problems someone else may fix soon without touching the client: a Secret created, an issuer
# created or widened, a namespace labelled (labels are not watched: this is how it is noticed),
# a registration made (its events wake the client; this is a safety net).
SOON_FIXED = frozenset(
    {
        Reason.SECRET_NOT_FOUND,
        Reason.ISSUER_NOT_ALLOWED,
        Reason.ISSUER_NOT_FOUND,
        Reason.REGISTRATION_NOT_READY,
    }
)


@dataclass(frozen=True, slots=True)
class ClientView:
    """What the policy needs to know about one client, as of one attempt."""

    record: TokenRecord | None
    next_refresh: datetime | None
    refresh_requested_at: str | None
    backoff: Backoff
    #: when this client's last token request went out
    last_request_at: datetime | None = None
    #: why the token Secret read back cannot be believed as written
    secret_doubt: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshReason:
    """Why a new token is requested: a CamelCase reason, and words for the TokenIssued Event."""

    reason: Reason
    message: str


# -- why a refresh is needed -----------------------------------------------------------------

Check = Callable[[ClientView, Inputs, datetime], RefreshReason | None]


def _secret_edited(view: ClientView, inputs: Inputs, now: datetime) -> RefreshReason | None:
    # The TokenSecretEdited Warning, posted when the Secret was read, says what did not add up.
    if view.secret_doubt is None:
        return None
    return RefreshReason(Reason.SECRET_EDITED, "the token Secret was not as the operator wrote it")


def _no_token(view: ClientView, inputs: Inputs, now: datetime) -> RefreshReason | None:
    return RefreshReason(Reason.ISSUING, "first token") if view.record is None else None


def _certificate_changed(view: ClientView, inputs: Inputs, now: datetime) -> RefreshReason | None:
    record = view.record
    if record is None or record.certificate_thumbprint == inputs.request.certificate_thumbprint:
        return None
    # A bound token names its certificate: another one is a change whatever the fingerprint
    # says (read back after a restart, the fingerprint is an annotation anyone may edit).
    if record.binding != "none" or record.inputs_fingerprint != inputs.fingerprint:
        return RefreshReason(Reason.CERTIFICATE_CHANGED, "the transport certificate changed")
    return None


def _spec_changed(view: ClientView, inputs: Inputs, now: datetime) -> RefreshReason | None:
    if view.record is not None and view.record.inputs_fingerprint != inputs.fingerprint:
        return RefreshReason(Reason.SPEC_CHANGED, "the spec or signing key changed")
    return None


def _refresh_requested(view: ClientView, inputs: Inputs, now: datetime) -> RefreshReason | None:
    requested = view.refresh_requested_at
    if view.record is not None and requested and requested != view.record.refresh_requested_at:
        return RefreshReason(Reason.REFRESH_REQUESTED, "refresh requested through the annotation")
    return None


def _token_expired(view: ClientView, inputs: Inputs, now: datetime) -> RefreshReason | None:
    if view.record is not None and not view.record.valid_at(now):
        return RefreshReason(Reason.TOKEN_EXPIRED, "the previous token had expired")
    return None


def _renewal_due(view: ClientView, inputs: Inputs, now: datetime) -> RefreshReason | None:
    if view.next_refresh is not None and now >= view.next_refresh:
        return RefreshReason(Reason.RENEWAL_DUE, "renewal after a failure")
    return None


#: asked in this order; the first answer is the reason (docs/concepts.md lists them)
REFRESH_CHECKS: tuple[Check, ...] = (
    _secret_edited,
    _no_token,
    _certificate_changed,
    _spec_changed,
    _refresh_requested,
    _token_expired,
    _renewal_due,
)


def refresh_reason(view: ClientView, inputs: Inputs, *, now: datetime) -> RefreshReason | None:
    """Why a new token is needed now, or None."""
    for check in REFRESH_CHECKS:
        reason = check(view, inputs, now)
        if reason is not None:
            return reason
    return None


# -- when a client is held back --------------------------------------------------------------


def held_back_until(view: ClientView, inputs: Inputs, *, now: datetime) -> datetime | None:
    """When the next request may go out, if not now. The server's Retry-After always holds, and
    so does the minimum interval between two requests of one client, whatever came between
    them; our own backoff gives way when the user changed something since the failure, and
    shortens once the token has expired."""
    backoff = view.backoff
    floors = [backoff.not_before]
    if view.last_request_at is not None:
        floors.append(view.last_request_at + MINIMUM_REQUEST_INTERVAL)
    unchanged = backoff.failed_inputs == (inputs.fingerprint, view.refresh_requested_at)
    if backoff.retry_at is not None and unchanged:
        retry_at = backoff.retry_at
        expired = view.record is None or not view.record.valid_at(now)
        if backoff.expired_retry_at is not None and expired:
            retry_at = min(retry_at, backoff.expired_retry_at)
        floors.append(retry_at)
    latest = max((floor for floor in floors if floor is not None), default=None)
    return latest if latest is not None and now < latest else None


# -- what an outcome means -------------------------------------------------------------------


def after_failure(
    backoff: Backoff,
    error: RaidiamOperatorError,
    *,
    inputs: Inputs,
    refresh_requested_at: str | None,
    record: TokenRecord | None,
    now: datetime,
    rng: random.Random,
) -> Backoff:
    """A failed token request: the condition it shows, and when to try again.

    A rejection (invalid_client, ...) is usually fixed in the directory's console: 5 minutes.
    A transient failure backs off exponentially, never sooner than the server's Retry-After:
    up to 60 s while the token in the Secret is valid, up to 10 s once it has expired, and
    soon after it expires should that happen during a longer wait.
    Anything else (the server's metadata or TLS does not fit) waits 5 minutes.
    """
    attempts = backoff.failed_attempts + 1
    not_before = expired_retry_at = None
    if isinstance(error, AuthorizationServerRejection):
        # The condition names the server's code; the Event limit counts our own reason, so a
        # server that invents a code per answer gets no Event per answer.
        problem = Problem(error.error, error.message, error.note(), repeat_key=error.reason)
        retry_at = now + REJECTION_RETRY
    elif isinstance(error, TransientError):
        problem = Problem(error.reason, error.message, error.note())
        valid = record is not None and record.valid_at(now)
        retry_at = now + retry_delay(
            attempts, retry_after=error.retry_after, rng=rng, token_expired=not valid
        )
        if valid and record is not None:
            expired_retry_at = retry_once_expired(
                failed_at=now, expires_at=record.expires_at, rng=rng
            )
        if error.retry_after:
            not_before = now + timedelta(seconds=error.retry_after)
    else:
        problem = Problem(error.reason, error.message, error.note())
        retry_at = now + CONFIGURATION_RETRY
    return Backoff(
        failure=problem,
        failed_attempts=attempts,
        last_failure_time=now,
        retry_at=retry_at,
        not_before=not_before,
        failed_inputs=(inputs.fingerprint, refresh_requested_at),
        expired_retry_at=expired_retry_at,
    )


def after_success(backoff: Backoff) -> Backoff:
    """A token was issued: no failure, no wait. The last failure's time stays in the status."""
    return Backoff(last_failure_time=backoff.last_failure_time)


def after_blocked(backoff: Backoff) -> Backoff:
    """Input only the user can fix: that is the condition now, not the last request's failure."""
    return replace(backoff, failure=None)


def blocked_retry(error: ConfigurationError) -> timedelta:
    """Secret events wake a blocked client when its input appears; the timer is a safety net."""
    if isinstance(error, KeyCheckDeferred):
        return timedelta(seconds=error.retry_after)
    return SECRET_NOT_FOUND_RETRY if error.reason in SOON_FIXED else CONFIGURATION_RETRY


def conflict(namespace: str, name: str) -> ConfigurationError:
    return ConfigurationError(
        f"Secret {namespace}/{name} already exists and is not owned by this RaidiamClient; it is "
        "left untouched. Delete it, or set spec.tokenSecret.name to another name",
        reason=Reason.SECRET_CONFLICT,
    )


# -- certificates ----------------------------------------------------------------------------


def certificate_warning(inputs: Inputs, *, now: datetime, period: timedelta) -> Problem | None:
    """A warning when a certificate the client uses expires within `period`: the token flow
    dies with it."""
    expiring = expiring_certificates(inputs, now=now, warning=period)
    if not expiring:
        return None
    first = expiring[0]
    return Problem(
        Reason.CERTIFICATE_EXPIRING_SOON,
        f"the {first.role} in Secret {first.secret_name} expires at {rfc3339(first.not_after)} "
        f"(in {_days(first.not_after - now)}); renew it before then",
    )


def certificate_event_due(last: datetime | None, *, now: datetime) -> bool:
    return last is None or now - last >= CERTIFICATE_WARNING_REPEAT


def _days(remaining: timedelta) -> str:
    if remaining < timedelta(days=2):
        return f"{max(0, int(remaining.total_seconds() // 3600))} hours"
    return f"{remaining.days} days"


# -- timing ----------------------------------------------------------------------------------


def next_renewal(record: TokenRecord, policy: RefreshPolicy, *, rng: random.Random) -> datetime:
    # Whole seconds, rounded down, like every time the status shows: the nextRefreshTime a
    # user (or a restarted operator) reads is exactly the moment the engine plans.
    return renewal_time(
        issued_at=record.issued_at, expires_at=record.expires_at, policy=policy, rng=rng
    ).replace(microsecond=0)


def renewal_in_status(status: Mapping[str, Any] | None, record: TokenRecord) -> datetime | None:
    """The renewal the status shows for this very token, if it shows one (after a restart).

    Keeping it instead of drawing new jitter keeps the schedule steady across restarts and
    spares a status write per client.
    """
    status = status or {}
    if status.get("failedAttempts") or status.get("expiresAt") != rfc3339(record.expires_at):
        return None
    planned = parse_rfc3339(status.get("nextRefreshTime") or "")
    if planned is None or not record.issued_at < planned <= record.expires_at:
        return None
    return planned


def expiry_if_valid(record: TokenRecord | None, now: datetime) -> datetime | None:
    return record.expires_at if record is not None and record.valid_at(now) else None


def earliest(*moments: datetime | None) -> datetime:
    return min(m for m in moments if m is not None)


def later(*moments: datetime | None) -> datetime | None:
    return max((m for m in moments if m is not None), default=None)


# -- what the token Secret carries -------------------------------------------------------------


def with_certificate(
    record: TokenRecord, template: TokenSecretTemplate, inputs: Inputs
) -> TokenRecord:
    """`record` with the certificate files its token Secret should carry beside it, if any.

    Only ever the pair the token was issued with: the one kept since it was issued (or read back
    from the Secret, where it was written with the token), else the current input's, when the
    inputs are still those the token was issued for (their fingerprint covers the certificate
    chain). After a rotation the current files are not that pair, and a new token is on its way.
    """
    if not template.include_certificate:
        return replace(record, certificate=None) if record.certificate is not None else record
    if record.certificate is None and record.inputs_fingerprint == inputs.fingerprint:
        return replace(record, certificate=inputs.certificate_files)
    return record
