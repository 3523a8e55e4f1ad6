"""A RaidiamClient's client id from a RaidiamRegistration (spec.clientIdFrom). Pure.

The client id is the registration's status.clientId, which only the operator writes (through the
status subresource) after the bank registered the client. It is used once the registration is
Ready for its current spec: a client id read from an older generation's status may belong to a
registration at another server, or to one being replaced.

The server is the registration's unless the client names its own: then both must be the same
issuer, since a client id is valid only at the server that issued it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from raidiam_operator.core.errors import ConfigurationError, RegistrationNotReady
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.registration_spec import parse_registration_spec
from raidiam_operator.core.spec import ClientSpec, RegistrationRef

#: as spec.clientId in the CRD; a longer status.clientId is not one a bank issued
MAX_CLIENT_ID = 512
#: a condition reason quoted in a message, as the API server bounds reasons
_MAX_REASON = 64
REGISTRATION_ISSUER_MISMATCH = Reason.REGISTRATION_ISSUER_MISMATCH


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """What a RaidiamClient takes from a Ready RaidiamRegistration."""

    client_id: str
    #: the registration's server: its issuer or issuerRef, and its CA bundle
    server: ClientSpec


def registered_client(
    body: Mapping[str, Any] | None, *, namespace: str, ref: RegistrationRef
) -> RegisteredClient:
    """The client id a registration holds, or `RegistrationNotReady` saying what it waits for."""
    what = f"RaidiamRegistration {namespace}/{ref.name} (from spec.clientIdFrom)"
    if body is None:
        raise RegistrationNotReady(
            f"{what} does not exist; create it: the client id is the one it registers. A token "
            "still valid stays in the Secret meanwhile"
        )
    metadata = body.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        raise RegistrationNotReady(
            f"{what} is being deleted; waiting for it to be created again. A token still valid "
            "stays in the Secret meanwhile"
        )
    status = body.get("status") or {}
    ready = _ready_condition(status)
    if ready is None or ready.get("status") != "True":
        now = (
            f"now Ready {str(ready.get('status'))[:8]}, "
            f"reason {str(ready.get('reason'))[:_MAX_REASON]}"
            if ready is not None
            else "it has no status yet"
        )
        raise RegistrationNotReady(
            f"waiting for {what} to be Ready with a registered client id ({now}); kubectl "
            f"describe raidiamregistration {ref.name} says why"
        )
    generation = _integer(metadata.get("generation"))
    observed = _integer(ready.get("observedGeneration", status.get("observedGeneration")))
    if generation is not None and observed is not None and observed != generation:
        raise RegistrationNotReady(
            f"waiting for {what} to register its current spec (generation {generation}; its "
            f"Ready condition is of generation {observed})"
        )
    client_id = status.get("clientId")
    if (
        not isinstance(client_id, str)
        or not client_id
        or len(client_id) > MAX_CLIENT_ID
        or not client_id.isprintable()
    ):
        raise RegistrationNotReady(
            f"{what} is Ready but its status.clientId is not a client id; waiting for the "
            "operator to write it"
        )
    try:
        server = parse_registration_spec(body.get("spec") or {}, name=ref.name).server
    except ConfigurationError as error:
        raise RegistrationNotReady(f"{what} cannot be used: {error.message}") from None
    return RegisteredClient(client_id=client_id, server=server)


def names_own_server(spec: ClientSpec) -> bool:
    return bool(spec.issuer) or spec.issuer_ref is not None


def with_registered_client(spec: ClientSpec, registered: RegisteredClient) -> ClientSpec:
    """The spec with the registration's client id, and its server when the spec names none."""
    if names_own_server(spec):
        return replace(spec, client_id=registered.client_id)
    server = registered.server
    return replace(
        spec,
        client_id=registered.client_id,
        issuer=server.issuer,
        issuer_ref=server.issuer_ref,
        ca_bundle=server.ca_bundle,
    )


def check_same_server(
    spec: ClientSpec,
    registered: RegisteredClient,
    *,
    namespace: str,
    client_issuer: str | None,
    registration_issuer: str | None,
) -> None:
    """A spec that names its own server must name the registration's: the issuer URLs (each
    None while its ClusterRaidiamIssuer is not there) are equal, or the same issuerRef."""
    ref = spec.client_id_from
    assert ref is not None
    server = registered.server
    if spec.issuer_ref is not None and spec.issuer_ref == server.issuer_ref:
        return
    if client_issuer is None or registration_issuer is None or client_issuer == registration_issuer:
        return  # a missing ClusterRaidiamIssuer is reported as IssuerNotFound
    named = (
        f"spec.issuerRef {spec.issuer_ref} ({client_issuer})"
        if spec.issuer_ref is not None
        else f"spec.issuer {client_issuer}"
    )
    theirs = (
        f"{registration_issuer} (ClusterRaidiamIssuer {server.issuer_ref})"
        if server.issuer_ref is not None
        else registration_issuer
    )
    raise ConfigurationError(
        f"{named} is not the server RaidiamRegistration {namespace}/{ref.name} (from "
        f"spec.clientIdFrom) registered the client at: {theirs}. A client id is valid only at "
        "the server that issued it; remove spec.issuer and spec.issuerRef to use the "
        "registration's server, or name the same one",
        reason=REGISTRATION_ISSUER_MISMATCH,
    )


def _ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    return next(
        (c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"), None
    )


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
