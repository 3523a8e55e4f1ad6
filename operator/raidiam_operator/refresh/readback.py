"""A token Secret read back after a restart: what it proves, and what does not add up. Pure.

Anyone who may edit Secrets in the namespace may edit the token Secret, so what its annotations
say is a hint, checked against the token and against each other:

- the binding comes from the token: a JWT's `cnf.x5t#S256`, or, for an opaque token, the
  annotation (the weaker `advertised`, which only the server's discovery document backs);
- the expiry comes from a JWT's `exp` where the annotation says later; for an opaque token from
  the annotation, never later than its issue time plus `MAX_LIFETIME`, and an issue time never
  later than now;
- the first check in `DOUBTS` that fails says why the Secret is not as the operator wrote it,
  and the reconciler requests a new token to replace it.

The digest (`raidiam.io/token-digest`) is not keyed: whoever edits with care can compute it too.
It catches the careless edit (an annotation changed by hand, a token pasted in); the bounds above
hold against the careful one.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from raidiam_operator.core.spec import REFRESH_REQUESTED_AT
from raidiam_operator.core.texts import quoted_server_text
from raidiam_operator.core.times import parse_rfc3339, rfc3339
from raidiam_operator.protocol.credentials import CertificateFiles
from raidiam_operator.protocol.tokens import (
    BINDINGS,
    MAX_ACCESS_TOKEN_BYTES,
    MAX_LIFETIME,
    Binding,
    unverified_claims,
)
from raidiam_operator.refresh.render import (
    BINDING,
    CERTIFICATE_THUMBPRINT,
    EXPIRES_AT,
    INPUTS_FINGERPRINT,
    ISSUED_AT,
    TOKEN_DIGEST,
    TOKEN_ENDPOINT,
    TokenRecord,
    token_digest,
)

#: how much later than a JWT's own `exp` the recorded expiry may be: the recorded one is the
#: moment the answer arrived plus `expires_in`, by the operator's clock, not the server's
EXPIRY_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ReadBack:
    """What a token Secret proves. `record` is the token as far as it can be believed (None
    when no token can be read); `doubt`, when set, why the Secret is not as the operator wrote
    it: a new token replaces it."""

    record: TokenRecord | None
    doubt: str | None = None


@dataclass(frozen=True, slots=True)
class _Claimed:
    """What the Secret says, before anything is believed."""

    access_token: str = field(repr=False)
    token_type: str
    scope: str | None
    issued_at: datetime
    expires_at: datetime
    #: the data key `expires_at`, written with the annotation from the same record
    expires_at_key: str | None
    annotations: Mapping[str, str]
    #: the token's claims when it is a JWT
    claims: Mapping[str, object] | None
    certificate: CertificateFiles | None = field(repr=False)

    @property
    def binding(self) -> Binding | None:
        """The binding annotation, None when it is missing (or not one the operator writes)."""
        return next((b for b in BINDINGS if b == self.annotations.get(BINDING)), None)

    @property
    def thumbprint(self) -> str | None:
        return self.annotations.get(CERTIFICATE_THUMBPRINT) or None

    @property
    def bound_to(self) -> object:
        """The JWT's `cnf.x5t#S256`, if it has one."""
        confirmation = self.claims.get("cnf") if self.claims else None
        return confirmation.get("x5t#S256") if isinstance(confirmation, dict) else None

    @property
    def exp(self) -> datetime | None:
        """The JWT's `exp`, if it has a usable one."""
        exp = self.claims.get("exp") if self.claims else None
        if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
            return None
        try:
            return datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            return None  # beyond any date: no more use than none, MAX_LIFETIME bounds it

    def outlives_exp(self) -> bool:
        """Whether the recorded expiry is later than the JWT's `exp`, beyond EXPIRY_TOLERANCE."""
        exp = self.exp
        return exp is not None and self.expires_at - exp > EXPIRY_TOLERANCE


def record_from_secret(secret: Mapping[str, Any], *, now: datetime) -> ReadBack:
    """Read back a token Secret this client owns (after a restart)."""
    claimed = _claimed(secret)
    if isinstance(claimed, str):
        return ReadBack(None, claimed)
    doubt = next((why for check in DOUBTS if (why := check(claimed, now)) is not None), None)
    return ReadBack(_believed(claimed, now=now), doubt)


