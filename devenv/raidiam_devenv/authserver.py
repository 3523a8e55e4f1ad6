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
  normally), ``hang`` (never answered), ``discovery_issuer`` (``issuer``),
  ``no_mtls_aliases``, or on a ``DataProvider``'s registration endpoint ``late``
  (``delay_ms``: handled and counted, then answered that much later). Optional: ``count`` (only the next N matching
  requests), ``client_id`` (only that client's token requests), ``endpoint``
  (``token``, default, ``discovery``, or on a ``DataProvider`` ``registration``, for the
  first four modes), ``method`` (only requests with that HTTP method), and
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

``DataProvider`` (``raidiam_devenv.dataprovider``) is this server with client registration.
Set ``AUTHSERVER_NODE_ARGS`` (e.g. ``--cpu-prof``) to pass flags to node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raidiam_devenv.devserver import NODE_SERVERS_DIR, DevServer, ensure_node_modules
from raidiam_devenv.pki import IssuedCertificate, SigningKey, TestPKI

__all__ = ["AUTHSERVER_DIR", "AuthServer", "ensure_node_modules"]

AUTHSERVER_DIR = NODE_SERVERS_DIR


class AuthServer(DevServer):
    """The test authorization server, as a context manager.

    >>> with AuthServer(tmp_path, pki) as server:
    ...     server.register_tls_client("c1", cert)
    """

    _script = "server.mjs"
    _stem = "authserver"
    _label = "test authorization server"

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
        start_timeout: float = 30.0,
        host: str | None = None,
    ) -> None:
        """``host``: listen on that address and name it in the issuer and endpoint URLs
        (e.g. the dev node's address, which pods can reach) instead of loopback/localhost."""
        super().__init__(
            workdir,
            pki,
            client_cas=client_cas,
            log_requests=log_requests,
            start_timeout=start_timeout,
            host=host,
        )
        self._clients = [dict(c) for c in clients]
        self._default_token_ttl = default_token_ttl
        self._extra_config = dict(extra_config or {})

    def _server_config(self) -> dict[str, Any]:
        return {
            "default_token_ttl": self._default_token_ttl,
            "clients": self._clients,
            **self._extra_config,
        }

    # -- endpoints -------------------------------------------------------

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

    # -- admin API -------------------------------------------------------

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

    def stats(self, *, timeline: bool = False) -> dict[str, Any]:
        """The counters; with ``timeline`` also every token request's arrival time (ms since
        the epoch) by client, in ``token_request_times_by_client``."""
        path = "/admin/stats?timeline=1" if timeline else "/admin/stats"
        result: dict[str, Any] = self._call("GET", path)
        return result
