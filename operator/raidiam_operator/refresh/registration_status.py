"""What a RaidiamRegistration's reconcile writes, rendered without I/O or a clock read: the
credentials Secret, the record read back from it, and the status.

The credentials Secret is the record of a registration: it holds what RFC 7592 needs (the
client id, the registration access token, the registration client URI) and, as an annotation,
the digest of what was registered. It is written before the status, so that a restart finds
the registration there and never registers twice. The status reports; it is not the record.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.registration import (
    RecordedRegistration,
    Registration,
    RegistrationHandle,
)
from raidiam_operator.core.registration_spec import REGISTRATION_API_VERSION
from raidiam_operator.core.spec import MANAGED_BY, Owner
from raidiam_operator.core.times import parse_rfc3339, rfc3339
from raidiam_operator.refresh.render import Condition, conditions

#: on the credentials Secret: the digest of what was registered (`RegisteredDigest.render`)
DIGEST_ANNOTATION = "raidiam.io/registered-digest"
#: on a credentials Secret left behind by a deleted RaidiamRegistration (deletionPolicy Retain):
#: the registration's name, so that one re-created under that name takes it over
RETAINED_ANNOTATION = "raidiam.io/retained-from-registration"
#: the keys of the credentials Secret
CLIENT_ID, TOKEN, CLIENT_URI = "client_id", "registration_access_token", "registration_client_uri"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A registration as its credentials Secret records it."""

    registration: RecordedRegistration
    handle: RegistrationHandle


def credentials_secret(
    owner: Owner, name: str, registration: Registration, *, digest: str
) -> dict[str, Any]:
    """The credentials Secret for `registration`, owned by the RaidiamRegistration."""
    handle = registration.handle()
    assert handle is not None  # the reconciler refuses an answer without one
    data = {
        CLIENT_ID: registration.client_id,
        TOKEN: handle.registration_access_token,
        CLIENT_URI: handle.registration_client_uri,
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {DIGEST_ANNOTATION: digest},
            "ownerReferences": [registration_owner_reference(owner)],
        },
        "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in data.items()},
    }


def registration_owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": REGISTRATION_API_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
    }


def retained(secret: Mapping[str, Any], owner: Owner) -> dict[str, Any]:
    """The credentials Secret without its owner, so that it outlives the RaidiamRegistration."""
    metadata = dict(secret.get("metadata") or {})
    metadata["ownerReferences"] = [
        ref for ref in metadata.get("ownerReferences") or [] if ref.get("uid") != owner.uid
    ]
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        RETAINED_ANNOTATION: owner.name,
    }
    return {**secret, "metadata": metadata}


def emptied(secret: Mapping[str, Any]) -> dict[str, Any]:
    """The credentials Secret of a registration deleted at the server: no credentials, no
    digest. Its owner reference stays, so that garbage collection removes it; until then a
    RaidiamRegistration re-created under the same name may take it over (`adopted`)."""
    metadata = dict(secret.get("metadata") or {})
    metadata["annotations"] = {
        key: value
        for key, value in (metadata.get("annotations") or {}).items()
        if key != DIGEST_ANNOTATION
    }
    return {**secret, "metadata": metadata, "data": {}}


def adopted(secret: Mapping[str, Any], owner: Owner) -> dict[str, Any] | None:
    """A Secret taken over by `owner` from a deleted RaidiamRegistration of the same name: one
    it retained, or one it emptied after deleting its registration at the server, which garbage
    collection has not removed yet. None when it is neither (then it is someone else's and
    stays untouched)."""
    metadata = dict(secret.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    references = metadata.get("ownerReferences") or []
    retained_here = annotations.pop(RETAINED_ANNOTATION, None) == owner.name and not references
    emptied_here = (
        not secret.get("data")
        and len(references) == 1
        and references[0].get("kind") == owner.kind
        and references[0].get("name") == owner.name
        and references[0].get("uid") != owner.uid
    )
    if not (retained_here or emptied_here):
        return None
    metadata["annotations"] = annotations
    metadata["ownerReferences"] = [registration_owner_reference(owner)]
    return {**secret, "metadata": metadata}


def recorded_in(
    secret: Mapping[str, Any] | None, *, checked_at: datetime | None
) -> Recorded | None:
    """The registration the credentials Secret records, or None when it records none."""
    if secret is None:
        return None
    data = secret.get("data") or {}
    values = {key: _decoded(data.get(key)) for key in (CLIENT_ID, TOKEN, CLIENT_URI)}
    if not any(values.values()):
        return None
    missing = sorted(key for key, value in values.items() if not value)
    name = (secret.get("metadata") or {}).get("name", "")
    if missing:
        raise ConfigurationError(
            f"the credentials Secret {name} records a registration but has no "
            f"{', '.join(missing)}; the registration cannot be managed without it. Restore the "
            "Secret, or delete it and this RaidiamRegistration's status to register anew",
            reason=Reason.REGISTRATION_CREDENTIALS_LOST,
        )
    digest = ((secret.get("metadata") or {}).get("annotations") or {}).get(DIGEST_ANNOTATION)
    return Recorded(
        RecordedRegistration(values[CLIENT_ID], values[CLIENT_URI], digest, checked_at),
        RegistrationHandle(values[CLIENT_URI], values[TOKEN]),
    )


def _decoded(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 16384:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):
        return ""


@dataclass(frozen=True, slots=True)
class RegistrationView:
    """What the status of one registration says, as of one attempt."""

    ready: Condition
    degraded: Condition
    generation: int
    previous: Mapping[str, Any]
    credentials_secret: str
    client_id: str | None = None
    registration_client_uri: str | None = None
    client_id_issued_at: datetime | None = None
    digest: str | None = None
    checked_at: datetime | None = None
    refresh_request: str | None = None


def registration_status(view: RegistrationView, *, now: datetime) -> dict[str, Any]:
    """The status to write; fields this attempt did not learn keep their previous values, and
    `now` only moves a condition's lastTransitionTime when its status flips."""
    previous = view.previous
    status: dict[str, Any] = {
        key: previous[key]
        for key in (
            "clientId",
            "registrationClientUri",
            "clientIdIssuedAt",
            "registeredDigest",
            "lastCheckTime",
            "credentialsSecretName",
            "lastRefreshRequest",
        )
        if previous.get(key) is not None
    }
    learned = {
        "clientId": view.client_id,
        "registrationClientUri": view.registration_client_uri,
        "clientIdIssuedAt": rfc3339(view.client_id_issued_at) if view.client_id_issued_at else None,
        "registeredDigest": view.digest,
        "lastCheckTime": rfc3339(view.checked_at) if view.checked_at else None,
        "lastRefreshRequest": view.refresh_request,
    }
    status.update({key: value for key, value in learned.items() if value is not None})
    if status.get("clientId"):
        status["credentialsSecretName"] = view.credentials_secret
    status["observedGeneration"] = view.generation
    status["conditions"] = conditions(
        previous.get("conditions") or [],
        [view.ready, view.degraded],
        generation=view.generation,
        now=now,
    )
    return status


def last_check(status: Mapping[str, Any]) -> datetime | None:
    text = status.get("lastCheckTime")
    return parse_rfc3339(text) if isinstance(text, str) else None
