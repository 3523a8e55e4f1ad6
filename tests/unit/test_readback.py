"""What a token Secret read back after a restart proves, as a table: each row is a Secret as
someone may have left it, what the operator believes of it, and why it requests a new token (or
None when the Secret is as the operator wrote it)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from raidiam_operator.core.spec import Owner, TokenSecretTemplate
from raidiam_operator.protocol.credentials import CertificateFiles
from raidiam_operator.protocol.tokens import MAX_LIFETIME
from raidiam_operator.refresh.readback import EXPIRY_TOLERANCE, ReadBack, record_from_secret
from raidiam_operator.refresh.render import TokenRecord, token_digest, token_secret

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
ISSUED = NOW - timedelta(minutes=1)
EXPIRES = ISSUED + timedelta(minutes=5)
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)
OWNER = Owner(namespace="payments", name="directory", uid="uid-1")
TEMPLATE = TokenSecretTemplate(name="directory-token")
THUMBPRINT = "thumb-ours"


def _jwt(**claims: object) -> str:
    return jwt.encode({"iat": int(ISSUED.timestamp()), **claims}, "k" * 32, algorithm="HS256")


OPAQUE = TokenRecord(
    access_token="opaque-token",
    token_type="Bearer",
    scope="directory:software",
    issued_at=ISSUED,
    expires_at=EXPIRES,
    token_endpoint="https://matls.example/token",
    certificate_thumbprint=THUMBPRINT,
    inputs_fingerprint="f1",
    binding="advertised",
)
UNBOUND = replace(OPAQUE, binding="none", certificate_thumbprint=None)
BOUND_JWT = replace(
    OPAQUE,
    access_token=_jwt(exp=int(EXPIRES.timestamp()), cnf={"x5t#S256": THUMBPRINT}),
    binding="verified",
)
UNBOUND_JWT = replace(UNBOUND, access_token=_jwt(exp=int(EXPIRES.timestamp())), binding="none")

Edit = Callable[[dict[str, Any]], None]


def _annotate(**values: str | None) -> Edit:
    """`kubectl annotate`: annotations changed, nothing else."""

    def edit(secret: dict[str, Any]) -> None:
        annotations = secret["metadata"]["annotations"]
        for key, value in values.items():
            name = "raidiam.io/" + key.replace("_", "-")
            if value is None:
                annotations.pop(name, None)
            else:
                annotations[name] = value

    return edit


def _data(**values: str | None) -> Edit:
    def edit(secret: dict[str, Any]) -> None:
        for key, value in values.items():
            if value is None:
                secret["data"].pop(key, None)
            else:
                secret["data"][key] = base64.b64encode(value.encode()).decode()

    return edit


def _rewritten(record: TokenRecord) -> Edit:
    """A careful editor: the whole Secret rewritten for `record`, digest and all."""

    def edit(secret: dict[str, Any]) -> None:
        secret.clear()
        secret.update(token_secret(OWNER, TEMPLATE, record))

    return edit


def _both(*edits: Edit) -> Edit:
    def edit(secret: dict[str, Any]) -> None:
        for each in edits:
            each(secret)

    return edit


@dataclass(frozen=True)
class Row:
    written: TokenRecord
    edit: Edit | None
    #: a fragment of the reason for a new token; None: the Secret is believed as written
    doubt: str | None
    #: (binding, thumbprint, expires_at) believed; None: no token could be read
    believed: tuple[str, str | None, datetime] | None


FOREVER = "2099-01-01T00:00:00Z"
ROWS = {
    "an opaque token as written": Row(OPAQUE, None, None, ("advertised", THUMBPRINT, EXPIRES)),
    "a bound JWT as written": Row(BOUND_JWT, None, None, ("verified", THUMBPRINT, EXPIRES)),
    "an unbound JWT as written": Row(UNBOUND_JWT, None, None, ("none", None, EXPIRES)),
    "expires-at annotated into the far future": Row(
        UNBOUND,
        _annotate(expires_at=FOREVER),
        "its raidiam.io/expires-at annotation says 2099-01-01T00:00:00Z, its expires_at key "
        "'2026-11-27T12:04:00Z'",
        ("none", None, EXPIRES),
    ),
    "expires-at and the expires_at key both in the far future": Row(
        UNBOUND,
        _both(_annotate(expires_at=FOREVER), _data(expires_at=FOREVER)),
        "gives the token a lifetime of 26332 days, more than the 366 the operator accepts",
        ("none", None, ISSUED + MAX_LIFETIME),
    ),
    "an opaque token rewritten with care lives at most the longest lifetime accepted": Row(
        UNBOUND,
        _rewritten(replace(UNBOUND, expires_at=ISSUED + MAX_LIFETIME)),
        None,
        ("none", None, ISSUED + MAX_LIFETIME),
    ),
    "a JWT rewritten with care to outlive its exp": Row(
        UNBOUND_JWT,
        _rewritten(replace(UNBOUND_JWT, expires_at=NOW + timedelta(days=300))),
        "is later than the token's exp claim, 2026-11-27T12:04:00Z",
        ("none", None, EXPIRES),
    ),
    "a JWT whose recorded expiry is a little after its exp (the server's clock)": Row(
        replace(UNBOUND_JWT, expires_at=EXPIRES + EXPIRY_TOLERANCE),
        None,
        None,
        ("none", None, EXPIRES + EXPIRY_TOLERANCE),
    ),
    "a JWT whose exp is beyond any date": Row(
        replace(UNBOUND_JWT, access_token=_jwt(exp=10**18)), None, None, ("none", None, EXPIRES)
    ),
    "expires-at at the end of time": Row(
        UNBOUND_JWT,
        _rewritten(replace(UNBOUND_JWT, expires_at=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))),
        "more than the 366 the operator accepts",
        ("none", None, EXPIRES),
    ),
    "issued-at long ago": Row(
        UNBOUND,
        _rewritten(replace(UNBOUND, issued_at=datetime(1970, 1, 1, tzinfo=UTC))),
        "more than the 366 the operator accepts",
        ("none", None, datetime(1970, 1, 1, tzinfo=UTC) + MAX_LIFETIME),
    ),
    "binding annotated verified on an unbound opaque token": Row(
        UNBOUND,
        _annotate(binding="verified", certificate_thumbprint=THUMBPRINT),
        "its raidiam.io/binding annotation says verified, but the token is opaque",
        ("none", None, EXPIRES),
    ),
    "binding annotated verified on a JWT without cnf": Row(
        UNBOUND_JWT,
        _rewritten(replace(UNBOUND_JWT, binding="verified", certificate_thumbprint=THUMBPRINT)),
        "says verified, but the token is a JWT without cnf.x5t#S256",
        ("none", None, EXPIRES),
    ),
    "binding annotated advertised on an opaque token, naming no certificate": Row(
        UNBOUND,
        _annotate(binding="advertised"),
        "says advertised, but it names no certificate",
        ("none", None, EXPIRES),
    ),
    "binding annotated advertised on a JWT without cnf": Row(
        UNBOUND_JWT,
        _annotate(binding="advertised", certificate_thumbprint=THUMBPRINT),
        "says advertised, but the token is a JWT: its cnf decides",
        ("none", None, EXPIRES),
    ),
    "binding annotated none beside a thumbprint": Row(
        UNBOUND,
        _annotate(certificate_thumbprint=THUMBPRINT),
        "its raidiam.io/binding annotation says none, but it names a certificate",
        ("none", None, EXPIRES),
    ),
    "a bound JWT annotated none": Row(
        BOUND_JWT,
        _annotate(binding="none", certificate_thumbprint=None),
        "its raidiam.io/binding annotation says none, but the token is bound to a certificate",
        ("verified", THUMBPRINT, EXPIRES),
    ),
    "a bound JWT annotated with another thumbprint": Row(
        BOUND_JWT,
        _annotate(certificate_thumbprint="thumb-theirs"),
        "its raidiam.io/certificate-thumbprint annotation names another certificate, but the "
        "token is bound to one (cnf.x5t#S256)",
        ("verified", THUMBPRINT, EXPIRES),
    ),
    "issued-at in the future": Row(
        UNBOUND,
        _rewritten(
            replace(UNBOUND, issued_at=NOW + timedelta(days=1), expires_at=NOW + timedelta(days=2))
        ),
        "its raidiam.io/issued-at annotation, 2026-11-28T12:00:00Z, is in the future",
        ("none", None, NOW + timedelta(days=2)),
    ),
    "an expires_at key that forges a log line": Row(
        UNBOUND,
        _data(expires_at="2099\n[INFO] forged " + "x" * 100),
        "its expires_at key '2099 [INFO] forged",
        ("none", None, EXPIRES),
    ),
    "another token pasted in": Row(
        UNBOUND,
        _data(access_token="pasted-token"),
        "its token or its annotations changed since the operator wrote them "
        "(raidiam.io/token-digest)",
        ("none", None, EXPIRES),
    ),
    "a token_type that is not Bearer": Row(
        UNBOUND, _data(token_type="DPoP"), "its token_type is not Bearer", ("none", None, EXPIRES)
    ),
    "the token removed": Row(UNBOUND, _data(access_token=None), "it holds no access_token", None),
    "the expiry annotation removed": Row(
        UNBOUND,
        _annotate(expires_at=None),
        "its raidiam.io/expires-at, raidiam.io/issued-at or raidiam.io/inputs-fingerprint "
        "annotation is missing or unreadable",
        None,
    ),
    "a token longer than any server may send": Row(
        UNBOUND,
        _data(access_token="t" * (16 * 1024 + 1)),
        "its access_token is longer than the 16 KiB the operator accepts from a server",
        None,
    ),
    "written before bindings and digests were recorded": Row(
        OPAQUE,
        _annotate(binding=None, token_digest=None),
        None,
        ("none", None, EXPIRES),
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_a_token_secret_read_back_is_believed_only_as_far_as_it_proves_itself(row: Row) -> None:
    secret = token_secret(OWNER, TEMPLATE, row.written)
    if row.edit is not None:
        row.edit(secret)

    read = record_from_secret(secret, now=NOW)

    if row.doubt is None:
        assert read.doubt is None
    else:
        assert read.doubt is not None
        assert row.doubt in read.doubt
    if row.believed is None:
        assert read.record is None
    else:
        assert read.record is not None
        record = read.record
        assert (record.binding, record.certificate_thumbprint, record.expires_at) == row.believed


def test_a_secret_as_written_reads_back_to_the_same_record() -> None:
    certificate = CertificateFiles(certificate=b"crt", private_key=b"key", ca=b"ca")
    for record in (OPAQUE, BOUND_JWT, replace(OPAQUE, certificate=certificate)):
        template = replace(TEMPLATE, include_certificate=record.certificate is not None)

        assert record_from_secret(token_secret(OWNER, template, record), now=NOW) == ReadBack(
            record
        )


def test_the_certificate_beside_the_token_is_covered_by_the_digest() -> None:
    certificate = CertificateFiles(certificate=b"crt", private_key=b"key", ca=None)
    record = replace(OPAQUE, certificate=certificate)
    secret = token_secret(OWNER, replace(TEMPLATE, include_certificate=True), record)
    secret["data"]["tls.key"] = base64.b64encode(b"another key").decode()

    read = record_from_secret(secret, now=NOW)

    assert read.doubt is not None
    assert "raidiam.io/token-digest" in read.doubt


def test_the_digest_names_no_secret() -> None:
    digest = token_digest(OPAQUE)

    assert digest.startswith("sha256:")
    assert OPAQUE.access_token not in digest
