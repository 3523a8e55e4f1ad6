"""From a RaidiamClient spec and the Secrets it names to a ready `TokenRequest`.

`build_inputs` is pure. `resolve_issuer` and `read_inputs` read what the spec names through a
reader they are given, the watch cache in the operator, the API server in `raidiam-operator
check`: one path from spec to request for both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.issuers import IssuerPolicy, effective_spec, parse_issuer
from raidiam_operator.core.spec import ClientSpec
from raidiam_operator.protocol.credentials import (
    CertificateFiles,
    certificate_expiry,
    load_signing_key,
    load_transport_certificate,
)
from raidiam_operator.protocol.request import TokenRequest

JSON = Mapping[str, Any]

# Ceilings on what a tenant's Secret or ConfigMap may hand the operator to parse: parsing is
# CPU on the one event loop every client shares, and what is parsed stays in memory. Real inputs
# are far smaller: a certificate chain with its intermediates or a private key is a few KiB, and
# Mozilla's whole public CA bundle is about 220 KiB.
#: a certificate chain or a private key (PEM)
MAX_PEM_BYTES = 64 * 1024
#: the CA bundle of spec.caBundle (PEM)
MAX_CA_BUNDLE_BYTES = 512 * 1024


class InputReader(Protocol):
    async def read_secret(self, namespace: str, name: str) -> JSON | None: ...
    async def read_config_map(self, namespace: str, name: str) -> JSON | None: ...


class IssuerReader(Protocol):
    async def read_issuer(self, name: str) -> JSON | None: ...
    async def read_namespace(self, name: str) -> JSON | None: ...


async def resolve_issuer(
    spec: ClientSpec,
    *,
    namespace: str,
    reader: IssuerReader,
    policy: IssuerPolicy,
    cluster_resource_namespace: str,
) -> ClientSpec:
    """The spec with its ClusterRaidiamIssuer's settings in place, or IssuerNotAllowed /
    IssuerNotFound before anything else is read. The namespace is read only when the issuer
    selects by label."""
    issuer = None
    if spec.issuer_ref is not None:
        body = await reader.read_issuer(spec.issuer_ref)
        if body is not None:
            issuer = parse_issuer(body, cluster_resource_namespace=cluster_resource_namespace)
    labels: Mapping[str, str] = {}
    if issuer is not None and issuer.selection.needs_labels(namespace):
        labels = ((await reader.read_namespace(namespace) or {}).get("metadata") or {}).get(
            "labels"
        ) or {}
    return effective_spec(spec, namespace=namespace, policy=policy, issuer=issuer, labels=labels)


@dataclass(frozen=True, slots=True)
class InputCertificate:
    """A certificate the client depends on, for expiry warnings."""

    role: str  # "transport certificate" or "signing certificate"
    secret_name: str
    not_after: datetime


@dataclass(frozen=True, slots=True)
class Inputs:
    request: TokenRequest
    #: digest of everything the token depends on: spec, certificate, signing key, CA bundle
    fingerprint: str
    certificates: tuple[InputCertificate, ...] = ()
    #: the transport certificate's files as its Secret holds them, for
    #: spec.tokenSecret.includeCertificate
    certificate_files: CertificateFiles | None = field(default=None, repr=False)


def secret_value(
    secret: JSON | None, *, namespace: str, secret_name: str, key: str, field_path: str
) -> bytes:
    """One key of a Secret, decoded; a clear SecretNotFound when the Secret or key is missing."""
    if secret is None:
        raise ConfigurationError(
            f"Secret {namespace}/{secret_name} (from {field_path}) does not exist; create it, "
            "the operator retries by itself once it appears",
            reason="SecretNotFound",
        )
    data = secret.get("data") or {}
    if key not in data or not data[key]:
        present = ", ".join(sorted(data)) or "none"
        raise ConfigurationError(
            f"Secret {namespace}/{secret_name} (from {field_path}) has no key {key!r} "
            f"(keys present: {present}); fix the key name in the spec or the Secret",
            reason="SecretNotFound",
        )
    # Measured before decoding: base64 is 4 characters per 3 bytes.
    _check_size(
        len(data[key]) * 3 // 4,
        MAX_PEM_BYTES,
        f"Secret {namespace}/{secret_name} key {key!r} (from {field_path})",
        "a certificate chain or private key in PEM is a few KiB; check that the key names the "
        "PEM and not something else",
    )
    try:
        return base64.b64decode(data[key], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"Secret {namespace}/{secret_name} key {key!r} is not valid base64",
            reason="SecretNotFound",
        ) from None


def config_map_value(config_map: JSON | None, *, namespace: str, name: str, key: str) -> bytes:
    if config_map is None:
        raise ConfigurationError(
            f"ConfigMap {namespace}/{name} (from spec.caBundle) does not exist; create it",
            reason="ConfigMapNotFound",
        )
    value = (config_map.get("data") or {}).get(key)
    if not value:
        raise ConfigurationError(
            f"ConfigMap {namespace}/{name} has no key {key!r} for spec.caBundle",
            reason="ConfigMapNotFound",
        )
    _check_size(
        len(value),
        MAX_CA_BUNDLE_BYTES,
        f"ConfigMap {namespace}/{name} key {key!r} (from spec.caBundle)",
        "put only the CA certificates of the authorization server in it",
    )
    return str(value).encode()


async def read_inputs(
    spec: ClientSpec, *, namespace: str, reader: InputReader, now: datetime
) -> Inputs:
    """Read the Secrets and the CA bundle ConfigMap the spec names, and build the inputs."""
    secrets = {
        name: await reader.read_secret(namespace, name) for name in spec.referenced_secrets()
    }
    ca = (
        # A ClusterRaidiamIssuer's CA bundle lives in the operator's namespace.
        await reader.read_config_map(
            spec.ca_bundle.namespace or namespace, spec.ca_bundle.config_map_name
        )
        if spec.ca_bundle
        else None
    )
    return build_inputs(spec, namespace=namespace, secrets=secrets, ca_config_map=ca, now=now)


def _check_size(size: int, limit: int, what: str, advice: str) -> None:
    if size > limit:
        raise ConfigurationError(
            f"{what} holds {_kib(size)}, more than the {_kib(limit)} accepted; {advice}",
            reason="InputTooLarge",
        )


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB"


def build_inputs(
    spec: ClientSpec,
    *,
    namespace: str,
    secrets: Mapping[str, JSON | None],
    ca_config_map: JSON | None,
    now: datetime,
) -> Inputs:
    """Load and check the credentials the spec names. `secrets` maps Secret names to objects."""
    transport, files = None, None
    if spec.transport_certificate:
        ref = spec.transport_certificate
        secret = secrets.get(ref.secret_name)
        cert_pem = secret_value(
            secret,
            namespace=namespace,
            secret_name=ref.secret_name,
            key=ref.certificate_key,
            field_path="spec.transportCertificate",
        )
        key_pem = secret_value(
            secret,
            namespace=namespace,
            secret_name=ref.secret_name,
            key=ref.private_key_key,
            field_path="spec.transportCertificate",
        )
        transport = load_transport_certificate(cert_pem, key_pem, now=now)
        ca = (secret or {}).get("data", {}).get("ca.crt")
        files = CertificateFiles(
            certificate=cert_pem,
            private_key=key_pem,
            ca=_optional_value(ca),
        )
    certificates = []
    if transport is not None and spec.transport_certificate:
        certificates.append(
            InputCertificate(
                "transport certificate", spec.transport_certificate.secret_name, transport.not_after
            )
        )
    signing_key = None
    if spec.signing_key and spec.auth_method == "private_key_jwt":
        ref_s = spec.signing_key
        key_pem = secret_value(
            secrets.get(ref_s.secret_name),
            namespace=namespace,
            secret_name=ref_s.secret_name,
            key=ref_s.private_key_key,
            field_path="spec.signingKey",
        )
        signing_key = load_signing_key(key_pem, key_id=ref_s.key_id, algorithm=ref_s.algorithm)
        signing_not_after = _optional_certificate_expiry(secrets.get(ref_s.secret_name))
        if signing_not_after is not None:
            certificates.append(
                InputCertificate("signing certificate", ref_s.secret_name, signing_not_after)
            )
    ca_bundle = None
    if spec.ca_bundle:
        ca_bundle = config_map_value(
            ca_config_map,
            namespace=spec.ca_bundle.namespace or namespace,
            name=spec.ca_bundle.config_map_name,
            key=spec.ca_bundle.key,
        )
    request = TokenRequest(
        issuer=spec.issuer,
        client_id=spec.client_id,
        auth_method=spec.auth_method,
        transport=transport,
        signing_key=signing_key,
        scope=spec.scope,
        assertion_audience=spec.assertion_audience,
        token_endpoint=spec.token_endpoint,
        ca_bundle=ca_bundle,
        parameters=spec.parameters,
        endpoint_allowlist=spec.endpoint_allowlist,
    )
    digest = hashlib.sha256(spec.token_fingerprint().encode())
    if transport is not None:
        digest.update(transport.chain_pem())
    if signing_key is not None:
        digest.update(signing_key.public_key_der())
        digest.update(f"{signing_key.key_id}/{signing_key.algorithm}".encode())
    if ca_bundle is not None:
        digest.update(ca_bundle)
    return Inputs(
        request=request,
        fingerprint=digest.hexdigest()[:32],
        certificates=tuple(certificates),
        certificate_files=files,
    )


def _optional_value(encoded: str | None) -> bytes | None:
    """An optional Secret value: absent, empty or undecodable counts as absent."""
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _optional_certificate_expiry(secret: JSON | None) -> datetime | None:
    """The expiry of the certificate beside a signing key (a kubernetes.io/tls Secret), if any.

    Optional information: an unreadable one is ignored rather than blocking the token flow.
    """
    encoded = (secret or {}).get("data", {}).get("tls.crt")
    if not encoded or len(encoded) * 3 // 4 > MAX_PEM_BYTES:
        return None
    try:
        pem = base64.b64decode(encoded)
    except (ValueError, binascii.Error):
        return None
    return certificate_expiry(pem)


def expiring_certificates(
    inputs: Inputs, *, now: datetime, warning: timedelta
) -> list[InputCertificate]:
    """The certificates that expire within `warning` of `now`, soonest first."""
    return sorted(
        (c for c in inputs.certificates if c.not_after - now <= warning), key=lambda c: c.not_after
    )
