"""Launcher for the node-oidc-provider test authorization server.

``AuthServer`` starts ``devenv/authserver/server.mjs`` on loopback with a
TLS listener (the issuer), an mTLS listener (the ``mtls_endpoint_aliases``
host) and a plain-HTTP admin API, and wraps the admin API for tests.

Admin API (JSON, ``admin_url``):

* ``GET /admin/health`` - issuer, endpoints, ports.
* ``POST /admin/clients`` - one client metadata object or a list; registers
  or replaces (effective immediately). Extra metadata: ``token_ttl``
  (seconds, default 300), ``fapi_profile`` (``"2.0"``/``"1.0 Final"``),
  ``access_token_format`` (``"jwt"``, default, or ``"opaque"``) and
  ``assertion_audience`` (``"token_endpoint"``: client assertions must carry
  the URL of the token endpoint they are sent to as ``aud``; anything else is
  refused with ``invalid_client`` and an ``error_description`` naming the claim
  and that URL). ``GET``/``DELETE /admin/clients/<id>``.
* ``POST /admin/fault`` - ``mode`` is one of ``status`` (``status``,
  optional ``retry_after``, ``error``, ``body``, ``content_type``,
  ``headers``), ``response`` (arbitrary ``status``/``body``/``content_type``,
  ``repeat`` to multiply the body), ``slow`` (``delay_ms``, then answered
  normally), ``hang`` (never answered), ``discovery_issuer`` (``issuer``) or
  ``no_mtls_aliases``. Optional: ``count`` (only the next N matching
  requests), ``client_id`` (only that client's token requests), ``endpoint``
  (``token``, default, or ``discovery`` for the first four modes), and
  ``delay_ms`` on any mode. ``GET`` lists, ``DELETE /admin/fault`` clears all,
  ``DELETE /admin/fault/<id>`` one.
* ``GET /admin/stats`` / ``POST /admin/stats/reset`` - ``token_requests_total``,
  ``token_requests_by_client``, ``token_requests_by_listener``,
  ``issued_total``, ``issued_by_client``, ``errors_total``,
  ``errors_by_code``, ``faulted_total``, ``discovery_requests_total``,
  ``clients_registered``, ``faults_active``. Every request reaching either
  token endpoint counts, faulted ones included. ``?timeline=1`` adds
  ``token_request_times_by_client``: each token request's arrival time
  (milliseconds since the epoch), by client (benchmarks).

Server modes (``extra_config``): ``{"certificate_bound_access_tokens": false}``
is a server that binds no token to a certificate and does not advertise
``tls_client_certificate_bound_access_tokens`` in its discovery document.

Set ``AUTHSERVER_NODE_ARGS`` (e.g. ``--cpu-prof``) to pass flags to node.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from raidiam_devenv.pki import IssuedCertificate, SigningKey, TestPKI

__all__ = ["AUTHSERVER_DIR", "AuthServer", "ensure_node_modules"]

AUTHSERVER_DIR = Path(__file__).resolve().parent.parent / "authserver"
_STAMP_NAME = ".raidiam-lock-sha256"
_START_TIMEOUT = 30.0
_LOG_TAIL_BYTES = 4000


def _lock_hash(directory: Path) -> str:
    return hashlib.sha256((directory / "package-lock.json").read_bytes()).hexdigest()


def ensure_node_modules(directory: Path = AUTHSERVER_DIR) -> Path:
    """Run ``npm ci`` unless node_modules matches package-lock.json.

    A stamp file holding the lock file's hash marks a completed install, so
    an interrupted or outdated install is redone. A file lock serialises
    concurrent callers (parallel pytest workers). Returns node_modules.
    """
    modules = directory / "node_modules"
    stamp = modules / _STAMP_NAME
    wanted = _lock_hash(directory)
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed; it is needed for the test authorization server")
    # The lock lives outside the work tree: nothing to ignore in git, and it
    # is not removed by `npm ci` wiping node_modules.
    lock_name = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"raidiam-authserver-npm-{lock_name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return modules
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"npm ci failed in {directory} (exit {proc.returncode}):\n"
                f"{proc.stdout[-_LOG_TAIL_BYTES:]}\n{proc.stderr[-_LOG_TAIL_BYTES:]}"
            )
        stamp.write_text(wanted + "\n")
    return modules


# Every started server (strong references: a server dropped without stop()
# must still be reaped), so interpreter exit never leaves node behind.
_live: set[AuthServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


class AuthServer:
    """The test authorization server, as a context manager.

    >>> with AuthServer(tmp_path, pki) as server:
    ...     server.register_tls_client("c1", cert)
    """

    def __init__(
        self,
        workdir: Path,
        pki: TestPKI,
        *,
        clients: Sequence[Mapping[str, Any]] = (),
        client_cas: Sequence[Path] = (),
        default_token_ttl: int = 300,
        log_requests: bool = True,
        extra_config: Mapping[str, Any] | None = None,
        start_timeout: float = _START_TIMEOUT,
        host: str | None = None,
    ) -> None:
        """``host``: listen on that address and name it in the issuer and endpoint URLs
        (e.g. the dev node's address, which pods can reach) instead of loopback/localhost."""
        self.workdir = workdir
        self._host = host
        self.pki = pki
        self._clients = [dict(c) for c in clients]
        # Client certificates must chain to one of these; the test PKI's CA by
        # default. Extra CAs let a test trust a second PKI.
        self._client_cas = [pki.ca_path, *client_cas]
        self._default_token_ttl = default_token_ttl
        self._log_requests = log_requests
        self._extra_config = dict(extra_config or {})
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: dict[str, Any] = {}
        self._admin: httpx.Client | None = None
        self.log_path = workdir / "authserver.log"
        self.config_path = workdir / "authserver-config.json"
        self._ready_path = workdir / "authserver-ready.json"

    # -- lifecycle -------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            return self
        ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError(
                "node is not installed; it is needed for the test authorization server"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        names = ("localhost", "127.0.0.1", *([self._host] if self._host else []))
        server_cert = self.pki.server_certificate(names)
        cert_path, key_path = server_cert.write(self.workdir, "authserver-tls")
        self._ready_path.unlink(missing_ok=True)
        config: dict[str, Any] = {
            # Port 0: the server binds ephemeral ports itself and reports them
            # in the ready file, which avoids pick-then-bind races between
            # parallel test sessions.
            "tls_port": 0,
            "mtls_port": 0,
            "admin_port": 0,
            "server_cert": str(cert_path),
            "server_key": str(key_path),
            "client_ca": [str(p) for p in self._client_cas],
            "ready_file": str(self._ready_path),
            "default_token_ttl": self._default_token_ttl,
            "log_requests": self._log_requests,
            "clients": self._clients,
            **({"host": self._host, "public_host": self._host} if self._host else {}),
            **self._extra_config,
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [
                    node,
                    *os.environ.get("AUTHSERVER_NODE_ARGS", "").split(),
                    str(AUTHSERVER_DIR / "server.mjs"),
                    "--config",
                    str(self.config_path),
                ],
                cwd=AUTHSERVER_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: stop() can signal node and anything it
                # spawned without touching the test runner.
                start_new_session=True,
            )
        finally:
            log.close()
        _live.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"test authorization server exited with {self._proc.returncode}:\n"
                    f"{self.log_tail()}"
                )
            if self._admin is None and self._ready_path.is_file():
                self._info = json.loads(self._ready_path.read_text())
                self._admin = httpx.Client(
                    # trust_env=False: an HTTP(S)_PROXY in the environment
                    # must not capture loopback admin calls.
                    base_url=self._info["admin_url"],
                    timeout=30.0,
                    trust_env=False,
                )
            if self._admin is not None:
                with contextlib.suppress(httpx.TransportError):
                    if self._admin.get("/admin/health").status_code == 200:
                        return
            time.sleep(0.05)
        raise RuntimeError(
            f"test authorization server not healthy after {self._start_timeout:.0f}s:\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        _live.discard(self)
        if proc is None or proc.poll() is not None:
            return
        # The group id is node's pid (start_new_session), so this reaches only
        # processes this launcher started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, size: int = _LOG_TAIL_BYTES) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return "(no log)"
        return data[-size:].decode("utf-8", "replace")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- endpoints -------------------------------------------------------

    def _value(self, key: str) -> Any:
        if not self._info:
            raise RuntimeError("test authorization server is not started")
        return self._info[key]

    @property
    def issuer(self) -> str:
        return str(self._value("issuer"))

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_endpoint(self) -> str:
        return str(self._value("token_endpoint"))

    @property
    def mtls_token_endpoint(self) -> str:
        return str(self._value("mtls_token_endpoint"))

    @property
    def resource(self) -> str:
        """Audience (``aud``) of issued access tokens."""
        return str(self._value("resource"))

    @property
    def protected_resource_url(self) -> str:
        """``GET`` it over mTLS with a token bound to the presented certificate (RFC 8705).

        200 with ``{"client_id", "scope", "x5t#S256"}`` when the token is valid and its
        ``cnf.x5t#S256`` is the thumbprint of the client certificate; 401 ``invalid_token``
        with the reason otherwise.  ``stats()`` counts both (``resource_accepted_total``,
        ``resource_rejected_by_reason``).
        """
        return str(self._value("protected_resource_url"))

    @property
    def admin_url(self) -> str:
        return str(self._value("admin_url"))

    @property
    def ca_path(self) -> Path:
        """Trust anchor for the server's TLS certificate (the test PKI CA)."""
        return self.pki.ca_path

    @property
    def pid(self) -> int:
        return int(self._value("pid"))

    # -- admin API -------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._admin is None:
            raise RuntimeError("test authorization server is not started")
        response = self._admin.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(
                f"admin {method} {path} failed: {response.status_code} {response.text}"
            )
        return response.json()

    def register_client(self, metadata: Mapping[str, Any]) -> None:
        """Register (or replace) a client; effective for the next request."""
        self._call("POST", "/admin/clients", dict(metadata))

    def register_clients(self, clients: Sequence[Mapping[str, Any]]) -> None:
        """Bulk registration in one admin call (benchmarks)."""
        self._call("POST", "/admin/clients", [dict(c) for c in clients])

    def _register(
        self,
        client_id: str,
        method: str,
        *,
        scope: str,
        token_ttl: float | None,
        **metadata: Any,
    ) -> dict[str, Any]:
        registration: dict[str, Any] = {
            "client_id": client_id,
            "token_endpoint_auth_method": method,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "scope": scope,
            **{key: value for key, value in metadata.items() if value is not None},
        }
        if token_ttl is not None:
            registration["token_ttl"] = token_ttl
        self.register_client(registration)
        return registration

    def register_tls_client(
        self,
        client_id: str,
        cert: IssuedCertificate | str,
        *,
        scope: str = "directory:software",
        token_ttl: float | None = None,
        bound: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """tls_client_auth client identified by the certificate's subject DN
        (``cert`` may also be the DN string itself)."""
        subject_dn = cert if isinstance(cert, str) else cert.subject_dn
        return self._register(
            client_id,
            "tls_client_auth",
            scope=scope,
            token_ttl=token_ttl,
            tls_client_auth_subject_dn=subject_dn,
            tls_client_certificate_bound_access_tokens=bound,
            **extra,
        )

    def register_self_signed_tls_client(
        self,
        client_id: str,
        cert: IssuedCertificate,
        *,
        scope: str = "directory:software",
        token_ttl: float | None = None,
        bound: bool = True,
        **extra: Any,
    ) -> dict[str, Any]:
        """self_signed_tls_client_auth client: its certificate (self-signed, see
        ``pki.self_signed_certificate``) is registered as a JWK with ``x5c``, and
        the one presented must be exactly that one."""
        return self._register(
            client_id,
            "self_signed_tls_client_auth",
            scope=scope,
            token_ttl=token_ttl,
            jwks={"keys": [cert.public_jwk()]},
            tls_client_certificate_bound_access_tokens=bound,
            **extra,
        )

    def register_private_key_jwt_client(
        self,
        client_id: str,
        jwk_or_jwks: Mapping[str, Any] | SigningKey,
        *,
        bound: bool = True,
        fapi_profile: str | None = None,
        token_ttl: float | None = None,
        scope: str = "directory:software",
        **extra: Any,
    ) -> dict[str, Any]:
        """private_key_jwt client. With ``bound`` the client must present a
        (trusted) transport certificate on the mTLS endpoint and its tokens are
        bound to it; without a certificate the request fails with
        invalid_grant."""
        if isinstance(jwk_or_jwks, SigningKey):
            jwks: dict[str, Any] = {"keys": [jwk_or_jwks.public_jwk()]}
        elif "keys" in jwk_or_jwks:
            jwks = dict(jwk_or_jwks)
        else:
            jwks = {"keys": [dict(jwk_or_jwks)]}
        return self._register(
            client_id,
            "private_key_jwt",
            scope=scope,
            token_ttl=token_ttl,
            jwks=jwks,
            tls_client_certificate_bound_access_tokens=bound,
            fapi_profile=fapi_profile,
            **extra,
        )

    def register_secret_client(
        self,
        client_id: str,
        secret: str,
        *,
        method: str = "client_secret_post",
        scope: str = "directory:software",
        token_ttl: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """client_secret_post / client_secret_basic client (benchmarks)."""
        return self._register(
            client_id, method, scope=scope, token_ttl=token_ttl, client_secret=secret, **extra
        )

    def get_client(self, client_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/admin/clients/{client_id}")
        return result

    def delete_client(self, client_id: str) -> None:
        self._call("DELETE", f"/admin/clients/{client_id}")

    def set_fault(self, **fault: Any) -> dict[str, Any]:
        """Inject a fault; see the admin API in the package docs. Returns it
        (with its ``id``)."""
        result: dict[str, Any] = self._call("POST", "/admin/fault", fault)
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/admin/fault")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/fault")

    def stats(self, *, timeline: bool = False) -> dict[str, Any]:
        """The counters; with ``timeline`` also every token request's arrival time (ms since
        the epoch) by client, in ``token_request_times_by_client``."""
        path = "/admin/stats?timeline=1" if timeline else "/admin/stats"
        result: dict[str, Any] = self._call("GET", path)
        return result

    def reset_stats(self) -> None:
        self._call("POST", "/admin/stats/reset")
