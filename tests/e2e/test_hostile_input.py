"""Bad and hostile input: every case gets its exact reason and a message that says what to fix.

Admission cases go through the real API server (schema and CEL rules of the CRD) as dry runs.
Runtime cases share one namespace and one operator: every bad RaidiamClient is created, then each
test checks its own client's conditions and Warning Event.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import IssuedCertificate, TestPKI

from .conftest import GROUP, PLURAL, VERSION, World, wait_for
from .fault_helpers import drop_namespace, new_namespace, origin, running_world

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# -- admission ---------------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "issuer": "https://auth.example",
    "clientId": "client",
    "authMethod": "tls_client_auth",
    "transportCertificate": {"secretName": "transport"},
}


def _with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def _jwt(**signing: Any) -> dict[str, Any]:
    return _with(
        authMethod="private_key_jwt",
        transportCertificate=None,
        signingKey={"secretName": "signing", "keyId": "k", **signing},
    )


@dataclass(frozen=True)
class Rejected:
    spec: dict[str, Any] | None
    reason: str  # the cause's reason
    field: str
    message: str


ADMISSION: dict[str, Rejected] = {
    "authMethod not in the enum": Rejected(
        _with(authMethod="client_secret_basic"),
        "FieldValueNotSupported",
        "spec.authMethod",
        'Unsupported value: "client_secret_basic": supported values: "tls_client_auth", '
        '"self_signed_tls_client_auth", "private_key_jwt"',
    ),
    "assertionAudience not in the enum": Rejected(
        _with(assertionAudience="everyone"),
        "FieldValueNotSupported",
        "spec.assertionAudience",
        'supported values: "issuer", "tokenEndpoint"',
    ),
    "a symmetric algorithm": Rejected(
        _jwt(algorithm="HS256"),
        "FieldValueNotSupported",
        "spec.signingKey.algorithm",
        'Unsupported value: "HS256": supported values: "PS256", "ES256", "EdDSA", "RS256"',
    ),
    "an http issuer": Rejected(
        _with(issuer="http://auth.example"),
        "FieldValueInvalid",
        "spec.issuer",
        "issuer must be an https URL, e.g. https://auth.sandbox.raidiam.io",
    ),
    "an issuer of just https://": Rejected(
        _with(issuer="https://"),
        "FieldValueInvalid",
        "spec.issuer",
        "issuer must be an https URL",
    ),
    "an issuer with a bidi override": Rejected(
        _with(issuer="https://auth.example/\u202enekot"),
        "FieldValueInvalid",
        "spec.issuer",
        "issuer may hold only printable ASCII characters, without spaces (percent-encode others)",
    ),
    "a tokenEndpoint with a NEL": Rejected(
        _with(tokenEndpoint="https://auth.example/token\u0085[INFO] forged"),
        "FieldValueInvalid",
        "spec.tokenEndpoint",
        "tokenEndpoint may hold only printable ASCII characters",
    ),
    "an issuer longer than 2048": Rejected(
        _with(issuer="https://" + "a" * 2050),
        "FieldValueTooLong",
        "spec.issuer",
        "Too long: may not be more than 2048 bytes",
    ),
    "no spec": Rejected(None, "FieldValueRequired", "spec", "Required value"),
    "no clientId": Rejected(
        _with(clientId=None), "FieldValueRequired", "spec.clientId", "Required value"
    ),
    "an empty clientId": Rejected(
        _with(clientId=""),
        "FieldValueInvalid",
        "spec.clientId",
        "spec.clientId in body should be at least 1 chars long",
    ),
    "a clientId of 513 characters": Rejected(
        _with(clientId="c" * 513),
        "FieldValueTooLong",
        "spec.clientId",
        "may not be more than 512 bytes",
    ),
    "tls_client_auth without a transport certificate": Rejected(
        _with(transportCertificate=None),
        "FieldValueRequired",
        "spec.transportCertificate",
        "tls_client_auth needs spec.transportCertificate: name the Secret with the transport "
        "certificate and key",
    ),
    "private_key_jwt without a signing key": Rejected(
        _with(authMethod="private_key_jwt", transportCertificate=None),
        "FieldValueRequired",
        "spec.signingKey",
        "private_key_jwt needs spec.signingKey: name the Secret with the signing key and give "
        "its keyId",
    ),
    "a signing key without keyId": Rejected(
        _with(
            authMethod="private_key_jwt",
            transportCertificate=None,
            signingKey={"secretName": "signing"},
        ),
        "FieldValueRequired",
        "spec.signingKey.keyId",
        "Required value",
    ),
    "a transport certificate without secretName": Rejected(
        _with(transportCertificate={}),
        "FieldValueRequired",
        "spec.transportCertificate.secretName",
        "Required value",
    ),
    "a caBundle without configMapName": Rejected(
        _with(caBundle={}), "FieldValueRequired", "spec.caBundle.configMapName", "Required value"
    ),
    "both renew options": Rejected(
        _with(refresh={"renewBefore": "2m", "renewBeforePercentage": 20}),
        "FieldValueInvalid",
        "spec.refresh",
        "set either refresh.renewBefore or refresh.renewBeforePercentage, not both",
    ),
    "renewBeforePercentage 0": Rejected(
        _with(refresh={"renewBeforePercentage": 0}),
        "FieldValueInvalid",
        "spec.refresh.renewBeforePercentage",
        "Invalid value: 0: renewBeforePercentage must be between 1 and 90",
    ),
    "renewBeforePercentage 91": Rejected(
        _with(refresh={"renewBeforePercentage": 91}),
        "FieldValueInvalid",
        "spec.refresh.renewBeforePercentage",
        "Invalid value: 91: renewBeforePercentage must be between 1 and 90",
    ),
    "renewBeforePercentage as a string": Rejected(
        _with(refresh={"renewBeforePercentage": "33"}),
        "FieldValueTypeInvalid",
        "spec.refresh.renewBeforePercentage",
        "must be of type integer",
    ),
    "renewBefore that is not a duration": Rejected(
        _with(refresh={"renewBefore": "forever"}),
        "FieldValueInvalid",
        "spec.refresh.renewBefore",
        "renewBefore must be a duration between 1s and 24h, such as 90s, 2m or 1h30m",
    ),
    "an absurd renewBefore of 1000h": Rejected(
        _with(refresh={"renewBefore": "1000h"}),
        "FieldValueInvalid",
        "spec.refresh.renewBefore",
        'Invalid value: "1000h": renewBefore must be a duration between 1s and 24h',
    ),
    "renewBefore 0s": Rejected(
        _with(refresh={"renewBefore": "0s"}),
        "FieldValueInvalid",
        "spec.refresh.renewBefore",
        'Invalid value: "0s": renewBefore must be a duration between 1s and 24h',
    ),
    "a negative renewBefore": Rejected(
        _with(refresh={"renewBefore": "-5m"}),
        "FieldValueInvalid",
        "spec.refresh.renewBefore",
        'Invalid value: "-5m": renewBefore must be a duration between 1s and 24h',
    ),
    "a transport Secret named ../other": Rejected(
        _with(transportCertificate={"secretName": "../other"}),
        "FieldValueInvalid",
        "spec.transportCertificate.secretName",
        f'Invalid value: "../other": spec.transportCertificate.secretName in body should match '
        f"'{PATTERN}'",
    ),
    "a transport Secret named b/x": Rejected(
        _with(transportCertificate={"secretName": "b/x"}),
        "FieldValueInvalid",
        "spec.transportCertificate.secretName",
        'Invalid value: "b/x"',
    ),
    "a transport Secret name in upper case": Rejected(
        _with(transportCertificate={"secretName": "UPPER"}),
        "FieldValueInvalid",
        "spec.transportCertificate.secretName",
        'Invalid value: "UPPER"',
    ),
    "a transport Secret name of 254 characters": Rejected(
        _with(transportCertificate={"secretName": "a" * 254}),
        "FieldValueTooLong",
        "spec.transportCertificate.secretName",
        "may not be more than 253 bytes",
    ),
    "a certificate key with a slash": Rejected(
        _with(transportCertificate={"secretName": "transport", "certificateKey": "a/b"}),
        "FieldValueInvalid",
        "spec.transportCertificate.certificateKey",
        "should match '^[-._a-zA-Z0-9]+$'",
    ),
    "a signing key Secret named ../x": Rejected(
        _jwt(secretName="../x"),
        "FieldValueInvalid",
        "spec.signingKey.secretName",
        'Invalid value: "../x"',
    ),
    "a token Secret named ../x": Rejected(
        _with(tokenSecret={"name": "../x"}),
        "FieldValueInvalid",
        "spec.tokenSecret.name",
        'Invalid value: "../x"',
    ),
    "a token Secret named b/x": Rejected(
        _with(tokenSecret={"name": "b/x"}),
        "FieldValueInvalid",
        "spec.tokenSecret.name",
        'Invalid value: "b/x"',
    ),
    "a CA ConfigMap named ../ca": Rejected(
        _with(caBundle={"configMapName": "../ca"}),
        "FieldValueInvalid",
        "spec.caBundle.configMapName",
        'Invalid value: "../ca"',
    ),
    "a CA ConfigMap named b/x": Rejected(
        _with(caBundle={"configMapName": "b/x"}),
        "FieldValueInvalid",
        "spec.caBundle.configMapName",
        'Invalid value: "b/x"',
    ),
    "the reserved parameter grant_type": Rejected(
        _with(parameters={"grant_type": "password"}),
        "FieldValueInvalid",
        "spec.parameters",
        "parameters may not set grant_type, client_id, scope, client_assertion or "
        "client_assertion_type; use the dedicated fields",
    ),
    "the reserved parameter client_assertion": Rejected(
        _with(parameters={"client_assertion": "eyJ"}),
        "FieldValueInvalid",
        "spec.parameters",
        "parameters may not set grant_type",
    ),
    "the reserved parameter client_id": Rejected(
        _with(parameters={"client_id": "someone-else"}),
        "FieldValueInvalid",
        "spec.parameters",
        "parameters may not set grant_type",
    ),
    "33 parameters": Rejected(
        _with(parameters={f"p{i}": "v" for i in range(33)}),
        "FieldValueTooMany",
        "spec.parameters",
        "Too many: 33: must have at most 32 items",
    ),
    "a parameter of 2049 bytes": Rejected(
        _with(parameters={"resource": "x" * 2049}),
        "FieldValueTooLong",
        "spec.parameters.resource",
        "may not be more than 2048 bytes",
    ),
    "a scope of 4097 bytes": Rejected(
        _with(scope="s" * 4097),
        "FieldValueTooLong",
        "spec.scope",
        "may not be more than 4096 bytes",
    ),
    "an http token endpoint": Rejected(
        _with(tokenEndpoint="http://auth.example/token"),
        "FieldValueInvalid",
        "spec.tokenEndpoint",
        "tokenEndpoint must be an https URL",
    ),
    "suspend as a string": Rejected(
        _with(suspend="yes"),
        "FieldValueTypeInvalid",
        "spec.suspend",
        "spec.suspend in body must be of type boolean",
    ),
    "a label value that is not a string": Rejected(
        _with(tokenSecret={"labels": {"team": 1}}),
        "FieldValueTypeInvalid",
        "spec.tokenSecret.labels.team",
        "must be of type string",
    ),
    # -- issuerRef
    "both issuer and issuerRef": Rejected(
        _with(issuerRef={"name": "sandbox"}),
        "FieldValueRequired",
        "spec",
        "set exactly one of spec.issuer (an issuer URL) and spec.issuerRef (a ClusterRaidiamIssuer)",
    ),
    "neither issuer nor issuerRef": Rejected(
        _with(issuer=None),
        "FieldValueRequired",
        "spec",
        "set exactly one of spec.issuer (an issuer URL) and spec.issuerRef",
    ),
    "an issuerRef with its own tokenEndpoint": Rejected(
        _with(
            issuer=None,
            issuerRef={"name": "sandbox"},
            tokenEndpoint="https://10.0.0.1/token",
        ),
        "FieldValueInvalid",
        "spec.issuerRef",
        "with spec.issuerRef the token endpoint and CA bundle come from the ClusterRaidiamIssuer; "
        "remove spec.tokenEndpoint and spec.caBundle",
    ),
    "an issuerRef with its own caBundle": Rejected(
        _with(issuer=None, issuerRef={"name": "sandbox"}, caBundle={"configMapName": "ca"}),
        "FieldValueInvalid",
        "spec.issuerRef",
        "remove spec.tokenEndpoint and spec.caBundle",
    ),
    "an issuerRef without a name": Rejected(
        _with(issuer=None, issuerRef={}),
        "FieldValueRequired",
        "spec.issuerRef.name",
        "Required value",
    ),
    "an issuerRef named ../x": Rejected(
        _with(issuer=None, issuerRef={"name": "../x"}),
        "FieldValueInvalid",
        "spec.issuerRef.name",
        'Invalid value: "../x"',
    ),
    # Reserved keys: Kubernetes' own, and the ones the operator sets on every token Secret.
    "a label under kubernetes.io/": Rejected(
        _with(tokenSecret={"labels": {"kubernetes.io/metadata.name": "x"}}),
        "FieldValueForbidden",
        "spec.tokenSecret.labels",
        "tokenSecret.labels may not use keys under kubernetes.io/ or k8s.io/",
    ),
    "a label under a k8s.io subdomain": Rejected(
        _with(tokenSecret={"labels": {"node.k8s.io/pool": "x"}}),
        "FieldValueForbidden",
        "spec.tokenSecret.labels",
        "tokenSecret.labels may not use keys under kubernetes.io/ or k8s.io/",
    ),
    "the operator's managed-by label": Rejected(
        _with(tokenSecret={"labels": {"app.kubernetes.io/managed-by": "helm"}}),
        "FieldValueForbidden",
        "spec.tokenSecret.labels",
        "app.kubernetes.io/managed-by, which the operator sets",
    ),
    "the operator's client label": Rejected(
        _with(tokenSecret={"labels": {"raidiam.io/client": "someone-else"}}),
        "FieldValueForbidden",
        "spec.tokenSecret.labels",
        "tokenSecret.labels may not use keys under raidiam.io/",
    ),
    "an annotation under kubernetes.io/": Rejected(
        _with(
            tokenSecret={"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}
        ),
        "FieldValueForbidden",
        "spec.tokenSecret.annotations",
        "tokenSecret.annotations may not use keys under kubernetes.io/ or k8s.io/",
    ),
    "the operator's expiry annotation": Rejected(
        _with(tokenSecret={"annotations": {"raidiam.io/expires-at": "2999-01-01T00:00:00Z"}}),
        "FieldValueForbidden",
        "spec.tokenSecret.annotations",
        "tokenSecret.annotations may not use keys under raidiam.io/",
    ),
    "65 labels": Rejected(
        _with(tokenSecret={"labels": {f"l{i}": "x" for i in range(65)}}),
        "FieldValueTooMany",
        "spec.tokenSecret.labels",
        "must have at most 64 items",
    ),
}


ISSUER_VALID: dict[str, Any] = {"issuer": "https://auth.example"}


def _issuer(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(ISSUER_VALID)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


ISSUER_ADMISSION: dict[str, Rejected] = {
    "no spec": Rejected(None, "FieldValueRequired", "spec", "Required value"),
    "no issuer": Rejected(_issuer(issuer=None), "FieldValueRequired", "spec.issuer", "Required"),
    "an http issuer": Rejected(
        _issuer(issuer="http://10.0.0.1"),
        "FieldValueInvalid",
        "spec.issuer",
        "issuer must be an https URL",
    ),
    "an issuer with a query": Rejected(
        _issuer(issuer="https://auth.example/?x=/token"),
        "FieldValueInvalid",
        "spec.issuer",
        "issuer may not contain a query (?) or a fragment (#)",
    ),
    "an issuer longer than 2048": Rejected(
        _issuer(issuer="https://" + "a" * 2050),
        "FieldValueTooLong",
        "spec.issuer",
        "may not be more than 2048 bytes",
    ),
    "an issuer with a space": Rejected(
        _issuer(issuer="https://auth.example/a b"),
        "FieldValueInvalid",
        "spec.issuer",
        "issuer may hold only printable ASCII characters",
    ),
    "a token endpoint with a bidi override": Rejected(
        _issuer(tokenEndpoint="https://auth.example/\u202etoken"),
        "FieldValueInvalid",
        "spec.tokenEndpoint",
        "tokenEndpoint may hold only printable ASCII characters",
    ),
    "an http token endpoint": Rejected(
        _issuer(tokenEndpoint="http://auth.example/token"),
        "FieldValueInvalid",
        "spec.tokenEndpoint",
        "tokenEndpoint must be an https URL",
    ),
    "a token endpoint elsewhere with the issuer as audience": Rejected(
        _issuer(tokenEndpoint="https://elsewhere.example/token"),
        "FieldValueInvalid",
        "spec.assertionAudience",
        "with a tokenEndpoint outside the issuer URL, set assertionAudience: tokenEndpoint",
    ),
    "an unknown auth method": Rejected(
        _issuer(allowedAuthMethods=["client_secret_basic"]),
        "FieldValueNotSupported",
        "spec.allowedAuthMethods[0]",
        'supported values: "tls_client_auth", "self_signed_tls_client_auth", "private_key_jwt"',
    ),
    "an auth method twice": Rejected(
        _issuer(allowedAuthMethods=["tls_client_auth", "tls_client_auth"]),
        "FieldValueDuplicate",
        "spec.allowedAuthMethods[1]",
        'Duplicate value: "tls_client_auth"',
    ),
    "a CA ConfigMap named ../ca": Rejected(
        _issuer(caBundle={"configMapName": "../ca"}),
        "FieldValueInvalid",
        "spec.caBundle.configMapName",
        'Invalid value: "../ca"',
    ),
    "a namespace name with a slash": Rejected(
        _issuer(namespaces=["payments/x"]),
        "FieldValueInvalid",
        "spec.namespaces[0]",
        'Invalid value: "payments/x"',
    ),
    "a selector operator that does not exist": Rejected(
        _issuer(namespaceSelector={"matchExpressions": [{"key": "tier", "operator": "Like"}]}),
        "FieldValueNotSupported",
        "spec.namespaceSelector.matchExpressions[0].operator",
        'supported values: "In", "NotIn", "Exists", "DoesNotExist"',
    ),
    "In without values": Rejected(
        _issuer(namespaceSelector={"matchExpressions": [{"key": "tier", "operator": "In"}]}),
        "FieldValueInvalid",
        "spec.namespaceSelector.matchExpressions[0].values",
        "In and NotIn need values; Exists and DoesNotExist take none",
    ),
    "Exists with values": Rejected(
        _issuer(
            namespaceSelector={
                "matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["a"]}]
            }
        ),
        "FieldValueInvalid",
        "spec.namespaceSelector.matchExpressions[0].values",
        "In and NotIn need values; Exists and DoesNotExist take none",
    ),
    "a selector label value that is not a string": Rejected(
        _issuer(namespaceSelector={"matchLabels": {"tier": 1}}),
        "FieldValueTypeInvalid",
        "spec.namespaceSelector.matchLabels.tier",
        "must be of type string",
    ),
}


@pytest.mark.parametrize("case", list(ISSUER_ADMISSION))
def test_the_api_server_rejects_a_bad_cluster_issuer_naming_the_field_and_the_fix(
    kube_api: Any, case: str
) -> None:
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(kube_api)

    _assert_refused(
        lambda body: custom.create_cluster_custom_object(
            GROUP, VERSION, "clusterraidiamissuers", body, dry_run="All"
        ),
        "ClusterRaidiamIssuer",
        ISSUER_ADMISSION[case],
    )


def _assert_refused(create: Callable[[dict[str, Any]], Any], kind: str, expected: Rejected) -> None:
    """A dry-run create of `kind` with the case's spec is refused with its reason, field and
    message."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "bad"},
    }
    if expected.spec is not None:
        body["spec"] = expected.spec

    with pytest.raises(ApiException) as raised:
        create(body)

    status = json.loads(raised.value.body)
    assert (raised.value.status, status["reason"]) == (422, "Invalid")
    causes = [(c["reason"], c["field"], c["message"]) for c in status["details"]["causes"]]
    matching = [c for c in causes if c[0] == expected.reason and c[1] == expected.field]
    assert matching, f"expected {expected.reason} on {expected.field}, got {causes}"
    assert expected.message in matching[0][2]
    assert expected.field in status["message"]


