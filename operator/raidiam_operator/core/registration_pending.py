"""A registration POST in flight, recorded on the RaidiamRegistration before it is sent, as
Crossplane records an external create as pending: the one step of a registration that cannot be
repeated safely. No I/O; times are passed in.

The record (`PENDING_ANNOTATION`, "<RFC3339 time> <registration endpoint>") is written just
before the POST and removed once the credentials Secret holds what the server answered. Found
with no registration recorded, it means a POST went out and its answer was lost (a timeout, a
reset connection, an answer that cannot be read, an operator stopped mid-request): the server
may hold a client we have no credentials for, and only a person can tell. So the operator does
not POST again until that person removes the annotation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    RegistrationInDoubt,
    RequestNotSent,
    ServerUnavailable,
)
from raidiam_operator.core.texts import EVENT_NOTE_LIMIT, URL_LIMIT, cut_bytes, server_text
from raidiam_operator.core.times import parse_rfc3339, rfc3339

#: on a RaidiamRegistration: a registration POST was about to be sent, and its answer is not
#: recorded yet
PENDING_ANNOTATION = "raidiam.io/registration-pending"
#: a value longer than this is not ours (a registration endpoint is a URL of at most 2,048
#: characters): it is read as a record of unknown time and place
_MAX_VALUE = 4096


@dataclass(frozen=True)
class PendingRegistration:
    """A POST about to be sent, or sent: when, and to which registration endpoint. Both None
    when the annotation does not read as ours (someone edited it): still a record."""

    since: datetime | None
    endpoint: str | None

    @classmethod
    def at(cls, now: datetime, endpoint: str) -> PendingRegistration:
        """The record of a POST to `endpoint` sent at `now`, to the second, as it reads back."""
        return cls(now.replace(microsecond=0), endpoint)

    @property
    def known(self) -> bool:
        return self.since is not None and self.endpoint is not None

    def render(self) -> str:
        assert self.since is not None
        assert self.endpoint is not None
        return f"{rfc3339(self.since)} {self.endpoint}"


def pending_registration(annotations: Mapping[str, str] | None) -> PendingRegistration | None:
    """The record among a RaidiamRegistration's annotations, or None without one."""
    value = (annotations or {}).get(PENDING_ANNOTATION)
    if value is None:
        return None
    since_text, _, endpoint = value.strip().partition(" ")
    since = parse_rfc3339(since_text) if len(value) <= _MAX_VALUE else None
    if since is None or not endpoint.startswith("https://"):
        return PendingRegistration(None, None)
    return PendingRegistration(since, endpoint)


def may_have_registered(error: BaseException) -> bool:
    """Whether a registration POST that ended in `error` may have made a client at the server.

    No: the request never left (`RequestNotSent`: no connection, a TLS handshake refused, no
    free connection in time); the URL or the server's certificate was refused before sending
    (a `ConfigurationError`); the server answered with an RFC 7591 error (a 4xx rejection, made
    before anything is registered), 429 (a rate limit, in front of the handler) or 503 (RFC 9110:
    the server cannot handle requests now; a bank in maintenance answers it for hours, and
    holding every first registration for a person over it would be worse than the rare
    duplicate). Yes, for everything else: a timeout or a reset after the request was written,
    an answer that cannot be read, another 5xx (a 500 from a handler that failed half-way, a
    gateway's 502 or 504 after the bank acted), the attempt's deadline (it may strike
    mid-answer), a cancellation (the operator stopping)."""
    if isinstance(error, RequestNotSent | ConfigurationError | AuthorizationServerRejection):
        return False
    return not (isinstance(error, ServerUnavailable) and error.status_code in (429, 503))


def in_doubt(
    pending: PendingRegistration, *, namespace: str, name: str, cause: str | None = None
) -> RegistrationInDoubt:
    """What to tell a person about a POST whose outcome is unknown, and what to do about it.
    `cause`: why its answer was lost, when this attempt saw it."""
    when = rfc3339(pending.since) if pending.since else "an unknown time"
    where = (
        server_text(pending.endpoint, limit=URL_LIMIT)
        if pending.endpoint
        else "the registration endpoint"
    )

    def message(lost: str) -> str:
        return (
            f"a registration request (RFC 7591 POST) was sent to {where} at {when}, and no "
            f"usable answer came back{lost}: the bank may hold a client whose credentials are "
            "not here, and registering again could make a second one, so the operator does not "
            "register by itself. Check at the bank for a client registered then, and delete it "
            "there (or keep it and manage it by hand); then remove the record to register "
            f"again: kubectl annotate raidiamregistration {name} -n {namespace} "
            f"{PENDING_ANNOTATION}-"
        )

    # The cause gives way, so that the instruction, last, fits in an Event's note.
    room = EVENT_NOTE_LIMIT - len(message(" ()").encode())
    lost = f" ({cut_bytes(cause.rstrip('.'), room)})" if cause and room > 40 else ""
    return RegistrationInDoubt(message(lost))


def removal() -> dict[str, object]:
    """The merge patch that removes the record."""
    return {"metadata": {"annotations": {PENDING_ANNOTATION: None}}}


def recording(pending: PendingRegistration) -> dict[str, object]:
    """The merge patch that writes the record."""
    return {"metadata": {"annotations": {PENDING_ANNOTATION: pending.render()}}}


def deleted_in_doubt(pending: PendingRegistration) -> str:
    """What to tell a person when a RaidiamRegistration whose POST is in doubt is deleted: the
    object goes (nothing here can settle it), and the client the bank may hold is theirs to
    find."""
    when = rfc3339(pending.since) if pending.since else "an unknown time"
    where = (
        server_text(pending.endpoint, limit=URL_LIMIT)
        if pending.endpoint
        else "the registration endpoint"
    )
    return (
        f"deleted while a registration request (RFC 7591 POST) sent to {where} at {when} had no "
        "usable answer: the bank may hold a client registered then, whose credentials are "
        "nowhere here. Check at the bank, and delete it there"
    )
