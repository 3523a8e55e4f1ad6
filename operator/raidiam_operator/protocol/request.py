"""What a token request for one client is made of, and the form it sends. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from raidiam_operator.core import rules
from raidiam_operator.core.rules import REQUEST_FIELDS, AssertionAudience, AuthMethod
from raidiam_operator.protocol.assertion import CLIENT_ASSERTION_TYPE, client_assertion
from raidiam_operator.protocol.credentials import SigningKey, TransportCertificate


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
    #: URL prefixes the discovered token endpoint must lie under (see ClientSpec); None: anywhere
    endpoint_allowlist: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # The same rules as the spec's, for requests built elsewhere (the `token` command).
        rules.check_auth_method(self.auth_method, REQUEST_FIELDS)
        rules.check_https(self.issuer, field=REQUEST_FIELDS.issuer)
        if self.token_endpoint is not None:
            rules.check_https(self.token_endpoint, field=REQUEST_FIELDS.token_endpoint)
        rules.check_client_id(self.client_id, REQUEST_FIELDS)
        rules.check_credentials(
            self.auth_method,
            transport=self.transport is not None,
            signing_key=self.signing_key is not None,
            names=REQUEST_FIELDS,
        )
        rules.check_parameters(self.parameters, REQUEST_FIELDS)

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


def assertion_audience(request: TokenRequest, *, token_endpoint: str) -> str:
    """The `aud` of this client's assertions when sent to `token_endpoint`."""
    return request.issuer if request.assertion_audience == "issuer" else token_endpoint


def assertion_audience_hint(request: TokenRequest, *, token_endpoint: str) -> str:
    """After an invalid_client for private_key_jwt: the aud that was sent, and how to send the
    other one (RFC 7523 lets a server accept only its token endpoint; FAPI 2.0 wants the issuer)."""
    sent = assertion_audience(request, token_endpoint=token_endpoint)
    if request.assertion_audience == "issuer":
        return (
            f"The client assertion's aud was the issuer {sent}; if the server wants its token "
            f"endpoint {token_endpoint} there, set assertionAudience: tokenEndpoint in the "
            "RaidiamClient (--audience token_endpoint on the command line)"
        )
    return (
        f"The client assertion's aud was the token endpoint {sent}; if the server wants its "
        f"issuer {request.issuer} there, set assertionAudience: issuer in the RaidiamClient "
        "(--audience issuer on the command line)"
    )


def token_form(request: TokenRequest, *, token_endpoint: str, now: datetime) -> dict[str, str]:
    """The form body of one token request. Call it per attempt: assertions are single-use."""
    form: dict[str, str] = {"grant_type": "client_credentials", "client_id": request.client_id}
    if request.scope:
        form["scope"] = request.scope
    form.update(request.parameters)
    if request.auth_method == "private_key_jwt":
        assert request.signing_key is not None  # enforced in __post_init__
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = client_assertion(
            request.signing_key,
            client_id=request.client_id,
            audience=assertion_audience(request, token_endpoint=token_endpoint),
            now=now,
        )
    return form