@pytest.fixture(scope="module")
def admission_namespace(control_plane: ControlPlane) -> Iterator[str]:
    namespace = new_namespace(control_plane, "admission")
    yield namespace
    drop_namespace(control_plane, namespace)


@pytest.mark.parametrize("case", list(ADMISSION))
def test_the_api_server_rejects_a_bad_spec_naming_the_field_and_the_fix(
    kube_api: Any, admission_namespace: str, case: str
) -> None:
    import kubernetes

    custom = kubernetes.client.CustomObjectsApi(kube_api)

    _assert_refused(
        lambda body: custom.create_namespaced_custom_object(
            GROUP, VERSION, admission_namespace, PLURAL, body, dry_run="All"
        ),
        "RaidiamClient",
        ADMISSION[case],
    )


def test_an_unknown_field_is_rejected_under_strict_field_validation(
    kube_api: Any, admission_namespace: str
) -> None:
    import kubernetes

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaidiamClient",
        "metadata": {"name": "typo"},
        "spec": {**VALID, "isuer": "https://auth.example"},
    }
    custom = kubernetes.client.CustomObjectsApi(kube_api)

    with pytest.raises(ApiException) as raised:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            admission_namespace,
            PLURAL,
            body,
            dry_run="All",
            field_validation="Strict",
        )

    status = json.loads(raised.value.body)
    assert (raised.value.status, status["reason"]) == (400, "BadRequest")
    assert 'strict decoding error: unknown field "spec.isuer"' in status["message"]


