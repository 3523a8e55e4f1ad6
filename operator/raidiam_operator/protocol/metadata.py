"""The authorization server's discovery document, and the decisions it drives. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from raidiam_operator.core.errors import ServerMetadataError
from raidiam_operator.core.issuers import check_discovered_endpoint
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.rules import AuthMethod, url_problem
from raidiam_operator.core.texts import (
    SERVER_VALUE_LIMIT,
    URL_LIMIT,
    quoted_server_text,
    server_text,
)

#: an endpoint URL longer than this is not one a server means (browsers stop near 2,000 too)
MAX_ENDPOINT_LENGTH = 2048
#: entries of a discovery list (auth methods, algorithms) kept; real servers list a handful
MAX_LISTED = 32


@dataclass(frozen=True)
class ServerMetadata:
    issuer: str
    token_endpoint: str
    mtls_token_endpoint: str | None = None
    auth_methods_supported: tuple[str, ...] | None = None
    signing_algs_supported: tuple[str, ...] | None = None
    #: the server says it binds access tokens to the client's certificate (RFC 8705 §3.3)
    certificate_bound_access_tokens: bool = False
    #: RFC 7591 registration_endpoint, and its mtls_endpoint_aliases entry (RFC 8705 §5)
    registration_endpoint: str | None = None
    mtls_registration_endpoint: str | None = None


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def parse_metadata(document: object, *, expected_issuer: str) -> ServerMetadata:
    """Validate a discovery document against the issuer we were configured with."""
    if not isinstance(document, Mapping):
        raise ServerMetadataError(
            f"the discovery document at {discovery_url(expected_issuer)} is not a JSON object"
        )
    issuer = document.get("issuer")
    if issuer != expected_issuer:
        # OpenID Connect Discovery §4.3: a mismatch may mean a misconfigured or spoofed issuer.
        raise ServerMetadataError(
            f"the discovery document at {discovery_url(expected_issuer)} names issuer "
            f"{quoted_server_text(issuer)}, but the configured issuer is {expected_issuer!r}; set "
            "the issuer to "
            "exactly the value the server publishes",
            reason=Reason.ISSUER_MISMATCH,
        )
    token_endpoint = _endpoint(document.get("token_endpoint"), "token_endpoint", expected_issuer)
    aliases = document.get("mtls_endpoint_aliases")
    mtls_token_endpoint = aliases.get("token_endpoint") if isinstance(aliases, Mapping) else None
    if mtls_token_endpoint is not None:
        mtls_token_endpoint = _endpoint(
            mtls_token_endpoint, "mtls_endpoint_aliases.token_endpoint", expected_issuer
        )
    return ServerMetadata(
        issuer=expected_issuer,
        token_endpoint=token_endpoint,
        mtls_token_endpoint=mtls_token_endpoint,
        auth_methods_supported=_strings(document.get("token_endpoint_auth_methods_supported")),
        signing_algs_supported=_strings(
            document.get("token_endpoint_auth_signing_alg_values_supported")
        ),
        certificate_bound_access_tokens=document.get("tls_client_certificate_bound_access_tokens")
        is True,
        registration_endpoint=_https_or_none(document.get("registration_endpoint")),
        mtls_registration_endpoint=_https_or_none(
            aliases.get("registration_endpoint") if isinstance(aliases, Mapping) else None
        ),
    )


def _https_or_none(value: object) -> str | None:
    """An optional endpoint the token request does not need: one that is not a usable https
    URL (by the rules `_endpoint` applies) counts as absent, so that it never fails discovery
    for token clients."""
    if isinstance(value, str) and len(value) <= MAX_ENDPOINT_LENGTH and not url_problem(value):
        return value
    return None


def token_endpoint_for(
    metadata: ServerMetadata, *, mutual_tls: bool, allowlist: Sequence[str] | None = None
) -> str:
    """RFC 8705 §5: a client presenting a certificate uses the mTLS alias when there is one.

    With an `allowlist` (see ClientSpec.endpoint_allowlist), an endpoint outside it is refused
    with DiscoveredEndpointNotAllowed, naming the discovery field, before anything is sent.
    """
    if mutual_tls and metadata.mtls_token_endpoint:
        field, endpoint = "mtls_endpoint_aliases.token_endpoint", metadata.mtls_token_endpoint
    else:
        field, endpoint = "token_endpoint", metadata.token_endpoint
    if allowlist is not None:
        check_discovered_endpoint(allowlist, issuer=metadata.issuer, field=field, url=endpoint)
    return endpoint


def check_server_supports(
    metadata: ServerMetadata, *, auth_method: AuthMethod, signing_algorithm: str | None
) -> None:
    """Fail early, naming both sides, when the server does not list our method or algorithm."""
    supported = metadata.auth_methods_supported
    if supported is not None and auth_method not in supported:
        raise ServerMetadataError(
            f"the authorization server {metadata.issuer} does not support auth method "
            f"{auth_method}; it supports {_listing(supported)}",
            reason=Reason.AUTH_METHOD_NOT_SUPPORTED,
        )
    algs = metadata.signing_algs_supported
    if signing_algorithm is not None and algs is not None and signing_algorithm not in algs:
        raise ServerMetadataError(
            f"the authorization server {metadata.issuer} does not accept client assertions "
            f"signed with {signing_algorithm}; it accepts {_listing(algs)}",
            reason=Reason.ALGORITHM_NOT_SUPPORTED,
        )


def _strings(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))


def _listing(values: tuple[str, ...]) -> str:
    """What the server lists, for a message: bounded in count and length, one line."""
    shown = ", ".join(server_text(v, limit=SERVER_VALUE_LIMIT) for v in values[:MAX_LISTED])
    more = f" and {len(values) - MAX_LISTED} more" if len(values) > MAX_LISTED else ""
    return server_text(shown, limit=4 * SERVER_VALUE_LIMIT) + more if shown else "none"


def _endpoint(value: object, field: str, issuer: str) -> str:
    """A discovered endpoint URL, or the reason it is none, naming its field. Only printable
    ASCII that parses passes, so no control character or bidi override reaches a status, an
    annotation or the log."""
    if value is None:
        raise ServerMetadataError(f"the discovery document of {issuer} has no {field}")
    if isinstance(value, str) and len(value) > MAX_ENDPOINT_LENGTH:
        raise ServerMetadataError(
            f"the discovery document of {issuer} has a {field} of {len(value)} characters, "
            f"more than the {MAX_ENDPOINT_LENGTH} accepted"
        )
    problem = url_problem(value)
    if problem is not None:
        raise ServerMetadataError(
            f"the discovery document of {issuer} gives {field} "
            f"{quoted_server_text(value, limit=URL_LIMIT)}, which {problem}; the "
            "authorization server's operator must fix it (or set spec.tokenEndpoint)"
        )
    assert isinstance(value, str)  # url_problem found none
    return value
