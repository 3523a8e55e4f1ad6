"""A RaidiamClient's client id from its RaidiamRegistration (spec.clientIdFrom), read through a
reader it is given: in the operator the RegistrationController, which keeps the registrations
kopf delivered (no second copy, and no `get` on them in the operator's RBAC); in
`raidiam-operator check`, the API server.

The decisions are `core.client_ids`'; this reads what they need. It runs before
`inputs.resolve_issuer`, since the server may be the registration's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from raidiam_operator.core.client_ids import (
    check_same_server,
    names_own_server,
    registered_client,
    with_registered_client,
)
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.issuers import parse_issuer
from raidiam_operator.core.spec import ClientSpec
from raidiam_operator.refresh.inputs import IssuerReader

JSON = Mapping[str, Any]


class RegistrationReader(Protocol):
    async def read_registration(self, namespace: str, name: str) -> JSON | None: ...


class NoRegistrations:
    """A reader that knows no registration (an engine built without one, in tests)."""

    async def read_registration(self, namespace: str, name: str) -> JSON | None:
        return None


async def resolve_client_id(
    spec: ClientSpec,
    *,
    namespace: str,
    registrations: RegistrationReader,
    issuers: IssuerReader,
    cluster_resource_namespace: str,
) -> ClientSpec:
    """The spec with its registration's client id (and server, if it names none) in place, or
    `RegistrationNotReady` / RegistrationIssuerMismatch. A spec with its own clientId is
    returned as it is."""
    ref = spec.client_id_from
    if ref is None:
        return spec
    body = await registrations.read_registration(namespace, ref.name)
    registered = registered_client(body, namespace=namespace, ref=ref)
    if names_own_server(spec):
        check_same_server(
            spec,
            registered,
            namespace=namespace,
            client_issuer=await _issuer_url(spec, issuers, cluster_resource_namespace),
            registration_issuer=await _issuer_url(
                registered.server, issuers, cluster_resource_namespace
            ),
        )
    return with_registered_client(spec, registered)


async def _issuer_url(
    spec: ClientSpec, issuers: IssuerReader, cluster_resource_namespace: str
) -> str | None:
    """The issuer URL a spec names, through its ClusterRaidiamIssuer; None if that is not there
    (or cannot be read: `resolve_issuer` says why)."""
    if spec.issuer_ref is None:
        return spec.issuer
    body = await issuers.read_issuer(spec.issuer_ref)
    if body is None:
        return None
    try:
        return parse_issuer(body, cluster_resource_namespace=cluster_resource_namespace).issuer
    except ConfigurationError:
        return None