# -- at run time -----------------------------------------------------------------------------


@dataclass
class Runtime:
    """A RaidiamClient the API server accepts but that cannot get a token."""

    reason: str
    fragments: tuple[str, ...]
    setup: Callable[[World, str], None]
    #: a discovery fault to apply while this client (alone) discovers
    discovery_fault: dict[str, Any] | None = None
    #: a transient failure: the client gets its token once the fault is gone
    recovers: bool = False
    observed: dict[str, Any] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw_secret(world: World, name: str, data: dict[str, bytes]) -> None:
    world.secrets_seen.extend(v for v in data.values() if b"PRIVATE KEY" in v)
    world.core.create_namespaced_secret(
        world.namespace, {"metadata": {"name": name}, "data": {k: _b64(v) for k, v in data.items()}}
    )


def _registered(
    world: World, name: str, issued: IssuedCertificate | None = None
) -> tuple[str, IssuedCertificate]:
    client_id = f"{name}-{uuid.uuid4().hex[:8]}"
    issued = issued or world.pki.client_certificate(client_id)
    world.auth.register_tls_client(client_id, issued)
    return client_id, issued


def _transport(
    cert: Callable[[IssuedCertificate], bytes] = lambda i: i.cert_pem,
    key: Callable[[IssuedCertificate], bytes] = lambda i: i.key_pem,
    *,
    issued: Callable[[World, str], IssuedCertificate] | None = None,
    **transport_options: str,
) -> Callable[[World, str], None]:
    """A tls_client_auth client whose transport Secret holds `cert(issued)` and `key(issued)`."""

    def setup(world: World, name: str) -> None:
        client_id = f"{name}-{uuid.uuid4().hex[:8]}"
        certificate = (
            issued(world, client_id) if issued else world.pki.client_certificate(client_id)
        )
        world.auth.register_tls_client(client_id, certificate)
        _raw_secret(
            world, f"{name}-transport", {"tls.crt": cert(certificate), "tls.key": key(certificate)}
        )
        world.create_client(
            name,
            world.spec(
                client_id,
                authMethod="tls_client_auth",
                transportCertificate={"secretName": f"{name}-transport", **transport_options},
            ),
        )

    return setup


