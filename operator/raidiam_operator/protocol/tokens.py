"""Reading a token endpoint response into an `IssuedToken`, or a precise error. Pure."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import jwt

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    InvalidTokenResponse,
    RaidiamOperatorError,
    ServerUnavailable,
)
from raidiam_operator.core.texts import (
    ERROR_CODE_LIMIT,
    ERROR_DESCRIPTION_LIMIT,
    byte_size,
    quoted_server_text,
    server_text,
)
from raidiam_operator.core.times import parse_retry_after

#: Whether a token is bound to the transport certificate it was requested with (RFC 8705 §3):
#: "verified": a JWT whose cnf.x5t#S256 is that certificate's thumbprint; "advertised": an opaque
#: token from a server whose discovery says tls_client_certificate_bound_access_tokens, with a
#: certificate sent; "none": anything else. Only a bound token reports a certificate thumbprint.
Binding = Literal["verified", "advertised", "none"]
BINDINGS: tuple[Binding, ...] = ("verified", "advertised", "none")

MAX_RESPONSE_BYTES = 1024 * 1024
# A workload sends the token in an Authorization header, which common servers cap at 8 KiB a
# line (nginx, Apache); a FAPI JWT with its cnf is 1-2 KiB. Twice the header limit leaves room
# for generous servers, and keeps a token times a template far from the Secret's 1 MiB.
MAX_ACCESS_TOKEN_BYTES = 16 * 1024
# A granted scope is a few words (Open Finance's longest lists are a few hundred characters).
MAX_SCOPE_BYTES = 4 * 1024
DEFAULT_LIFETIME = timedelta(seconds=300)
# Anything longer is a server bug, not a token lifetime (and would overflow datetime arithmetic).
MAX_LIFETIME = timedelta(days=366)
# Rejections that say "you, the client, must change something". Other 4xx are odd but retryable.
REJECTION_STATUSES = frozenset({400, 401, 403})
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# A value quoted in a message about a bad response: enough to recognise it, no more.
_VALUE_LIMIT = 40


@dataclass(frozen=True)
class IssuedToken:
    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime
    lifetime: timedelta
    scope: str | None
    token_endpoint: str
    #: x5t#S256 of the certificate the token is bound to; None unless `binding` says it is bound
    certificate_thumbprint: str | None
    binding: Binding = "none"

    @property
    def expires_in(self) -> int:
        return int(self.lifetime.total_seconds())


def unverified_claims(access_token: str) -> dict[str, object] | None:
    """The claims of a JWT access token, or None when it is opaque.

    We are not the token's audience and hold none of its keys, so we read it without verifying the
    signature: only to learn its lifetime and its certificate binding, never to trust its grants.
    """
    if access_token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return claims if isinstance(claims, dict) else None


def classify_error_response(
    status_code: int, headers: Mapping[str, str], body: bytes, *, now: datetime
) -> RaidiamOperatorError:
    """Turn a non-200 token or discovery response into the error the caller should act on."""
    retry_after = parse_retry_after(headers.get("retry-after"), now=now)
    if status_code == 429 or status_code >= 500:
        return ServerUnavailable(
            f"the authorization server answered HTTP {status_code}"
            + (f"; it asked to retry after {retry_after:.0f} s" if retry_after is not None else ""),
            status_code=status_code,
            retry_after=retry_after,
        )
    oauth_error = _oauth_error(body)
    if status_code in REJECTION_STATUSES and oauth_error is not None:
        return AuthorizationServerRejection(oauth_error[0], oauth_error[1], status_code=status_code)
    return InvalidTokenResponse(
        f"the authorization server answered HTTP {status_code} without an OAuth error code; "
        "check the token endpoint URL",
        retry_after=retry_after,
    )


def parse_token_response(
    body: bytes,
    *,
    now: datetime,
    token_endpoint: str,
    certificate_thumbprint: str | None,
    server_binds_certificates: bool = False,
) -> IssuedToken:
    """Validate a 200 response. Raises rather than return a token we should not hand out.

    `certificate_thumbprint` is that of the transport certificate the request was sent with;
    `server_binds_certificates`, what the server's discovery document says about binding.
    """
    if len(body) > MAX_RESPONSE_BYTES:
        raise InvalidTokenResponse(
            f"the token response is larger than {MAX_RESPONSE_BYTES} bytes; refusing to read it"
        )
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidTokenResponse("the token response is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidTokenResponse("the token response is not a JSON object")
    oauth_error = _oauth_error(body, document)
    if oauth_error is not None:
        raise AuthorizationServerRejection(oauth_error[0], oauth_error[1], status_code=200)

    access_token = document.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise InvalidTokenResponse("the token response has no access_token")
    _check_size(
        "access token",
        access_token,
        MAX_ACCESS_TOKEN_BYTES,
        "no workload could send it in an Authorization header; check the token format the "
        "authorization server is configured to issue",
    )
    token_type = document.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise InvalidTokenResponse(
            f"the token response has token_type {_printable(token_type)}; only Bearer is supported"
        )
    claims = unverified_claims(access_token)
    lifetime = _lifetime(document.get("expires_in"), claims, now=now)
    binding = token_binding(
        claims,
        certificate_thumbprint=certificate_thumbprint,
        server_binds_certificates=server_binds_certificates,
    )
    scope = document.get("scope")
    if isinstance(scope, str):
        _check_size("granted scope", scope, MAX_SCOPE_BYTES, "check the authorization server")
    return IssuedToken(
        access_token=access_token,
        token_type="Bearer",
        expires_at=now + lifetime,
        lifetime=lifetime,
        scope=scope if isinstance(scope, str) else None,
        token_endpoint=token_endpoint,
        certificate_thumbprint=certificate_thumbprint if binding != "none" else None,
        binding=binding,
    )


def _check_size(what: str, value: str, limit: int, advice: str) -> None:
    """Refuse a server's string too long to store, before anything is built from it."""
    # A character takes at most 4 bytes: most values are judged without encoding them.
    if len(value) * 4 <= limit:
        return
    size = len(value.encode(errors="replace"))
    if size > limit:
        raise InvalidTokenResponse(
            f"the {what} is {byte_size(size)}, more than the {byte_size(limit)} accepted; {advice}"
        )


