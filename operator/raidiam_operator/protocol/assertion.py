"""RFC 7523 client assertions for `private_key_jwt`. Pure: `now` and the `jti` come from outside."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import jwt

from raidiam_operator.protocol.credentials import SigningKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(seconds=60)


def new_jti() -> str:
    """A fresh identifier with 256 bits of randomness: servers reject a replayed `jti`."""
    return secrets.token_urlsafe(32)


def assertion_claims(
    *, client_id: str, audience: str, now: datetime, jti: str
) -> dict[str, object]:
    issued_at = int(now.timestamp())
    return {
        "iss": client_id,
        "sub": client_id,
        # A plain string, not a list: FAPI 2.0 servers require exactly the issuer here.
        "aud": audience,
        "jti": jti,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(ASSERTION_LIFETIME.total_seconds()),
    }


def client_assertion(
    key: SigningKey, *, client_id: str, audience: str, now: datetime, jti: str | None = None
) -> str:
    """Sign a client assertion. Call it once per request, retries included: each needs a new jti."""
    claims = assertion_claims(client_id=client_id, audience=audience, now=now, jti=jti or new_jti())
    return jwt.encode(
        claims,
        key.private_key,
        algorithm=key.algorithm,
        headers={"kid": key.key_id, "typ": "JWT"},
    )