def _claimed(secret: Mapping[str, Any]) -> _Claimed | str:
    annotations = secret.get("metadata", {}).get("annotations") or {}
    data = secret.get("data") or {}
    try:
        access_token = _decoded(data, "access_token")
        token_type = _decoded(data, "token_type") or "Bearer"
        scope = _decoded(data, "scope") or None
        expires_at_key = _decoded(data, "expires_at") if "expires_at" in data else None
    except (ValueError, UnicodeDecodeError):
        return "its data is not valid base64-encoded UTF-8"
    if not access_token:
        return "it holds no access_token"
    if len(access_token) > MAX_ACCESS_TOKEN_BYTES:
        return (
            f"its access_token is longer than the {MAX_ACCESS_TOKEN_BYTES // 1024} KiB the "
            "operator accepts from a server"
        )
    expires_at = parse_rfc3339(annotations.get(EXPIRES_AT, ""))
    issued_at = parse_rfc3339(annotations.get(ISSUED_AT, ""))
    if expires_at is None or issued_at is None or not annotations.get(INPUTS_FINGERPRINT):
        return (
            f"its {EXPIRES_AT}, {ISSUED_AT} or {INPUTS_FINGERPRINT} annotation is missing or "
            "unreadable"
        )
    return _Claimed(
        access_token=access_token,
        token_type=token_type,
        scope=scope,
        issued_at=issued_at,
        expires_at=expires_at,
        expires_at_key=expires_at_key,
        annotations=annotations,
        claims=unverified_claims(access_token),
        certificate=_certificate_files(data),
    )


def _decoded(data: Mapping[str, str], key: str) -> str:
    return base64.b64decode(data.get(key, ""), validate=True).decode()


# -- what does not add up: each returns why, or None ---------------------------------------

Doubt = Callable[[_Claimed, datetime], str | None]


def _not_bearer(claimed: _Claimed, now: datetime) -> str | None:
    return None if claimed.token_type == "Bearer" else "its token_type is not Bearer"


def _expiry_keys_disagree(claimed: _Claimed, now: datetime) -> str | None:
    key = claimed.expires_at_key
    if key is None or key == rfc3339(claimed.expires_at):
        return None
    return (
        f"its {EXPIRES_AT} annotation says {rfc3339(claimed.expires_at)}, its expires_at key "
        f"{quoted_server_text(key, limit=40)}"
    )


def _issued_in_the_future(claimed: _Claimed, now: datetime) -> str | None:
    if claimed.issued_at <= now + EXPIRY_TOLERANCE:
        return None
    return f"its {ISSUED_AT} annotation, {rfc3339(claimed.issued_at)}, is in the future"


def _unbelievable_lifetime(claimed: _Claimed, now: datetime) -> str | None:
    lifetime = claimed.expires_at - claimed.issued_at
    if lifetime <= timedelta(0):
        return f"its {EXPIRES_AT} annotation is not after its {ISSUED_AT} annotation"
    if lifetime > MAX_LIFETIME:
        return (
            f"its {EXPIRES_AT} annotation, {rfc3339(claimed.expires_at)}, gives the token a "
            f"lifetime of {lifetime.days} days, more than the {MAX_LIFETIME.days} the operator "
            "accepts from a server"
        )
    return None


def _expiry_after_exp(claimed: _Claimed, now: datetime) -> str | None:
    if not claimed.outlives_exp() or claimed.exp is None:
        return None
    return (
        f"its {EXPIRES_AT} annotation, {rfc3339(claimed.expires_at)}, is later than the token's "
        f"exp claim, {rfc3339(claimed.exp)}"
    )


