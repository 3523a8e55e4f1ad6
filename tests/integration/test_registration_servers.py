"""The test directory and the test data provider, driven over real HTTP and mutual TLS as the
operator will drive them: a ``directory:software`` token from the authorization server, the
software statement assertion (SSA) from the directory, RFC 7591 registration at the bank's
mTLS registration endpoint, a token from the bank with the new client_id, and RFC 7592
management with the registration access token.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.dataprovider import DataProvider
from raidiam_devenv.devserver import DevServer
from raidiam_devenv.directory import Directory
from raidiam_devenv.pki import IssuedCertificate, SigningKey, TestPKI

pytestmark = pytest.mark.authserver

ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def open_finance_certificate(
    pki: TestPKI, organisation_id: str, software_id: str, common_name: str
) -> IssuedCertificate:
    """A transport certificate shaped as the Open Finance Brasil certificate standard has it:
    UID the software, organizationIdentifier OFBBR-<org>, the CNPJ as serialNumber."""
    return pki.client_certificate(
        common_name,
        country="BR",
        organization="Participante Exemplo SA",
        organizational_unit=organisation_id,
        extra_attributes=[
            (NameOID.JURISDICTION_COUNTRY_NAME, "BR"),
            (NameOID.BUSINESS_CATEGORY, "Private Organization"),
            (NameOID.SERIAL_NUMBER, "13353236000189"),
            (ORGANIZATION_IDENTIFIER, f"OFBBR-{organisation_id}"),
            (NameOID.USER_ID, software_id),
        ],
    )


@dataclass
class Participant:
    """A participant's software as the directory knows it, and its transport certificate."""

    organisation_id: str
    software_statement_id: str
    directory_client_id: str
    redirect_uris: list[str]
    certificate: IssuedCertificate
    workdir: Path
    signing_key: SigningKey | None = None

    def http(self, server: DevServer, certificate: IssuedCertificate | None = None) -> httpx.Client:
        """A client that trusts ``server`` and presents ``certificate`` (default: the
        participant's own)."""
        context = ssl.create_default_context(cafile=str(server.ca_path))
        cert = certificate or self.certificate
        cert_path, key_path = cert.write(self.workdir, _unique("transport"))
        context.load_cert_chain(cert_path, key_path)
        return httpx.Client(verify=context, timeout=10.0, trust_env=False)

    def rotate_certificate(self, pki: TestPKI, auth_server: AuthServer) -> IssuedCertificate:
        """A new transport certificate, with another subject, known to the directory's
        authorization server as the old one was."""
        self.certificate = open_finance_certificate(
            pki, self.organisation_id, self.software_statement_id, _unique("rotated")
        )
        auth_server.register_tls_client(self.directory_client_id, self.certificate)
        return self.certificate


@pytest.fixture
def participant(
    clean_auth_server: AuthServer, clean_directory: Directory, test_pki: TestPKI, tmp_path: Path
) -> Participant:
    organisation_id = str(uuid.uuid4())
    software_statement_id = str(uuid.uuid4())
    client_id = _unique("directory-client")
    redirect_uris = [f"https://{software_statement_id}.example/cb", "https://tpp.example/cb2"]
    signing_key = test_pki.signing_key("rsa")
    clean_directory.register_organisation(organisation_id, name="Participante Exemplo SA")
    clean_directory.register_software_statement(
        organisation_id,
        software_statement_id,
        client_id=client_id,
        client_name="Exemplo TPP",
        redirect_uris=redirect_uris,
        roles=["DADOS", "PAGTO"],
        jwks={"keys": [signing_key.public_jwk("sig-1", alg="PS256")]},
    )
    certificate = open_finance_certificate(
        test_pki, organisation_id, software_statement_id, "tpp.example"
    )
    clean_auth_server.register_tls_client(client_id, certificate)
    return Participant(
        organisation_id,
        software_statement_id,
        client_id,
        redirect_uris,
        certificate,
        tmp_path,
        signing_key,
    )


