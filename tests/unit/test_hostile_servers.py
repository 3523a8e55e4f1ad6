"""A server that trickles, inflates or rambles costs one attempt's deadline and one bounded
message, never the operator's memory or another client's time. (The real slow server is in
tests/e2e/test_tenant_safety.py; these pin the mechanics.)"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import (
    ConfigurationError,
    ConnectionFailure,
    InvalidTokenResponse,
    ServerMetadataError,
)
from raidiam_operator.core.spec import parse_spec, reserved_key
from raidiam_operator.core.texts import server_text
from raidiam_operator.protocol.client import HttpSettings, TokenClient
from raidiam_operator.protocol.credentials import load_transport_certificate
from raidiam_operator.protocol.metadata import parse_metadata
from raidiam_operator.protocol.request import TokenRequest
from raidiam_operator.protocol.tokens import classify_error_response
from raidiam_operator.refresh.inputs import (
    MAX_CA_BUNDLE_BYTES,
    MAX_PEM_BYTES,
    config_map_value,
    secret_value,
)

ISSUER = "https://slow.example"
DISCOVERY = {
    "issuer": ISSUER,
    "token_endpoint": f"{ISSUER}/token",
    "mtls_endpoint_aliases": {"token_endpoint": f"{ISSUER}/mtls/token"},
}


@pytest.fixture
def tls_request(pki: TestPKI) -> TokenRequest:
    issued = pki.client_certificate("hostile")
    return TokenRequest(
        issuer=ISSUER,
        client_id="client-1",
        auth_method="tls_client_auth",
        transport=load_transport_certificate(
            issued.cert_pem, issued.key_pem, now=datetime.now(UTC)
        ),
    )


async def _streamed(body: bytes) -> AsyncIterator[bytes]:
    """A body that arrives over the wire, as a real server's does (not pre-read by httpx)."""
    for start in range(0, len(body), 16384):
        yield body[start : start + 16384]


async def _trickle() -> AsyncIterator[bytes]:
    while True:  # one byte at a time, each well within any per-read timeout
        yield b" "
        await asyncio.sleep(0.05)


async def test_a_server_that_trickles_its_answer_costs_one_attempt_deadline_not_more(
    tls_request: TokenRequest,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_trickle())

    client = TokenClient(
        HttpSettings(timeout=10, attempt_deadline=0.5), transport=httpx.MockTransport(handler)
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailure) as caught:
        await client.fetch_token(tls_request)

    assert time.monotonic() - started < 2
    assert caught.value.kind == "timeout"
    assert caught.value.message == (
        "getting a token from https://slow.example took longer than 0 s (discovery and token "
        "request together); the server is too slow or trickles its answer"
    )


def test_the_attempt_deadline_defaults_to_30_seconds() -> None:
    assert HttpSettings().attempt_deadline == 30.0


async def test_every_request_asks_for_an_uncompressed_body(tls_request: TokenRequest) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding"))
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=DISCOVERY)
        return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer"})

    await TokenClient(transport=httpx.MockTransport(handler)).fetch_token(tls_request)

    assert seen == ["identity", "identity"]


async def test_a_gzip_bomb_is_refused_without_inflating_it(tls_request: TokenRequest) -> None:
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024))  # 64 MiB of spaces, ~64 KiB on the wire

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=DISCOVERY)
        return httpx.Response(200, content=_streamed(bomb), headers={"Content-Encoding": "gzip"})

    with pytest.raises(InvalidTokenResponse, match="larger than the 1048576 bytes we accept"):
        await TokenClient(transport=httpx.MockTransport(handler)).fetch_token(tls_request)


async def test_a_server_that_compresses_anyway_is_still_understood(
    tls_request: TokenRequest,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json=DISCOVERY)
        body = json.dumps({"access_token": "t", "token_type": "Bearer", "expires_in": 60})
        return httpx.Response(
            200,
            content=_streamed(gzip.compress(body.encode())),
            headers={"Content-Encoding": "gzip"},
        )

    token = await TokenClient(transport=httpx.MockTransport(handler)).fetch_token(tls_request)

    assert token.expires_in == 60


async def test_clients_waiting_for_one_failing_discovery_share_its_failure(
    pki: TestPKI,
) -> None:
    fetches = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.2)
        return httpx.Response(503)

    client = TokenClient(transport=httpx.MockTransport(handler))
    issued = pki.client_certificate("waiters")
    transport = load_transport_certificate(issued.cert_pem, issued.key_pem, now=datetime.now(UTC))
    requests = [
        TokenRequest(
            issuer=ISSUER, client_id=f"c{i}", auth_method="tls_client_auth", transport=transport
        )
        for i in range(20)
    ]
    results = await asyncio.gather(
        *(client.fetch_token(r) for r in requests), return_exceptions=True
    )

    assert all("answered HTTP 503" in str(r) for r in results)
    assert fetches == 1