def _binding_contradicts_token(claimed: _Claimed, now: datetime) -> str | None:
    said, thumbprint, bound_to = claimed.binding, claimed.thumbprint, claimed.bound_to
    jwt = claimed.claims is not None
    if said is None:
        return None  # not recorded: the binding is derived from the token alone
    if bound_to is not None and said != "verified":
        return f"its {BINDING} annotation says {said}, but the token is bound to a certificate"
    if bound_to is not None and thumbprint != bound_to:
        return (
            f"its {CERTIFICATE_THUMBPRINT} annotation "
            f"{'is missing' if thumbprint is None else 'names another certificate'}, but the "
            "token is bound to one (cnf.x5t#S256)"
        )
    if bound_to is None and said == "verified":
        kind = "a JWT without cnf.x5t#S256" if jwt else "opaque"
        return f"its {BINDING} annotation says verified, but the token is {kind}"
    if said == "advertised" and jwt:
        return f"its {BINDING} annotation says advertised, but the token is a JWT: its cnf decides"
    if said == "advertised" and thumbprint is None:
        return f"its {BINDING} annotation says advertised, but it names no certificate"
    if said == "none" and thumbprint is not None:
        return f"its {BINDING} annotation says none, but it names a certificate"
    return None


def _digest_differs(claimed: _Claimed, now: datetime) -> str | None:
    written = claimed.annotations.get(TOKEN_DIGEST)
    if written is None or written == token_digest(_as_written(claimed)):
        return None
    return f"its token or its annotations changed since the operator wrote them ({TOKEN_DIGEST})"


#: asked in this order: the first answer names what does not add up
DOUBTS: tuple[Doubt, ...] = (
    _not_bearer,
    _expiry_keys_disagree,
    _issued_in_the_future,
    _unbelievable_lifetime,
    _expiry_after_exp,
    _binding_contradicts_token,
    _digest_differs,
)


# -- what is believed ---------------------------------------------------------------------


def _believed(claimed: _Claimed, *, now: datetime) -> TokenRecord:
    """The token as far as it proves itself, whatever its annotations say."""
    bound_to = claimed.bound_to
    if claimed.claims is not None:
        binding: Binding = "verified" if isinstance(bound_to, str) else "none"
        thumbprint = bound_to if isinstance(bound_to, str) else None
    elif claimed.binding == "advertised" and claimed.thumbprint is not None:
        binding, thumbprint = "advertised", claimed.thumbprint
    else:
        binding, thumbprint = "none", None
    issued_at = min(claimed.issued_at, now)
    # The earliest of what the Secret says: an annotation edited alone leaves the data key.
    latest = [claimed.expires_at, issued_at + MAX_LIFETIME]
    if (key := parse_rfc3339(claimed.expires_at_key or "")) is not None:
        latest.append(key)
    if claimed.outlives_exp() and claimed.exp is not None:
        latest.append(claimed.exp)
    return replace(
        _as_written(claimed),
        token_type="Bearer",
        issued_at=issued_at,
        expires_at=max(min(latest), issued_at),
        certificate_thumbprint=thumbprint,
        binding=binding,
    )


def _as_written(claimed: _Claimed) -> TokenRecord:
    """The record exactly as the Secret states it, to compare with its digest."""
    return TokenRecord(
        access_token=claimed.access_token,
        token_type=claimed.token_type,
        scope=claimed.scope,
        issued_at=claimed.issued_at,
        expires_at=claimed.expires_at,
        token_endpoint=claimed.annotations.get(TOKEN_ENDPOINT, ""),
        certificate_thumbprint=claimed.thumbprint,
        inputs_fingerprint=claimed.annotations[INPUTS_FINGERPRINT],
        refresh_requested_at=claimed.annotations.get(REFRESH_REQUESTED_AT),
        certificate=claimed.certificate,
        binding=claimed.binding or "none",
    )


def _certificate_files(data: Mapping[str, str]) -> CertificateFiles | None:
    """The certificate written beside the token: we wrote both in one update, so they are the
    pair this token was issued with."""
    if not data.get("tls.crt") or not data.get("tls.key"):
        return None
    try:
        return CertificateFiles(
            certificate=base64.b64decode(data["tls.crt"]),
            private_key=base64.b64decode(data["tls.key"]),
            ca=base64.b64decode(data["ca.crt"]) if data.get("ca.crt") else None,
        )
    except ValueError:
        return None
