"""From a RaidiamClient spec and the Secrets it names to a ready `TokenRequest`.

`resolve_issuer` and `read_inputs` read what the spec names through a reader they are given, the
watch cache in the operator, the API server in `raidiam-operator check`: one path from spec to
request for both. In between, three steps: `gather_materials` (pure) takes the PEM out of the
Secrets and the ConfigMap, the private keys are read through the `PrivateKeys` given (in worker
processes, in the operator: see protocol.keychecks), and `build_inputs` (pure) builds the rest.
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
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.spec import ClientSpec
from raidiam_operator.protocol import credentials
from raidiam_operator.protocol.credentials import (
    SIGNING_KEY,
    TRANSPORT_KEY,
    CertificateFiles,
    UsableKey,
    certificate_expiry,
    load_certificate_chain,
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
#: certificates in that CA bundle: loading one takes OpenSSL about half a millisecond, holding
#: the GIL (Mozilla's public bundle holds about 150)
MAX_CA_CERTIFICATES = 500


class InputReader(Protocol):
    async def read_secret(self, namespace: str, name: str) -> JSON | None: ...
    async def read_config_map(self, namespace: str, name: str) -> JSON | None: ...


class PrivateKeys(Protocol):
    """Where private keys are read and checked (protocol.keychecks.KeyChecker)."""

    async def private_key(self, pem: bytes, *, what: str, namespace: str) -> UsableKey: ...


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
            reason=Reason.SECRET_NOT_FOUND,
        )
    data = secret.get("data") or {}
    if key not in data or not data[key]:
        present = ", ".join(sorted(data)) or "none"
        raise ConfigurationError(
            f"Secret {namespace}/{secret_name} (from {field_path}) has no key {key!r} "
            f"(keys present: {present}); fix the key name in the spec or the Secret",
            reason=Reason.SECRET_NOT_FOUND,
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
            reason=Reason.SECRET_NOT_FOUND,
        ) from None


def config_map_value(config_map: JSON | None, *, namespace: str, name: str, key: str) -> bytes:
    if config_map is None:
        raise ConfigurationError(
            f"ConfigMap {namespace}/{name} (from spec.caBundle) does not exist; create it",
            reason=Reason.CONFIG_MAP_NOT_FOUND,
        )
    value = (config_map.get("data") or {}).get(key)
    if not value:
        raise ConfigurationError(
            f"ConfigMap {namespace}/{name} has no key {key!r} for spec.caBundle",
            reason=Reason.CONFIG_MAP_NOT_FOUND,
        )
    what = f"ConfigMap {namespace}/{name} key {key!r} (from spec.caBundle)"
    advice = "put only the CA certificates of the authorization server in it"
    _check_size(len(value), MAX_CA_BUNDLE_BYTES, what, advice)
    bundle = str(value).encode()
    certificates = bundle.count(b"-----BEGIN")
    if certificates > MAX_CA_CERTIFICATES:
        raise ConfigurationError(
            f"{what} holds {certificates} PEM blocks, more than the {MAX_CA_CERTIFICATES} "
            f"certificates accepted; {advice}",
            reason=Reason.INPUT_TOO_LARGE,
        )
    return bundle


async def read_inputs(
    spec: ClientSpec, *, namespace: str, reader: InputReader, keys: PrivateKeys, now: datetime
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
    materials = gather_materials(spec, namespace=namespace, secrets=secrets, ca_config_map=ca)
    transport_key = signing = None
    if materials.transport is not None:
        transport_key = await keys.private_key(
            materials.transport.private_key, what=TRANSPORT_KEY, namespace=namespace
        )
    if materials.signing_key is not None:
        signing = await keys.private_key(
            materials.signing_key, what=SIGNING_KEY, namespace=namespace
        )
    return build_inputs(spec, materials, transport_key=transport_key, signing_key=signing, now=now)


def _check_size(size: int, limit: int, what: str, advice: str) -> None:
    if size > limit:
        raise ConfigurationError(
            f"{what} holds {_kib(size)}, more than the {_kib(limit)} accepted; {advice}",
            reason=Reason.INPUT_TOO_LARGE,
        )


def _kib(size: int) -> str:
    return f"{size / 1024:.0f} KiB"


@dataclass(frozen=True, slots=True)
class Materials:
    """What a client's Secrets and CA bundle ConfigMap hold for it: decoded and within their
    size bounds, not parsed yet."""

    #: the transport certificate's files, as its Secret holds them
    transport: CertificateFiles | None = field(default=None, repr=False)
    #: the signing key's PEM
    signing_key: bytes | None = field(default=None, repr=False)
    #: when the certificate beside the signing key expires, if there is one to read
    signing_not_after: datetime | None = None
    ca_bundle: bytes | None = None


def gather_materials(
    spec: ClientSpec,
    *,
    namespace: str,
    secrets: Mapping[str, JSON | None],
    ca_config_map: JSON | None,
) -> Materials:
    """The PEM the spec names. `secrets` maps Secret names to objects."""
    files = None
    if spec.transport_certificate:
        ref = spec.transport_certificate
        secret = secrets.get(ref.secret_name)
        certificate, private_key = (
            secret_value(
                secret,
                namespace=namespace,
                secret_name=ref.secret_name,
                key=key,
                field_path="spec.transportCertificate",
            )
            for key in (ref.certificate_key, ref.private_key_key)
        )
        files = CertificateFiles(
            certificate, private_key, _optional_value((secret or {}).get("data", {}).get("ca.crt"))
        )
    signing_pem, signing_not_after = None, None
    if spec.signing_key and spec.auth_method == "private_key_jwt":
        ref_s = spec.signing_key
        signing_pem = secret_value(
            secrets.get(ref_s.secret_name),
            namespace=namespace,
            secret_name=ref_s.secret_name,
            key=ref_s.private_key_key,
            field_path="spec.signingKey",
        )
        signing_not_after = _optional_certificate_expiry(secrets.get(ref_s.secret_name))
    ca_bundle = None
    if spec.ca_bundle:
        ca_bundle = config_map_value(
            ca_config_map,
            namespace=spec.ca_bundle.namespace or namespace,
            name=spec.ca_bundle.config_map_name,
            key=spec.ca_bundle.key,
        )
    return Materials(files, signing_pem, signing_not_after, ca_bundle)


def build_inputs(
    spec: ClientSpec,
    materials: Materials,
    *,
    transport_key: UsableKey | None,
    signing_key: UsableKey | None,
    now: datetime,
) -> Inputs:
    """Check the credentials and build the request: the keys are those read from `materials`."""
    transport, files = None, materials.transport
    certificates = []
    if files is not None and spec.transport_certificate:
        assert transport_key is not None
        chain = load_certificate_chain(files.certificate, what="the transport certificate")
        transport = credentials.transport_certificate(chain, transport_key, now=now)
        certificates.append(
            InputCertificate(
                "transport certificate", spec.transport_certificate.secret_name, transport.not_after
            )
        )
    signing = None
    if materials.signing_key is not None and spec.signing_key:
        assert signing_key is not None
        ref_s = spec.signing_key
        signing = credentials.signing_key(
            signing_key, key_id=ref_s.key_id, algorithm=ref_s.algorithm
        )
        if materials.signing_not_after is not None:
            certificates.append(
                InputCertificate(
                    "signing certificate", ref_s.secret_name, materials.signing_not_after
                )
            )
    ca_bundle = materials.ca_bundle
    request = TokenRequest(
        issuer=spec.issuer,
        client_id=spec.client_id,
        auth_method=spec.auth_method,
        transport=transport,
        signing_key=signing,
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
    if signing is not None:
        digest.update(signing.public_key_der())
        digest.update(f"{signing.key_id}/{signing.algorithm}".encode())
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