def _signing(
    key_pem: Callable[[World], bytes] | None, **signing: Any
) -> Callable[[World, str], None]:
    """A private_key_jwt client (bound token) whose signing Secret holds `key_pem(world)`."""

    def setup(world: World, name: str) -> None:
        client_id = f"{name}-{uuid.uuid4().hex[:8]}"
        registered = world.pki.signing_key("rsa")
        certificate = world.pki.client_certificate(client_id)
        world.auth.register_private_key_jwt_client(
            client_id, {"keys": [registered.public_jwk("sig-1")]}, bound=True
        )
        world.tls_secret(f"{name}-transport", certificate)
        if key_pem is not None:
            _raw_secret(world, f"{name}-signing", {"tls.key": key_pem(world)})
        world.create_client(
            name,
            world.spec(
                client_id,
                authMethod="private_key_jwt",
                transportCertificate={"secretName": f"{name}-transport"},
                signingKey={"secretName": f"{name}-signing", "keyId": "sig-1", **signing},
            ),
        )

    return setup


def _plain(ca_variant: int = 0, **spec: Any) -> Callable[[World, str], None]:
    """A registered, well-formed tls_client_auth client with spec overrides. `ca_variant` gives it
    a CA ConfigMap of its own (the same CA, other bytes), hence its own discovery."""

    def setup(world: World, name: str) -> None:
        client_id, issued = _registered(world, name)
        world.tls_secret(f"{name}-transport", issued)
        overrides = dict(spec)
        if ca_variant:
            config_map = f"ca-variant-{ca_variant}"
            world.core.create_namespaced_config_map(
                world.namespace,
                {
                    "metadata": {"name": config_map},
                    "data": {"ca.crt": world.auth.ca_path.read_text() + "\n" * ca_variant},
                },
            )
            overrides.setdefault("caBundle", {"configMapName": config_map})
        body = world.spec(
            client_id,
            authMethod="tls_client_auth",
            transportCertificate={"secretName": f"{name}-transport"},
        )
        body.update(overrides)
        body = {k: v for k, v in body.items() if v is not None}
        world.create_client(name, body)

    return setup


#: ClusterRaidiamIssuers the runtime cases create (cluster-scoped: deleted after the module)
CLUSTER_ISSUERS: list[str] = []


def _through_issuer(issuer_spec: dict[str, Any] | None) -> Callable[[World, str], None]:
    """A client naming a ClusterRaidiamIssuer of the test server with `issuer_spec` added, or
    naming one that does not exist (None)."""

    def setup(world: World, name: str) -> None:
        issuer = f"hostile-{uuid.uuid4().hex[:8]}"
        if issuer_spec is not None:
            world.custom.create_cluster_custom_object(
                GROUP,
                VERSION,
                "clusterraidiamissuers",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ClusterRaidiamIssuer",
                    "metadata": {"name": issuer},
                    "spec": {"issuer": world.auth.issuer, **issuer_spec},
                },
            )
            CLUSTER_ISSUERS.append(issuer)
        _plain(issuer=None, caBundle=None, issuerRef={"name": issuer})(world, name)

    return setup


def _der_cert(issued: IssuedCertificate) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


def _der_key(issued: IssuedCertificate) -> bytes:
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issued(**options: Any) -> Callable[[World, str], IssuedCertificate]:
    def issue(world: World, client_id: str) -> IssuedCertificate:
        return world.pki.client_certificate(client_id, **options)

    return issue


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _other_ca_config_map(world: World, name: str) -> str:
    other = TestPKI(world.operator.log_path.parent / f"other-pki-{name}")
    world.core.create_namespaced_config_map(
        world.namespace,
        {"metadata": {"name": f"{name}-ca"}, "data": {"ca.crt": other.ca_pem.decode()}},
    )
    return f"{name}-ca"