def test_a_huge_issuer_in_discovery_is_quoted_short() -> None:
    document = {**DISCOVERY, "issuer": "https://evil.example/" + "a" * 500_000}

    with pytest.raises(ServerMetadataError) as caught:
        parse_metadata(document, expected_issuer=ISSUER)

    assert caught.value.reason == "IssuerMismatch"
    assert len(caught.value.message) < 400
    assert "names issuer 'https://evil.example/aaaa" in caught.value.message


def test_an_endpoint_url_of_a_megabyte_is_refused() -> None:
    document = {**DISCOVERY, "token_endpoint": f"{ISSUER}/" + "t" * 1_000_000}

    with pytest.raises(ServerMetadataError, match="token_endpoint of 1000021 characters"):
        parse_metadata(document, expected_issuer=ISSUER)


def test_a_long_error_description_is_one_line_cut_at_a_word() -> None:
    description = "the client\nassertion\x1b[31m audience is wrong: " + "word " * 400
    error = classify_error_response(
        400,
        {},
        json.dumps({"error": "invalid_client", "error_description": description}).encode(),
        now=datetime.now(UTC),
    )

    text = error.message
    assert "\n" not in text
    assert "\x1b" not in text
    assert "the client assertion [31m audience is wrong: word word" in text
    assert "word…" in text


@pytest.mark.parametrize(
    ("value", "limit", "shown"),
    [
        ("short", 10, "short"),
        ("two\r\nlines\tand\x00nul", 40, "two lines and nul"),
        ("alpha beta gamma delta", 14, "alpha beta…"),
        ("a" * 50, 10, "a" * 10 + "…"),
        ({"nested": [1, 2]}, 40, '{"nested": [1, 2]}'),
        ("ends with a full stop. And more words", 22, "ends with a full stop…"),
    ],
)
def test_server_text_is_one_printable_line_within_its_limit(
    value: object, limit: int, shown: str
) -> None:
    assert server_text(value, limit=limit) == shown


# -- what a tenant's own objects may hand the operator -----------------------------------------


def _secret(**data: bytes) -> dict[str, object]:
    return {"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def test_a_certificate_of_a_megabyte_gets_input_too_large_before_it_is_parsed() -> None:
    secret = _secret(**{"tls.crt": b"-----BEGIN CERTIFICATE-----\n" + b"A" * 1024 * 1024})

    with pytest.raises(ConfigurationError) as caught:
        secret_value(
            secret,
            namespace="ns",
            secret_name="transport",
            key="tls.crt",
            field_path="spec.transportCertificate",
        )

    assert caught.value.reason == "InputTooLarge"
    assert caught.value.message == (
        "Secret ns/transport key 'tls.crt' (from spec.transportCertificate) holds 1024 KiB, more "
        "than the 64 KiB accepted; a certificate chain or private key in PEM is a few KiB; check "
        "that the key names the PEM and not something else"
    )


def test_a_ca_bundle_of_a_megabyte_gets_input_too_large() -> None:
    config_map = {"data": {"ca.crt": "x" * 1024 * 1024}}

    with pytest.raises(ConfigurationError) as caught:
        config_map_value(config_map, namespace="ns", name="cas", key="ca.crt")

    assert caught.value.reason == "InputTooLarge"
    assert "ConfigMap ns/cas key 'ca.crt' (from spec.caBundle) holds 1024 KiB" in str(caught.value)
    assert "more than the 512 KiB accepted" in str(caught.value)


def test_inputs_within_the_limits_are_read() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n" + b"A" * (MAX_PEM_BYTES - 100)
    assert secret_value(_secret(c=pem), namespace="n", secret_name="s", key="c", field_path="f")
    assert config_map_value(
        {"data": {"ca.crt": "x" * MAX_CA_BUNDLE_BYTES}}, namespace="n", name="c", key="ca.crt"
    )


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        ("kubernetes.io/metadata.name", True),
        ("node.kubernetes.io/pool", True),
        ("k8s.io/x", True),
        ("kubectl.kubernetes.io/last-applied-configuration", True),
        ("raidiam.io/client", True),
        ("app.kubernetes.io/managed-by", True),
        ("app.kubernetes.io/part-of", False),
        ("example.com/team", False),
        ("team", False),
        ("notkubernetes.io/x", False),
    ],
)
def test_reserved_label_and_annotation_keys(key: str, reserved: bool) -> None:
    assert reserved_key(key) is reserved


def test_a_reserved_label_in_an_object_older_than_the_crd_rule_gets_invalid_token_secret() -> None:
    spec = {
        "issuer": "https://auth.example",
        "clientId": "c1",
        "authMethod": "tls_client_auth",
        "transportCertificate": {"secretName": "transport"},
        "tokenSecret": {"labels": {"raidiam.io/client": "other"}},
    }

    with pytest.raises(ConfigurationError) as caught:
        parse_spec(spec, name="x")

    assert caught.value.reason == "InvalidTokenSecret"
    assert "'raidiam.io/client' is reserved" in caught.value.message
