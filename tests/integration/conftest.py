"""Fixtures for the token flow against the real test authorization server, and a participant's
software for the directory and the bank."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.devserver import DevServer
from raidiam_devenv.directory import Directory
from raidiam_devenv.pki import IssuedCertificate, SigningKey, TestPKI
from raidiam_operator.core.rules import AssertionAudience
from raidiam_operator.protocol.credentials import load_signing_key, load_transport_certificate
from raidiam_operator.protocol.request import TokenRequest


@dataclass
class Files:
    """A client's credentials written to disk, as the CLI takes them."""

    client_id: str
    cert: Path | None = None
    key: Path | None = None
    signing_key: Path | None = None
    kid: str | None = None
    issued: IssuedCertificate | None = None
    signing: SigningKey | None = None


@pytest.fixture
def unique() -> Callable[[str], str]:
    return unique_name


@pytest.fixture
def tls_client(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path, unique: Callable[[str], str]
) -> Files:
    client_id = unique("tls")
    issued = test_pki.client_certificate(client_id)
    clean_auth_server.register_tls_client(client_id, issued)
    cert, key = issued.write(tmp_path, client_id)
    return Files(client_id=client_id, cert=cert, key=key, issued=issued)


def jwt_files(
    server: AuthServer, pki: TestPKI, tmp_path: Path, client_id: str, **metadata: object
) -> Files:
    """A private_key_jwt client registered on `server` (with `metadata`), with a signing key
    (kid sig-1) and a transport certificate from `pki` written to `tmp_path`."""
    signing = pki.signing_key("rsa")
    server.register_private_key_jwt_client(
        client_id, {"keys": [signing.public_jwk("sig-1")]}, **metadata
    )
    issued = pki.client_certificate(client_id)
    cert, key = issued.write(tmp_path, client_id)
    signing_path = tmp_path / f"{client_id}-signing.pem"
    signing_path.write_bytes(signing.private_pem)
    return Files(
        client_id=client_id,
        cert=cert,
        key=key,
        signing_key=signing_path,
        kid="sig-1",
        issued=issued,
        signing=signing,
    )


@pytest.fixture
def jwt_client(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path, unique: Callable[[str], str]
) -> Files:
    """A private_key_jwt client whose tokens are bound to a transport certificate."""
    return jwt_files(clean_auth_server, test_pki, tmp_path, unique("pkjwt"), bound=True)


def tls_request(server: AuthServer, files: Files, **overrides: object) -> TokenRequest:
    """The token request the operator would send for the tls_client_auth client `files`."""
    assert files.issued is not None
    fields: dict[str, object] = {
        "issuer": server.issuer,
        "client_id": files.client_id,
        "auth_method": "tls_client_auth",
        "transport": load_transport_certificate(
            files.issued.cert_pem, files.issued.key_pem, now=datetime.now(UTC)
        ),
        "scope": "directory:software",
        "ca_bundle": server.ca_path.read_bytes(),
    }
    fields.update(overrides)
    return TokenRequest(**fields)  # type: ignore[arg-type]


def jwt_request(
    server: AuthServer,
    files: Files,
    *,
    bound: bool = True,
    audience: AssertionAudience = "issuer",
    **overrides: object,
) -> TokenRequest:
    """The token request for the private_key_jwt client `files` (without `bound`: no transport
    certificate)."""
    assert files.signing is not None
    assert files.issued is not None
    fields: dict[str, object] = {
        "issuer": server.issuer,
        "client_id": files.client_id,
        "auth_method": "private_key_jwt",
        "signing_key": load_signing_key(
            files.signing.private_pem, key_id=files.kid or "", algorithm=None
        ),
        "transport": load_transport_certificate(
            files.issued.cert_pem, files.issued.key_pem, now=datetime.now(UTC)
        )
        if bound
        else None,
        "scope": "directory:software",
        "assertion_audience": audience,
        "ca_bundle": server.ca_path.read_bytes(),
    }
    fields.update(overrides)
    return TokenRequest(**fields)  # type: ignore[arg-type]


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.stdout)
        return document


def mtls_args(files: Files, method: str = "tls_client_auth") -> list[str]:
    """`token` arguments for a mutual-TLS client."""
    return [
        "--client-id",
        files.client_id,
        "--auth-method",
        method,
        "--cert",
        str(files.cert),
        "--key",
        str(files.key),
        "--scope",
        "directory:software",
    ]


def private_key_jwt_args(files: Files) -> list[str]:
    """`token` arguments for a private_key_jwt client with a transport certificate."""
    return [
        "--client-id",
        files.client_id,
        "--auth-method",
        "private_key_jwt",
        "--signing-key",
        str(files.signing_key),
        "--kid",
        str(files.kid),
        "--cert",
        str(files.cert),
        "--key",
        str(files.key),
        "--scope",
        "directory:software",
    ]


@pytest.fixture
def cli(clean_auth_server: AuthServer) -> Callable[..., CliResult]:
    """Run `raidiam-operator token` in a subprocess, as a user would (against `server`, by
    default the session's test server; `issuer` names another issuer URL)."""

    def run(
        *args: str, ca: bool = True, server: AuthServer | None = None, issuer: str | None = None
    ) -> CliResult:
        server = server or clean_auth_server
        url = issuer or server.issuer
        command = [sys.executable, "-m", "raidiam_operator", "token", "--issuer", url]
        if ca:
            command += ["--ca-file", str(server.ca_path)]
        completed = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    return run


# -- a participant of Open Finance Brasil: the directory, the bank -----------------------


ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")


def unique_name(prefix: str) -> str:
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
        cert_path, key_path = cert.write(self.workdir, unique_name("transport"))
        context.load_cert_chain(cert_path, key_path)
        return httpx.Client(verify=context, timeout=10.0, trust_env=False)

    def rotate_certificate(self, pki: TestPKI, auth_server: AuthServer) -> IssuedCertificate:
        """A new transport certificate, with another subject, known to the directory's
        authorization server as the old one was."""
        self.certificate = open_finance_certificate(
            pki, self.organisation_id, self.software_statement_id, unique_name("rotated")
        )
        auth_server.register_tls_client(self.directory_client_id, self.certificate)
        return self.certificate

    def transport_files(self) -> tuple[Path, Path]:
        """The transport certificate and its key on disk, as the command line takes them."""
        return self.certificate.write(self.workdir, "transport")


@pytest.fixture
def participant(
    clean_auth_server: AuthServer, clean_directory: Directory, test_pki: TestPKI, tmp_path: Path
) -> Participant:
    organisation_id = str(uuid.uuid4())
    software_statement_id = str(uuid.uuid4())
    client_id = unique_name("directory-client")
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
