"""Registration over httpx.MockTransport: what goes on the wire to the directory and the bank,
how each refusal comes back (with the hint that says what to fix), the bounds on the software
statement, and the subject DN in the Open Finance Brasil profile's format."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import (
    ConnectionFailure,
    DirectoryTokenMissing,
    InvalidSoftwareStatement,
    InvalidTokenResponse,
    RaidiamOperatorError,
    RegistrationEndpointMissing,
    RegistrationGone,
    RegistrationRejected,
    ServerUnavailable,
    SoftwareStatementRefused,
    SoftwareStatementUnavailable,
    TransientError,
)
from raidiam_operator.core.registration import (
    ClientMetadata,
    RegistrationHandle,
    registered_digest,
)
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.credentials import TransportCertificate, load_transport_certificate
from raidiam_operator.protocol.registrar import (
    Registrar,
    RegistrationServer,
    SoftwareStatementSource,
)
from raidiam_operator.protocol.registration import open_finance_subject_dn, read_software_statement

ISSUER = "https://bank.example"
MTLS_REGISTRATION = "https://matls-bank.example/reg"
CLIENT_URI = f"{MTLS_REGISTRATION}/c-1"
DIRECTORY_API = "https://matls-api.directory.example"
ASSERTION = f"{DIRECTORY_API}/organisations/org-1/softwarestatements/ss-1/assertion"
DIRECTORY_TOKEN = "directory-token-value"
REGISTRATION_TOKEN = "registration-token-value"
INITIAL_TOKEN = "initial-token-value"


def _b64(document: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def jwt_text(claims: dict[str, Any], *, padding: int = 0) -> str:
    """A compact JWS with `claims` (not really signed: we never verify an SSA)."""
    claims = {**claims, "pad": "x" * padding} if padding else claims
    return f"{_b64({'alg': 'PS256', 'kid': 'dir'})}.{_b64(claims)}.c2lnbmF0dXJl"


SSA = jwt_text(
    {
        "software_id": "ss-1",
        "org_id": "org-1",
        "software_jwks_uri": "https://keystore.example/org-1/ss-1/application.jwks",
        "iat": 1_700_000_000,
    }
)
REGISTERED = {
    "client_id": "c-1",
    "client_id_issued_at": 1_700_000_000,
    "registration_client_uri": CLIENT_URI,
    "registration_access_token": REGISTRATION_TOKEN,
    "software_statement": SSA,
    "redirect_uris": ["https://tpp.example/cb"],
}
Answer = Callable[[httpx.Request], httpx.Response]


class Bank:
    """Discovery, registration and the directory's SSA endpoint, answering as told."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.discovery: dict[str, Any] = {
            "issuer": ISSUER,
            "token_endpoint": f"{ISSUER}/token",
            "registration_endpoint": f"{ISSUER}/reg",
            "mtls_endpoint_aliases": {"registration_endpoint": MTLS_REGISTRATION},
        }
        self.answers: dict[tuple[str, str], Answer] = {
            ("POST", MTLS_REGISTRATION): lambda r: httpx.Response(201, json=REGISTERED),
            ("POST", f"{ISSUER}/reg"): lambda r: httpx.Response(201, json=REGISTERED),
            ("GET", CLIENT_URI): lambda r: httpx.Response(200, json=REGISTERED),
            ("PUT", CLIENT_URI): lambda r: httpx.Response(200, json=REGISTERED),
            ("DELETE", CLIENT_URI): lambda r: httpx.Response(204),
            ("GET", ASSERTION): lambda r: httpx.Response(
                200, text=SSA, headers={"content-type": "application/jwt"}
            ),
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        url = str(request.url.copy_with(query=None))
        return self.answers[(request.method, url)](request)

    def answer(self, method: str, url: str, status: int, **kwargs: Any) -> None:
        self.answers[(method, url)] = lambda r: httpx.Response(status, **kwargs)

    def last(self, method: str) -> httpx.Request:
        return [r for r in self.requests if r.method == method][-1]


@pytest.fixture
def bank() -> Bank:
    return Bank()


@pytest.fixture(scope="module")
def transport(pki: TestPKI) -> TransportCertificate:
    issued = pki.client_certificate("tpp.example")
    return load_transport_certificate(issued.cert_pem, issued.key_pem, now=datetime.now(UTC))


@pytest.fixture
def server(transport: TransportCertificate) -> RegistrationServer:
    return RegistrationServer(ISSUER, transport)


@pytest.fixture
def registrar(bank: Bank) -> Registrar:
    return Registrar(TokenClient(transport=httpx.MockTransport(bank)))


HANDLE = RegistrationHandle(CLIENT_URI, REGISTRATION_TOKEN)
SECRETS = (SSA, DIRECTORY_TOKEN, REGISTRATION_TOKEN, INITIAL_TOKEN)


def assert_no_secret(error: RaidiamOperatorError) -> None:
    for secret in SECRETS:
        assert secret not in str(error)
        assert secret not in error.note()


# -- registering -----------------------------------------------------------------------------


async def test_register_posts_json_to_the_mtls_alias_with_the_initial_access_token(
    registrar: Registrar, server: RegistrationServer, bank: Bank
) -> None:
    registration = await registrar.register(
        server, {"software_statement": SSA, "scope": "accounts"}, initial_access_token=INITIAL_TOKEN
    )

    sent = bank.last("POST")
    assert str(sent.url) == MTLS_REGISTRATION
    assert sent.headers["authorization"] == f"Bearer {INITIAL_TOKEN}"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {"software_statement": SSA, "scope": "accounts"}
    assert registration.client_id == "c-1"
    assert registration.client_id_issued_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert registration.handle() == HANDLE
    assert "registration_access_token" not in registration.document
    assert "software_statement" not in registration.document
    assert REGISTRATION_TOKEN not in repr(registration)


async def test_without_a_certificate_the_plain_registration_endpoint_is_used(
    registrar: Registrar, bank: Bank
) -> None:
    await registrar.register(RegistrationServer(ISSUER, None), {})

    assert str(bank.last("POST").url) == f"{ISSUER}/reg"
    assert "authorization" not in bank.last("POST").headers


async def test_a_server_without_a_registration_endpoint_says_so(
    registrar: Registrar, server: RegistrationServer, bank: Bank
) -> None:
    del bank.discovery["registration_endpoint"], bank.discovery["mtls_endpoint_aliases"]

    with pytest.raises(RegistrationEndpointMissing, match="has no registration_endpoint"):
        await registrar.register(server, {})
    assert not [r for r in bank.requests if r.method == "POST"]


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("invalid_software_statement", "issued less than 5 minutes before the request"),
        ("unapproved_software_statement", "ask the data provider to allow the software"),
        ("invalid_client_metadata", "jwks_uri must be the software statement's software_jwks_uri"),
        ("invalid_redirect_uri", "software_redirect_uris"),
        ("invalid_client", "register over mutual TLS"),
        ("invalid_token", "the initial access token"),
    ],
)
async def test_each_rejection_carries_the_servers_error_and_a_hint(
    registrar: Registrar, server: RegistrationServer, bank: Bank, error: str, hint: str
) -> None:
    status = 401 if error in ("invalid_client", "invalid_token") else 400
    bank.answer(
        "POST",
        MTLS_REGISTRATION,
        status,
        json={"error": error, "error_description": "the server's own words\nforged: line"},
    )

    with pytest.raises(RegistrationRejected) as caught:
        await registrar.register(server, {"software_statement": SSA})

    rejection = caught.value
    assert (rejection.reason, rejection.error, rejection.status_code) == (
        "RegistrationRejected",
        error,
        status,
    )
    assert rejection.message.startswith(
        f"the authorization server rejected the registration request with {error} "
        f"(HTTP {status}): the server's own words forged: line."
    )
    assert hint in rejection.message
    assert_no_secret(rejection)


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(503, {}, None), (429, {"retry-after": "7"}, 7.0), (500, {}, None)],
)
async def test_an_overloaded_bank_is_transient(
    registrar: Registrar,
    server: RegistrationServer,
    bank: Bank,
    status: int,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    bank.answer("POST", MTLS_REGISTRATION, status, headers=headers, json={"error": "server_error"})

    with pytest.raises(ServerUnavailable) as caught:
        await registrar.register(server, {})

    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize(
    "answer",
    [
        {"client_id": ""},
        {"client_id": "c" * 300},
        {"client_id": "c-1", "registration_client_uri": "http://bank.example/reg/c-1"},
        {"client_id": "c-1", "registration_access_token": 42},
        {"client_id": "c-1\u202egpj.exe"},
        {"client_id": "c-1\n"},
        {"client_id": "c-1", "registration_client_uri": "https://attacker.example/reg/c-1"},
        {"client_id": "c-1", "registration_client_uri": "https://matls-bank.example:8443/r"},
        {"client_id": "c-1", "registration_client_uri": "https://user@matls-bank.example/r"},
        {"client_id": "c-1", "registration_client_uri": "https://matls-bank.example/r\u0085"},
    ],
    ids=[
        "empty-id",
        "long-id",
        "http-uri",
        "token-not-string",
        "bidi-id",
        "newline-id",
        "uri-elsewhere",
        "uri-other-port",
        "uri-user-part",
        "uri-control-character",
    ],
)
async def test_an_unusable_registration_answer_is_refused(
    registrar: Registrar, server: RegistrationServer, bank: Bank, answer: dict[str, Any]
) -> None:
    bank.answer("POST", MTLS_REGISTRATION, 201, json=answer)

    with pytest.raises(InvalidTokenResponse, match="the registration answer from"):
        await registrar.register(server, {})


@pytest.mark.parametrize(
    "uri", [f"{MTLS_REGISTRATION}/c-1", f"{ISSUER}/reg/c-1", "https://MATLS-bank.example:443/x"]
)
async def test_a_registration_client_uri_at_the_endpoint_or_the_issuer_is_kept(
    registrar: Registrar, server: RegistrationServer, bank: Bank, uri: str
) -> None:
    bank.answer(
        "POST",
        MTLS_REGISTRATION,
        201,
        json={"client_id": "c-1", "registration_client_uri": uri, "registration_access_token": "t"},
    )

    registration = await registrar.register(server, {})

    assert registration.registration_client_uri == uri


# -- RFC 7592 --------------------------------------------------------------------------------


async def test_read_sends_the_registration_access_token(
    registrar: Registrar, server: RegistrationServer, bank: Bank
) -> None:
    registration = await registrar.read(server, HANDLE)

    assert bank.last("GET").headers["authorization"] == f"Bearer {REGISTRATION_TOKEN}"
    assert "content-type" not in bank.last("GET").headers
    assert registration.document["redirect_uris"] == ["https://tpp.example/cb"]


async def test_update_keeps_a_rotated_token_and_otherwise_the_one_held(
    registrar: Registrar, server: RegistrationServer, bank: Bank
) -> None:
    bank.answer(
        "PUT", CLIENT_URI, 200, json={**REGISTERED, "registration_access_token": "rotated-value"}
    )
    rotated = await registrar.update(server, HANDLE, {"client_id": "c-1"})
    without = {k: v for k, v in REGISTERED.items() if k != "registration_access_token"}
    bank.answer("PUT", CLIENT_URI, 200, json=without)
    kept = await registrar.update(server, HANDLE, {"client_id": "c-1"})

    assert rotated.registration_access_token == "rotated-value"
    assert kept.registration_access_token == REGISTRATION_TOKEN
    assert json.loads(bank.last("PUT").content) == {"client_id": "c-1"}


@pytest.mark.parametrize(
    ("method", "status"), [("GET", 401), ("GET", 404), ("PUT", 401), ("DELETE", 401)]
)
async def test_a_registration_deleted_at_the_server_is_gone(
    registrar: Registrar, server: RegistrationServer, bank: Bank, method: str, status: int
) -> None:
    bank.answer(method, CLIENT_URI, status, json={"error": "invalid_token"})

    operations = {
        "GET": lambda: registrar.read(server, HANDLE),
        "PUT": lambda: registrar.update(server, HANDLE, {"client_id": "c-1"}),
        "DELETE": lambda: registrar.delete(server, HANDLE),
    }

    with pytest.raises(RegistrationGone) as caught:
        await operations[method]()

    assert caught.value.reason == "RegistrationGone"
    assert "register the client again" in caught.value.message
    assert_no_secret(caught.value)


async def test_an_update_the_bank_refuses_is_a_rejection_not_gone(
    registrar: Registrar, server: RegistrationServer, bank: Bank
) -> None:
    bank.answer("PUT", CLIENT_URI, 400, json={"error": "invalid_redirect_uri"})

    with pytest.raises(RegistrationRejected, match="invalid_redirect_uri"):
        await registrar.update(server, HANDLE, {"client_id": "c-1"})


async def test_delete_accepts_204_and_a_refusal_is_reported(
    registrar: Registrar, server: RegistrationServer, bank: Bank
) -> None:
    await registrar.delete(server, HANDLE)
    bank.answer("DELETE", CLIENT_URI, 405)

    with pytest.raises(RegistrationRejected) as caught:
        await registrar.delete(server, HANDLE)

    assert caught.value.error == "method_not_allowed"
    assert "does not support this RFC 7592 operation" in caught.value.message


# -- the software statement --------------------------------------------------------------------


@pytest.fixture
def source(transport: TransportCertificate) -> SoftwareStatementSource:
    return SoftwareStatementSource(DIRECTORY_API, "org-1", "ss-1", transport)


async def test_the_ssa_is_fetched_with_the_directory_token_as_a_jwt(
    registrar: Registrar, source: SoftwareStatementSource, bank: Bank
) -> None:
    statement = await registrar.software_statement(source, directory_token=DIRECTORY_TOKEN + "\n")

    sent = bank.last("GET")
    assert str(sent.url) == ASSERTION
    assert sent.headers["authorization"] == f"Bearer {DIRECTORY_TOKEN}"
    assert sent.headers["accept"] == "application/jwt"
    assert statement.assertion == SSA
    assert statement.software_jwks_uri == "https://keystore.example/org-1/ss-1/application.jwks"
    assert SSA not in repr(statement)


async def test_no_directory_token_sends_nothing(
    registrar: Registrar, source: SoftwareStatementSource, bank: Bank
) -> None:
    with pytest.raises(DirectoryTokenMissing, match="directory:software"):
        await registrar.software_statement(source, directory_token=" ")
    assert bank.requests == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (jwt_text({"software_id": "s"}, padding=4000), "more than the 4000 a directory issues"),
        ("not a jwt", "is not a signed JWT"),
        (f"{_b64({'alg': 'none'})}.{_b64({'software_id': 's'})}.", "is not a signed JWT"),
        (
            f"{_b64({'alg': 'PS256'})}.{base64.urlsafe_b64encode(b'[1]').decode().rstrip('=')}.c2ln",
            "is not a signed JWT",
        ),
    ],
    ids=["oversize", "not-a-jwt", "unsigned", "claims-not-an-object"],
)
async def test_an_ssa_that_is_not_what_a_directory_issues_is_refused(
    registrar: Registrar, source: SoftwareStatementSource, bank: Bank, body: str, message: str
) -> None:
    bank.answer("GET", ASSERTION, 200, text=body)

    with pytest.raises(InvalidSoftwareStatement) as caught:
        await registrar.software_statement(source, directory_token=DIRECTORY_TOKEN)

    assert message in caught.value.message
    assert body[:40] not in caught.value.message


