"""The rules a client's settings follow, each written once.

The RaidiamClient spec, `TokenRequest` and the `token` command's flags all check through here.
Each passes the names its user knows the fields by, so a message points where to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard
from urllib.parse import urlsplit

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.texts import ELLIPSIS, URL_LIMIT

AuthMethod = Literal["tls_client_auth", "self_signed_tls_client_auth", "private_key_jwt"]
AUTH_METHODS: tuple[AuthMethod, ...] = (
    "tls_client_auth",
    "self_signed_tls_client_auth",
    "private_key_jwt",
)
#: RFC 8705 §2: the client authenticates with its TLS certificate, which it must have. With a
#: certificate issued by a CA the server trusts (tls_client_auth), or one it registered (x5c in
#: its JWKS) and may have signed itself (self_signed_tls_client_auth). The same certificate, sent
#: the same way, to the same mTLS endpoint alias: they differ only in how the server checks it.
MUTUAL_TLS_METHODS: frozenset[AuthMethod] = frozenset(
    {"tls_client_auth", "self_signed_tls_client_auth"}
)
AssertionAudience = Literal["issuer", "tokenEndpoint"]

# Form fields we set ourselves; extra parameters may not override them.
RESERVED_PARAMETERS = frozenset(
    {"grant_type", "client_id", "scope", "client_assertion", "client_assertion_type"}
)


@dataclass(frozen=True)
class FieldNames:
    """How one source of settings names them."""

    auth_method: str
    issuer: str
    client_id: str
    token_endpoint: str
    transport: str
    signing_key: str
    parameters: str
    #: how a missing credential is worded; {field} and {method} are filled in
    missing: str = "{method} needs {field}"


SPEC_FIELDS = FieldNames(
    auth_method="spec.authMethod",
    issuer="spec.issuer",
    client_id="spec.clientId",
    token_endpoint="spec.tokenEndpoint",
    transport="spec.transportCertificate",
    signing_key="spec.signingKey",
    parameters="spec.parameters",
    missing="{field} is required for {method}",
)
REQUEST_FIELDS = FieldNames(
    auth_method="auth method",
    issuer="the issuer",
    client_id="the client id",
    token_endpoint="the token endpoint",
    transport="a transport certificate and its key",
    signing_key="a signing key and its key id",
    parameters="extra parameters",
)
FLAG_FIELDS = FieldNames(
    auth_method="--auth-method",
    issuer="--issuer",
    client_id="--client-id",
    token_endpoint="--token-endpoint",
    transport="--cert and --key",
    signing_key="--signing-key and --kid",
    parameters="--param",
)


def is_auth_method(value: object) -> TypeGuard[AuthMethod]:
    return value in AUTH_METHODS


def check_auth_method(value: object, names: FieldNames) -> AuthMethod:
    if not is_auth_method(value):
        raise ConfigurationError(
            f"{names.auth_method} {value!r} is not supported; use one of {', '.join(AUTH_METHODS)}"
        )
    return value


def check_https(url: str, *, field: str) -> str:
    """Issuers and token endpoints: a token or an assertion never travels in the clear, and the
    URL is one that `url_problem` finds nothing wrong with."""
    problem = url_problem(url)
    if problem is not None:
        raise ConfigurationError(f"{field} {shown_url(url)} {problem}")
    return url


#: RFC 3986 URLs are printable ASCII; anything else (a space, NEL, a bidi override) is refused
#: rather than carried into statuses, annotations and logs
_URL_CHARACTERS = re.compile(r"[!-~]+")


def url_problem(url: object) -> str | None:
    """What makes `url` unfit as an issuer or endpoint URL, worded to follow it in a message
    ("... must be an https URL"), or None.

    An https URL of printable ASCII, without spaces, that parses, with a host, a valid port and
    no user part (httpx would send a user part as credentials) or backslash (which some servers
    read as a slash).
    """
    if not isinstance(url, str) or not url.startswith("https://"):
        return "must be an https URL"
    if not _URL_CHARACTERS.fullmatch(url):
        return "may hold only printable ASCII characters, without spaces (percent-encode others)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return "is not a URL (check the host and the port)"
    if "@" in parts.netloc:
        return "may not have a user part (user@host)"
    if not parts.hostname:
        return "must name a host"
    if "\\" in url:
        return "may not hold a backslash"
    return None


def shown_url(url: str) -> str:
    """A URL from the user quoted in a message: escaped by repr, and cut short."""
    return repr(url) if len(url) <= URL_LIMIT else repr(url[:URL_LIMIT]) + ELLIPSIS


def check_client_id(client_id: str, names: FieldNames) -> str:
    if not client_id:
        raise ConfigurationError(f"{names.client_id} is required")
    return client_id


def check_credentials(
    method: AuthMethod, *, transport: bool, signing_key: bool, names: FieldNames
) -> None:
    """The mutual-TLS methods authenticate with the transport certificate, private_key_jwt with
    an assertion signed by the signing key: each needs its own."""
    if method in MUTUAL_TLS_METHODS and not transport:
        raise ConfigurationError(names.missing.format(field=names.transport, method=method))
    if method == "private_key_jwt" and not signing_key:
        raise ConfigurationError(names.missing.format(field=names.signing_key, method=method))


def check_parameters(parameters: Mapping[str, str], names: FieldNames) -> None:
    clashing = sorted(RESERVED_PARAMETERS & set(parameters))
    if clashing:
        raise ConfigurationError(
            f"{names.parameters} may not set {', '.join(clashing)}; use the dedicated fields"
        )
