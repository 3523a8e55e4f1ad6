"""A hostile issuer: a TLS server that accepts every request and trickles its answer.

It completes the TLS handshake (with a certificate from the test PKI, so a client that trusts
the test CA talks to it), reads the request, and then sends a plausible HTTP response one byte
every `interval` seconds, never finishing. Each byte arrives well within any per-read timeout,
so only a deadline on the whole request ends it. Tests use it as the issuer of RaidiamClients
whose tenant means harm (or whose server is merely broken), to show that other tenants do not
notice.

    with SlowLorisIssuer(workdir, pki) as issuer:
        spec["issuer"] = issuer.url
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path
from typing import Self

from raidiam_devenv.pki import TestPKI
from raidiam_devenv.process import Managed

# What the trickle spells out: the start of a 200 that never gets to its body.
_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"." * 4096


class SlowLorisIssuer(Managed):
    def __init__(self, workdir: Path, pki: TestPKI, *, interval: float = 2.0) -> None:
        self.workdir = workdir
        self.pki = pki
        self.interval = interval
        self.port = 0
        #: connections accepted so far, and those still open
        self.accepted = 0
        self.open = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/slow"

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = self.pki.server_certificate(("127.0.0.1", "localhost")).write(
            self.workdir, "slowloris-tls"
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        self._thread = threading.Thread(
            target=self._serve, args=(context,), name="slow-loris issuer", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the slow-loris issuer did not start within 10 s")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def _serve(self, context: ssl.SSLContext) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._trickle, "127.0.0.1", 0, ssl=context, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _trickle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        try:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await reader.readuntil(b"\r\n\r\n")  # the request line and headers
                for byte in _ANSWER:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(self.interval)
                # Out of padding: keep the connection open and silent.
                await reader.read()
        finally:
            self.open -= 1
            writer.close()
