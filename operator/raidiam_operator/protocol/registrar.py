"""Client registration at a data provider (RFC 7591 POST; RFC 7592 GET, PUT, DELETE) and the
directory's software statement, over the token client's pooled, bounded HTTP.

It imports no httpx: every request goes through `TokenClient.exchange`, which reads bodies with
the token request's bounds and translates transport failures into the error tree. Each call is
bounded as a whole by `HttpSettings.attempt_deadline`. The directory token, the initial access
token and the registration access token travel only in the Authorization header of the request
they are meant for, and reach no message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from raidiam_operator.core import rules
from raidiam_operator.core.errors import (
    ConnectionFailure,
    DirectoryTokenMissing,
    RegistrationRejected,
    SoftwareStatementUnavailable,
)
from raidiam_operator.core.registration import (
    ClientMetadata,
    Json,
    RegisteredDigest,
    Registration,
    RegistrationHandle,
    SoftwareStatement,
    assertion_url,
    registered_digest,
    registration_body,
    stale_software_statement_hint,
)
from raidiam_operator.core.times import Clock, utc_now
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.credentials import TransportCertificate
from raidiam_operator.protocol.registration import (
    parse_registration,
    read_software_statement,
    registration_endpoint_for,
    registration_error,
    server_urls,
    software_statement_error,
    subject_dn_for,
)

_JSON_BODY = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class RegistrationServer:
    """A data provider's authorization server, as registration reaches it."""

    issuer: str
    #: presented in the TLS handshake (the Brasil profile registers over mTLS only)
    transport: TransportCertificate | None
    ca_bundle: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        rules.check_https(self.issuer, field="the issuer")


@dataclass(frozen=True)
class SoftwareStatementSource:
    """Where the directory issues the software statement: its mTLS API, and the ids."""

    directory_api: str
    organisation_id: str
    software_statement_id: str
    transport: TransportCertificate
    ca_bundle: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        rules.check_https(self.directory_api, field="the directory API URL")

    @property
    def url(self) -> str:
        return assertion_url(self.directory_api, self.organisation_id, self.software_statement_id)


@dataclass(frozen=True)
class Submitted:
    """A registration created or updated, and the digest of what was sent for it: what a
    RaidiamRegistration's status records to decide the next step."""

    registration: Registration
    digest: RegisteredDigest


