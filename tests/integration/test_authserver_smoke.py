"""Smoke tests of the test authorization server itself, with plain httpx.

They pin down the behaviour the operator's integration tests rely on:
discovery with mTLS aliases, tls_client_auth and private_key_jwt, certificate
binding, error codes, and the admin fault/stats API.
"""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.pki import IssuedCertificate, SigningKey, TestPKI

pytestmark = pytest.mark.authserver

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _client(
    server: AuthServer, cert: IssuedCertificate | None = None, tmp: Path | None = None
) -> httpx.Client:
    # httpx 0.28 deprecates cert=/verify=<path>; an SSLContext is the way.
    context = ssl.create_default_context(cafile=str(server.ca_path))
    if cert is not None:
        assert tmp is not None
        cert_path, key_path = cert.write(tmp, f"client-{uuid.uuid4().hex[:8]}")
        context.load_cert_chain(cert_path, key_path)
    return httpx.Client(verify=context, timeout=10.0, trust_env=False)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _claims(server: AuthServer, token: str) -> dict[str, Any]:
    """Verify the access token against the server's JWKS and return its claims."""
    with _client(server) as http:
        jwks = http.get(f"{server.issuer}/jwks").json()
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    # The JWKS carries no "alg"; bind the key to the header's algorithm.
    key = jwt.PyJWK(jwk, algorithm=header["alg"])
    claims: dict[str, Any] = jwt.decode(
        token, key=key, algorithms=[header["alg"]], audience=server.resource, issuer=server.issuer
    )
    return claims


def _assertion_form(
    key: SigningKey, client_id: str, aud: str | list[str], **extra: str
) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": key.client_assertion(client_id, aud, alg="PS256"),
        **extra,
    }


