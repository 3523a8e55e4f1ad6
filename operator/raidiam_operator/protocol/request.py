"""What a token request for one client is made of, and the form it sends. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.spec import AUTH_METHODS, AssertionAudience, AuthMethod
from raidiam_operator.protocol.assertion import CLIENT_ASSERTION_TYPE, client_assertion
from raidiam_operator.protocol.credentials import SigningKey, TransportCertificate
from raidiam_operator.protocol.tokens import DEFAULT_LIFETIME

# Form fields we set ourselves; extra parameters may not override them.
RESERVED_PARAMETERS = frozenset(
    {"grant_type", "client_id", "scope", "client_assertion", "client_assertion_type"}
)


@dataclass(frozen=True)
class TokenRequest:
    """Everything needed to obtain a token for one client, already loaded and checked."""

    issuer: str
    client_id: str
    auth_method: AuthMethod
    transport: TransportCertificate | None = None
    signing_key: SigningKey | None = None
    scope: str | None = None
    assertion_audience: AssertionAudience = "issuer"
    token_endpoint: str | None = None
    ca_bundle: bytes | None = field(default=None, repr=False)
    parameters: Mapping[str, str] = field(default_factory=dict)
    default_lifetime: timedelta = DEFAULT_LIFETIME

    def __post_init__(self) -> None:
        if self.auth_method not in AUTH_METHODS:
            raise ConfigurationError(
                f"auth method {self.auth_method!r} is not supported; use one of {', '.join(AUTH_METHODS)}"
            )
        if not self.issuer.startswith("https://"):
            raise ConfigurationError(f"the issuer {self.issuer!r} must be an https URL")
        if self.token_endpoint is not None and not self.token_endpoint.startswith("https://"):
            raise ConfigurationError(
                f"the token endpoint {self.token_endpoint!r} must be an https URL"
            )
        if not self.client_id:
            raise ConfigurationError("the client id is empty")
        if self.auth_method == "tls_client_auth" and self.transport is None:
            raise ConfigurationError("tls_client_auth needs a transport certificate and its key")
        if self.auth_method == "private_key_jwt" and self.signing_key is None:
            raise ConfigurationError("private_key_jwt needs a signing key and its key id")
        clashing = sorted(RESERVED_PARAMETERS & set(self.parameters))
        if clashing:
            raise ConfigurationError(
                f"extra parameters may not set {', '.join(clashing)}; use the dedicated fields"
            )

    @property
    def signing_algorithm(self) -> str | None:
        return (
            self.signing_key.algorithm
            if self.auth_method == "private_key_jwt" and self.signing_key
            else None
        )

    @property
    def certificate_thumbprint(self) -> str | None:
        return self.transport.thumbprint if self.transport else None


def token_form(request: TokenRequest, *, token_endpoint: str, now: datetime) -> dict[str, str]:
    """The form body of one token request. Call it per attempt: assertions are single-use."""
    form: dict[str, str] = {"grant_type": "client_credentials", "client_id": request.client_id}
    if request.scope:
        form["scope"] = request.scope
    form.update(request.parameters)
    if request.auth_method == "private_key_jwt":
        assert request.signing_key is not None  # enforced in __post_init__
        audience = request.issuer if request.assertion_audience == "issuer" else token_endpoint
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = client_assertion(
            request.signing_key, client_id=request.client_id, audience=audience, now=now
        )
    return form