def _with_other_ca(world: World, name: str) -> None:
    _plain(caBundle={"configMapName": _other_ca_config_map(world, name)})(world, name)


def _untrusted_client_certificate(world: World, name: str) -> None:
    other = TestPKI(world.operator.log_path.parent / f"other-pki-{name}")
    client_id = f"{name}-{uuid.uuid4().hex[:8]}"
    issued = other.client_certificate(client_id)
    world.auth.register_tls_client(client_id, issued)
    world.tls_secret(f"{name}-transport", issued)
    world.create_client(
        name,
        world.spec(
            client_id,
            authMethod="tls_client_auth",
            transportCertificate={"secretName": f"{name}-transport"},
        ),
    )


def _no_ca_key(world: World, name: str) -> None:
    world.core.create_namespaced_config_map(
        world.namespace, {"metadata": {"name": f"{name}-ca"}, "data": {"other.crt": "x"}}
    )
    _plain(caBundle={"configMapName": f"{name}-ca"})(world, name)


def _not_a_ca(world: World, name: str) -> None:
    world.core.create_namespaced_config_map(
        world.namespace,
        {"metadata": {"name": f"{name}-ca"}, "data": {"ca.crt": "this is not a certificate"}},
    )
    _plain(caBundle={"configMapName": f"{name}-ca"})(world, name)


def _empty_secret(world: World, name: str) -> None:
    client_id, _ = _registered(world, name)
    world.core.create_namespaced_secret(
        world.namespace, {"metadata": {"name": f"{name}-transport"}}
    )
    world.create_client(
        name,
        world.spec(client_id, transportCertificate={"secretName": f"{name}-transport"}),
    )


