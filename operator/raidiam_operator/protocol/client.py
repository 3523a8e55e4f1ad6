"""The only module that talks HTTP to authorization servers: discovery and the token request.

One pooled `httpx.AsyncClient` per (server origin, transport certificate, CA bundle), reused
across refreshes, so a refresh reuses a kept-alive connection rather than a full handshake; the
TLS context behind it is built once per (certificate, CA bundle). Server verification is always
on, against the system trust store or the given CA bundle; there is deliberately no switch to
turn it off. Proxies come from HTTPS_PROXY / NO_PROXY, as httpx reads them.

A bulkhead per server: requests to one origin (scheme, host, port) hold at most
`max_connections_per_origin` connections at once, across every certificate and CA bundle, and
each origin has pools of its own. A slow or black-holed server keeps only its own requests
waiting; discovery and token requests to every other server go on, even with the same
certificate.

Whoever creates a RaidiamClient chooses the issuer, so every answer is bounded: a deadline for the
whole attempt (a server that trickles one byte every few seconds never trips a per-read timeout),
1 MiB per body after decoding (we ask for `identity`, and decode gzip ourselves with a ceiling
when a server compresses anyway), and one discovery at a time per issuer, whose failure the
clients that waited for it share instead of each trying again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import ssl
import tempfile
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import httpx

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    ConnectionFailure,
    InvalidTokenResponse,
    RaidiamOperatorError,
    RequestNotSent,
    ServerMetadataError,
)
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.texts import (
    SERVER_VALUE_LIMIT,
    URL_LIMIT,
    quoted_server_text,
    server_text,
)
from raidiam_operator.core.times import Clock, utc_now
from raidiam_operator.protocol.credentials import TransportCertificate, pem_blocks
from raidiam_operator.protocol.metadata import (
    ServerMetadata,
    check_server_supports,
    discovery_url,
    parse_metadata,
    token_endpoint_for,
)
from raidiam_operator.protocol.request import TokenRequest, assertion_audience_hint, token_form
from raidiam_operator.protocol.tokens import (
    MAX_RESPONSE_BYTES,
    IssuedToken,
    classify_error_response,
    parse_token_response,
)

logger = logging.getLogger(__name__)
_K = TypeVar("_K")
_V = TypeVar("_V")

# A server's error_description that speaks of the assertion's audience.
AUDIENCE = re.compile(r"\baud(ience)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class HttpSettings:
    """How the operator talks to authorization servers."""

    #: seconds for connect, read, write and pool waits alike
    timeout: float = 10.0
    #: seconds one whole attempt may take: discovery (or the wait for it) and the token request
    attempt_deadline: float = 30.0
    #: how long a discovery document is reused before it is fetched again
    discovery_ttl: timedelta = timedelta(hours=1)
    #: pooled clients kept open, one per (server origin, certificate, CA bundle), each with its
    #: keep-alive connections to that server; as many TLS contexts, one per (certificate, CA bundle)
    max_pooled_clients: int = 256
    #: requests in flight (and so connections) to one server origin, across every certificate:
    #: as many as a namespace's or an issuer's share of the engine's slots, so one issuer never
    #: waits for its own server, and a slow server holds no more than this
    max_connections_per_origin: int = 16


#: issuers (with their CA bundle) whose discovery document and last failure are remembered
MAX_ISSUERS = 1024
#: server origins whose connections are counted; beyond it, origins nobody is using are dropped
MAX_ORIGINS = 1024


@dataclass
class _Pooled:
    client: httpx.AsyncClient
    in_use: int = 0
    evicted: bool = False


@dataclass
class _OriginShare:
    """The connections to one server origin, across every pooled client."""

    connections: asyncio.Semaphore
    #: requests holding a connection or waiting for one
    users: int = 0


@dataclass(frozen=True)
class _CachedMetadata:
    metadata: ServerMetadata
    fetched_at: datetime


class TokenClient:
    """Discovers authorization servers and requests client-credentials tokens from them."""

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        clock: Clock = utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or HttpSettings()
        self._clock = clock
        # Tests pass an httpx.MockTransport; production leaves it None so proxies from the
        # environment apply.
        self._transport = transport
        self._clients: OrderedDict[tuple[str, str, str], _Pooled] = OrderedDict()
        self._tls_contexts: OrderedDict[tuple[str, str], ssl.SSLContext] = OrderedDict()
        self._origins: dict[str, _OriginShare] = {}
        self._metadata: dict[tuple[str, str], _CachedMetadata] = {}
        self._discovery_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # The last failed discovery per issuer, numbered in the order fetches ended: clients that
        # waited for it get the same answer rather than queueing one slow fetch each.
        self._discovery_failures: dict[tuple[str, str], tuple[int, Exception]] = {}
        self._fetches = 0
        self._issuers_known: dict[str, datetime] = {}

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for pooled in clients:
            await pooled.client.aclose()

    async def __aenter__(self) -> TokenClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- discovery -------------------------------------------------------------------------

    async def discover(
        self, issuer: str, *, ca_bundle: bytes | None = None, fresh: bool = False
    ) -> ServerMetadata:
        """The issuer's metadata, from cache while fresh (`fresh`: fetched now, and cached for
        the clients of this issuer). Failures are not cached."""
        key = (issuer, _digest(ca_bundle))
        cached = self._metadata.get(key)
        if not fresh and cached and self._clock() - cached.fetched_at < self.settings.discovery_ttl:
            return cached.metadata
        # One discovery per issuer at a time: a burst of new clients shares one fetch.
        lock = self._discovery_locks.get(key)
        if lock is None:
            if len(self._discovery_locks) >= MAX_ISSUERS:
                # Locks nobody holds can go; a holder's waiters keep theirs.
                for idle in [k for k, v in self._discovery_locks.items() if not v.locked()]:
                    del self._discovery_locks[idle]
            lock = self._discovery_locks.setdefault(key, asyncio.Lock())
        waiting_since = self._fetches
        async with lock:
            cached = self._metadata.get(key)
            if (
                not fresh
                and cached
                and self._clock() - cached.fetched_at < self.settings.discovery_ttl
            ):
                return cached.metadata
            failure = self._discovery_failures.get(key)
            if failure is not None and failure[0] > waiting_since:
                # The fetch we waited for failed just now: the same answer, not another fetch.
                raise failure[1].with_traceback(None)
            try:
                metadata = await self._fetch_metadata(issuer, ca_bundle)
            except RaidiamOperatorError as error:
                self._fetches += 1
                _bounded_put(self._discovery_failures, key, (self._fetches, error))
                raise
            self._discovery_failures.pop(key, None)
            self._fetches += 1
            _bounded_put(self._metadata, key, _CachedMetadata(metadata, self._clock()))
            _bounded_put(self._issuers_known, issuer, self._clock())
            return metadata

    def forget_metadata(self, issuer: str) -> None:
        for key in [k for k in self._metadata if k[0] == issuer]:
            del self._metadata[key]

    @asynccontextmanager
    async def _attempt(self, request: TokenRequest) -> AsyncIterator[None]:
        """Bound one whole attempt (discovery, or the wait for it, and the request) in time."""
        doing = f"getting a token from {request.issuer}"
        async with self.attempt_deadline(doing, "discovery and token request together"):
            yield

    @asynccontextmanager
    async def attempt_deadline(self, doing: str, parts: str) -> AsyncIterator[None]:
        """Bound in time what is sent within (an attempt, or an issuer's check, which would
        otherwise hold one of its server's connections for as long as it trickles); `doing`
        and `parts` say what, for the message."""
        deadline = self.settings.attempt_deadline
        try:
            async with asyncio.timeout(deadline):
                yield
        except TimeoutError:
            raise ConnectionFailure(
                f"{doing} took longer than {deadline:.0f} s ({parts}); the server is too slow "
                "or trickles its answer",
                kind="timeout",
            ) from None

    async def _fetch_metadata(self, issuer: str, ca_bundle: bytes | None) -> ServerMetadata:
        url = discovery_url(issuer)
        async with self._client(url, None, ca_bundle, what="discovery") as client:
            status, headers, body = await self._send(client, "GET", url, what="discovery")
        if status == 404:
            raise ServerMetadataError(
                f"there is no discovery document at {url} (HTTP 404); check the issuer URL",
                reason=Reason.DISCOVERY_NOT_FOUND,
            )
        if status != 200:
            raise classify_error_response(status, headers, body, now=self._clock())
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise InvalidTokenResponse(f"the discovery document at {url} is not JSON") from None
        return parse_metadata(document, expected_issuer=issuer)

    # -- token request ---------------------------------------------------------------------

    async def token_endpoint(self, request: TokenRequest) -> str:
        """Where this client's token request goes; checks the server supports our method."""
        return (await self._destination(request))[0]

    async def _destination(self, request: TokenRequest) -> tuple[str, ServerMetadata | None]:
        """The token endpoint, and the server's metadata unless the spec named the endpoint."""
        if request.token_endpoint:
            return request.token_endpoint, None
        metadata = await self.discover(request.issuer, ca_bundle=request.ca_bundle)
        check_server_supports(
            metadata, auth_method=request.auth_method, signing_algorithm=request.signing_algorithm
        )
        try:
            endpoint = token_endpoint_for(
                metadata,
                mutual_tls=request.transport is not None,
                allowlist=request.endpoint_allowlist,
            )
        except ConfigurationError:
            # Not kept for the hour: the next attempt reads the server's document again.
            self._metadata.pop((request.issuer, _digest(request.ca_bundle)), None)
            raise
        return endpoint, metadata

    def knows_issuer(self, issuer: str) -> bool:
        """Whether a fresh discovery document of `issuer` is at hand (for some CA bundle): a
        cheap test before the inputs are built."""
        fetched_at = self._issuers_known.get(issuer)
        return fetched_at is not None and self._clock() - fetched_at < self.settings.discovery_ttl

    def discovered(self, request: TokenRequest) -> bool:
        """Whether a token request for `request` would go out without a discovery first."""
        if request.token_endpoint:
            return True
        cached = self._metadata.get((request.issuer, _digest(request.ca_bundle)))
        return (
            cached is not None and self._clock() - cached.fetched_at < self.settings.discovery_ttl
        )

    async def prepare(self, request: TokenRequest) -> None:
        """Discover the issuer (within the attempt deadline), so that the token request that
        follows goes out at once. Raises what discovery raised."""
        async with self._attempt(request):
            await self.token_endpoint(request)

    async def fetch_token(self, request: TokenRequest) -> IssuedToken:
        """Run the client credentials grant once, within the attempt deadline. Raises a
        `RaidiamOperatorError` on failure."""
        async with self._attempt(request):
            return await self._fetch_token(request)

    async def _fetch_token(self, request: TokenRequest) -> IssuedToken:
        endpoint, metadata = await self._destination(request)
        sent_at = self._clock()
        form = token_form(request, token_endpoint=endpoint, now=sent_at)
        async with self._client(
            endpoint, request.transport, request.ca_bundle, what="token"
        ) as client:
            status, headers, body = await self._send(
                client, "POST", endpoint, data=form, what="token"
            )
        if status != 200:
            error = classify_error_response(status, headers, body, now=self._clock())
            if (
                isinstance(error, AuthorizationServerRejection)
                and error.error == "invalid_client"
                and request.auth_method == "private_key_jwt"
            ):
                error.add_hint(
                    assertion_audience_hint(request, token_endpoint=endpoint),
                    first=error.mentions(AUDIENCE),
                )
            if isinstance(error, AuthorizationServerRejection) and await self._without_mtls_alias(
                request
            ):
                error.add_hint(
                    "Note: the server's discovery document has no mtls_endpoint_aliases, so the "
                    "certificate went to its plain token_endpoint; if that endpoint does not ask for "
                    "client certificates, set spec.tokenEndpoint to the server's mTLS token endpoint."
                )
            raise error
        # The lifetime counts from when we asked, so we never believe a token lives longer than it does.
        return parse_token_response(
            body,
            now=sent_at,
            token_endpoint=endpoint,
            certificate_thumbprint=request.certificate_thumbprint,
            # Without discovery (spec.tokenEndpoint) nothing says an opaque token is bound.
            server_binds_certificates=metadata is not None
            and metadata.certificate_bound_access_tokens,
        )

    async def _without_mtls_alias(self, request: TokenRequest) -> bool:
        if request.transport is None or request.token_endpoint:
            return False
        metadata = await self.discover(request.issuer, ca_bundle=request.ca_bundle)
        return metadata.mtls_token_endpoint is None

    async def probe(self, request: TokenRequest) -> tuple[str, int]:
        """Reach the token endpoint without asking for a token: any HTTP answer proves the route,
        the server's TLS certificate and (on the mTLS endpoint) the handshake with ours."""
        async with self._attempt(request):
            endpoint = await self.token_endpoint(request)
            async with self._client(
                endpoint, request.transport, request.ca_bundle, what="reachability"
            ) as client:
                status, _, _ = await self._send(client, "GET", endpoint, what="reachability")
        return endpoint, status

    async def reach(self, url: str, *, ca_bundle: bytes | None = None) -> int:
        """GET `url` without a client certificate: the HTTP status proves the route and the
        server's TLS certificate (a ClusterRaidiamIssuer's fixed token endpoint)."""
        async with self._client(url, None, ca_bundle, what="reachability") as client:
            status, _, _ = await self._send(client, "GET", url, what="reachability")
        return status

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        transport: TransportCertificate | None,
        ca_bundle: bytes | None,
        what: str,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request on the pooled client of `transport`, bounded and translated as the token
        request is: how protocol.registrar speaks HTTP without importing httpx. `headers` (an
        Authorization among them) are sent, never logged."""
        async with self._client(url, transport, ca_bundle, what=what) as client:
            return await self._send(
                client, method, url, what=what, extra_headers=headers, content=content
            )

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        what: str,
        data: dict[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> tuple[int, httpx.Headers, bytes]:
        started = time.monotonic()
        sent_headers = {**_REQUEST_HEADERS, **extra_headers} if extra_headers else _REQUEST_HEADERS
        try:
            async with client.stream(
                method, url, data=data, content=content, headers=sent_headers
            ) as response:
                body = await _read_capped(response)
                status, headers = response.status_code, response.headers
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            # Before the request is written: connecting (with the TLS handshake), or waiting
            # for a free connection. A registration POST that ends here made nothing.
            raise RequestNotSent(
                f"the {what} request to {url} timed out after {self.settings.timeout:.0f} s "
                "before it was sent (connecting, or waiting for a free connection)",
                kind="timeout",
            ) from None
        except httpx.TimeoutException:
            raise ConnectionFailure(
                f"the {what} request to {url} timed out after {self.settings.timeout:.0f} s",
                kind="timeout",
            ) from None
        except httpx.ConnectError as error:
            raise _connect_failure(url, what, error) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError) as error:
            # UnicodeError: httpx decodes an xn-- host with idna, and lets its error out.
            raise _invalid_url(url, what, error) from None
        except httpx.TransportError as error:
            raise ConnectionFailure(
                f"the {what} request to {url} failed: {type(error).__name__}", kind="connection"
            ) from None
        logger.debug(
            "%s request to %s answered HTTP %d in %.0f ms",
            what,
            url,
            status,
            (time.monotonic() - started) * 1000,
        )
        return status, headers, body

    # -- connection pool -------------------------------------------------------------------

    @asynccontextmanager
    async def _client(
        self,
        url: str,
        transport: TransportCertificate | None,
        ca_bundle: bytes | None,
        *,
        what: str,
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A pooled client for `url`'s origin, with one of that origin's connections held."""
        origin = origin_of(url)
        identity = (_identity(transport), _digest(ca_bundle))
        key = (origin, *identity)
        # Built before the wait for a connection, so no connection is held while it is built.
        context = None
        if key not in self._clients:
            context = await self._tls_context(identity, transport, ca_bundle)
        async with self._origin_connection(origin, url, what=what):
            pooled = self._clients.get(key)
            if pooled is None:
                if context is None:  # evicted while this request waited
                    context = await self._tls_context(identity, transport, ca_bundle)
                pooled = _Pooled(self._new_client(context))
                self._clients[key] = pooled
                await self._evict_beyond_capacity()
            self._clients.move_to_end(key)
            pooled.in_use += 1
            try:
                yield pooled.client
            finally:
                pooled.in_use -= 1
                if pooled.evicted and pooled.in_use == 0:
                    await pooled.client.aclose()

    async def _tls_context(
        self,
        identity: tuple[str, str],
        transport: TransportCertificate | None,
        ca_bundle: bytes | None,
    ) -> ssl.SSLContext:
        """The TLS context of a (certificate, CA bundle), built once for all its origins."""
        context = self._tls_contexts.get(identity)
        if context is None:
            # OpenSSL holds the GIL while it loads a CA bundle: in a worker thread, one
            # certificate at a time (see tls_context), so that a large bundle never stalls the
            # event loop (and the liveness probe with it).
            context = await asyncio.to_thread(tls_context, transport, ca_bundle)
            # Another request may have built one meanwhile: either serves.
            self._tls_contexts[identity] = context
            while len(self._tls_contexts) > self.settings.max_pooled_clients:
                self._tls_contexts.popitem(last=False)
        self._tls_contexts.move_to_end(identity)
        return context

    @asynccontextmanager
    async def _origin_connection(self, origin: str, url: str, *, what: str) -> AsyncIterator[None]:
        """Hold one of `origin`'s connections; wait at most `timeout` for one to free, within
        the attempt's deadline, and say so when they stay busy."""
        share = self._origins.get(origin)
        if share is None:
            if len(self._origins) >= MAX_ORIGINS:
                for idle in [o for o, s in self._origins.items() if s.users == 0]:
                    del self._origins[idle]
            limit = self.settings.max_connections_per_origin
            share = self._origins.setdefault(origin, _OriginShare(asyncio.Semaphore(limit)))
        share.users += 1
        try:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.settings.timeout):
                    await share.connections.acquire()
            except TimeoutError:
                raise RequestNotSent(
                    f"the {what} request to {url} waited {time.monotonic() - started:.0f} s for "
                    f"one of the {self.settings.max_connections_per_origin} connections to "
                    f"{origin}, all busy with earlier requests to that server; it answers slowly "
                    "or not at all",
                    kind="timeout",
                ) from None
            try:
                yield
            finally:
                share.connections.release()
        finally:
            share.users -= 1

    async def _evict_beyond_capacity(self) -> None:
        while len(self._clients) > self.settings.max_pooled_clients:
            _, oldest = self._clients.popitem(last=False)
            oldest.evicted = True
            if oldest.in_use == 0:
                await oldest.client.aclose()

    def _new_client(self, context: ssl.SSLContext) -> httpx.AsyncClient:
        # One origin per pool, whose share of connections the origin's semaphore holds already.
        limits = httpx.Limits(
            max_connections=self.settings.max_connections_per_origin,
            max_keepalive_connections=self.settings.max_connections_per_origin,
        )
        return httpx.AsyncClient(
            verify=context,
            timeout=httpx.Timeout(self.settings.timeout),
            limits=limits,
            follow_redirects=False,
            transport=self._transport,
        )