def test_an_ssa_file_is_read_as_the_directory_answer_is() -> None:
    assert read_software_statement(SSA.encode() + b"\n", source="f").assertion == SSA
    with pytest.raises(InvalidSoftwareStatement, match="from --software-statement f is not ASCII"):
        read_software_statement("é".encode(), source="--software-statement f")


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (503, {}, "http_503", None),
        (429, {"retry-after": "30"}, "rate_limited", 30.0),
        (502, {}, "http_502", None),
    ],
)
async def test_a_directory_outage_is_transient(
    registrar: Registrar,
    source: SoftwareStatementSource,
    bank: Bank,
    status: int,
    headers: dict[str, str],
    kind: str,
    retry_after: float | None,
) -> None:
    bank.answer(
        "GET", ASSERTION, status, headers=headers, json={"error": "temporarily_unavailable"}
    )

    with pytest.raises(SoftwareStatementUnavailable) as caught:
        await registrar.software_statement(source, directory_token=DIRECTORY_TOKEN)

    assert (caught.value.kind, caught.value.retry_after) == (kind, retry_after)
    assert caught.value.reason == "SoftwareStatementUnavailable"
    assert isinstance(caught.value, TransientError)


async def test_an_unreachable_directory_is_unavailable_not_the_bank(
    source: SoftwareStatementSource,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    registrar = Registrar(TokenClient(transport=httpx.MockTransport(refuse)))

    with pytest.raises(SoftwareStatementUnavailable) as caught:
        await registrar.software_statement(source, directory_token=DIRECTORY_TOKEN)

    assert not isinstance(caught.value, ConnectionFailure)
    assert "could not connect to" in caught.value.message


@pytest.mark.parametrize(
    ("status", "body", "error", "hint"),
    [
        (401, {"error": "invalid_token"}, "invalid_token", "bound to this transport certificate"),
        (
            403,
            {"error": "insufficient_scope"},
            "insufficient_scope",
            "lacks the directory:software",
        ),
        (403, {"error": "access_denied"}, "access_denied", "another organisation"),
        (404, {"error": "not_found"}, "not_found", "Check the organisation id"),
        (404, None, "not_found", "Check the organisation id"),
    ],
)
async def test_a_directory_refusal_names_what_to_fix(
    registrar: Registrar,
    source: SoftwareStatementSource,
    bank: Bank,
    status: int,
    body: dict[str, str] | None,
    error: str,
    hint: str,
) -> None:
    bank.answer("GET", ASSERTION, status, json=body)

    with pytest.raises(SoftwareStatementRefused) as caught:
        await registrar.software_statement(source, directory_token=DIRECTORY_TOKEN)

    assert caught.value.error == error
    assert caught.value.message.startswith("the directory refused the software statement request")
    assert hint in caught.value.message
    assert_no_secret(caught.value)


# -- the subject DN ---------------------------------------------------------------------------


def _certificate(attributes: list[x509.NameAttribute[str]]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(attributes)
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_subject_dn_is_the_profiles_own_example() -> None:
    printable = _ASN1Type.PrintableString
    certificate = _certificate(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "BR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "DF"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "BRASILIA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "My Public Bank"),
            x509.NameAttribute(
                NameOID.ORGANIZATIONAL_UNIT_NAME, "497e1ffe-b2a2-4a4e-8ef0-70633fd11b59"
            ),
            x509.NameAttribute(NameOID.COMMON_NAME, "mycn.bank.gov.br"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "13353236000189", _type=printable),
            x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "Private Organization", _type=printable),
            x509.NameAttribute(NameOID.JURISDICTION_COUNTRY_NAME, "BR", _type=printable),
            x509.NameAttribute(NameOID.USER_ID, "67c57882-043b-11ec-9a03-0242ac130003"),
        ]
    )

    # The Brasil DCR profile's example of a tls_client_auth_subject_dn, as the profile writes it.
    assert open_finance_subject_dn(certificate) == (
        "UID=67c57882-043b-11ec-9a03-0242ac130003,1.3.6.1.4.1.311.60.2.1.3=#13024252,"
        "2.5.4.15=#131450726976617465204f7267616e697a6174696f6e,"
        "2.5.4.5=#130e3133333533323336303030313839,CN=mycn.bank.gov.br,"
        "OU=497e1ffe-b2a2-4a4e-8ef0-70633fd11b59,O=My Public Bank,L=BRASILIA,ST=DF,C=BR"
    )