def _discovery(world: World, **document: Any) -> dict[str, Any]:
    """A discovery document like the server's, with changes."""
    base = {
        "issuer": world.auth.issuer,
        "token_endpoint": world.auth.token_endpoint,
        "mtls_endpoint_aliases": {"token_endpoint": world.auth.mtls_token_endpoint},
        "token_endpoint_auth_methods_supported": ["tls_client_auth", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["PS256", "ES256"],
    }
    base.update(document)
    return base


def _dsa_key(_: World) -> bytes:
    key = dsa.generate_private_key(key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _signing_pem(key_type: str, **options: Any) -> Callable[[World], bytes]:
    def pem(world: World) -> bytes:
        return world.pki.signing_key(key_type, **options).private_pem

    return pem


def _p384_key(_: World) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _long_name(world: World, name: str) -> None:
    client_id, issued = _registered(world, "long-name")
    world.tls_secret("long-name-transport", issued)
    world.create_client(
        name, world.spec(client_id, transportCertificate={"secretName": "long-name-transport"})
    )


def _discovery_answer(**document: Any) -> dict[str, Any]:
    """A discovery fault answering with the server's document changed as given, with the
    placeholders of `_with_origins` in its strings."""
    return {"mode": "response", "endpoint": "discovery", "status": 200, "body": document}


def _with_origins(world: World, value: Any) -> Any:
    """`value` with "{tls}" and "{mtls}" as the test server's TLS and mTLS origins, and
    "{tls-by-ip}" and "{mtls-by-ip}" as the same server under another name (127.0.0.1)."""
    if isinstance(value, dict):
        return {k: _with_origins(world, v) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    tls, mtls = origin(world.auth.token_endpoint), origin(world.auth.mtls_token_endpoint)
    for placeholder, url in (
        ("{tls-by-ip}", tls.replace("localhost", "127.0.0.1")),
        ("{mtls-by-ip}", mtls.replace("localhost", "127.0.0.1")),
        ("{tls}", tls),
        ("{mtls}", mtls),
    ):
        value = value.replace(placeholder, url)
    return value


RUNTIME: dict[str, Runtime] = {
    # -- the transport certificate and its key
    "a certificate that is not PEM": Runtime(
        "InvalidCredentials",
        ("the transport certificate is not PEM: expected '-----BEGIN CERTIFICATE-----'",),
        _transport(cert=lambda _: b"this is not a certificate"),
    ),
    "PEM armour around garbage": Runtime(
        "InvalidCredentials",
        ("the transport certificate holds no readable PEM certificate",),
        _transport(
            cert=lambda _: (
                b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
            )
        ),
    ),
    "a DER certificate where PEM is expected": Runtime(
        "InvalidCredentials",
        (
            "the transport certificate is not PEM",
            "it looks like DER; convert it with `openssl x509 -inform der`",
        ),
        _transport(cert=_der_cert),
    ),
    "a DER private key where PEM is expected": Runtime(
        "InvalidCredentials",
        ("the transport certificate's private key is not PEM", "`openssl pkey -inform der`"),
        _transport(key=_der_key),
    ),
    "an encrypted private key": Runtime(
        "EncryptedPrivateKey",
        (
            "the transport certificate's private key is encrypted; store it unencrypted in the Secret",
        ),
        _transport(issued=_issued(key_password=b"secret-passphrase")),
    ),
    "a key that does not belong to the certificate": Runtime(
        "KeyCertificateMismatch",
        (
            "the transport certificate's private key does not belong to the certificate (subject CN=",
            "put the matching key in the Secret",
        ),
        _transport(key=lambda _: _stray_key()),
    ),
    "the CA certificate first in the chain": Runtime(
        "KeyCertificateMismatch",
        ("does not belong to the certificate",),
        _transport(cert=lambda i: CA_PEM[0] + i.cert_pem),
    ),
    "an expired certificate": Runtime(
        "CertificateExpired",
        ("the transport certificate (CN=", "expired at", "renew it and update the Secret"),
        _transport(
            issued=_issued(
                not_before=_now() - dt.timedelta(days=10), not_after=_now() - dt.timedelta(days=1)
            )
        ),
    ),
    "a certificate not yet valid": Runtime(
        "CertificateNotYetValid",
        ("is not valid before", "check the clock or the certificate"),
        _transport(
            issued=_issued(
                not_before=_now() + dt.timedelta(days=1), not_after=_now() + dt.timedelta(days=30)
            )
        ),
    ),
    "an RSA 1024 transport key": Runtime(
        "WeakKey",
        (
            "the transport certificate's private key is an RSA key of 1024 bits; at least 2048 bits are required",
        ),
        _transport(issued=_issued(key_type="rsa1024")),
    ),
    # -- the signing key
    "an RSA 1024 signing key": Runtime(
        "WeakKey",
        ("the signing key is an RSA key of 1024 bits; at least 2048 bits are required",),
        _signing(_signing_pem("rsa", bits=1024)),
    ),
    "ES256 with an RSA key": Runtime(
        "AlgorithmKeyMismatch",
        ("signing algorithm ES256 does not fit the signing key (RSA 2048 bits)",),
        _signing(_signing_pem("rsa"), algorithm="ES256"),
    ),
    "PS256 with an Ed25519 key": Runtime(
        "AlgorithmKeyMismatch",
        ("signing algorithm PS256 does not fit the signing key (Ed25519)",),
        _signing(_signing_pem("ed25519"), algorithm="PS256"),
    ),
    "an Ed25519 key without an algorithm": Runtime(
        "UnsupportedAlgorithm",
        ("the signing key is an Ed25519 key; set the algorithm to EdDSA explicitly",),
        _signing(_signing_pem("ed25519")),
    ),
    "an EC P-384 signing key": Runtime(
        "UnsupportedAlgorithm",
        ("the signing key is an EC key on secp384r1; only P-256 (ES256) is supported",),
        _signing(_p384_key),
    ),
    "a DSA signing key": Runtime(
        "InvalidCredentials",
        ("the signing key is a DSAPrivateKey; use an RSA, EC or Ed25519 key",),
        _signing(_dsa_key),
    ),
    "a certificate where the signing key should be": Runtime(
        "InvalidCredentials",
        ("the signing key could not be read: expected an RSA, EC or Ed25519 key",),
        _signing(lambda world: CA_PEM[0]),
    ),
    "a missing signing key Secret": Runtime(
        "SecretNotFound",
        ("-signing (from spec.signingKey) does not exist; create it",),
        _signing(None),
    ),
    # -- Secrets and ConfigMaps
    "a wrong Secret key name": Runtime(
        "SecretNotFound",
        (
            "has no key 'cert.pem' (keys present: tls.crt, tls.key); fix the key name in the spec or the Secret",
        ),
        _transport(certificateKey="cert.pem"),
    ),
    "an empty Secret": Runtime(
        "SecretNotFound",
        ("has no key 'tls.crt' (keys present: none)",),
        _empty_secret,
    ),
    "a missing CA ConfigMap": Runtime(
        "ConfigMapNotFound",
        ("ConfigMap", "/no-such-ca (from spec.caBundle) does not exist; create it"),
        _plain(caBundle={"configMapName": "no-such-ca"}),
    ),
    "a CA ConfigMap without the key": Runtime(
        "ConfigMapNotFound",
        ("has no key 'ca.crt' for spec.caBundle",),
        _no_ca_key,
    ),
    "a caBundle that is not a certificate": Runtime(
        "InvalidCABundle",
        (
            "the CA bundle holds no readable PEM certificate; put the authorization server's CA certificates (PEM) in it",
        ),
        _not_a_ca,
    ),
    # -- the authorization server
    "an unreachable issuer": Runtime(
        "AuthorizationServerUnreachable",
        (
            "could not connect to https://127.0.0.1:9/.well-known/openid-configuration for the discovery request",
        ),
        _plain(issuer="https://127.0.0.1:9"),
    ),
    "an issuer signed by an untrusted CA": Runtime(
        "UntrustedServer",
        (
            "/.well-known/openid-configuration is not trusted (",
            "if the server uses a private CA, set its certificates as the CA bundle",
        ),
        _plain(caBundle=None),
    ),
    "a caBundle of another CA": Runtime(
        "UntrustedServer",
        ("is not trusted (",),
        _with_other_ca,
    ),
    "an issuer without a discovery document": Runtime(
        "DiscoveryNotFound",
        ("/wrong/.well-known/openid-configuration (HTTP 404); check the issuer URL",),
        lambda world, name: _plain(issuer=world.auth.issuer + "/wrong")(world, name),
    ),
    "a discovery issuer mismatch": Runtime(
        "IssuerMismatch",
        (
            "names issuer 'https://evil.example', but the configured issuer is",
            "set the issuer to exactly the value the server publishes",
        ),
        _plain(ca_variant=1),
        discovery_fault={"mode": "discovery_issuer", "issuer": "https://evil.example"},
    ),
    "discovery without mTLS aliases": Runtime(
        "invalid_client",
        (
            "rejected the token request with invalid_client",
            "discovery document has no mtls_endpoint_aliases",
        ),
        _plain(ca_variant=2),
        discovery_fault={"mode": "no_mtls_aliases"},
    ),
    "a discovery document that is not JSON": Runtime(
        "InvalidTokenResponse",
        ("/.well-known/openid-configuration is not JSON",),
        _plain(ca_variant=3),
        discovery_fault={
            "mode": "response",
            "endpoint": "discovery",
            "status": 200,
            "body": "<html>",
            "content_type": "text/html",
        },
        recovers=True,
    ),
    "a server without our auth method": Runtime(
        "AuthMethodNotSupported",
        ("does not support auth method tls_client_auth; it supports client_secret_basic",),
        _plain(ca_variant=4),
        discovery_fault={
            "mode": "response",
            "endpoint": "discovery",
            "status": 200,
            "body": "DISCOVERY:token_endpoint_auth_methods_supported=client_secret_basic",
        },
    ),
    "a discovery token endpoint over http": Runtime(
        "DiscoveryMismatch",
        ("gives token_endpoint 'http://localhost/token', which must be an https URL",),
        _plain(ca_variant=5),
        discovery_fault={
            "mode": "response",
            "endpoint": "discovery",
            "status": 200,
            "body": "DISCOVERY:token_endpoint=http://localhost/token",
        },
    ),
    "a discovered mTLS endpoint with a NEL and a forged log line": Runtime(
        "DiscoveryMismatch",
        (
            "gives mtls_endpoint_aliases.token_endpoint '{mtls}/token [INFO] forged', which may "
            "hold only printable ASCII characters",
        ),
        _plain(ca_variant=6),
        discovery_fault=_discovery_answer(
            mtls_endpoint_aliases={"token_endpoint": "{mtls}/token\u0085[INFO] forged"}
        ),
    ),
    "a discovered token endpoint with a bidi override": Runtime(
        "DiscoveryMismatch",
        ("gives token_endpoint '{tls}/ nekot', which may hold only printable ASCII",),
        _plain(ca_variant=7),
        discovery_fault=_discovery_answer(token_endpoint="{tls}/\u202enekot"),
    ),
    "a discovered endpoint no HTTP client can request": Runtime(
        "InvalidURL",
        (
            "the token request was not sent: 'https://xn--zz.localhost/token' is not a URL that "
            "can be requested",
            "fix the token endpoint (spec.tokenEndpoint, or the discovery document's",
        ),
        _plain(ca_variant=8),
        discovery_fault=_discovery_answer(
            mtls_endpoint_aliases={"token_endpoint": "https://xn--zz.localhost/token"}
        ),
    ),
    "a token endpoint that does not exist": Runtime(
        "InvalidTokenResponse",
        ("answered HTTP 404 without an OAuth error code; check the token endpoint URL",),
        lambda world, name: _plain(tokenEndpoint=world.auth.token_endpoint + "-nothing-here")(
            world, name
        ),
    ),
    "a scope the client may not have": Runtime(
        "invalid_scope",
        (
            "rejected the token request with invalid_scope",
            "Request only scopes that the client is registered for",
        ),
        _plain(scope="directory:software not-a-scope"),
    ),
    "an unknown resource indicator": Runtime(
        "invalid_target",
        (
            "rejected the token request with invalid_target",
            "The requested resource indicator is not known to the server",
        ),
        _plain(parameters={"resource": "https://unknown.example/api"}),
    ),
    "a signing key the directory does not know": Runtime(
        "invalid_client",
        (
            "rejected the token request with invalid_client",
            "the transport certificate or signing key is the one registered",
        ),
        _signing(_signing_pem("rsa")),
    ),
    "a client certificate from an untrusted CA": Runtime(
        "invalid_client",
        ("rejected the token request with invalid_client",),
        _untrusted_client_certificate,
    ),
    # -- a ClusterRaidiamIssuer in spec.issuerRef
    "an issuerRef to no issuer": Runtime(
        "IssuerNotFound",
        (
            "(from spec.issuerRef) does not exist; kubectl get clusterraidiamissuers lists those "
            "there are",
        ),
        _through_issuer(None),
    ),
    "an issuer that does not serve the namespace": Runtime(
        "IssuerNotAllowed",
        ("may not be used from namespace", "it serves namespaces someone-else"),
        _through_issuer({"namespaces": ["someone-else"]}),
    ),
    "an issuer whose selector the namespace does not match": Runtime(
        "IssuerNotAllowed",
        ("it serves namespaces labelled tier In (gold, platinum)",),
        _through_issuer(
            {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["gold", "platinum"]}
                    ]
                }
            }
        ),
    ),
    "an issuer that does not allow the auth method": Runtime(
        "IssuerNotAllowed",
        ("allows only private_key_jwt, not tls_client_auth; change spec.authMethod",),
        _through_issuer({"allowedAuthMethods": ["private_key_jwt"]}),
    ),
    "an issuer whose CA bundle ConfigMap is missing": Runtime(
        "ConfigMapNotFound",
        ("/no-such-issuer-ca (from spec.caBundle) does not exist; create it",),
        _through_issuer({"caBundle": {"configMapName": "no-such-issuer-ca"}}),
    ),
    # -- the token Secret it would write
    "a token Secret label value with spaces": Runtime(
        "InvalidTokenSecret",
        (
            "spec.tokenSecret.labels: the value 'payments and cards' of 'team' is not a valid "
            "label value: at most 63 letters",
        ),
        _plain(tokenSecret={"labels": {"team": "payments and cards"}}),
    ),
    "a token Secret annotation key with spaces": Runtime(
        "InvalidTokenSecret",
        ("spec.tokenSecret.annotations: 'owned by' is not a valid key",),
        _plain(tokenSecret={"annotations": {"owned by": "payments"}}),
    ),
    "a client name too long for its token Secret": Runtime(
        "InvalidTokenSecret",
        ("is longer than 253 characters; set spec.tokenSecret.name to a shorter name",),
        _long_name,
    ),
}