def test_discovery_advertises_mtls_token_alias(clean_auth_server: AuthServer) -> None:
    server = clean_auth_server
    with _client(server) as http:
        meta = http.get(server.discovery_url).json()
    assert meta["issuer"] == server.issuer
    assert meta["token_endpoint"] == server.token_endpoint
    assert meta["mtls_endpoint_aliases"]["token_endpoint"] == server.mtls_token_endpoint
    assert {"tls_client_auth", "private_key_jwt"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert meta["tls_client_certificate_bound_access_tokens"] is True
    assert "client_credentials" in meta["grant_types_supported"]


def test_tls_client_auth_issues_bound_jwt(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path
) -> None:
    server = clean_auth_server
    client_id = _unique("tls")
    cert = test_pki.client_certificate(client_id, organization="Acme, Inc.", country="BR")
    server.register_tls_client(client_id, cert, token_ttl=123)

    with _client(server, cert, tmp_path) as http:
        response = http.post(
            server.mtls_token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "scope": "directory:software",
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 123
    assert body["scope"] == "directory:software"
    claims = _claims(server, body["access_token"])
    assert claims["cnf"]["x5t#S256"] == cert.x5t_s256
    assert claims["client_id"] == client_id
    assert claims["exp"] - claims["iat"] == 123
    assert server.stats()["issued_by_client"] == {client_id: 1}


def test_private_key_jwt_unbound_and_bound(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path
) -> None:
    server = clean_auth_server
    key = test_pki.signing_key("rsa")

    unbound = _unique("pkjwt")
    server.register_private_key_jwt_client(unbound, key, bound=False)
    with _client(server) as http:
        response = http.post(
            server.token_endpoint, data=_assertion_form(key, unbound, server.issuer)
        )
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["expires_in"] == 300  # server default
    assert "cnf" not in _claims(server, token["access_token"])

    bound = _unique("pkjwt-bound")
    server.register_private_key_jwt_client(bound, key, bound=True)
    transport = test_pki.client_certificate(bound, key_type="ec")
    with _client(server, transport, tmp_path) as http:
        response = http.post(
            server.mtls_token_endpoint, data=_assertion_form(key, bound, server.issuer)
        )
    assert response.status_code == 200, response.text
    assert _claims(server, response.json()["access_token"])["cnf"]["x5t#S256"] == transport.x5t_s256

    # A bound client without a transport certificate cannot get a token.
    with _client(server) as http:
        response = http.post(server.token_endpoint, data=_assertion_form(key, bound, server.issuer))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_fapi2_client_assertion_audience_must_be_issuer(
    clean_auth_server: AuthServer, test_pki: TestPKI
) -> None:
    server = clean_auth_server
    key = test_pki.signing_key("ec")
    plain, fapi = _unique("plain"), _unique("fapi2")
    server.register_private_key_jwt_client(plain, key.public_jwk(), bound=False)
    server.register_private_key_jwt_client(fapi, key.public_jwk(), bound=False, fapi_profile="2.0")

    def post(client_id: str, aud: str | list[str]) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": key.client_assertion(client_id, aud),
        }
        with _client(server) as http:
            return http.post(server.token_endpoint, data=form)

    assert post(plain, server.token_endpoint).status_code == 200
    assert post(plain, [server.issuer, "https://other"]).status_code == 200
    assert post(fapi, server.issuer).status_code == 200
    for aud in (server.token_endpoint, [server.issuer]):
        response = post(fapi, aud)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"


def test_wrong_certificate_is_invalid_client(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path
) -> None:
    server = clean_auth_server
    client_id = _unique("tls")
    right = test_pki.client_certificate(client_id)
    server.register_tls_client(client_id, right)
    other_subject = test_pki.client_certificate(_unique("someone-else"))
    untrusted_same_subject = TestPKI(tmp_path / "rogue-ca").client_certificate(client_id)

    for cert in (other_subject, untrusted_same_subject):
        with _client(server, cert, tmp_path) as http:
            response = http.post(
                server.mtls_token_endpoint,
                data={"grant_type": "client_credentials", "client_id": client_id},
            )
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"


def test_unknown_scope_is_invalid_scope(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path
) -> None:
    server = clean_auth_server
    client_id = _unique("tls")
    cert = test_pki.client_certificate(client_id)
    server.register_tls_client(client_id, cert)
    with _client(server, cert, tmp_path) as http:
        response = http.post(
            server.mtls_token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "scope": "no-such-scope",
            },
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_503_fault_with_retry_after_is_counted_and_cleared(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path
) -> None:
    server = clean_auth_server
    client_id, bystander = _unique("tls"), _unique("tls")
    cert = test_pki.client_certificate(client_id)
    server.register_tls_client(client_id, cert)
    form = {"grant_type": "client_credentials", "client_id": client_id}

    with _client(server, cert, tmp_path) as http:
        server.set_fault(mode="status", status=503, retry_after="5", count=1)
        first = http.post(server.mtls_token_endpoint, data=form)
        second = http.post(server.mtls_token_endpoint, data=form)

        server.set_fault(mode="status", status=503, client_id=bystander)
        scoped_elsewhere = http.post(server.mtls_token_endpoint, data=form)
        server.set_fault(mode="status", status=503)
        persistent = http.post(server.mtls_token_endpoint, data=form)
        server.clear_faults()
        after_clear = http.post(server.mtls_token_endpoint, data=form)

    assert first.status_code == 503
    assert first.headers["retry-after"] == "5"
    assert first.json()["error"] == "temporarily_unavailable"
    assert second.status_code == 200
    assert scoped_elsewhere.status_code == 200
    assert persistent.status_code == 503
    assert after_clear.status_code == 200

    stats = server.stats()
    assert stats["token_requests_total"] == 5
    assert stats["token_requests_by_client"] == {client_id: 5}
    assert stats["faulted_total"] == 2
    assert stats["issued_total"] == 3


def test_protected_resource_accepts_a_bound_token_only_with_its_certificate(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path
) -> None:
    server = clean_auth_server
    client_id = _unique("tls")
    cert = test_pki.client_certificate(client_id)
    same_subject_new_key = test_pki.client_certificate(client_id)
    server.register_tls_client(client_id, cert)
    with _client(server, cert, tmp_path) as http:
        token = http.post(
            server.mtls_token_endpoint,
            data={"grant_type": "client_credentials", "client_id": client_id},
        ).json()["access_token"]
        accepted = http.get(
            server.protected_resource_url, headers={"Authorization": f"Bearer {token}"}
        )
        unauthenticated = http.get(server.protected_resource_url)
    with _client(server, same_subject_new_key, tmp_path) as http:
        other_certificate = http.get(
            server.protected_resource_url, headers={"Authorization": f"Bearer {token}"}
        )

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["client_id"] == client_id
    assert accepted.json()["x5t#S256"] == cert.x5t_s256
    assert unauthenticated.status_code == 401
    assert other_certificate.status_code == 401
    assert other_certificate.json()["error_description"] == "token is bound to another certificate"
    stats = server.stats()
    assert stats["resource_accepted_total"] == 1
    assert stats["resource_rejected_by_reason"] == {
        "no bearer token": 1,
        "token is bound to another certificate": 1,
    }
