"""What the operator writes: the token Secret and the RaidiamClient status. Pure.

Nothing here reads the clock: every time written comes from a recorded event (issue, failure,
condition flip), so rendering the same state twice gives the same object and drift is visible.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.spec import (
    GROUP,
    KIND,
    MANAGED_BY,
    REFRESH_REQUESTED_AT,
    VERSION,
    Owner,
    TokenSecretTemplate,
)
from raidiam_operator.core.templating import render_templates
from raidiam_operator.core.times import rfc3339
from raidiam_operator.protocol.credentials import CertificateFiles
from raidiam_operator.protocol.tokens import (
    Binding,
    IssuedToken,
)

ANNOTATION_PREFIX = "raidiam.io/"
EXPIRES_AT = ANNOTATION_PREFIX + "expires-at"
ISSUED_AT = ANNOTATION_PREFIX + "issued-at"
CERTIFICATE_THUMBPRINT = ANNOTATION_PREFIX + "certificate-thumbprint"
BINDING = ANNOTATION_PREFIX + "binding"
INPUTS_FINGERPRINT = ANNOTATION_PREFIX + "inputs-fingerprint"
TOKEN_ENDPOINT = ANNOTATION_PREFIX + "token-endpoint"
TOKEN_DIGEST = ANNOTATION_PREFIX + "token-digest"
CLIENT_LABEL = ANNOTATION_PREFIX + "client"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# The API server refuses a Secret whose data adds up to more than this.
MAX_SECRET_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token we issued, with what it was issued for. Lives in memory and in the Secret."""

    access_token: str = field(repr=False)
    token_type: str
    scope: str | None
    issued_at: datetime
    expires_at: datetime
    token_endpoint: str
    #: x5t#S256 of the certificate the token is bound to; None when `binding` is "none"
    certificate_thumbprint: str | None
    #: digest of the spec, signing key and CA bundle the token was issued for
    inputs_fingerprint: str
    #: the value of the refresh-requested-at annotation this token answered, if any
    refresh_requested_at: str | None = None
    #: the transport certificate and key this token was requested with, kept only when the
    #: Secret carries them (spec.tokenSecret.includeCertificate): they are written with this
    #: token and with no other
    certificate: CertificateFiles | None = field(default=None, repr=False)
    binding: Binding = "none"

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at

    @classmethod
    def issued(
        cls,
        token: IssuedToken,
        *,
        inputs_fingerprint: str,
        refresh_requested_at: str | None,
        certificate: CertificateFiles | None = None,
    ) -> TokenRecord:
        """A fresh token, in whole seconds rounded down: what the Secret and status show is
        exactly what the engine believes, and never later than the truth."""
        return cls(
            access_token=token.access_token,
            token_type=token.token_type,
            scope=token.scope,
            issued_at=(token.expires_at - token.lifetime).replace(microsecond=0),
            expires_at=token.expires_at.replace(microsecond=0),
            token_endpoint=token.token_endpoint,
            certificate_thumbprint=token.certificate_thumbprint,
            inputs_fingerprint=inputs_fingerprint,
            refresh_requested_at=refresh_requested_at,
            certificate=certificate,
            binding=token.binding,
        )


def token_fields(owner: Owner, record: TokenRecord) -> dict[str, str]:
    """What a `spec.tokenSecret.template` can put in. `expires_in` is the lifetime the server
    granted, not a countdown: the Secret must not change while the token does not."""
    return {
        "access_token": record.access_token,
        "token_type": record.token_type,
        "expires_at": rfc3339(record.expires_at),
        "expires_in": str(int((record.expires_at - record.issued_at).total_seconds())),
        "scope": record.scope or "",
        "certificate_thumbprint": record.certificate_thumbprint or "",
        "client_name": owner.name,
        "client_namespace": owner.namespace,
    }


def token_secret(
    owner: Owner, template: TokenSecretTemplate, record: TokenRecord
) -> dict[str, Any]:
    """The whole desired Secret. Its data changes only when the token does.

    With `include_certificate`, the certificate and key travel in the same object as the token
    they were used for: the kubelet swaps a Secret volume as a whole, so a pod never reads a
    token with another certificate than the one it is bound to. Raises `ConfigurationError`
    when a template cannot be rendered for this token.
    """
    annotations = {
        **template.annotations,
        EXPIRES_AT: rfc3339(record.expires_at),
        ISSUED_AT: rfc3339(record.issued_at),
        INPUTS_FINGERPRINT: record.inputs_fingerprint,
        TOKEN_ENDPOINT: record.token_endpoint,
        BINDING: record.binding,
        TOKEN_DIGEST: token_digest(record),
    }
    if record.certificate_thumbprint:
        annotations[CERTIFICATE_THUMBPRINT] = record.certificate_thumbprint
    if record.refresh_requested_at:
        annotations[REFRESH_REQUESTED_AT] = record.refresh_requested_at
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": template.name,
            "namespace": owner.namespace,
            "labels": {**template.labels, MANAGED_BY_LABEL: MANAGED_BY, CLIENT_LABEL: owner.name},
            "annotations": annotations,
            "ownerReferences": [owner_reference(owner)],
        },
        "data": _token_data(owner, template, record),
    }


