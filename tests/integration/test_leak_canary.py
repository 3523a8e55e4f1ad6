"""Run the token flows with DEBUG logging and prove no secret material reaches logs or errors."""

from __future__ import annotations

import logging
import re

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_operator.core.errors import RaidiamOperatorError
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.request import TokenRequest

from .conftest import Files, jwt_request, tls_request

pytestmark = pytest.mark.authserver

JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}")


def _key_fragments(pem: bytes) -> list[str]:
    """The base64 lines of a PEM key: any one of them in a log is a leak."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


async def test_no_token_assertion_or_key_reaches_logs_or_exception_texts(
    clean_auth_server: AuthServer,
    tls_client: Files,
    jwt_client: Files,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert tls_client.issued
    assert jwt_client.issued
    assert jwt_client.signing
    tls = tls_request(clean_auth_server, tls_client)
    signed = jwt_request(clean_auth_server, jwt_client)
    tokens: list[str] = []
    errors: list[str] = []
    async with TokenClient() as client:
        for request in (tls, signed):
            tokens.append((await client.fetch_token(request)).access_token)
        # Failures too: their messages are where a careless implementation would quote bodies.
        for request in (
            TokenRequest(**{**signed.__dict__, "client_id": "unknown-client"}),
            TokenRequest(**{**tls.__dict__, "scope": "not-a-scope"}),
        ):
            try:
                await client.fetch_token(request)
            except RaidiamOperatorError as error:
                errors.append(f"{error!s} {error!r}")
        clean_auth_server.set_fault(
            mode="response",
            status=200,
            body='{"access_token": "eyJhbGciOi.leak.me", "token_type": "mac"}',
        )
        try:
            await client.fetch_token(tls)
        except RaidiamOperatorError as error:
            errors.append(f"{error!s} {error!r}")

    assert len(errors) == 3
    haystack = caplog.text + "\n".join(errors) + repr(tls) + repr(signed)
    for token in tokens:
        assert token not in haystack
    assert not JWT.search(haystack), "a JWT (token or client assertion) reached a log or error"
    assert "leak.me" not in haystack
    for pem in (
        tls_client.issued.key_pem,
        jwt_client.issued.key_pem,
        jwt_client.signing.private_pem,
    ):
        for fragment in _key_fragments(pem):
            assert fragment not in haystack
    assert "request to" in caplog.text  # the flows were logged, just not their secrets
