"""Launcher for the test data provider: a bank's authorization server with client registration.

``DataProvider`` is the test authorization server (``AuthServer``, the same ``server.mjs``)
with RFC 7591 registration and RFC 7592 management switched on (``lib/registration.mjs``), and
with everything ``AuthServer`` has: client-credentials tokens on the mTLS alias,
``tls_client_auth`` clients matched by their registered subject DN, the admin API, faults.

With a ``directory`` it checks software statements as the Open Finance Brasil DCR profile says:
the registration (``POST``) and every update (``PUT``) must come over mutual TLS
(``mtls_registration_endpoint``, advertised as ``mtls_endpoint_aliases.registration_endpoint``)
with a ``software_statement`` signed PS256 by a key of the directory's ``jwks_uri``, issued at
most ``ssa_max_age`` seconds (default 300) before; ``jwks`` must be absent and ``jwks_uri``, if
sent, the SSA's ``software_jwks_uri``; ``redirect_uris`` present and within the SSA's
``software_redirect_uris``; ``scope`` within what the SSA's ``software_roles`` allow (all of it
when absent); for ``tls_client_auth`` a ``tls_client_auth_subject_dn`` in the profile's format
(RDNs in reverse order; ``CN``, ``L``, ``ST``, ``O``, ``OU``, ``C``, ``STREET``, ``DC``,
``UID`` by name, every other attribute as ``<dotted OID>=#<DER hex>``, see
``IssuedCertificate.open_finance_subject_dn``) naming the certificate presented; and that
certificate must name the SSA's organisation (organizationIdentifier ``OFBBR-<org_id>``, or the
``org_id`` as ``OU``). Refusals are
400 with ``invalid_software_statement``, ``invalid_client_metadata`` or
``invalid_redirect_uri`` and an ``error_description`` that says what to fix; a request without
a trusted certificate is 401 ``invalid_client``. The SSA's ``software_id``,
``software_client_name`` and ``software_jwks_uri`` take precedence in what is registered; a
``private_key_jwt`` client's keys are read from that ``software_jwks_uri`` (the directory's
keystore) at the token endpoint.
Without a directory it is a plain RFC 7591/7592 server (optionally with an
``initial_access_token``).

RFC 7592 as node-oidc-provider implements it: ``registration_client_uri`` on the host the
registration came to; ``GET``/``PUT``/``DELETE`` with the ``registration_access_token``
(rotated on each ``PUT`` with ``rotate_registration_access_token``); 401 ``invalid_token`` once
the client is gone.

Admin API, beyond ``AuthServer``'s: ``stats()`` adds ``registration_requests_total``,
``registrations_{created,read,updated,deleted}_total``, ``registration_errors_by_code`` and
``registrations_by_client`` (``{client_id: {"created", "read", "updated", "deleted"}}``);
faults take ``endpoint="registration"`` and ``method`` (``refuse_delete``,
``registration_outage``), and mode ``late`` (``delay_registration``: the client is registered,
then the answer waits); ``delete_registration`` removes a client at the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.directory import Directory
from raidiam_devenv.pki import TestPKI

__all__ = ["DataProvider"]


class DataProvider(AuthServer):
    """The test data provider, as a context manager.

    >>> with DataProvider(tmp_path, pki, directory=directory) as bank:
    ...     bank.mtls_registration_endpoint
    """

    _stem = "dataprovider"
    _label = "test data provider"

    def __init__(
        self,
        workdir: Path,
        pki: TestPKI,
        *,
        directory: Directory | None = None,
        ssa_max_age: int = 300,
        initial_access_token: str | None = None,
        rotate_registration_access_token: bool = False,
        require_mtls: bool | None = None,
        **options: Any,
    ) -> None:
        """``directory`` (started before this server): check software statements against its
        keys. ``require_mtls`` defaults to whether a directory is given. ``options``: as for
        ``AuthServer``."""
        super().__init__(workdir, pki, **options)
        self._directory = directory
        self._registration: dict[str, Any] = {
            "rotate_registration_access_token": rotate_registration_access_token,
        }
        if initial_access_token is not None:
            self._registration["initial_access_token"] = initial_access_token
        if require_mtls is not None:
            self._registration["require_mtls"] = require_mtls
        self._ssa_max_age = ssa_max_age

    def _server_config(self) -> dict[str, Any]:
        registration = dict(self._registration)
        if self._directory is not None:
            registration["software_statement"] = {
                "jwks_uri": self._directory.jwks_uri,
                "issuer": self._directory.ssa_issuer,
                "max_age": self._ssa_max_age,
            }
            registration["directory_ca"] = str(self._directory.ca_path)
        return {**super()._server_config(), "registration": registration}

    @property
    def registration_endpoint(self) -> str:
        """The discovery document's ``registration_endpoint`` (no client certificate there)."""
        return str(self._value("registration_endpoint"))

    @property
    def mtls_registration_endpoint(self) -> str:
        """``mtls_endpoint_aliases.registration_endpoint``."""
        return str(self._value("mtls_registration_endpoint"))

    def registrations(self, client_id: str) -> dict[str, int]:
        """How often the client's registration was created, read, updated and deleted."""
        counts: dict[str, dict[str, int]] = self.stats()["registrations_by_client"]
        return counts.get(client_id, {"created": 0, "read": 0, "updated": 0, "deleted": 0})

    def refuse_delete(self, *, status: int = 405, count: int | None = None) -> dict[str, Any]:
        """RFC 7592 ``DELETE`` answers ``status`` (405: the server does not support deletion)."""
        return self.set_fault(
            mode="status",
            endpoint="registration",
            method="DELETE",
            status=status,
            count=count,
            error="invalid_request" if status < 500 else "temporarily_unavailable",
        )

    def registration_outage(self, *, status: int = 503, count: int | None = None) -> dict[str, Any]:
        """Every registration request (POST, GET, PUT, DELETE) answers ``status``."""
        return self.set_fault(mode="status", endpoint="registration", status=status, count=count)

    def delay_registration(self, seconds: float, *, count: int = 1) -> dict[str, Any]:
        """The next ``count`` registrations (``POST``) are made and counted as usual, and only
        then answered, ``seconds`` later: a client that gives up or stops meanwhile holds no
        credentials of a client the bank made."""
        return self.set_fault(
            mode="late",
            endpoint="registration",
            method="POST",
            delay_ms=int(seconds * 1000),
            count=count,
        )

    def delete_registration(self, client_id: str) -> None:
        """The client is gone at the server, as if an administrator removed it: its next RFC 7592
        request answers 401 ``invalid_token`` and its token requests ``invalid_client``."""
        self.delete_client(client_id)
