"""The token flow against node-oidc-provider configured like Raidiam Connect."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    ServerMetadataError,
    ServerUnavailable,
)
from raidiam_operator.core.rules import AssertionAudience
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.credentials import load_signing_key, load_transport_certificate
from raidiam_operator.protocol.request import TokenRequest

from .conftest import Files, jwt_request, tls_request

pytestmark = pytest.mark.authserver


def _cnf(token: str) -> object:
    return jwt.decode(token, options={"verify_signature": False}).get("cnf", {}).get("x5t#S256")


async def test_tls_client_auth_gets_a_token_bound_to_the_transport_certificate(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    async with TokenClient() as client:
        token = await client.fetch_token(tls_request(clean_auth_server, tls_client))

    assert token.token_endpoint == clean_auth_server.mtls_token_endpoint
    assert _cnf(token.access_token) == token.certificate_thumbprint == tls_client.issued.x5t_s256  # type: ignore[union-attr]
    assert token.scope == "directory:software"
    assert token.expires_in == 300


async def test_private_key_jwt_with_a_transport_certificate_gets_a_bound_token(
    clean_auth_server: AuthServer, jwt_client: Files
) -> None:
    async with TokenClient() as client:
        token = await client.fetch_token(jwt_request(clean_auth_server, jwt_client))

    assert token.token_endpoint == clean_auth_server.mtls_token_endpoint
    assert _cnf(token.access_token) == jwt_client.issued.x5t_s256  # type: ignore[union-attr]


async def test_private_key_jwt_without_certificate_uses_the_plain_endpoint(
    clean_auth_server: AuthServer, test_pki: TestPKI, unique: Callable[[str], str]
) -> None:
    client_id = unique("unbound")
    signing = test_pki.signing_key("ec")
    clean_auth_server.register_private_key_jwt_client(
        client_id, {"keys": [signing.public_jwk("k")]}, bound=False
    )
    request = TokenRequest(
        issuer=clean_auth_server.issuer,
        client_id=client_id,
        auth_method="private_key_jwt",
        signing_key=load_signing_key(signing.private_pem, key_id="k", algorithm=None),
        ca_bundle=clean_auth_server.ca_path.read_bytes(),
    )

    async with TokenClient() as client:
        token = await client.fetch_token(request)

    assert token.token_endpoint == clean_auth_server.token_endpoint
    assert _cnf(token.access_token) is None


@pytest.mark.parametrize("audience", ["issuer", "tokenEndpoint"])
async def test_both_assertion_audiences_work_on_the_default_profile(
    clean_auth_server: AuthServer, jwt_client: Files, audience: AssertionAudience
) -> None:
    async with TokenClient() as client:
        token = await client.fetch_token(
            jwt_request(clean_auth_server, jwt_client, audience=audience)
        )

    assert token.access_token


async def test_fapi2_server_accepts_only_the_issuer_as_assertion_audience(
    clean_auth_server: AuthServer, test_pki: TestPKI, unique: Callable[[str], str]
) -> None:
    client_id = unique("fapi2")
    signing = test_pki.signing_key("ec")
    clean_auth_server.register_private_key_jwt_client(
        client_id, {"keys": [signing.public_jwk("k")]}, bound=False, fapi_profile="2.0"
    )

    def request(audience: AssertionAudience) -> TokenRequest:
        return TokenRequest(
            issuer=clean_auth_server.issuer,
            client_id=client_id,
            auth_method="private_key_jwt",
            signing_key=load_signing_key(signing.private_pem, key_id="k", algorithm=None),
            assertion_audience=audience,
            ca_bundle=clean_auth_server.ca_path.read_bytes(),
        )

    async with TokenClient() as client:
        assert (await client.fetch_token(request("issuer"))).access_token
        with pytest.raises(AuthorizationServerRejection) as caught:
            await client.fetch_token(request("tokenEndpoint"))

    assert caught.value.error == "invalid_client"


async def test_unknown_client_is_rejected_with_invalid_client(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    async with TokenClient() as client:
        with pytest.raises(AuthorizationServerRejection) as caught:
            await client.fetch_token(tls_request(clean_auth_server, tls_client, client_id="nobody"))

    assert caught.value.error == "invalid_client"
    assert "registered" in caught.value.message


async def test_a_certificate_other_than_the_registered_one_is_rejected(
    clean_auth_server: AuthServer, tls_client: Files, test_pki: TestPKI
) -> None:
    stranger = test_pki.client_certificate("someone-else")
    transport = load_transport_certificate(
        stranger.cert_pem, stranger.key_pem, now=datetime.now(UTC)
    )

    async with TokenClient() as client:
        with pytest.raises(AuthorizationServerRejection) as caught:
            await client.fetch_token(
                tls_request(clean_auth_server, tls_client, transport=transport)
            )

    assert caught.value.error == "invalid_client"


async def test_a_signing_key_other_than_the_registered_one_is_rejected(
    clean_auth_server: AuthServer, jwt_client: Files, test_pki: TestPKI
) -> None:
    wrong = load_signing_key(
        test_pki.signing_key("rsa").private_pem, key_id="sig-1", algorithm=None
    )

    async with TokenClient() as client:
        with pytest.raises(AuthorizationServerRejection) as caught:
            await client.fetch_token(jwt_request(clean_auth_server, jwt_client, signing_key=wrong))

    assert caught.value.error == "invalid_client"


async def test_a_scope_the_client_may_not_have_is_rejected_with_invalid_scope(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    async with TokenClient() as client:
        with pytest.raises(AuthorizationServerRejection) as caught:
            await client.fetch_token(
                tls_request(clean_auth_server, tls_client, scope="payments:everything")
            )

    assert caught.value.error == "invalid_scope"


async def test_a_server_certificate_from_an_untrusted_ca_is_refused(
    clean_auth_server: AuthServer, tls_client: Files, tmp_path: Path
) -> None:
    other_ca = TestPKI(tmp_path / "other").ca_pem

    async with TokenClient() as client:
        with pytest.raises(ConfigurationError) as caught:
            await client.fetch_token(tls_request(clean_auth_server, tls_client, ca_bundle=other_ca))

    assert caught.value.reason == "UntrustedServer"
    assert "not trusted" in caught.value.message


async def test_system_trust_does_not_trust_the_test_server(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    async with TokenClient() as client:
        with pytest.raises(ConfigurationError, match="not trusted"):
            await client.fetch_token(tls_request(clean_auth_server, tls_client, ca_bundle=None))


async def test_discovery_naming_another_issuer_is_refused(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    clean_auth_server.set_fault(mode="discovery_issuer", issuer="https://impostor.example")

    async with TokenClient() as client:
        with pytest.raises(ServerMetadataError) as caught:
            await client.fetch_token(tls_request(clean_auth_server, tls_client))

    assert caught.value.reason == "IssuerMismatch"
    assert "https://impostor.example" in caught.value.message
    assert clean_auth_server.stats()["token_requests_total"] == 0


async def test_discovery_without_mtls_aliases_sends_to_the_token_endpoint(
    clean_auth_server: AuthServer,
    jwt_client: Files,
    test_pki: TestPKI,
    unique: Callable[[str], str],
) -> None:
    clean_auth_server.set_fault(mode="no_mtls_aliases")
    client_id = unique("noalias")
    signing = test_pki.signing_key("ec")
    clean_auth_server.register_private_key_jwt_client(
        client_id, {"keys": [signing.public_jwk("k")]}, bound=False
    )
    request = jwt_request(
        clean_auth_server,
        jwt_client,
        client_id=client_id,
        signing_key=load_signing_key(signing.private_pem, key_id="k", algorithm=None),
    )

    async with TokenClient() as client:
        endpoint = await client.token_endpoint(request)

    assert endpoint == clean_auth_server.token_endpoint


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"), [(503, "7", 7.0), (429, "120", 120.0)]
)
async def test_503_and_429_are_transient_and_carry_retry_after(
    clean_auth_server: AuthServer, tls_client: Files, status: int, retry_after: str, expected: float
) -> None:
    clean_auth_server.set_fault(mode="status", status=status, retry_after=retry_after)

    async with TokenClient() as client:
        with pytest.raises(ServerUnavailable) as caught:
            await client.fetch_token(tls_request(clean_auth_server, tls_client))

    assert caught.value.retry_after == expected
    assert caught.value.status_code == status


async def test_http_date_retry_after_is_understood(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    from datetime import timedelta
    from email.utils import format_datetime

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    clean_auth_server.set_fault(mode="status", status=429, retry_after=when)

    async with TokenClient() as client:
        with pytest.raises(ServerUnavailable) as caught:
            await client.fetch_token(tls_request(clean_auth_server, tls_client))

    assert caught.value.retry_after is not None
    assert 80 <= caught.value.retry_after <= 91


async def test_one_pooled_connection_serves_repeated_refreshes(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    request = tls_request(clean_auth_server, tls_client)

    async with TokenClient() as client:
        tokens = [await client.fetch_token(request) for _ in range(3)]
        pooled = len(client._clients)

    assert len({t.access_token for t in tokens}) == 3
    assert pooled == 2  # one for discovery (no certificate), one for this certificate


async def test_a_rejection_behind_missing_mtls_aliases_says_so(
    clean_auth_server: AuthServer, tls_client: Files
) -> None:
    clean_auth_server.set_fault(mode="no_mtls_aliases")

    async with TokenClient() as client:
        with pytest.raises(AuthorizationServerRejection) as caught:
            await client.fetch_token(tls_request(clean_auth_server, tls_client))

    assert caught.value.error == "invalid_client"
    assert "no mtls_endpoint_aliases" in caught.value.message
    assert "set spec.tokenEndpoint" in str(caught.value)