def token_digest(record: TokenRecord) -> str:
    """A digest of everything the token Secret says about its token, as one annotation: a Secret
    read back after a restart whose token or annotations were changed by hand no longer matches
    it (see `readback`). Not keyed, so a proof of nothing against whoever computes it anew."""
    digest = hashlib.sha256()
    for part in (
        record.access_token,
        record.token_type,
        record.scope or "",
        rfc3339(record.issued_at),
        rfc3339(record.expires_at),
        record.token_endpoint,
        record.binding,
        record.certificate_thumbprint or "",
        record.inputs_fingerprint,
        record.refresh_requested_at or "",
    ):
        digest.update(part.encode() + b"\0")
    if record.certificate is not None:
        for files in (record.certificate.certificate, record.certificate.private_key):
            digest.update(hashlib.sha256(files).digest())
        digest.update(hashlib.sha256(record.certificate.ca or b"").digest())
    return "sha256:" + digest.hexdigest()


def _token_data(owner: Owner, template: TokenSecretTemplate, record: TokenRecord) -> dict[str, str]:
    data = {
        "access_token": record.access_token.encode(),
        "token_type": record.token_type.encode(),
        "expires_at": rfc3339(record.expires_at).encode(),
        "scope": (record.scope or "").encode(),
    }
    if template.include_certificate and record.certificate is not None:
        data["tls.crt"] = record.certificate.certificate
        data["tls.key"] = record.certificate.private_key
        if record.certificate.ca is not None:
            data["ca.crt"] = record.certificate.ca
    if template.templates:
        size = sum(len(value) for value in data.values())
        # Sized before it is built: a template that multiplies the token would otherwise take
        # its rendered size in memory before the API server refused it.
        rendered = render_templates(
            template.templates, token_fields(owner, record), room=MAX_SECRET_BYTES - size
        )
        data.update((key, text.encode()) for key, text in rendered.items())
    return {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
    }


def is_owned_by(secret: Mapping[str, Any], owner: Owner) -> bool:
    references = secret.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid and ref.get("controller") for ref in references)


def secret_differs(actual: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when someone changed what we own: data, type, our labels/annotations, or ownership."""
    if actual.get("type", "Opaque") != desired["type"]:
        return True
    if (actual.get("data") or {}) != desired["data"]:
        return True
    actual_meta, desired_meta = actual.get("metadata", {}), desired["metadata"]
    for part in ("labels", "annotations"):
        have = actual_meta.get(part) or {}
        if any(have.get(k) != v for k, v in desired_meta[part].items()):
            return True
    return not any(
        ref.get("uid") == desired_meta["ownerReferences"][0]["uid"]
        for ref in actual_meta.get("ownerReferences") or []
    )


# -- status -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: bool
    #: a Reason, or the server's OAuth error code for a rejected token request
    reason: str
    message: str


def conditions(
    previous: Sequence[Mapping[str, Any]],
    wanted: Sequence[Condition],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """metav1.Conditions; `lastTransitionTime` moves only when a condition's status flips."""
    by_type = {c.get("type"): c for c in previous}
    rendered = []
    for condition in wanted:
        status = "True" if condition.status else "False"
        before = by_type.get(condition.type)
        transitioned = (
            before["lastTransitionTime"]
            if before and before.get("status") == status and before.get("lastTransitionTime")
            else rfc3339(now)
        )
        rendered.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "observedGeneration": generation,
                "lastTransitionTime": transitioned,
            }
        )
    return rendered


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the client cannot get a token right now, as a condition reason and message."""

    reason: str
    message: str
    #: the message within an Event's 1 KiB, when it is longer (the server's text cut, not the hint)
    note: str | None = None
    #: what the Event limit counts this problem as, when not its reason: the operator's own
    #: reason when `reason` is the server's word (an OAuth error code a server may invent)
    repeat_key: str | None = None

    @property
    def event_note(self) -> str:
        return self.note or self.message

    @property
    def event_key(self) -> str:
        return self.repeat_key or self.reason


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the status shows about one client, as of one attempt."""

    record: TokenRecord | None
    #: the inputs the token should match; None when they could not be read
    inputs_fingerprint: str | None
    #: a problem only the user can fix (bad input, a conflicting Secret)
    blocked: Problem | None
    #: the last failed token request
    failure: Problem | None
    failed_attempts: int
    last_failure_time: datetime | None
    next_refresh: datetime | None
    suspended: bool
    generation: int
    previous_conditions: Sequence[Mapping[str, Any]]
    certificate_warning: Problem | None = None
    certificate_not_after: datetime | None = None
    last_certificate_warning: datetime | None = None
    #: the token Secret this client owns and keeps its token in, once written
    token_secret_name: str | None = None
    #: the token works, but lives too short to be renewed sensibly: Ready's reason while it is
    #: valid (a server's choice, not a failure, so not Degraded)
    lifetime_warning: Problem | None = None


