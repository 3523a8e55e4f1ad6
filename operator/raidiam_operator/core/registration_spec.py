"""A RaidiamRegistration's spec, read and checked. No I/O.

The data provider's side (issuer or issuerRef, CA bundle, transport certificate) is read into a
`ClientSpec`, so that the issuer policy, ClusterRaidiamIssuer resolution and the reading of the
transport certificate are the ones RaidiamClients go through, with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from raidiam_operator.core import rules
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.issuers import IssuerPolicy, url_under
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.registration import (
    ClientMetadata,
    Json,
    MetadataFieldNames,
    check_metadata,
)
from raidiam_operator.core.spec import (
    GROUP,
    VERSION,
    CABundleRef,
    ClientSpec,
    TokenSecretTemplate,
    TransportCertificateRef,
)

REGISTRATION_PLURAL = "raidiamregistrations"
REGISTRATION_KIND = "RaidiamRegistration"
#: on every RaidiamRegistration, so that deleting one first sends DELETE (Delete) or leaves its
#: credentials Secret behind (Retain)
REGISTRATION_FINALIZER = f"{GROUP}/registration"
REGISTRATION_API_VERSION = f"{GROUP}/{VERSION}"

DeletionPolicy = Literal["Retain", "Delete"]

SPEC_METADATA = MetadataFieldNames(
    auth_method="spec.metadata.tokenEndpointAuthMethod",
    redirect_uris="spec.metadata.redirectUris",
    jwks_uri="spec.metadata.jwksUri",
    subject_dn="spec.metadata.tlsClientAuthSubjectDn",
    signing_alg="spec.metadata.tokenEndpointAuthSigningAlg",
    grant_types="spec.metadata.grantTypes",
    response_types="spec.metadata.responseTypes",
    extra="spec.metadata.extra",
)


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class FromDirectory:
    """A fresh SSA for every registration request, fetched with a RaidiamClient's token."""

    client_name: str
    api_base_url: str
    organisation_id: str
    software_statement_id: str


@dataclass(frozen=True, slots=True)
class RegistrationSpec:
    #: the data provider's side, as RaidiamClients read it (issuer policy, CA, certificate)
    server: ClientSpec
    metadata: ClientMetadata
    credentials_secret: str
    software_statement: FromDirectory | SecretKeyRef | None = None
    initial_access_token: SecretKeyRef | None = None
    deletion_policy: DeletionPolicy = "Retain"

    def referenced_secrets(self) -> frozenset[str]:
        """The Secrets this registration reads (the directory token's is the client's)."""
        names = set(self.server.referenced_secrets())
        for ref in (self.software_statement, self.initial_access_token):
            if isinstance(ref, SecretKeyRef):
                names.add(ref.name)
        return frozenset(names)


def parse_registration_spec(spec: Mapping[str, Any], *, name: str) -> RegistrationSpec:
    """Read a RaidiamRegistration's spec; `ConfigurationError` naming the field to fix."""
    issuer_ref = _name_of(spec.get("issuerRef"), "spec.issuerRef")
    if (issuer_ref is None) == (not spec.get("issuer")):
        raise ConfigurationError(
            "set exactly one of spec.issuer (the data provider's issuer URL) and spec.issuerRef "
            "(a ClusterRaidiamIssuer)"
        )
    issuer = "" if issuer_ref else rules.check_https(str(spec["issuer"]), field="spec.issuer")
    ca = spec.get("caBundle")
    if issuer_ref and ca:
        raise ConfigurationError(
            "with spec.issuerRef the CA bundle comes from the ClusterRaidiamIssuer; remove "
            "spec.caBundle"
        )
    transport = spec.get("transportCertificate") or {}
    if not transport.get("secretName"):
        raise ConfigurationError(
            "spec.transportCertificate.secretName is required: registration goes over mTLS"
        )
    credentials = (spec.get("credentialsSecret") or {}).get("name") or f"{name}-registration"
    server = ClientSpec(
        issuer=issuer,
        # Not sent anywhere: registration has no client id yet. ClientSpec needs one.
        client_id="registration",
        auth_method="tls_client_auth",
        token_secret=TokenSecretTemplate(name=credentials),
        transport_certificate=TransportCertificateRef(
            transport["secretName"],
            transport.get("certificateKey") or "tls.crt",
            transport.get("privateKeyKey") or "tls.key",
        ),
        ca_bundle=CABundleRef(ca["configMapName"], ca.get("key") or "ca.crt") if ca else None,
        issuer_ref=issuer_ref,
    )
    policy: DeletionPolicy = "Delete" if spec.get("deletionPolicy") == "Delete" else "Retain"
    if spec.get("deletionPolicy") not in (None, "Retain", "Delete"):
        raise ConfigurationError("spec.deletionPolicy must be Retain or Delete")
    return RegistrationSpec(
        server=server,
        metadata=check_metadata(_metadata(spec.get("metadata") or {}), SPEC_METADATA),
        credentials_secret=credentials,
        software_statement=_software_statement(spec.get("softwareStatement")),
        initial_access_token=_secret_key(
            spec.get("initialAccessToken"), "spec.initialAccessToken", "initial_access_token"
        ),
        deletion_policy=policy,
    )


