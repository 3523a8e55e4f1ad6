"""The bulkhead per server origin: a server that does not answer holds its own connections only,
and requests to every other server go on, with the same transport certificate and CA bundle."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import ConnectionFailure
from raidiam_operator.protocol.client import HttpSettings, TokenClient, origin_of
from raidiam_operator.protocol.credentials import TransportCertificate, load_transport_certificate
from raidiam_operator.protocol.request import TokenRequest

TOKEN = b'{"access_token": "t", "token_type": "Bearer", "expires_in": 300}'


@pytest.fixture
def transport(pki: TestPKI) -> TransportCertificate:
    issued = pki.client_certificate("shared-by-every-server")
    return load_transport_certificate(issued.cert_pem, issued.key_pem, now=datetime.now(UTC))


def _request(
    transport: TransportCertificate, issuer: str, *, ca_bundle: bytes, token_endpoint: str | None
) -> TokenRequest:
    return TokenRequest(
        issuer=issuer,
        client_id="c",
        auth_method="tls_client_auth",
        transport=transport,
        token_endpoint=token_endpoint,
        ca_bundle=ca_bundle,
    )


class Servers:
    """slow.example never answers (until released); any other host answers at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.in_flight[host] += 1
        self.most[host] = max(self.most[host], self.in_flight[host])
        try:
            if host == "slow.example":
                await self.release.wait()
            if request.url.path.endswith("openid-configuration"):
                issuer = str(request.url).removesuffix("/.well-known/openid-configuration")
                return httpx.Response(200, json={"issuer": issuer, "token_endpoint": f"{issuer}/t"})
            return httpx.Response(200, content=TOKEN)
        finally:
            self.in_flight[host] -= 1


async def test_a_server_that_never_answers_holds_its_own_connections_and_no_one_elses(
    pki: TestPKI, transport: TransportCertificate
) -> None:
    """Ten issuers on one silent host, three connections per origin: three requests wait on
    it, the rest wait for one of those three and say so; a new issuer on another host, with the
    same certificate and CA bundle, is discovered and answers meanwhile."""
    servers = Servers()
    client = TokenClient(
        HttpSettings(timeout=1, max_connections_per_origin=3),
        transport=httpx.MockTransport(servers),
    )
    slow = [
        asyncio.create_task(
            client.fetch_token(
                _request(
                    transport,
                    f"https://slow.example/t{i}",
                    ca_bundle=pki.ca_pem,
                    token_endpoint=None,
                )
            )
        )
        for i in range(10)
    ]
    await asyncio.sleep(0.1)

    token = await asyncio.wait_for(
        client.fetch_token(
            _request(transport, "https://good.example", ca_bundle=pki.ca_pem, token_endpoint=None)
        ),
        timeout=0.5,
    )
    await asyncio.sleep(1.2)  # the seven that waited have given up by now
    servers.release.set()
    outcomes = await asyncio.gather(*slow, return_exceptions=True)
    await client.aclose()

    assert token.access_token == "t"
    assert servers.most["slow.example"] == 3
    refused = [o for o in outcomes if isinstance(o, ConnectionFailure)]
    assert len(refused) == 7, outcomes
    assert refused[0].kind == "timeout"
    assert "waited 1 s for one of the 3 connections to https://slow.example:443, all busy" in (
        refused[0].message
    )
    assert refused[0].message.startswith("the discovery request to https://slow.example/t")


async def test_the_wait_for_a_busy_servers_connection_counts_against_the_attempt_deadline(
    pki: TestPKI, transport: TransportCertificate
) -> None:
    servers = Servers()
    client = TokenClient(
        HttpSettings(timeout=10, attempt_deadline=0.5, max_connections_per_origin=1),
        transport=httpx.MockTransport(servers),
    )
    request = _request(
        transport,
        "https://slow.example",
        ca_bundle=pki.ca_pem,
        token_endpoint="https://slow.example/token",
    )
    holder = asyncio.create_task(client.fetch_token(request))
    await asyncio.sleep(0.05)

    with pytest.raises(ConnectionFailure, match="took longer than 0 s"):
        await asyncio.wait_for(client.fetch_token(request), timeout=2)
    holder.cancel()
    await asyncio.gather(holder, return_exceptions=True)
    await client.aclose()


async def test_a_connection_to_a_server_is_given_back_when_its_request_ends(
    pki: TestPKI, transport: TransportCertificate
) -> None:
    servers = Servers()
    client = TokenClient(
        HttpSettings(max_connections_per_origin=1), transport=httpx.MockTransport(servers)
    )
    request = _request(
        transport,
        "https://good.example",
        ca_bundle=pki.ca_pem,
        token_endpoint="https://good.example/t",
    )

    for _ in range(3):
        await asyncio.wait_for(client.fetch_token(request), timeout=1)
    await client.aclose()

    assert servers.most["good.example"] == 1
    assert all(share.users == 0 for share in client._origins.values())


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Auth.Example/token", "https://auth.example:443"),
        ("https://auth.example:443/a", "https://auth.example:443"),
        ("https://auth.example:8443/a?b", "https://auth.example:8443"),
        ("https://[::1]:8443/token", "https://[::1]:8443"),
        ("https://auth.example:bad/", "https://auth.example:bad/"),
    ],
)
def test_an_origin_is_scheme_host_and_port(url: str, origin: str) -> None:
    assert origin_of(url) == origin


# -- with real connection pools ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def _tls_server(pki: TestPKI, directory: Path, *, answers: bool) -> AsyncIterator[int]:
    """A TLS server on loopback that answers every request with a token, or never answers."""
    cert, key = pki.server_certificate(("127.0.0.1",)).write(directory, f"server-{answers}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    never = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if not answers:
                    await never.wait()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(TOKEN), TOKEN)
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        never.set()


async def test_a_silent_server_leaves_the_pool_of_another_server_free(
    pki: TestPKI, transport: TransportCertificate, tmp_path: Path
) -> None:
    """Real sockets and httpx's own pools: two connections per origin, both held by a server
    that never answers; a token request to another port with the same certificate and CA
    bundle gets its token at once."""
    client = TokenClient(HttpSettings(timeout=1, max_connections_per_origin=2))
    async with (
        _tls_server(pki, tmp_path, answers=False) as silent,
        _tls_server(pki, tmp_path, answers=True) as healthy,
    ):

        def request(port: int) -> TokenRequest:
            endpoint = f"https://127.0.0.1:{port}/token"
            return _request(transport, endpoint, ca_bundle=pki.ca_pem, token_endpoint=endpoint)

        stuck = [asyncio.create_task(client.fetch_token(request(silent))) for _ in range(4)]
        await asyncio.sleep(0.3)
        token = await asyncio.wait_for(client.fetch_token(request(healthy)), timeout=0.8)
        outcomes = await asyncio.gather(*stuck, return_exceptions=True)
    await client.aclose()

    assert token.access_token == "t"
    messages = sorted(str(o) for o in outcomes)
    assert all(isinstance(o, ConnectionFailure) for o in outcomes), outcomes
    assert sum("timed out after 1 s" in m for m in messages) == 2, messages
    assert sum("for one of the 2 connections to https://127.0.0.1:" in m for m in messages) == 2