def test_subject_dn_is_what_the_test_bank_checks(pki: TestPKI) -> None:
    issued = pki.client_certificate(
        "tpp.example",
        country="BR",
        organization="Participante Exemplo SA",
        organizational_unit="org-1",
        extra_attributes=[
            (NameOID.BUSINESS_CATEGORY, "Private Organization"),
            (x509.ObjectIdentifier("2.5.4.97"), "OFBBR-org-1"),
            (NameOID.USER_ID, "ss-1"),
        ],
    )

    assert open_finance_subject_dn(issued.certificate) == issued.open_finance_subject_dn


# -- submitting metadata ---------------------------------------------------------------------


async def test_submit_registers_with_the_derived_subject_dn_and_says_what_was_sent(
    registrar: Registrar, server: RegistrationServer, bank: Bank, transport: TransportCertificate
) -> None:
    metadata = ClientMetadata(redirect_uris=("https://tpp.example/cb",))
    statement = read_software_statement(SSA, source="test")

    submitted = await registrar.submit(server, metadata, software_statement=statement)

    sent = json.loads(bank.last("POST").content)
    assert sent["tls_client_auth_subject_dn"] == open_finance_subject_dn(transport.leaf)
    assert sent["jwks_uri"] == statement.software_jwks_uri
    assert "client_id" not in sent
    assert submitted.registration.client_id == "c-1"
    assert submitted.digest == registered_digest(
        metadata,
        subject_dn=open_finance_subject_dn(transport.leaf),
        software_statement=statement,
    )