def _lifetime(
    expires_in: object, claims: Mapping[str, object] | None, *, now: datetime
) -> timedelta:
    """expires_in, else the JWT's exp, else `DEFAULT_LIFETIME` (RFC 6749 leaves it optional)."""
    if expires_in is None:
        exp = claims.get("exp") if claims else None
        if isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp):
            seconds = exp - now.timestamp()
            if seconds <= 0:
                raise InvalidTokenResponse("the access token's exp claim is already in the past")
            return _bounded(seconds)
        return DEFAULT_LIFETIME
    if isinstance(expires_in, bool):
        seconds = math.nan
    elif isinstance(expires_in, int | float):
        seconds = float(expires_in)
    elif isinstance(expires_in, str):
        try:
            seconds = float(expires_in.strip())
        except ValueError:
            seconds = math.nan
    else:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise InvalidTokenResponse(
            f"the token response has expires_in {_printable(expires_in)}; expected a number of seconds"
        )
    if seconds <= 0:
        raise InvalidTokenResponse(
            f"the token response has expires_in {_printable(expires_in)}; it must be positive"
        )
    return _bounded(seconds)


def _bounded(seconds: float) -> timedelta:
    if seconds > MAX_LIFETIME.total_seconds():
        raise InvalidTokenResponse(
            f"the token lifetime of {seconds:.0f} s is longer than {MAX_LIFETIME.days} days; "
            "the server's expires_in is not believable"
        )
    # Exact, not whole seconds: a 0.5 s token is not a 0 s one. TokenRecord rounds what it shows.
    return timedelta(seconds=seconds)


def token_binding(
    claims: Mapping[str, object] | None,
    *,
    certificate_thumbprint: str | None,
    server_binds_certificates: bool,
) -> Binding:
    """How the token is bound to the certificate sent (see `Binding`). An opaque token (`claims`
    None) is never an error: it is bound as far as the server says it binds, when a certificate
    went with the request. A JWT bound to another certificate is refused, never handed out."""
    thumbprint = certificate_thumbprint
    if claims is None:
        return "advertised" if thumbprint is not None and server_binds_certificates else "none"
    confirmation = claims.get("cnf")
    bound_to = confirmation.get("x5t#S256") if isinstance(confirmation, dict) else None
    if bound_to is None:
        return "none"
    if thumbprint is None:
        raise InvalidTokenResponse(
            "the access token is bound to a client certificate (cnf.x5t#S256), but no transport "
            "certificate was used; configure the transport certificate"
        )
    if bound_to != thumbprint:
        raise InvalidTokenResponse(
            f"the access token is bound to another certificate (cnf.x5t#S256 {_printable(bound_to)}, "
            f"ours {thumbprint}); refusing to hand it out"
        )
    return "verified"


def _oauth_error(body: bytes, document: object = None) -> tuple[str, str | None] | None:
    if document is None:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    # The code becomes a condition and Event reason: anything but a plain word (every OAuth
    # code is one) is garbage from the server, not a rejection we can name.
    if not isinstance(error, str) or not _ERROR_CODE.fullmatch(error):
        return None
    description = document.get("error_description")
    return (
        server_text(error, limit=ERROR_CODE_LIMIT),
        (server_text(description, limit=ERROR_DESCRIPTION_LIMIT) or None)
        if isinstance(description, str)
        else None,
    )


def _printable(value: object) -> str:
    """A short rendering of a server-supplied value (token_type, expires_in) for a message."""
    return quoted_server_text(value, limit=_VALUE_LIMIT)
