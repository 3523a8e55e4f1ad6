"""The authorization server's discovery document, and the decisions it drives. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from raidiam_operator.core.errors import ServerMetadataError
from raidiam_operator.core.rules import AuthMethod


@dataclass(frozen=True)
class ServerMetadata:
    issuer: str
    token_endpoint: str
    mtls_token_endpoint: str | None = None
    auth_methods_supported: tuple[str, ...] | None = None
    signing_algs_supported: tuple[str, ...] | None = None


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
            f"{issuer!r}, but the configured issuer is {expected_issuer!r}; set the issuer to "
            "exactly the value the server publishes",
            reason="IssuerMismatch",
        )
    token_endpoint = document.get("token_endpoint")
    if not isinstance(token_endpoint, str) or not token_endpoint.startswith("https://"):
        raise ServerMetadataError(
            f"the discovery document of {expected_issuer} has no https token_endpoint"
        )
    aliases = document.get("mtls_endpoint_aliases")
    mtls_token_endpoint = aliases.get("token_endpoint") if isinstance(aliases, Mapping) else None
    if mtls_token_endpoint is not None and (
        not isinstance(mtls_token_endpoint, str) or not mtls_token_endpoint.startswith("https://")
    ):
        raise ServerMetadataError(
            f"the discovery document of {expected_issuer} has an mtls_endpoint_aliases.token_endpoint "
            "that is not an https URL"
        )
    return ServerMetadata(
        issuer=expected_issuer,
        token_endpoint=token_endpoint,
        mtls_token_endpoint=mtls_token_endpoint,
        auth_methods_supported=_strings(document.get("token_endpoint_auth_methods_supported")),
        signing_algs_supported=_strings(
            document.get("token_endpoint_auth_signing_alg_values_supported")
        ),
    )


def token_endpoint_for(metadata: ServerMetadata, *, mutual_tls: bool) -> str:
    """RFC 8705 §5: a client presenting a certificate uses the mTLS alias when there is one."""
    if mutual_tls and metadata.mtls_token_endpoint:
        return metadata.mtls_token_endpoint
    return metadata.token_endpoint


def check_server_supports(
    metadata: ServerMetadata, *, auth_method: AuthMethod, signing_algorithm: str | None
) -> None:
    """Fail early, naming both sides, when the server does not list our method or algorithm."""
    supported = metadata.auth_methods_supported
    if supported is not None and auth_method not in supported:
        raise ServerMetadataError(
            f"the authorization server {metadata.issuer} does not support auth method "
            f"{auth_method}; it supports {', '.join(supported) or 'none'}",
            reason="AuthMethodNotSupported",
        )
    algs = metadata.signing_algs_supported
    if signing_algorithm is not None and algs is not None and signing_algorithm not in algs:
        raise ServerMetadataError(
            f"the authorization server {metadata.issuer} does not accept client assertions "
            f"signed with {signing_algorithm}; it accepts {', '.join(algs) or 'none'}",
            reason="AlgorithmNotSupported",
        )


def _strings(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))