async def test_submit_with_an_existing_registration_puts_it_naming_the_client(
    registrar: Registrar, server: RegistrationServer, bank: Bank
) -> None:
    metadata = ClientMetadata(tls_client_auth_subject_dn="CN=given")

    await registrar.submit(server, metadata, software_statement=None, existing=(HANDLE, "c-1"))

    sent = json.loads(bank.last("PUT").content)
    assert (sent["client_id"], sent["tls_client_auth_subject_dn"]) == ("c-1", "CN=given")
    assert bank.last("PUT").headers["content-type"] == "application/json"


async def test_a_refused_stale_ssa_says_how_old_it_was(
    bank: Bank, server: RegistrationServer
) -> None:
    bank.answer("POST", MTLS_REGISTRATION, 400, json={"error": "invalid_software_statement"})
    issued = datetime.fromtimestamp(1_700_000_000, UTC)
    registrar = Registrar(
        TokenClient(transport=httpx.MockTransport(bank)),
        clock=lambda: issued + timedelta(seconds=600),
    )

    with pytest.raises(RegistrationRejected) as caught:
        await registrar.submit(
            server, ClientMetadata(), software_statement=read_software_statement(SSA, source="t")
        )

    assert caught.value.hints[0].startswith(
        "The software statement was issued 600 s before this request, and the Brasil profile "
        "takes one at most 300 s old"
    )
