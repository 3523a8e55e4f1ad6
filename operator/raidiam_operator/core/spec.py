"""The RaidiamClient spec as typed values, with the CRD's defaults. Pure.

The API server has already applied the schema's defaults and CEL rules; parsing again here keeps
the operator honest against objects written before a schema change, and gives unit tests one
place to build specs from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from raidiam_operator.core import rules
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.rules import SPEC_FIELDS, AssertionAudience, AuthMethod
from raidiam_operator.core.templating import check_templates

GROUP = "raidiam.io"
VERSION = "v1alpha1"
PLURAL = "raidiamclients"
KIND = "RaidiamClient"

DEFAULT_RENEW_BEFORE_PERCENTAGE = 33
MANAGED_BY = "raidiam-token-operator"
#: set to a new value (any) to ask for a new token now; `kubectl raidiam refresh` does
REFRESH_REQUESTED_AT = "raidiam.io/refresh-requested-at"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


@dataclass(frozen=True, slots=True)
class Owner:
    """A RaidiamClient (or a RaidiamRegistration), as the owner of what the operator writes for
    it and the object its Events are about."""

    namespace: str
    name: str
    uid: str
    kind: str = KIND


@dataclass(frozen=True, slots=True)
class TransportCertificateRef:
    secret_name: str
    certificate_key: str = "tls.crt"
    private_key_key: str = "tls.key"


@dataclass(frozen=True, slots=True)
class SigningKeyRef:
    secret_name: str
    key_id: str
    private_key_key: str = "tls.key"
    algorithm: str | None = None


@dataclass(frozen=True, slots=True)
class CABundleRef:
    config_map_name: str
    key: str = "ca.crt"
    #: where the ConfigMap lives: None for the client's own namespace; a ClusterRaidiamIssuer's
    #: is in the operator's namespace
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class RegistrationRef:
    """spec.clientIdFrom.registrationRef: the RaidiamRegistration, in the client's namespace,
    whose registered client id (its status.clientId) the client uses."""

    name: str


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    renew_before_percentage: int | None = DEFAULT_RENEW_BEFORE_PERCENTAGE
    renew_before: timedelta | None = None


@dataclass(frozen=True, slots=True)
class TokenSecretTemplate:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: also write the transport certificate and key the token was issued with
    include_certificate: bool = False
    #: extra data keys, each a template over the token's fields (see `templating`)
    templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientSpec:
    #: the issuer URL; empty while `issuer_ref` is not resolved yet (see issuers.resolve_spec),
    #: or while it is to come from `client_id_from`'s registration
    issuer: str
    #: empty while `client_id_from` is not resolved yet (see refresh.client_ids)
    client_id: str
    auth_method: AuthMethod
    token_secret: TokenSecretTemplate
    scope: str | None = None
    transport_certificate: TransportCertificateRef | None = None
    signing_key: SigningKeyRef | None = None
    assertion_audience: AssertionAudience = "issuer"
    token_endpoint: str | None = None
    ca_bundle: CABundleRef | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    refresh: RefreshPolicy = field(default_factory=RefreshPolicy)
    suspend: bool = False
    #: the ClusterRaidiamIssuer named in spec.issuerRef, if any
    issuer_ref: str | None = None
    #: whether spec.assertionAudience was set; if not, a ClusterRaidiamIssuer's default applies
    assertion_audience_explicit: bool = False
    #: spec.clientIdFrom: the RaidiamRegistration the client id (and, when the spec names no
    #: issuer, the server) comes from
    client_id_from: RegistrationRef | None = None
    #: the URL prefixes a discovered token endpoint must lie under (the operator's
    #: --allowed-issuer, for an inline issuer under --issuer-policy allowlist); None: anywhere.
    #: Set by issuers.effective_spec, not read from the object.
    endpoint_allowlist: tuple[str, ...] | None = None

    def referenced_secrets(self) -> frozenset[str]:
        names = set()
        if self.transport_certificate:
            names.add(self.transport_certificate.secret_name)
        if self.signing_key:
            names.add(self.signing_key.secret_name)
        return frozenset(names)

    def secret_keys(self) -> dict[str, frozenset[str]]:
        """The keys the token flow reads of each referenced Secret."""
        keys: dict[str, set[str]] = {}
        if self.transport_certificate:
            ref = self.transport_certificate
            # ca.crt: copied beside the token with tokenSecret.includeCertificate
            keys.setdefault(ref.secret_name, set()).update(
                {ref.certificate_key, ref.private_key_key, "ca.crt"}
            )
        if self.signing_key:
            # tls.crt: the certificate beside a signing key, for its expiry warning
            keys.setdefault(self.signing_key.secret_name, set()).update(
                {self.signing_key.private_key_key, "tls.crt"}
            )
        return {name: frozenset(names) for name, names in keys.items()}

    def token_fingerprint(self) -> str:
        """A digest of what the token depends on in the spec: what the request sends and where.

        The refresh policy, suspend and the token Secret are left out, and so is how the settings
        were reached (an issuerRef's name, whether the audience was a default): a client that
        would send the same request keeps its token. Fields added later are left out while unset,
        so that an upgrade does not make every token look stale.
        """
        relevant: dict[str, Any] = asdict(self)
        for name in ("refresh", "suspend", "token_secret", "issuer_ref", "client_id_from"):
            relevant.pop(name)
        relevant.pop("assertion_audience_explicit")
        relevant.pop("endpoint_allowlist")  # where a request may go, not what it sends
        if relevant["ca_bundle"] is not None and relevant["ca_bundle"]["namespace"] is None:
            relevant["ca_bundle"].pop("namespace")
        encoded = json.dumps(relevant, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:32]


def parse_duration(text: str, *, field: str = "refresh.renewBefore") -> timedelta:
    """A Go-style duration such as `90s`, `2m` or `1h30m`, as in Kubernetes APIs."""
    position, total = 0, 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * units[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ConfigurationError(
            f"{field} {text!r} is not a duration; write it like 90s, 2m or 1h30m"
        )
    return timedelta(seconds=total)


def parse_spec(spec: Mapping[str, Any], *, name: str) -> ClientSpec:
    """Read a RaidiamClient's spec; raise `ConfigurationError` naming the field to fix."""
    auth_method = rules.check_auth_method(spec.get("authMethod", "tls_client_auth"), SPEC_FIELDS)
    issuer_ref = _issuer_ref(spec)
    client_id, client_id_from = _client_id(spec)
    issuer = (
        ""
        if issuer_ref is not None or (client_id_from is not None and not spec.get("issuer"))
        else rules.check_https(_required_str(spec, "issuer"), field=SPEC_FIELDS.issuer)
    )
    transport = _transport_ref(spec.get("transportCertificate"))
    signing = _signing_ref(spec.get("signingKey"))
    rules.check_credentials(
        auth_method,
        transport=transport is not None,
        signing_key=signing is not None,
        names=SPEC_FIELDS,
    )
    if (spec.get("tokenSecret") or {}).get("includeCertificate") and transport is None:
        raise ConfigurationError(
            "spec.tokenSecret.includeCertificate needs spec.transportCertificate: without one "
            "there is no certificate to include",
            reason=Reason.INVALID_TOKEN_SECRET,
        )
    audience = spec.get("assertionAudience", "issuer")
    if audience not in ("issuer", "tokenEndpoint"):
        raise ConfigurationError("spec.assertionAudience must be issuer or tokenEndpoint")
    token_endpoint = spec.get("tokenEndpoint") or None
    if token_endpoint:
        rules.check_https(token_endpoint, field=SPEC_FIELDS.token_endpoint)
    parameters = {str(k): str(v) for k, v in (spec.get("parameters") or {}).items()}
    rules.check_parameters(parameters, SPEC_FIELDS)
    ca = spec.get("caBundle")
    if issuer_ref is not None and (token_endpoint or ca):
        raise ConfigurationError(
            "with spec.issuerRef the token endpoint and CA bundle come from the "
            "ClusterRaidiamIssuer; remove spec.tokenEndpoint and spec.caBundle"
        )
    if client_id_from is not None and not issuer and issuer_ref is None and (token_endpoint or ca):
        raise ConfigurationError(
            "without spec.issuer or spec.issuerRef the server, its token endpoint and CA bundle "
            "come from the RaidiamRegistration in spec.clientIdFrom; remove spec.tokenEndpoint "
            "and spec.caBundle, or set spec.issuer"
        )
    template = spec.get("tokenSecret") or {}
    parsed = ClientSpec(
        issuer=issuer,
        client_id=client_id,
        auth_method=auth_method,
        scope=spec.get("scope") or None,
        transport_certificate=transport,
        signing_key=signing,
        assertion_audience=audience,
        token_endpoint=token_endpoint,
        ca_bundle=CABundleRef(ca["configMapName"], ca.get("key", "ca.crt")) if ca else None,
        parameters=parameters,
        refresh=_refresh(spec.get("refresh") or {}),
        token_secret=_token_secret(template, name=name),
        suspend=bool(spec.get("suspend", False)),
        issuer_ref=issuer_ref,
        assertion_audience_explicit="assertionAudience" in spec,
        client_id_from=client_id_from,
    )
    check_assertion_audience(parsed)
    return parsed


def check_assertion_audience(spec: ClientSpec) -> None:
    """An assertion whose aud is the issuer, sent to another host, could be replayed at the real
    server by whoever runs that host: refuse to send it outside the issuer URL."""
    if (
        spec.auth_method == "private_key_jwt"
        and spec.issuer
        and spec.token_endpoint
        and spec.assertion_audience == "issuer"
        and not spec.token_endpoint.startswith(spec.issuer.rstrip("/") + "/")
    ):
        raise ConfigurationError(
            "with private_key_jwt and a tokenEndpoint outside the issuer URL, set "
            "spec.assertionAudience to tokenEndpoint, so a signed assertion is only usable where it is sent"
        )


def _issuer_ref(spec: Mapping[str, Any]) -> str | None:
    reference = spec.get("issuerRef")
    if reference is None:
        return None
    if spec.get("issuer"):
        raise ConfigurationError(
            "set exactly one of spec.issuer (an issuer URL) and spec.issuerRef (a ClusterRaidiamIssuer)"
        )
    if not isinstance(reference, Mapping):
        raise ConfigurationError("spec.issuerRef.name is required")
    return _required_str(reference, "name", "spec.issuerRef.")


def _client_id(spec: Mapping[str, Any]) -> tuple[str, RegistrationRef | None]:
    """spec.clientId, or spec.clientIdFrom's registration (the id itself is "" until resolved)."""
    source = spec.get("clientIdFrom")
    if (source is None) == (not spec.get("clientId")):
        raise ConfigurationError(
            "set exactly one of spec.clientId (the client id) and spec.clientIdFrom (a "
            "RaidiamRegistration whose registered client id to use)"
        )
    if source is None:
        return _required_str(spec, "clientId"), None
    reference = source.get("registrationRef") if isinstance(source, Mapping) else None
    if not isinstance(reference, Mapping):
        raise ConfigurationError("spec.clientIdFrom.registrationRef.name is required")
    name = _required_str(reference, "name", "spec.clientIdFrom.registrationRef.")
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ConfigurationError(
            f"spec.clientIdFrom.registrationRef.name {name[:60]!r} is not a RaidiamRegistration "
            "name: at most 253 lower-case letters, digits, '-' and '.'"
        )
    return "", RegistrationRef(name)


def _refresh(refresh: Mapping[str, Any]) -> RefreshPolicy:
    percentage = refresh.get("renewBeforePercentage")
    duration = refresh.get("renewBefore")
    if percentage is not None and duration is not None:
        raise ConfigurationError(
            "spec.refresh.renewBefore and spec.refresh.renewBeforePercentage exclude each other; set one"
        )
    if duration is not None:
        renew_before = parse_duration(str(duration))
        if renew_before <= timedelta(0):
            raise ConfigurationError("spec.refresh.renewBefore must be longer than zero")
        return RefreshPolicy(renew_before_percentage=None, renew_before=renew_before)
    percentage = DEFAULT_RENEW_BEFORE_PERCENTAGE if percentage is None else int(percentage)
    if not 1 <= percentage <= 90:
        raise ConfigurationError("spec.refresh.renewBeforePercentage must be between 1 and 90")
    return RefreshPolicy(renew_before_percentage=percentage)


def _transport_ref(value: Mapping[str, Any] | None) -> TransportCertificateRef | None:
    if not value:
        return None
    return TransportCertificateRef(
        secret_name=_required_str(value, "secretName", "spec.transportCertificate."),
        certificate_key=value.get("certificateKey") or "tls.crt",
        private_key_key=value.get("privateKeyKey") or "tls.key",
    )


def _signing_ref(value: Mapping[str, Any] | None) -> SigningKeyRef | None:
    if not value:
        return None
    return SigningKeyRef(
        secret_name=_required_str(value, "secretName", "spec.signingKey."),
        key_id=_required_str(value, "keyId", "spec.signingKey."),
        private_key_key=value.get("privateKeyKey") or "tls.key",
        algorithm=value.get("algorithm") or None,
    )


def _required_str(mapping: Mapping[str, Any], key: str, prefix: str = "spec.") -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{prefix}{key} is required")
    return value


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def _token_secret(template: Mapping[str, Any], *, name: str) -> TokenSecretTemplate:
    """The token Secret to write, checked as the API server checks Secrets. The schema cannot
    check all of it (the default name, label syntax), and an invalid Secret would be refused at
    every write, after a token had been requested for nothing."""
    secret_name = template.get("name") or f"{name}-token"
    if len(secret_name) > 253 or not _DNS_SUBDOMAIN.fullmatch(secret_name):
        raise _invalid_token_secret(
            f"the token Secret name {secret_name[:60]!r}… is longer than 253 characters; set "
            "spec.tokenSecret.name to a shorter name"
            if len(secret_name) > 253
            else f"the token Secret name {secret_name!r} is not a valid Secret name; set "
            "spec.tokenSecret.name"
        )
    labels = {str(k): str(v) for k, v in (template.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (template.get("annotations") or {}).items()}
    for part, keys in (("labels", labels), ("annotations", annotations)):
        for key in keys:
            if not _qualified_name(key):
                raise _invalid_token_secret(
                    f"spec.tokenSecret.{part}: {key[:80]!r} is not a valid key: at most 63 "
                    "letters, digits, '-', '_' or '.', starting and ending with a letter or "
                    "digit, optionally after a DNS subdomain prefix and '/'"
                )
        reserved = next((k for k in keys if reserved_key(k)), None)
        if reserved is not None:
            raise _invalid_token_secret(
                f"spec.tokenSecret.{part}: {reserved[:80]!r} is reserved (keys under "
                "kubernetes.io/, k8s.io/ and raidiam.io/ belong to Kubernetes and the operator); "
                "use a key of your own"
            )
    for key, value in labels.items():
        if len(value) > 63 or (value and not _NAME_PART.fullmatch(value)):
            raise _invalid_token_secret(
                f"spec.tokenSecret.labels: the value {value[:80]!r} of {key!r} is not a valid "
                "label value: at most 63 letters, digits, '-', '_' or '.', starting and ending "
                "with a letter or digit"
            )
    if sum(len(k) + len(v) for k, v in annotations.items()) > _MAX_ANNOTATIONS_BYTES:
        raise _invalid_token_secret("spec.tokenSecret.annotations are larger than 256 KiB")
    templates = {
        str(k): str(v) for k, v in ((template.get("template") or {}).get("data") or {}).items()
    }
    check_templates(templates)
    return TokenSecretTemplate(
        name=secret_name,
        labels=labels,
        annotations=annotations,
        include_certificate=bool(template.get("includeCertificate", False)),
        templates=templates,
    )


_RESERVED_PREFIX = re.compile(r"^([^/]*\.)?(kubernetes|k8s|raidiam)\.io/")


def reserved_key(key: str) -> bool:
    """A label or annotation key the token Secret template may not set: Kubernetes' own
    (kubernetes.io/, k8s.io/ and their subdomains, except the app.kubernetes.io/ labels users set)
    and the operator's (raidiam.io/, app.kubernetes.io/managed-by). The CRD's CEL rules say the
    same; this catches objects created before them."""
    if key.startswith("app.kubernetes.io/"):
        return key == "app.kubernetes.io/managed-by"
    return bool(_RESERVED_PREFIX.match(key))


def _qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return len(name) <= 63 and bool(_NAME_PART.fullmatch(name))


def _invalid_token_secret(message: str) -> ConfigurationError:
    return ConfigurationError(message, reason=Reason.INVALID_TOKEN_SECRET)