CA_PEM: list[bytes] = []


def _stray_key() -> bytes:

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _client_name(case: str) -> str:
    if case == "a client name too long for its token Secret":
        return "n" * 250
    return "bad-" + str(list(RUNTIME).index(case))


def _apply_discovery_fault(world: World, fault: dict[str, Any]) -> None:
    fault = dict(fault)
    body = fault.get("body")
    if isinstance(body, str) and body.startswith("DISCOVERY:"):
        key, _, value = body.removeprefix("DISCOVERY:").partition("=")
        fault["body"] = _discovery(world, **{key: [value] if key.endswith("supported") else value})
    elif isinstance(body, dict):
        fault["body"] = _discovery(world, **_with_origins(world, body))
    world.auth.set_fault(**fault)


@pytest.fixture(scope="module")
def runtime(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """Every runtime case as one RaidiamClient in one namespace, with one operator."""
    CA_PEM[:] = [test_pki.ca_pem]
    namespace = new_namespace(control_plane, "hostile")
    log = tmp_path_factory.mktemp("hostile") / "operator.log"
    try:
        with running_world(control_plane, auth_server, test_pki, kube_api, namespace, log) as world:
            # A good client first, so the shared discovery is cached before the faults.
            _plain()(world, "good")
            world.wait_ready("good")
            # Cases with a discovery fault, one at a time: each fault hits the next discovery.
            for case, spec in RUNTIME.items():
                if spec.discovery_fault is not None:
                    _apply_discovery_fault(world, spec.discovery_fault)
                    spec.setup(world, _client_name(case))
                    _observe(world, [case], timeout=20)
                    world.auth.clear_faults()
                    if spec.recovers:  # before the next fault, which it would meet otherwise
                        world.wait_ready(_client_name(case), timeout=20)
            # The rest all at once.
            rest = [case for case, spec in RUNTIME.items() if spec.discovery_fault is None]
            for case in rest:
                RUNTIME[case].setup(world, _client_name(case))
            _observe(world, rest, timeout=60)
            yield world
    finally:
        drop_namespace(control_plane, namespace)
        import kubernetes

        custom = kubernetes.client.CustomObjectsApi(kube_api)
        for issuer in CLUSTER_ISSUERS:
            custom.delete_cluster_custom_object(GROUP, VERSION, "clusterraidiamissuers", issuer)
        CLUSTER_ISSUERS.clear()


def _observe(world: World, cases: list[str], *, timeout: float) -> None:
    """Wait for each case's reason on Degraded; keep both conditions as they were then."""
    pending = set(cases)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        items = world.custom.list_namespaced_custom_object(GROUP, VERSION, world.namespace, PLURAL)[
            "items"
        ]
        conditions = {
            item["metadata"]["name"]: {
                c["type"]: c for c in item.get("status", {}).get("conditions", [])
            }
            for item in items
        }
        for case in sorted(pending):
            seen = conditions.get(_client_name(case), {})
            expected = RUNTIME[case]
            expected.observed["last"] = seen
            if seen.get("Degraded", {}).get("reason") == expected.reason:
                expected.observed.update(ready=seen["Ready"], degraded=seen["Degraded"])
                pending.discard(case)
        time.sleep(0.25)


@pytest.mark.parametrize("case", list(RUNTIME))
def test_a_bad_runtime_input_gets_its_reason_on_the_conditions_and_a_warning_event(
    runtime: World, case: str
) -> None:
    world, expected = runtime, RUNTIME[case]
    name = _client_name(case)
    observed = expected.observed

    assert "degraded" in observed, f"never saw {expected.reason}; last seen {observed.get('last')}"
    ready, degraded = observed["ready"], observed["degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", expected.reason)
    assert (ready["status"], ready["reason"]) == ("False", expected.reason)
    for fragment in expected.fragments:
        assert _with_origins(world, fragment) in degraded["message"], degraded["message"]
    assert degraded["message"] == ready["message"]
    message = degraded["message"]
    assert "Traceback" not in message
    assert "\n" not in message
    assert message.isprintable(), "a control or invisible character reached the status"
    assert len(message) < 1024
    events = wait_for(
        lambda: [
            e for e in world.events(name) if e.type == "Warning" and e.reason == expected.reason
        ],
        timeout=10,
        what=f"a Warning event {expected.reason}",
    )
    assert events[0].message == message
    if expected.recovers:
        world.wait_ready(name, timeout=5)
    else:
        assert world.secret(f"{name}-token") is None, "no token Secret without a token"


# -- under --issuer-policy allowlist -------------------------------------------------------------


@dataclass
class Escape:
    """A tenant's way around the allowlist: the reason it gets, and proof nothing was sent."""

    reason: str
    fragments: tuple[str, ...]
    #: a discovery fault (see `_discovery_answer`) for this client's discovery, if any
    discovery_fault: dict[str, Any] | None = None
    #: spec overrides of an otherwise good, registered client (placeholders of `_with_origins`)
    spec: dict[str, Any] = field(default_factory=dict)
    #: the client names the test server's CA in spec.caBundle
    inline_ca_bundle: bool = False
    observed: dict[str, Any] = field(default_factory=dict)


ESCAPES: dict[str, Escape] = {
    "a discovered mTLS endpoint on another host": Escape(
        "DiscoveredEndpointNotAllowed",
        (
            "gives mtls_endpoint_aliases.token_endpoint '{mtls-by-ip}/token', which is not under "
            "an issuer the operator's policy allows (--issuer-policy allowlist), so no token "
            "request was sent to it",
            "Ask the platform team to allow that endpoint too (--allowed-issuer)",
        ),
        _discovery_answer(mtls_endpoint_aliases={"token_endpoint": "{mtls-by-ip}/token"}),
    ),
    "a discovered token endpoint on another host, without mTLS aliases": Escape(
        "DiscoveredEndpointNotAllowed",
        ("gives token_endpoint '{tls-by-ip}/token', which is not under",),
        _discovery_answer(token_endpoint="{tls-by-ip}/token", mtls_endpoint_aliases={}),
    ),
    "a discovered endpoint that climbs out with ..;": Escape(
        "DiscoveredEndpointNotAllowed",
        ("gives mtls_endpoint_aliases.token_endpoint '{mtls}/token/..;/..;/admin'",),
        _discovery_answer(mtls_endpoint_aliases={"token_endpoint": "{mtls}/token/..;/..;/admin"}),
    ),
    "a discovered endpoint that climbs out with %252e%252e": Escape(
        "DiscoveredEndpointNotAllowed",
        ("gives mtls_endpoint_aliases.token_endpoint '{mtls}/token/%252e%252e/admin'",),
        _discovery_answer(
            mtls_endpoint_aliases={"token_endpoint": "{mtls}/token/%252e%252e/admin"}
        ),
    ),
    "an inline caBundle for an allowed issuer": Escape(
        "IssuerNotAllowed",
        (
            "spec.caBundle is not allowed with --issuer-policy allowlist: the operator checks an "
            "allowed issuer's TLS certificate against its own trust store",
            "Remove spec.caBundle",
        ),
        inline_ca_bundle=True,
    ),
    "an issuer outside the allowlist": Escape(
        "IssuerNotAllowed",
        (
            "spec.issuer '{tls-by-ip}' is not an issuer the operator's policy allows "
            "(--issuer-policy allowlist). Ask the platform team which issuers the operator allows",
        ),
        spec={"issuer": "{tls-by-ip}"},
    ),
}


#: the issuer of the clients that meet a discovery fault: the server's URL with a trailing slash.
#: The operator checks every ClusterRaidiamIssuer in the cluster (other tests' name the server
#: by its plain URL) and caches the real document it fetches under that URL and CA bundle.
ESCAPE_ISSUER = "{tls}/"


def _escape_name(case: str) -> str:
    return "escape-" + str(list(ESCAPES).index(case))


@pytest.fixture(scope="module")
def allowlisted(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """One operator under `--issuer-policy allowlist` (the test server's TLS and mTLS origins,
    its CA in the operator's trust store), and each escape tried in turn: every discovery fault
    meets its own client's discovery, since a refused document is not kept."""
    namespace = new_namespace(control_plane, "allowlist")
    log = tmp_path_factory.mktemp("allowlist") / "operator.log"
    flags = [
        "--issuer-policy=allowlist",
        f"--allowed-issuer={auth_server.issuer}",
        f"--allowed-issuer={origin(auth_server.mtls_token_endpoint)}",
    ]
    try:
        with running_world(
            control_plane,
            auth_server,
            test_pki,
            kube_api,
            namespace,
            log,
            extra_args=flags,
            env={"SSL_CERT_FILE": str(auth_server.ca_path)},
        ) as world:
            for case, escape in ESCAPES.items():
                name = _escape_name(case)
                spec = dict(escape.spec)
                if escape.discovery_fault is not None:
                    fault = escape.discovery_fault
                    body = {"issuer": ESCAPE_ISSUER, **fault["body"]}
                    _apply_discovery_fault(world, {**fault, "body": body})
                    spec.setdefault("issuer", ESCAPE_ISSUER)
                ca = {"configMapName": world.ca_config_map()} if escape.inline_ca_bundle else None
                _plain(caBundle=ca, **_with_origins(world, spec))(world, name)
                escape.observed["client_id"] = world.client(name)["spec"]["clientId"]
                try:
                    escape.observed["degraded"] = world.wait_reason(
                        name, escape.reason, kind="Degraded", timeout=20
                    )
                except AssertionError:
                    escape.observed["last"] = world.condition(name, "Degraded")
                world.auth.clear_faults()
            # Last, so that no fault met it: a client of the allowed server gets its token.
            _plain(caBundle=None)(world, "allowed")
            world.wait_ready("allowed", timeout=30)
            yield world
    finally:
        drop_namespace(control_plane, namespace)


@pytest.mark.parametrize("case", list(ESCAPES))
def test_an_allowlist_escape_is_refused_with_its_reason_and_nothing_is_sent(
    allowlisted: World, case: str
) -> None:
    world, escape = allowlisted, ESCAPES[case]
    name = _escape_name(case)

    assert "degraded" in escape.observed, f"never saw {escape.reason}: {escape.observed}"
    message = escape.observed["degraded"]["message"]
    for fragment in escape.fragments:
        assert _with_origins(world, fragment) in message, message
    assert message.isprintable()
    # The allowlist itself is the platform team's: not shown to the tenant.
    assert "allowlist: https" not in message
    assert f"{world.auth.issuer}, " not in message
    assert world.condition(name)["reason"] == escape.reason
    events = wait_for(
        lambda: [
            e for e in world.events(name) if e.type == "Warning" and e.reason == escape.reason
        ],
        timeout=10,
        what=f"a Warning event {escape.reason}",
    )
    assert events[0].message == message
    # The server never saw this client's token request, and there is no token.
    assert world.requests_for(escape.observed["client_id"]) == 0
    assert world.secret(f"{name}-token") is None