def directory_token(auth_server: AuthServer, participant: Participant) -> str:
    """A ``directory:software`` token by tls_client_auth, bound to the participant's
    certificate."""
    with participant.http(auth_server) as http:
        response = http.post(
            auth_server.mtls_token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_id": participant.directory_client_id,
                "scope": "directory:software",
            },
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def fetch_ssa(
    directory: Directory, participant: Participant, token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with participant.http(directory) as http:
        return http.get(
            directory.assertion_url(participant.organisation_id, participant.software_statement_id),
            headers=headers,
        )


def fresh_ssa(auth_server: AuthServer, directory: Directory, participant: Participant) -> str:
    response = fetch_ssa(directory, participant, directory_token(auth_server, participant))
    assert response.status_code == 200, response.text
    return response.text


def client_metadata(participant: Participant, ssa: str, **overrides: Any) -> dict[str, Any]:
    """The registration request the operator sends for a tls_client_auth client."""
    metadata: dict[str, Any] = {
        "software_statement": ssa,
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": participant.certificate.open_finance_subject_dn,
        "tls_client_certificate_bound_access_tokens": True,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": participant.redirect_uris[:1],
        "scope": "accounts payments",
    }
    metadata.update(overrides)
    return metadata


def register(
    bank: DataProvider, participant: Participant, metadata: dict[str, Any]
) -> httpx.Response:
    with participant.http(bank) as http:
        return http.post(bank.mtls_registration_endpoint, json=metadata)


def manage(
    bank: DataProvider,
    participant: Participant,
    method: str,
    registration: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> httpx.Response:
    """An RFC 7592 request to the client's registration_client_uri."""
    with participant.http(bank) as http:
        return http.request(
            method,
            registration["registration_client_uri"],
            headers={"Authorization": f"Bearer {registration['registration_access_token']}"},
            json=metadata,
        )


def bank_token(
    bank: DataProvider,
    participant: Participant,
    client_id: str,
    certificate: IssuedCertificate | None = None,
) -> httpx.Response:
    with participant.http(bank, certificate) as http:
        return http.post(
            bank.mtls_token_endpoint,
            data={"grant_type": "client_credentials", "client_id": client_id, "scope": "accounts"},
        )


@pytest.fixture
def registered(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
) -> dict[str, Any]:
    """The participant's software, registered at the bank: the registration response."""
    ssa = fresh_ssa(auth_server, directory, participant)
    response = register(clean_data_provider, participant, client_metadata(participant, ssa))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body.get("error_description", "")


# -- the directory ---------------------------------------------------------------------------


def test_directory_issues_a_software_statement_signed_with_its_published_key(
    clean_auth_server: AuthServer, clean_directory: Directory, participant: Participant
) -> None:
    response = fetch_ssa(
        clean_directory, participant, directory_token(clean_auth_server, participant)
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/jwt"
    ssa = response.text
    assert len(ssa) <= 4000
    context = ssl.create_default_context(cafile=str(clean_directory.ca_path))
    with httpx.Client(verify=context, trust_env=False) as http:
        jwks = http.get(clean_directory.jwks_uri).json()
    header = jwt.get_unverified_header(ssa)
    assert header["alg"] == "PS256"
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"]), algorithm="PS256")
    claims = jwt.decode(ssa, key=key, algorithms=["PS256"], issuer=clean_directory.ssa_issuer)
    assert claims["software_id"] == participant.software_statement_id
    assert claims["org_id"] == participant.organisation_id
    assert claims["org_name"] == "Participante Exemplo SA"
    assert claims["software_client_id"] == participant.directory_client_id
    assert claims["software_client_name"] == "Exemplo TPP"
    assert claims["software_redirect_uris"] == participant.redirect_uris
    assert claims["software_roles"] == ["DADOS", "PAGTO"]
    assert claims["software_jwks_uri"] == clean_directory.software_jwks_uri(
        participant.organisation_id, participant.software_statement_id
    )
    assert abs(claims["iat"] - time.time()) < 30
    assert claims["jti"]
    stats = clean_directory.stats()
    assert stats["ssa_issued_total"] == 1
    key_name = f"{participant.organisation_id}/{participant.software_statement_id}"
    assert stats["ssa_requests_by_software_statement"] == {key_name: 1}


def test_directory_wants_a_directory_software_token_bound_to_the_certificate_presented(
    clean_auth_server: AuthServer,
    clean_directory: Directory,
    participant: Participant,
    test_pki: TestPKI,
) -> None:
    token = directory_token(clean_auth_server, participant)
    without_token = fetch_ssa(clean_directory, participant)
    other = test_pki.client_certificate(_unique("other"))
    with participant.http(clean_directory, other) as http:
        other_certificate = http.get(
            clean_directory.assertion_url(
                participant.organisation_id, participant.software_statement_id
            ),
            headers={"Authorization": f"Bearer {token}"},
        )
    unscoped_client = _unique("unscoped")
    clean_auth_server.register_tls_client(unscoped_client, participant.certificate, scope="openid")
    with participant.http(clean_auth_server) as http:
        unscoped = http.post(
            clean_auth_server.mtls_token_endpoint,
            data={"grant_type": "client_credentials", "client_id": unscoped_client},
        ).json()["access_token"]

    assert _error(without_token)[:2] == (401, "invalid_token")
    assert _error(other_certificate) == (
        401,
        "invalid_token",
        "token is bound to another certificate",
    )
    assert _error(fetch_ssa(clean_directory, participant, unscoped))[:2] == (
        403,
        "insufficient_scope",
    )


def test_directory_outage_answers_503_and_then_recovers(
    clean_auth_server: AuthServer, clean_directory: Directory, participant: Participant
) -> None:
    token = directory_token(clean_auth_server, participant)
    clean_directory.outage(count=1)

    assert _error(fetch_ssa(clean_directory, participant, token))[:2] == (
        503,
        "temporarily_unavailable",
    )
    assert fetch_ssa(clean_directory, participant, token).status_code == 200


# -- registration at the bank ----------------------------------------------------------------


def test_software_statement_registers_a_client_that_gets_tokens_from_the_bank(
    clean_data_provider: DataProvider, participant: Participant, registered: dict[str, Any]
) -> None:
    bank = clean_data_provider
    client_id = registered["client_id"]

    assert registered["registration_access_token"]
    assert registered["registration_client_uri"] == f"{bank.mtls_registration_endpoint}/{client_id}"
    # The SSA's values take precedence in what is registered.
    assert registered["software_id"] == participant.software_statement_id
    assert registered["client_name"] == "Exemplo TPP"
    token = bank_token(bank, participant, client_id)
    assert token.status_code == 200, token.text
    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["cnf"]["x5t#S256"] == participant.certificate.x5t_s256
    assert bank.registrations(client_id) == {"created": 1, "read": 0, "updated": 0, "deleted": 0}


def test_private_key_jwt_client_signs_with_the_keys_at_the_ssa_jwks_uri(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
) -> None:
    bank = clean_data_provider
    metadata = client_metadata(
        participant,
        fresh_ssa(auth_server, directory, participant),
        token_endpoint_auth_method="private_key_jwt",
        token_endpoint_auth_signing_alg="PS256",
    )
    del metadata["tls_client_auth_subject_dn"]
    response = register(bank, participant, metadata)
    assert response.status_code == 201, response.text
    client_id = response.json()["client_id"]
    assert participant.signing_key is not None
    assertion = participant.signing_key.client_assertion(client_id, bank.issuer, kid="sig-1")

    with participant.http(bank) as http:
        token = http.post(
            bank.mtls_token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                "scope": "payments",
            },
        )

    assert response.json()["jwks_uri"] == directory.software_jwks_uri(
        participant.organisation_id, participant.software_statement_id
    )
    assert token.status_code == 200, token.text
    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    assert claims["cnf"]["x5t#S256"] == participant.certificate.x5t_s256


def test_discovery_names_the_mtls_registration_endpoint(
    clean_data_provider: DataProvider, participant: Participant
) -> None:
    with participant.http(clean_data_provider) as http:
        meta = http.get(clean_data_provider.discovery_url).json()

    assert meta["registration_endpoint"] == clean_data_provider.registration_endpoint
    assert (
        meta["mtls_endpoint_aliases"]["registration_endpoint"]
        == clean_data_provider.mtls_registration_endpoint
    )


def test_registration_is_read_updated_and_deleted_with_the_registration_access_token(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
    registered: dict[str, Any],
) -> None:
    bank = clean_data_provider
    client_id = registered["client_id"]

    read = manage(bank, participant, "GET", registered)
    assert read.status_code == 200, read.text
    assert read.json()["redirect_uris"] == participant.redirect_uris[:1]
    metadata = client_metadata(
        participant,
        fresh_ssa(auth_server, directory, participant),
        client_id=client_id,
        redirect_uris=participant.redirect_uris,
    )
    updated = manage(bank, participant, "PUT", registered, metadata)
    assert updated.status_code == 200, updated.text
    assert updated.json()["redirect_uris"] == participant.redirect_uris
    deleted = manage(bank, participant, "DELETE", registered)
    assert deleted.status_code == 204, deleted.text

    assert _error(manage(bank, participant, "GET", registered))[:2] == (401, "invalid_token")
    assert _error(bank_token(bank, participant, client_id))[:2] == (401, "invalid_client")
    assert bank.registrations(client_id) == {"created": 1, "read": 1, "updated": 1, "deleted": 1}


def test_rotated_certificate_needs_a_put_with_its_subject_dn(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
    registered: dict[str, Any],
    test_pki: TestPKI,
) -> None:
    bank = clean_data_provider
    client_id = registered["client_id"]
    old = participant.certificate
    new = participant.rotate_certificate(test_pki, auth_server)

    assert _error(bank_token(bank, participant, client_id, new))[:2] == (401, "invalid_client")
    metadata = client_metadata(
        participant, fresh_ssa(auth_server, directory, participant), client_id=client_id
    )
    updated = manage(bank, participant, "PUT", registered, metadata)
    assert updated.status_code == 200, updated.text
    assert updated.json()["tls_client_auth_subject_dn"] == new.open_finance_subject_dn
    assert bank_token(bank, participant, client_id, new).status_code == 200
    assert _error(bank_token(bank, participant, client_id, old))[:2] == (401, "invalid_client")


@pytest.mark.parametrize(
    ("fault", "description"),
    [
        pytest.param(Directory.issue_stale_ssa, "more than 300 s before this request", id="stale"),
        pytest.param(
            Directory.issue_foreign_signed_ssa, "not signed by the directory", id="foreign-signed"
        ),
    ],
)
def test_bank_refuses_a_software_statement_it_cannot_trust(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
    fault: Callable[[Directory], object],
    description: str,
) -> None:
    fault(directory)
    ssa = fresh_ssa(auth_server, directory, participant)

    status, error, text = _error(
        register(clean_data_provider, participant, client_metadata(participant, ssa))
    )

    assert (status, error) == (400, "invalid_software_statement")
    assert description in text
    assert clean_data_provider.stats()["registrations_created_total"] == 0


@pytest.mark.parametrize(
    ("change", "error", "description"),
    [
        pytest.param(
            lambda p: {"redirect_uris": ["https://elsewhere.example/cb"]},
            "invalid_redirect_uri",
            "not among the SSA's software_redirect_uris",
            id="redirect-outside-ssa",
        ),
        pytest.param(
            lambda p: {"jwks_uri": "https://elsewhere.example/jwks"},
            "invalid_client_metadata",
            "is not the SSA's software_jwks_uri",
            id="other-jwks-uri",
        ),
        pytest.param(
            lambda p: {"scope": "accounts directory:software"},
            "invalid_client_metadata",
            "scope directory:software is not allowed",
            id="scope-beyond-roles",
        ),
        pytest.param(
            lambda p: {"tls_client_auth_subject_dn": p.certificate.subject_dn},
            "invalid_client_metadata",
            "has 2.5.4.97=<text> where the profile writes 2.5.4.97=#<DER of the value in hex>",
            id="subject-dn-not-in-profile-format",
        ),
        pytest.param(
            lambda p: {"tls_client_auth_subject_dn": "CN=someone.example,O=Other,C=BR"},
            "invalid_client_metadata",
            "is not the subject of the client certificate presented",
            id="subject-dn-of-another-certificate",
        ),
        pytest.param(
            lambda p: {"software_statement": None},
            "invalid_software_statement",
            "software_statement is required",
            id="no-ssa",
        ),
    ],
)
def test_bank_refuses_metadata_the_software_statement_does_not_allow(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
    change: Callable[[Participant], dict[str, Any]],
    error: str,
    description: str,
) -> None:
    metadata = client_metadata(participant, fresh_ssa(auth_server, directory, participant))
    metadata.update(change(participant))

    status, code, text = _error(register(clean_data_provider, participant, metadata))

    assert (status, code) == (400, error)
    assert description in text


def test_bank_refuses_a_software_statement_of_another_organisation_than_the_certificate(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
    test_pki: TestPKI,
) -> None:
    other = open_finance_certificate(
        test_pki, str(uuid.uuid4()), participant.software_statement_id, "other.example"
    )
    metadata = client_metadata(
        participant,
        fresh_ssa(auth_server, directory, participant),
        tls_client_auth_subject_dn=other.open_finance_subject_dn,
    )
    with participant.http(clean_data_provider, other) as http:
        response = http.post(clean_data_provider.mtls_registration_endpoint, json=metadata)

    status, error, text = _error(response)
    assert (status, error) == (400, "invalid_software_statement")
    assert f"organisation {participant.organisation_id}, which the client certificate" in text


def test_bank_registers_only_over_mutual_tls(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
) -> None:
    metadata = client_metadata(participant, fresh_ssa(auth_server, directory, participant))
    context = ssl.create_default_context(cafile=str(clean_data_provider.ca_path))
    with httpx.Client(verify=context, timeout=10.0, trust_env=False) as http:
        response = http.post(clean_data_provider.registration_endpoint, json=metadata)

    assert _error(response)[:2] == (401, "invalid_client")


def test_bank_that_refuses_delete_keeps_the_registration(
    clean_data_provider: DataProvider, participant: Participant, registered: dict[str, Any]
) -> None:
    clean_data_provider.refuse_delete()

    assert manage(clean_data_provider, participant, "DELETE", registered).status_code == 405
    assert manage(clean_data_provider, participant, "GET", registered).status_code == 200
    assert bank_token(clean_data_provider, participant, registered["client_id"]).status_code == 200


def test_registration_deleted_at_the_bank_answers_invalid_token(
    clean_data_provider: DataProvider, participant: Participant, registered: dict[str, Any]
) -> None:
    clean_data_provider.delete_registration(registered["client_id"])

    assert _error(manage(clean_data_provider, participant, "GET", registered))[:2] == (
        401,
        "invalid_token",
    )


def test_bank_outage_answers_503_on_registration(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    participant: Participant,
) -> None:
    clean_data_provider.registration_outage(count=1)
    metadata = client_metadata(participant, fresh_ssa(auth_server, directory, participant))

    assert register(clean_data_provider, participant, metadata).status_code == 503
    assert register(clean_data_provider, participant, metadata).status_code == 201


# -- a plain RFC 7591 server -----------------------------------------------------------------


@pytest.fixture
def plain_provider(tmp_path: Path, test_pki: TestPKI) -> Iterator[DataProvider]:
    """A server outside Open Finance: no software statement, an initial access token, and a
    registration access token that rotates on every update."""
    with DataProvider(
        tmp_path / "plain",
        test_pki,
        initial_access_token="initial-access-token-for-tests",
        rotate_registration_access_token=True,
    ) as server:
        yield server


def test_plain_server_wants_the_initial_access_token_and_rotates_the_registration_token(
    plain_provider: DataProvider, test_pki: TestPKI, tmp_path: Path
) -> None:
    certificate = test_pki.client_certificate("plain.example")
    participant = Participant("org", "software", "unused", [], certificate, tmp_path)
    metadata: dict[str, Any] = {
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": certificate.subject_dn,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "scope": "accounts",
    }
    with participant.http(plain_provider) as http:
        refused = http.post(plain_provider.mtls_registration_endpoint, json=metadata)
        created = http.post(
            plain_provider.mtls_registration_endpoint,
            json=metadata,
            headers={"Authorization": "Bearer initial-access-token-for-tests"},
        )
    assert _error(refused)[:2] == (401, "invalid_token")
    assert created.status_code == 201, created.text
    registration = created.json()

    updated = manage(
        plain_provider,
        participant,
        "PUT",
        registration,
        {**metadata, "client_id": registration["client_id"]},
    )

    assert updated.status_code == 200, updated.text
    rotated = updated.json()["registration_access_token"]
    assert rotated != registration["registration_access_token"]
    assert _error(manage(plain_provider, participant, "GET", registration))[:2] == (
        401,
        "invalid_token",
    )
    assert (
        manage(
            plain_provider,
            participant,
            "GET",
            {**registration, "registration_access_token": rotated},
        ).status_code
        == 200
    )


def test_a_server_that_cannot_start_raises_with_its_log(tmp_path: Path, test_pki: TestPKI) -> None:
    server = DataProvider(
        tmp_path / "broken", test_pki, extra_config={"server_cert": str(tmp_path / "missing.crt")}
    )

    with pytest.raises(RuntimeError, match=r"test data provider exited with 1:(.|\n)*missing\.crt"):
        server.start()
    assert not server.running
