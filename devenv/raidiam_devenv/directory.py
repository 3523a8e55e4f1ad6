"""Launcher for the test directory, configured like Raidiam Connect's directory API.

``Directory`` starts ``devenv/authserver/directory.mjs`` on loopback beside an ``AuthServer``
whose access tokens it accepts, and wraps its admin API for tests.

* Its mTLS listener (``api_base_url``) serves
  ``GET /organisations/{OrganisationId}/softwarestatements/{SoftwareStatementId}/assertion``
  (``assertion_url``) to a caller with a trusted client certificate and a bearer access token
  from that authorization server with scope ``directory:software``, bound (``cnf.x5t#S256``)
  to that certificate, whose client is a software statement of the organisation. It answers
  ``application/jwt``: the software statement assertion (SSA), signed PS256 with the
  directory's key, with the claims the Open Finance Brasil DCR profile lists (``software_id``,
  ``org_id``, ``software_client_id``, ``software_jwks_uri``, ``software_redirect_uris``,
  ``software_roles``, ``software_statement_roles``, ``software_client_name``, ``org_name``,
  ``iss`` = ``ssa_issuer``, ``iat``, ``jti``, ...), at most 4,000 characters. Refusals are JSON
  ``{"error", "error_description"}``: 401 ``invalid_client`` (no trusted certificate) or
  ``invalid_token`` (no, a bad, an expired or an unbound token), 403 ``insufficient_scope`` or
  ``access_denied`` (the client belongs to another organisation), 404 ``not_found``.
* Its TLS listener (``keystore_base_url``) publishes the directory's public keys at
  ``jwks_uri`` (``/openbanking.jwks``) and, where given, a software statement's keys at
  ``/{OrganisationId}/{SoftwareStatementId}/application.jwks`` (the SSA's default
  ``software_jwks_uri``).

Admin API (JSON, ``admin_url``):

* ``GET /admin/health``; ``POST /admin/organisations`` (``organisation_id``,
  ``organisation_name``, ``org_number``); ``POST /admin/softwarestatements``
  (``organisation_id``, ``software_statement_id``, ``client_id`` = the software's client at the
  authorization server, ``client_name``, ``redirect_uris``, ``roles``, optional ``jwks_uri``
  and ``jwks``): registers or replaces.
* ``POST /admin/fault`` - ``mode`` ``outage`` (``status``, default 503, ``retry_after``;
  ``endpoint`` ``ssa``, default, or ``jwks``), ``stale_ssa`` (the next SSA's ``iat`` is
  ``age`` seconds old, default 600) or ``foreign_key`` (the next SSA is signed by a key the
  directory does not publish, under its own ``kid``); ``count`` for only the next N. ``GET``
  lists, ``DELETE /admin/fault`` clears all, ``DELETE /admin/fault/<id>`` one.
* ``GET /admin/stats`` / ``POST /admin/stats/reset`` - ``ssa_requests_total``,
  ``ssa_issued_total``, ``ssa_requests_by_software_statement`` (``"<org>/<ss>"``),
  ``ssa_refused_by_reason``, ``jwks_requests_total``, ``faulted_total``, ``faults_active``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.devserver import DevServer
from raidiam_devenv.pki import TestPKI

__all__ = ["Directory"]


class Directory(DevServer):
    """The test directory, as a context manager.

    >>> with Directory(tmp_path, pki, auth_server) as directory:
    ...     directory.register_organisation("org-1", name="Bank A")
    """

    _script = "directory.mjs"
    _stem = "directory"
    _label = "test directory"

    def __init__(
        self,
        workdir: Path,
        pki: TestPKI,
        auth_server: AuthServer,
        *,
        ssa_issuer: str = "Raidiam devenv directory SSA issuer",
        client_cas: Sequence[Path] = (),
        log_requests: bool = True,
        host: str | None = None,
    ) -> None:
        """``auth_server`` issues the ``directory:software`` tokens the directory accepts; it
        must be started before the directory. ``host``: as for ``AuthServer``."""
        super().__init__(workdir, pki, client_cas=client_cas, log_requests=log_requests, host=host)
        self._auth_server = auth_server
        self._ssa_issuer = ssa_issuer

    def _server_config(self) -> dict[str, Any]:
        return {
            "token_issuer": self._auth_server.issuer,
            "token_jwks_uri": f"{self._auth_server.issuer}/jwks",
            "token_ca": str(self._auth_server.ca_path),
            "ssa_issuer": self._ssa_issuer,
        }

    # -- endpoints -------------------------------------------------------

    @property
    def api_base_url(self) -> str:
        """The directory API's mTLS host."""
        return str(self._value("api_base_url"))

    @property
    def keystore_base_url(self) -> str:
        return str(self._value("keystore_base_url"))

    @property
    def jwks_uri(self) -> str:
        """The directory's public signing keys: what a data provider checks an SSA with."""
        return str(self._value("jwks_uri"))

    @property
    def ssa_issuer(self) -> str:
        return str(self._value("ssa_issuer"))

    def assertion_url(self, organisation_id: str, software_statement_id: str) -> str:
        org, software = quote(organisation_id, safe=""), quote(software_statement_id, safe="")
        return f"{self.api_base_url}/organisations/{org}/softwarestatements/{software}/assertion"

    def software_jwks_uri(self, organisation_id: str, software_statement_id: str) -> str:
        """The SSA's default ``software_jwks_uri``, on the keystore host."""
        org, software = quote(organisation_id, safe=""), quote(software_statement_id, safe="")
        return f"{self.keystore_base_url}/{org}/{software}/application.jwks"

    # -- admin API -------------------------------------------------------

    def register_organisation(
        self, organisation_id: str, *, name: str | None = None, org_number: str = "13353236"
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST",
            "/admin/organisations",
            {
                "organisation_id": organisation_id,
                "organisation_name": name or organisation_id,
                "org_number": org_number,
            },
        )
        return result

    def register_software_statement(
        self,
        organisation_id: str,
        software_statement_id: str,
        *,
        client_id: str,
        redirect_uris: Sequence[str],
        roles: Sequence[str] = ("DADOS",),
        client_name: str | None = None,
        jwks_uri: str | None = None,
        jwks: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register (or replace) a software statement of a registered organisation.
        ``client_id``: the software's client at the authorization server, whose
        ``directory:software`` tokens may fetch SSAs of this organisation."""
        body: dict[str, Any] = {
            "organisation_id": organisation_id,
            "software_statement_id": software_statement_id,
            "client_id": client_id,
            "client_name": client_name or software_statement_id,
            "redirect_uris": list(redirect_uris),
            "roles": list(roles),
        }
        if jwks_uri is not None:
            body["jwks_uri"] = jwks_uri
        if jwks is not None:
            body["jwks"] = dict(jwks)
        result: dict[str, Any] = self._call("POST", "/admin/softwarestatements", body)
        return result

    def outage(
        self, *, status: int = 503, count: int | None = None, endpoint: str = "ssa"
    ) -> dict[str, Any]:
        """The SSA endpoint (or, with ``endpoint="jwks"``, the keystore) answers ``status``."""
        return self.set_fault(mode="outage", status=status, count=count, endpoint=endpoint)

    def issue_stale_ssa(self, *, age: int = 600, count: int = 1) -> dict[str, Any]:
        """The next ``count`` SSAs say they were issued ``age`` seconds ago."""
        return self.set_fault(mode="stale_ssa", age=age, count=count)

    def issue_foreign_signed_ssa(self, *, count: int = 1) -> dict[str, Any]:
        """The next ``count`` SSAs are signed by a key the directory does not publish."""
        return self.set_fault(mode="foreign_key", count=count)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/admin/stats")
        return result