def tls_context(transport: TransportCertificate | None, ca_bundle: bytes | None) -> ssl.SSLContext:
    """Verification always on; the client certificate loaded without touching the disk."""
    if ca_bundle is not None:
        try:
            # One certificate per call: ssl holds the GIL while it loads, and lets go between
            # calls. The first makes the context (trusting only the bundle), the rest join it.
            certificates = [
                block.text.decode("ascii")
                for block in pem_blocks(ca_bundle, wanted=lambda label: label in CERTIFICATE_LABELS)
            ]
            if not certificates:
                raise ValueError("no PEM certificate")
            context = ssl.create_default_context(cadata=certificates[0])
            for certificate in certificates[1:]:
                context.load_verify_locations(cadata=certificate)
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            raise ConfigurationError(
                "the CA bundle holds no readable PEM certificate; put the authorization server's "
                "CA certificates (PEM) in it",
                reason=Reason.INVALID_CA_BUNDLE,
            ) from None
    else:
        context = ssl.create_default_context()
    if transport is not None:
        _load_client_certificate(context, transport)
    return context


#: the PEM labels OpenSSL reads a CA certificate from
CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"})


def _load_client_certificate(context: ssl.SSLContext, transport: TransportCertificate) -> None:
    # ssl only loads keys from a path. An anonymous memory file keeps the key off the disk
    # (and works on a read-only root filesystem); fall back to a private temp file elsewhere.
    material = transport.chain_pem() + transport.private_key_pem()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("raidiam-transport-certificate", os.MFD_CLOEXEC)
        try:
            os.write(fd, material)
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as directory:  # pragma: no cover - non-Linux only
        path = os.path.join(directory, "transport.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
            file.write(material)
        context.load_cert_chain(path)


# identity: a compressed body costs memory to inflate, and these answers are a few hundred bytes.
_REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


async def _read_capped(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise InvalidTokenResponse(
            f"the response from {response.request.url} declares {declared} bytes, more than the "
            f"{MAX_RESPONSE_BYTES} we accept"
        )
    if response.is_stream_consumed:  # a body built in memory (httpx.MockTransport): no stream
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise _too_large(response)
        return response.content
    chunks: list[bytes] = []
    size = 0
    # The raw bytes, not httpx's decoded ones: its decoder inflates a whole chunk at once, with
    # no ceiling, so a small gzip bomb would cost tens of MiB before any check could run.
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _too_large(response)
        chunks.append(chunk)
    return _decoded(b"".join(chunks), response)


def _decoded(raw: bytes, response: httpx.Response) -> bytes:
    """The body without its content encoding, inflated to at most MAX_RESPONSE_BYTES."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise InvalidTokenResponse(
            f"the response from {response.request.url} is {server_text(encoding, limit=20)}-"
            "encoded although we asked for identity; only gzip and deflate are read"
        )
    # wbits 47 = 32 + 15: zlib or gzip header, detected; deflate servers often send zlib too.
    inflater = zlib.decompressobj(47 if encoding != "deflate" else 15)
    try:
        body = inflater.decompress(raw, MAX_RESPONSE_BYTES + 1)
    except zlib.error:
        raise InvalidTokenResponse(
            f"the response from {response.request.url} is not valid {encoding}"
        ) from None
    if len(body) > MAX_RESPONSE_BYTES or inflater.unconsumed_tail:
        raise _too_large(response)
    return body


def _too_large(response: httpx.Response) -> InvalidTokenResponse:
    return InvalidTokenResponse(
        f"the response from {response.request.url} is larger than the {MAX_RESPONSE_BYTES} "
        "bytes we accept"
    )


def _connect_failure(url: str, what: str, error: httpx.ConnectError) -> Exception:
    # httpcore raises ConnectError only while connecting: resolving the host, the TCP connect,
    # the TLS handshake (also through a proxy's tunnel). Nothing of the request was written.
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConfigurationError(
                f"the TLS certificate of {url} is not trusted ({cause.verify_message}); "
                "if the server uses a private CA, set its certificates as the CA bundle",
                reason=Reason.UNTRUSTED_SERVER,
            )
        if isinstance(cause, ssl.SSLError):
            return RequestNotSent(
                f"the TLS handshake with {url} failed ({cause.reason or 'no reason given'}); "
                "if this is the mTLS endpoint, check that the server accepts the transport certificate",
                kind="tls",
            )
        cause = cause.__cause__ or cause.__context__
    return RequestNotSent(f"could not connect to {url} for the {what} request", kind="connect")


#: where the URL of each kind of request comes from, for a message that says what to fix
_URL_SOURCES = {
    "discovery": "the issuer",
    "token": "the token endpoint (spec.tokenEndpoint, or the discovery document's token_endpoint "
    "or mtls_endpoint_aliases.token_endpoint)",
    "reachability": "the token endpoint",
}


def _invalid_url(url: str, what: str, error: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"the {what} request was not sent: {quoted_server_text(url, limit=URL_LIMIT)} is not a URL "
        f"that can be requested ({server_text(str(error), limit=SERVER_VALUE_LIMIT)}); fix "
        f"{_URL_SOURCES.get(what, 'the URL')}",
        reason=Reason.INVALID_URL,
    )


def _bounded_put(cache: dict[_K, _V], key: _K, value: _V) -> None:
    """Insert as the newest entry, dropping the oldest beyond MAX_ISSUERS."""
    cache.pop(key, None)
    cache[key] = value
    while len(cache) > MAX_ISSUERS:
        cache.pop(next(iter(cache)))


def origin_of(url: str) -> str:
    """The server a URL names: scheme, host and port (the default one spelled out). A URL
    that does not parse is its own origin; sending to it then fails with its own reason."""
    try:
        parsed = httpx.URL(url)
        # The host as sent, not IDNA-decoded: decoding an invalid A-label raises.
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError, TypeError):
        return url
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme)
    host = f"[{host}]" if ":" in host else host
    return f"{parsed.scheme}://{host}:{port}"


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _identity(transport: TransportCertificate | None) -> str:
    if transport is None:
        return ""
    # The whole chain, not just the leaf's thumbprint: a rotated Secret can carry a new chain
    # behind the same leaf. The key needs no part in it: it must match the leaf (checked on load).
    return hashlib.sha256(transport.chain_pem()).hexdigest()


def _digest(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest() if data is not None else ""
