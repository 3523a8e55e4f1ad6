"""Fixtures for the token flow against the real test authorization server."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from raidiam_devenv.authserver import AuthServer
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
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"


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