class Registrar:
    """Registers, reads, updates and deletes clients at data providers."""

    def __init__(self, client: TokenClient, *, clock: Clock = utc_now) -> None:
        self._client = client
        self._clock = clock

    async def software_statement(
        self, source: SoftwareStatementSource, *, directory_token: str
    ) -> SoftwareStatement:
        """A fresh SSA (the Brasil profile takes one issued at most 5 minutes before the
        registration request): GET over mTLS with a `directory:software` token."""
        if not directory_token.strip():
            raise DirectoryTokenMissing(
                "there is no directory token to fetch the software statement with; get a token "
                "with scope directory:software from the directory's authorization server"
            )
        url = source.url
        headers = {
            "Authorization": f"Bearer {directory_token.strip()}",
            "Accept": "application/jwt",
        }
        try:
            async with self._deadline(f"the software statement request to {url}"):
                status, answer_headers, body = await self._client.exchange(
                    "GET",
                    url,
                    transport=source.transport,
                    ca_bundle=source.ca_bundle,
                    what="software statement",
                    headers=headers,
                )
        except ConnectionFailure as failure:
            # The directory is out of reach: an outage, retried as one.
            raise SoftwareStatementUnavailable(failure.message, kind=failure.kind) from None
        if status != 200:
            raise software_statement_error(status, answer_headers, body, now=self._clock(), url=url)
        return read_software_statement(body, source=f"the directory at {url}")

    async def registration_endpoint(self, server: RegistrationServer) -> str:
        metadata = await self._client.discover(server.issuer, ca_bundle=server.ca_bundle)
        return registration_endpoint_for(metadata, mutual_tls=server.transport is not None)

    async def _server_urls(self, server: RegistrationServer) -> tuple[str, ...]:
        metadata = await self._client.discover(server.issuer, ca_bundle=server.ca_bundle)
        return server_urls(metadata)

    async def register(
        self,
        server: RegistrationServer,
        body: Mapping[str, Json],
        *,
        initial_access_token: str | None = None,
        endpoint: str | None = None,
    ) -> Registration:
        """RFC 7591 §3: POST the metadata (with the SSA in it) to the registration endpoint
        (`endpoint`, or the one discovery names)."""
        async with self._deadline(f"registering a client at {server.issuer}"):
            endpoint = endpoint or await self.registration_endpoint(server)
            urls = await self._server_urls(server)  # before the POST: nothing fails after it
            headers = dict(_JSON_BODY)
            if initial_access_token:
                headers["Authorization"] = f"Bearer {initial_access_token.strip()}"
            status, answer_headers, answer = await self._send(
                server, "POST", endpoint, headers, body
            )
        if status not in (200, 201):
            raise registration_error(
                status, answer_headers, answer, now=self._clock(), at_client_uri=False
            )
        return parse_registration(answer, url=endpoint, server=urls)

    async def submit(
        self,
        server: RegistrationServer,
        metadata: ClientMetadata,
        *,
        software_statement: SoftwareStatement | None,
        existing: tuple[RegistrationHandle, str] | None = None,
        initial_access_token: str | None = None,
        registration_endpoint: str | None = None,
    ) -> Submitted:
        """Register `metadata` (RFC 7591), or with `existing` (the handle and the client id)
        update that registration (RFC 7592 PUT), with `software_statement` (fetched just before:
        the Brasil profile takes one at most 5 minutes old) and the subject DN derived from the
        transport certificate unless given; `registration_endpoint`, where discovery found it
        (else it is discovered now). Returns the answer and the digest of what was sent."""
        subject_dn = subject_dn_for(metadata, server.transport)
        body = registration_body(
            metadata,
            software_statement=software_statement,
            subject_dn=subject_dn,
            client_id=existing[1] if existing else None,
        )
        try:
            if existing is None:
                registration = await self.register(
                    server,
                    body,
                    initial_access_token=initial_access_token,
                    endpoint=registration_endpoint,
                )
            else:
                registration = await self.update(server, existing[0], body)
        except RegistrationRejected as rejection:
            hint = software_statement and stale_software_statement_hint(
                software_statement, now=self._clock()
            )
            if hint and rejection.error == "invalid_software_statement":
                rejection.add_hint(hint, first=True)
            raise
        digest = registered_digest(
            metadata, subject_dn=subject_dn, software_statement=software_statement
        )
        return Submitted(registration, digest)

    async def read(self, server: RegistrationServer, handle: RegistrationHandle) -> Registration:
        """RFC 7592 §2.1: the registration as the server holds it now."""
        urls = await self._server_urls(server)
        answer, url = await self._manage(server, handle, "GET")
        return parse_registration(answer, url=url, server=urls).keeping_token_of(handle)

    async def update(
        self, server: RegistrationServer, handle: RegistrationHandle, body: Mapping[str, Json]
    ) -> Registration:
        """RFC 7592 §2.2: replace the metadata (`body` carries the client_id and a fresh SSA).
        A rotated registration access token comes back in the answer; otherwise ours is kept."""
        urls = await self._server_urls(server)
        answer, url = await self._manage(server, handle, "PUT", body)
        return parse_registration(answer, url=url, server=urls).keeping_token_of(handle)

    async def delete(self, server: RegistrationServer, handle: RegistrationHandle) -> None:
        """RFC 7592 §2.3. A registration already gone raises `RegistrationGone`: the caller
        decides whether that is done."""
        await self._manage(server, handle, "DELETE", accept=(200, 204))

    async def _manage(
        self,
        server: RegistrationServer,
        handle: RegistrationHandle,
        method: str,
        body: Mapping[str, Json] | None = None,
        *,
        accept: tuple[int, ...] = (200,),
    ) -> tuple[bytes, str]:
        """One RFC 7592 request with the registration access token: the answer's body and URL."""
        url = rules.check_https(handle.registration_client_uri, field="registration_client_uri")
        headers = {"Authorization": f"Bearer {handle.registration_access_token}"}
        if body is not None:
            headers.update(_JSON_BODY)
        async with self._deadline(f"the registration {method} at {url}"):
            status, answer_headers, answer = await self._send(server, method, url, headers, body)
        if status not in accept:
            raise registration_error(
                status, answer_headers, answer, now=self._clock(), at_client_uri=True
            )
        return answer, url

    async def _send(
        self,
        server: RegistrationServer,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Mapping[str, Json] | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        return await self._client.exchange(
            method,
            url,
            transport=server.transport,
            ca_bundle=server.ca_bundle,
            what="registration",
            headers=headers,
            content=json.dumps(body).encode() if body is not None else None,
        )

    @asynccontextmanager
    async def _deadline(self, doing: str) -> AsyncIterator[None]:
        deadline = self._client.settings.attempt_deadline
        try:
            async with asyncio.timeout(deadline):
                yield
        except TimeoutError:
            raise ConnectionFailure(
                f"{doing} took longer than {deadline:.0f} s; the server is too slow or trickles "
                "its answer",
                kind="timeout",
            ) from None
