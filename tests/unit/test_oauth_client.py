"""TokenClient over httpx.MockTransport: what goes on the wire, and how failures come back."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    ConnectionFailure,
    InvalidTokenResponse,
    ServerMetadataError,
    ServerUnavailable,
)
from raidiam_operator.protocol.client import HttpSettings, TokenClient
from raidiam_operator.protocol.credentials import load_signing_key, load_transport_certificate
from raidiam_operator.protocol.request import TokenRequest

ISSUER = "https://auth.example"
DISCOVERY = {
    "issuer": ISSUER,
    "token_endpoint": "https://auth.example/token",
    "mtls_endpoint_aliases": {"token_endpoint": "https://matls-auth.example/token"},
}
Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Records requests and answers discovery and token requests like a real server."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.discovery: dict[str, object] = dict(DISCOVERY)
        self.discovery_status = 200
        self.token_response: Callable[[], httpx.Response] = lambda: httpx.Response(
            200, json={"access_token": "tok", "token_type": "Bearer", "expires_in": 300}
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(self.discovery_status, json=self.discovery)
        return self.token_response()

    def forms(self) -> list[dict[str, str]]:
        return [
            {k: v[0] for k, v in parse_qs(r.content.decode()).items()}
            for r in self.requests
            if r.method == "POST"
        ]

    def urls(self, method: str) -> list[str]:
        return [str(r.url) for r in self.requests if r.method == method]


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def client(server: Server) -> TokenClient:
    return TokenClient(transport=httpx.MockTransport(server))


@pytest.fixture
def tls_request(pki: TestPKI) -> TokenRequest:
    issued = pki.client_certificate("mock-tls")
    return TokenRequest(
        issuer=ISSUER,
        client_id="client-1",
        auth_method="tls_client_auth",
        transport=load_transport_certificate(
            issued.cert_pem, issued.key_pem, now=datetime.now(UTC)
        ),
        scope="directory:software",
    )


@pytest.fixture
def jwt_request(pki: TestPKI) -> TokenRequest:
    key = load_signing_key(pki.signing_key(key_type="ec").private_pem, key_id="k1", algorithm=None)
    return TokenRequest(
        issuer=ISSUER, client_id="client-2", auth_method="private_key_jwt", signing_key=key
    )


async def test_tls_client_auth_goes_to_the_mtls_alias_with_the_form(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    token = await client.fetch_token(tls_request)

    assert server.urls("POST") == ["https://matls-auth.example/token"]
    assert server.forms() == [
        {"grant_type": "client_credentials", "client_id": "client-1", "scope": "directory:software"}
    ]
    assert token.token_endpoint == "https://matls-auth.example/token"


async def test_an_opaque_token_is_unbound_unless_discovery_says_the_server_binds(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    token = await client.fetch_token(tls_request)

    assert (token.binding, token.certificate_thumbprint) == ("none", None)


async def test_an_opaque_token_from_a_server_that_binds_certificates_is_advertised(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.discovery["tls_client_certificate_bound_access_tokens"] = True

    token = await client.fetch_token(tls_request)

    assert token.binding == "advertised"
    assert token.certificate_thumbprint == tls_request.certificate_thumbprint


async def test_without_discovery_an_opaque_token_is_not_called_bound(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.discovery["tls_client_certificate_bound_access_tokens"] = True
    request = dataclasses.replace(tls_request, token_endpoint="https://matls-auth.example/token")

    token = await client.fetch_token(request)

    assert server.urls("GET") == []
    assert (token.binding, token.certificate_thumbprint) == ("none", None)


async def test_self_signed_tls_client_auth_takes_the_mtls_alias_like_tls_client_auth(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.discovery["token_endpoint_auth_methods_supported"] = ["self_signed_tls_client_auth"]
    request = dataclasses.replace(tls_request, auth_method="self_signed_tls_client_auth")

    await client.fetch_token(request)

    assert server.urls("POST") == ["https://matls-auth.example/token"]
    assert "client_assertion" not in server.forms()[0]


async def test_a_server_that_does_not_list_self_signed_tls_client_auth_is_refused_before_sending(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.discovery["token_endpoint_auth_methods_supported"] = ["tls_client_auth"]
    request = dataclasses.replace(tls_request, auth_method="self_signed_tls_client_auth")

    with pytest.raises(ServerMetadataError, match="does not support auth method self_signed"):
        await client.fetch_token(request)
    assert server.urls("POST") == []


async def test_private_key_jwt_without_certificate_uses_the_plain_endpoint(
    client: TokenClient, server: Server, jwt_request: TokenRequest
) -> None:
    await client.fetch_token(jwt_request)

    assert server.urls("POST") == ["https://auth.example/token"]


async def test_each_request_signs_a_new_assertion(
    client: TokenClient, server: Server, jwt_request: TokenRequest
) -> None:
    await client.fetch_token(jwt_request)
    await client.fetch_token(jwt_request)

    jtis = [
        jwt.decode(f["client_assertion"], options={"verify_signature": False})["jti"]
        for f in server.forms()
    ]
    assert len(set(jtis)) == 2


async def test_discovery_is_cached_per_issuer(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    for _ in range(3):
        await client.fetch_token(tls_request)

    assert len(server.urls("GET")) == 1


async def test_discovery_is_fetched_again_after_the_ttl(
    server: Server, tls_request: TokenRequest
) -> None:
    client = TokenClient(
        HttpSettings(discovery_ttl=timedelta(0)), transport=httpx.MockTransport(server)
    )

    await client.fetch_token(tls_request)
    await client.fetch_token(tls_request)

    assert len(server.urls("GET")) == 2


async def test_a_failed_discovery_is_not_cached(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.discovery_status = 503
    with pytest.raises(ServerUnavailable):
        await client.fetch_token(tls_request)

    server.discovery_status = 200
    await client.fetch_token(tls_request)

    assert len(server.urls("GET")) == 2


async def test_an_explicit_token_endpoint_skips_discovery(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    request = TokenRequest(
        **{**tls_request.__dict__, "token_endpoint": "https://direct.example/token"}
    )

    await client.fetch_token(request)

    assert server.urls("GET") == []
    assert server.urls("POST") == ["https://direct.example/token"]


async def test_issuer_mismatch_in_discovery_stops_before_the_token_request(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.discovery["issuer"] = "https://other.example"

    with pytest.raises(ServerMetadataError, match=re.escape("https://other.example")):
        await client.fetch_token(tls_request)

    assert server.urls("POST") == []


async def test_429_carries_retry_after(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.token_response = lambda: httpx.Response(429, headers={"Retry-After": "30"})

    with pytest.raises(ServerUnavailable) as caught:
        await client.fetch_token(tls_request)

    assert caught.value.retry_after == 30.0
    assert caught.value.kind == "rate_limited"


async def test_a_huge_body_is_refused_without_reading_it_all(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.token_response = lambda: httpx.Response(200, content=b"x" * (3 * 1024 * 1024))

    with pytest.raises(InvalidTokenResponse, match="more than the 1048576 we accept"):
        await client.fetch_token(tls_request)


async def test_a_huge_streamed_body_without_length_is_cut_off(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(64):
            yield b"x" * 65536

    server.token_response = lambda: httpx.Response(200, content=chunks())

    with pytest.raises(InvalidTokenResponse, match="larger than the 1048576 bytes"):
        await client.fetch_token(tls_request)


async def test_a_timeout_is_transient(tls_request: TokenRequest) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = TokenClient(transport=httpx.MockTransport(hang))

    with pytest.raises(ConnectionFailure) as caught:
        await client.fetch_token(tls_request)

    assert caught.value.kind == "timeout"


async def test_the_token_endpoint_never_sees_a_redirect_followed(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.token_response = lambda: httpx.Response(302, headers={"Location": "https://elsewhere/"})

    with pytest.raises(InvalidTokenResponse):
        await client.fetch_token(tls_request)

    assert server.urls("POST") == ["https://matls-auth.example/token"]


async def test_json_error_body_of_a_401_becomes_the_oauth_code(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.token_response = lambda: httpx.Response(
        401, content=json.dumps({"error": "invalid_client"}).encode()
    )

    with pytest.raises(Exception, match="invalid_client"):
        await client.fetch_token(tls_request)


def _invalid_client(description: str) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(
        401, json={"error": "invalid_client", "error_description": description}
    )


async def test_an_invalid_client_for_private_key_jwt_names_the_aud_sent_and_how_to_change_it(
    client: TokenClient, server: Server, jwt_request: TokenRequest
) -> None:
    server.token_response = _invalid_client("client authentication failed")

    with pytest.raises(AuthorizationServerRejection) as rejected:
        await client.fetch_token(jwt_request)

    message = rejected.value.message
    assert (
        "The client assertion's aud was the issuer https://auth.example; if the server wants its "
        "token endpoint https://auth.example/token there, set assertionAudience: tokenEndpoint in "
        "the RaidiamClient (--audience token_endpoint on the command line)."
    ) in message
    # The server did not speak of the audience: the usual causes come first.
    assert message.index("Check that the client id") < message.index("aud was the issuer")


async def test_when_the_server_speaks_of_the_audience_that_hint_comes_first(
    client: TokenClient, server: Server, jwt_request: TokenRequest
) -> None:
    server.token_response = _invalid_client("Invalid audience in client_assertion.")

    with pytest.raises(AuthorizationServerRejection) as rejected:
        await client.fetch_token(jwt_request)

    message = rejected.value.message
    assert message.index("aud was the issuer") < message.index("Check that the client id")
    assert "client_assertion. The client assertion's aud" in message


async def test_with_the_token_endpoint_as_aud_the_hint_offers_the_issuer(
    client: TokenClient, server: Server, jwt_request: TokenRequest
) -> None:
    server.token_response = _invalid_client("bad aud")
    request = dataclasses.replace(jwt_request, assertion_audience="tokenEndpoint")

    with pytest.raises(AuthorizationServerRejection) as rejected:
        await client.fetch_token(request)

    assert (
        "The client assertion's aud was the token endpoint https://auth.example/token; if the "
        "server wants its issuer https://auth.example there, set assertionAudience: issuer"
    ) in rejected.value.message


async def test_mutual_tls_clients_get_no_audience_hint(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.token_response = _invalid_client("audience unknown")

    with pytest.raises(AuthorizationServerRejection) as rejected:
        await client.fetch_token(tls_request)

    assert "assertionAudience" not in rejected.value.message


# -- where a request may go ----------------------------------------------------------------------


async def test_an_allowlisted_request_sends_nothing_to_a_discovered_endpoint_outside_it(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    request = dataclasses.replace(tls_request, endpoint_allowlist=(ISSUER,))

    with pytest.raises(ConfigurationError) as caught:
        await client.fetch_token(request)

    assert caught.value.reason == "DiscoveredEndpointNotAllowed"
    assert "gives mtls_endpoint_aliases.token_endpoint 'https://matls-auth.example/token'" in (
        caught.value.message
    )
    assert server.urls("POST") == []


async def test_a_refused_discovery_document_is_read_again_at_the_next_attempt(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    request = dataclasses.replace(tls_request, endpoint_allowlist=(ISSUER,))
    with pytest.raises(ConfigurationError):
        await client.fetch_token(request)

    # The server's operator moves the alias under the issuer.
    server.discovery["mtls_endpoint_aliases"] = {"token_endpoint": f"{ISSUER}/mtls/token"}
    await client.fetch_token(request)

    assert len(server.urls("GET")) == 2
    assert server.urls("POST") == [f"{ISSUER}/mtls/token"]


async def test_an_allowlist_that_covers_the_discovered_endpoint_lets_the_request_through(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    request = dataclasses.replace(
        tls_request, endpoint_allowlist=(ISSUER, "https://matls-auth.example")
    )

    await client.fetch_token(request)

    assert server.urls("POST") == ["https://matls-auth.example/token"]


async def test_a_discovered_endpoint_with_a_bidi_override_reaches_no_message_unfiltered(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    server.discovery["mtls_endpoint_aliases"] = {
        "token_endpoint": "https://matls-auth.example/\u202enekot\u0085[INFO] forged"
    }

    with pytest.raises(ServerMetadataError) as caught:
        await client.fetch_token(tls_request)

    message = caught.value.message
    assert (
        "gives mtls_endpoint_aliases.token_endpoint 'https://matls-auth.example/ nekot [INFO]"
        in (message)
    )
    assert "may hold only printable ASCII characters" in message
    assert message.isprintable()
    assert server.urls("POST") == []


async def test_a_host_that_is_no_valid_idna_name_is_a_configuration_error_naming_the_field(
    client: TokenClient, server: Server, tls_request: TokenRequest
) -> None:
    request = dataclasses.replace(tls_request, token_endpoint="https://xn--zz.example/token")

    with pytest.raises(ConfigurationError) as caught:
        await client.fetch_token(request)

    assert caught.value.reason == "InvalidURL"
    assert caught.value.message.startswith(
        "the token request was not sent: 'https://xn--zz.example/token' is not a URL that can "
        "be requested (Invalid A-label); fix the token endpoint (spec.tokenEndpoint, or the "
        "discovery document's token_endpoint or mtls_endpoint_aliases.token_endpoint)"
    )
    assert server.requests == []


@pytest.mark.parametrize(
    "refusal", [httpx.InvalidURL("Invalid port: ':x'"), httpx.UnsupportedProtocol("no https")]
)
async def test_a_url_the_http_library_refuses_is_a_configuration_error_not_a_connection_failure(
    tls_request: TokenRequest, refusal: Exception
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise refusal

    client = TokenClient(transport=httpx.MockTransport(refuse))

    with pytest.raises(ConfigurationError) as caught:
        await client.fetch_token(tls_request)

    assert caught.value.reason == "InvalidURL"
    assert caught.value.message == (
        "the discovery request was not sent: 'https://auth.example/.well-known/openid-"
        f"configuration' is not a URL that can be requested ({refusal}); fix the issuer"
    )