@dataclass(frozen=True, slots=True)
class RenderedStatus:
    """The status subresource, and what metrics need from it as data."""

    status: dict[str, Any]
    ready: bool
    #: the next refresh as the status shows it (whole seconds), or None
    next_refresh: datetime | None


def client_status(view: StatusView, *, now: datetime) -> RenderedStatus:
    """The whole status subresource."""
    record, blocked, failure, suspended = view.record, view.blocked, view.failure, view.suspended
    current = (
        record is not None
        and record.valid_at(now)
        and (
            view.inputs_fingerprint is None or record.inputs_fingerprint == view.inputs_fingerprint
        )
    )
    if blocked is not None:
        ready = Condition("Ready", False, blocked.reason, blocked.message)
    elif record is not None and not record.valid_at(now):
        ready = Condition(
            "Ready",
            False,
            Reason.TOKEN_EXPIRED,
            f"the token in the Secret expired at {rfc3339(record.expires_at)}"
            + (f"; refreshing failed: {failure.message}" if failure else "")
            # A token that lives less than the minimum interval between requests is expired most
            # of the time: say why, or the user sees only TokenExpired.
            + (f"; {view.lifetime_warning.message}" if view.lifetime_warning else ""),
        )
    elif current and record is not None:
        short = view.lifetime_warning if not suspended else None
        ready = Condition(
            "Ready",
            True,
            Reason.SUSPENDED if suspended else (short.reason if short else Reason.TOKEN_VALID),
            f"the Secret holds a token valid until {rfc3339(record.expires_at)}"
            + ("; refreshing is suspended" if suspended else "")
            + (f"; but {short.message}" if short else ""),
        )
    elif suspended:
        ready = Condition(
            "Ready", False, Reason.SUSPENDED, "refreshing is suspended and there is no valid token"
        )
    elif failure is not None:
        ready = Condition("Ready", False, failure.reason, failure.message)
    else:
        ready = Condition("Ready", False, Reason.ISSUING, "requesting a token")
    problem = blocked or failure
    degraded = (
        Condition("Degraded", True, problem.reason, problem.message)
        if problem
        else Condition("Degraded", False, Reason.AS_EXPECTED, "the last token request succeeded")
    )
    expiring = (
        Condition(
            "CertificateExpiringSoon",
            True,
            Reason.CERTIFICATE_EXPIRING_SOON,
            view.certificate_warning.message,
        )
        if view.certificate_warning
        else Condition(
            "CertificateExpiringSoon",
            False,
            Reason.CERTIFICATES_VALID,
            "no certificate expires soon",
        )
    )
    next_refresh = view.next_refresh if not suspended else None
    status = {
        "observedGeneration": view.generation,
        "conditions": conditions(
            view.previous_conditions,
            [ready, degraded, expiring],
            generation=view.generation,
            now=now,
        ),
        "expiresAt": rfc3339(record.expires_at) if record else None,
        "lastRefreshTime": rfc3339(record.issued_at) if record else None,
        "nextRefreshTime": rfc3339(next_refresh) if next_refresh else None,
        "tokenSecretName": view.token_secret_name,
        "tokenEndpoint": record.token_endpoint if record else None,
        "certificateThumbprint": record.certificate_thumbprint if record else None,
        "binding": record.binding if record else None,
        "failedAttempts": view.failed_attempts,
        "lastFailureTime": _moment(view.last_failure_time),
        "certificateNotAfter": _moment(view.certificate_not_after),
        "lastCertificateWarningTime": _moment(view.last_certificate_warning),
    }
    return RenderedStatus(
        status,
        ready=ready.status,
        next_refresh=next_refresh.replace(microsecond=0) if next_refresh else None,
    )


def _moment(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment else None


def status_differs(actual: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    actual = actual or {}
    return any(actual.get(key) != value for key, value in desired.items())