def _metadata(value: Mapping[str, Any]) -> ClientMetadata:
    def strings(key: str) -> tuple[str, ...]:
        return tuple(str(item) for item in value.get(key) or ())

    extra: dict[str, Json] = dict(value.get("extra") or {})
    return ClientMetadata(
        token_endpoint_auth_method=value.get("tokenEndpointAuthMethod") or "tls_client_auth",
        grant_types=strings("grantTypes") or ("client_credentials",),
        response_types=strings("responseTypes"),
        redirect_uris=strings("redirectUris"),
        scope=value.get("scope") or None,
        jwks_uri=value.get("jwksUri") or None,
        id_token_signed_response_alg=value.get("idTokenSignedResponseAlg") or None,
        token_endpoint_auth_signing_alg=value.get("tokenEndpointAuthSigningAlg") or None,
        tls_client_auth_subject_dn=value.get("tlsClientAuthSubjectDn") or None,
        tls_client_certificate_bound_access_tokens=bool(
            value.get("tlsClientCertificateBoundAccessTokens", True)
        ),
        extra=extra,
    )


def _software_statement(value: Mapping[str, Any] | None) -> FromDirectory | SecretKeyRef | None:
    if not value:
        return None
    directory, secret = value.get("fromDirectory"), value.get("secretRef")
    if (directory is None) == (secret is None):
        raise ConfigurationError(
            "set exactly one of spec.softwareStatement.fromDirectory and "
            "spec.softwareStatement.secretRef"
        )
    if secret is not None:
        return _secret_key(secret, "spec.softwareStatement.secretRef", "software_statement")
    if not isinstance(directory, Mapping):
        raise ConfigurationError("spec.softwareStatement.fromDirectory must be an object")
    prefix = "spec.softwareStatement.fromDirectory"
    client = _name_of(directory.get("clientRef"), f"{prefix}.clientRef")
    if client is None:
        raise ConfigurationError(f"{prefix}.clientRef.name is required")
    ids = {}
    for key in ("organisationId", "softwareStatementId"):
        text = directory.get(key)
        if not isinstance(text, str) or not text or len(text) > 128:
            raise ConfigurationError(f"{prefix}.{key} is required (at most 128 characters)")
        ids[key] = text
    return FromDirectory(
        client_name=client,
        api_base_url=rules.check_https(
            str(directory.get("apiBaseUrl") or ""), field=f"{prefix}.apiBaseUrl"
        ),
        organisation_id=ids["organisationId"],
        software_statement_id=ids["softwareStatementId"],
    )


def _secret_key(
    value: Mapping[str, Any] | None, path: str, default_key: str
) -> SecretKeyRef | None:
    if value is None:
        return None
    name = _name_of(value, path)
    if name is None:
        raise ConfigurationError(f"{path}.name is required")
    return SecretKeyRef(name, value.get("key") or default_key)


def _name_of(value: Any, path: str) -> str | None:
    if value is None:
        return None
    name = value.get("name") if isinstance(value, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{path}.name is required")
    return name


def check_directory_url(policy: IssuerPolicy, directory: FromDirectory) -> None:
    """The directory token and the transport certificate go to the directory API: under
    `--issuer-policy` it must be an allowed URL, as an issuer must."""
    field = "spec.softwareStatement.fromDirectory.apiBaseUrl"
    if policy.mode == "references-only":
        raise ConfigurationError(
            f"the operator runs with --issuer-policy references-only, and {field} names a URL of "
            "its own; ask the platform team to allow the directory's API (--issuer-policy "
            "allowlist with --allowed-issuer)",
            reason=Reason.ISSUER_NOT_ALLOWED,
        )
    if policy.mode == "allowlist" and not any(
        url_under(directory.api_base_url, prefix) for prefix in policy.allowed_prefixes
    ):
        raise ConfigurationError(
            f"{field} is not a URL the operator's policy allows (--issuer-policy allowlist); ask "
            "the platform team which directory API URLs the operator allows",
            reason=Reason.ISSUER_NOT_ALLOWED,
        )
