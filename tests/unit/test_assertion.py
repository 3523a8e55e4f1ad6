from __future__ import annotations

from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives import serialization

from raidiam_devenv.pki import TestPKI
from raidiam_operator.protocol.assertion import CLIENT_ASSERTION_TYPE, client_assertion
from raidiam_operator.protocol.credentials import load_signing_key, load_transport_certificate
from raidiam_operator.protocol.request import TokenRequest, token_form

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
ISSUER = "https://auth.example"
TOKEN_ENDPOINT = "https://matls-auth.example/token"


def _verify(assertion: str, public_pem: bytes, audience: str) -> dict[str, object]:
    key = serialization.load_pem_public_key(public_pem)
    return jwt.decode(
        assertion,
        key,  # type: ignore[arg-type]
        algorithms=["PS256", "ES256", "EdDSA", "RS256"],
        audience=audience,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )


def _public_pem(private_pem: bytes) -> bytes:
    return (
        serialization.load_pem_private_key(private_pem, None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def test_assertion_claims_follow_rfc7523_and_fapi2(pki: TestPKI) -> None:
    raw = pki.signing_key(key_type="rsa")
    key = load_signing_key(raw.private_pem, key_id="sig-1", algorithm=None)

    assertion = client_assertion(key, client_id="client-1", audience=ISSUER, now=NOW)
    claims = _verify(assertion, _public_pem(raw.private_pem), ISSUER)
    header = jwt.get_unverified_header(assertion)

    assert header["kid"] == "sig-1"
    assert header["alg"] == "PS256"
    assert claims["iss"] == claims["sub"] == "client-1"
    assert claims["aud"] == ISSUER  # a plain string, not a list
    assert claims["iat"] == claims["nbf"] == int(NOW.timestamp())
    assert claims["exp"] == int(NOW.timestamp()) + 60


def test_every_assertion_gets_a_fresh_jti_of_at_least_128_bits(pki: TestPKI) -> None:
    key = load_signing_key(pki.signing_key(key_type="ec").private_pem, key_id="k", algorithm=None)

    jtis = {
        jwt.decode(
            client_assertion(key, client_id="c", audience=ISSUER, now=NOW),
            options={"verify_signature": False},
        )["jti"]
        for _ in range(50)
    }

    assert len(jtis) == 50
    assert all(len(str(j)) * 6 >= 128 for j in jtis)


def test_private_key_jwt_form_uses_the_token_endpoint_as_audience_when_asked(pki: TestPKI) -> None:
    key = load_signing_key(pki.signing_key(key_type="ec").private_pem, key_id="k", algorithm=None)
    request = TokenRequest(
        issuer=ISSUER,
        client_id="c",
        auth_method="private_key_jwt",
        signing_key=key,
        scope="directory:software",
        assertion_audience="tokenEndpoint",
        parameters={"resource": "https://api.example"},
    )

    form = token_form(request, token_endpoint=TOKEN_ENDPOINT, now=NOW)

    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == "c"
    assert form["scope"] == "directory:software"
    assert form["resource"] == "https://api.example"
    assert form["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
    assert claims["aud"] == TOKEN_ENDPOINT


def test_tls_client_auth_form_carries_no_assertion(pki: TestPKI) -> None:
    issued = pki.client_certificate("tls-form")
    request = TokenRequest(
        issuer=ISSUER,
        client_id="c",
        auth_method="tls_client_auth",
        transport=load_transport_certificate(
            issued.cert_pem, issued.key_pem, now=datetime.now(UTC)
        ),
    )

    form = token_form(request, token_endpoint=TOKEN_ENDPOINT, now=NOW)

    assert form == {"grant_type": "client_credentials", "client_id": "c"}
