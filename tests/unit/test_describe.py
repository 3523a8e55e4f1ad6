"""`describe NAME`: a client's claims and binding, never its token."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography import x509

from raidiam_devenv.pki import IssuedCertificate, TestPKI
from raidiam_operator.cli.describe import client_detail, format_detail
from raidiam_operator.protocol.credentials import certificate_thumbprint

NOW = datetime.now(UTC).replace(microsecond=0)


def _thumbprint(issued: IssuedCertificate) -> str:
    return certificate_thumbprint(x509.load_pem_x509_certificate(issued.cert_pem))


def _secret(**data: bytes) -> dict[str, Any]:
    return {"data": {key: base64.b64encode(value).decode() for key, value in data.items()}}


def _client() -> dict[str, Any]:
    return {
        "metadata": {"namespace": "payments", "name": "directory"},
        "spec": {
            "issuer": "https://auth.example",
            "clientId": "client-1",
            "scope": "directory:software",
            "transportCertificate": {"secretName": "transport"},
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "TokenValid", "message": "valid"},
                {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "ok"},
            ],
            "expiresAt": "2099-01-01T00:00:00Z",
        },
    }


def _token(thumbprint: str | None) -> str:
    claims: dict[str, Any] = {
        "iss": "https://auth.example",
        "client_id": "client-1",
        "exp": 4070908800,
    }
    if thumbprint:
        claims["cnf"] = {"x5t#S256": thumbprint}
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def test_a_token_bound_to_the_current_certificate_shows_its_claims_but_not_itself(
    pki: TestPKI,
) -> None:
    issued = pki.client_certificate("describe-bound")
    token = _token(_thumbprint(issued))

    detail = client_detail(
        _client(),
        token_secret=_secret(access_token=token.encode()),
        transport_secret=_secret(**{"tls.crt": issued.cert_pem}),
        now=NOW,
    )
    text = format_detail(detail, now=NOW)

    assert detail["binding"]["result"] == "bound"
    assert detail["token"]["claims"]["client_id"] == "client-1"
    assert detail["token"]["secret"] == "directory-token"
    assert token not in text
    assert token not in str(detail)
    assert "client_id:" in text
    assert "exp:" in text
    assert "(2099-01-01T00:00:00Z)" in text
    assert "bound: bound to the certificate now in the transport Secret" in text


def test_a_token_bound_to_a_replaced_certificate_is_a_mismatch(pki: TestPKI) -> None:
    old, new = pki.client_certificate("describe-old"), pki.client_certificate("describe-new")

    detail = client_detail(
        _client(),
        token_secret=_secret(access_token=_token(_thumbprint(old)).encode()),
        transport_secret=_secret(**{"tls.crt": new.cert_pem}),
        now=NOW,
    )

    binding = detail["binding"]
    assert binding["result"] == "mismatch"
    assert binding["tokenThumbprint"] == _thumbprint(old)
    assert binding["certificateThumbprint"] == _thumbprint(new)
    assert "until the operator has a new token" in binding["message"]


def test_unbound_opaque_and_missing_tokens_say_so(pki: TestPKI) -> None:
    transport = _secret(**{"tls.crt": pki.client_certificate("describe-other").cert_pem})

    unbound = client_detail(
        _client(),
        token_secret=_secret(access_token=_token(None).encode()),
        transport_secret=transport,
        now=NOW,
    )
    opaque = client_detail(
        _client(),
        token_secret=_secret(access_token=b"opaque-token-value"),
        transport_secret=transport,
        now=NOW,
    )
    missing = client_detail(_client(), token_secret=None, transport_secret=None, now=NOW)

    assert unbound["binding"]["result"] == "unbound"
    assert opaque["binding"]["result"] == "unknown"
    assert "opaque" in format_detail(opaque, now=NOW)
    assert "opaque-token-value" not in format_detail(opaque, now=NOW)
    assert missing["token"]["present"] is False
    assert "the Secret holds no token" in format_detail(missing, now=NOW)


def test_an_opaque_token_the_server_binds_is_checked_against_the_recorded_thumbprint(
    pki: TestPKI,
) -> None:
    issued, other = pki.client_certificate("describe-adv"), pki.client_certificate("describe-new")
    client = _client()
    client["status"].update(binding="advertised", certificateThumbprint=_thumbprint(issued))

    same = client_detail(
        client,
        token_secret=_secret(access_token=b"opaque-token-value"),
        transport_secret=_secret(**{"tls.crt": issued.cert_pem}),
        now=NOW,
    )
    rotated = client_detail(
        client,
        token_secret=_secret(access_token=b"opaque-token-value"),
        transport_secret=_secret(**{"tls.crt": other.cert_pem}),
        now=NOW,
    )

    assert same["binding"]["result"] == "bound"
    assert rotated["binding"]["result"] == "mismatch"
    assert "when issued: advertised (status.binding)" in format_detail(same, now=NOW)
