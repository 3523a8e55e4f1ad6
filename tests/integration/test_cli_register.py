"""`raidiam-operator register`, run as a user runs it, against the devenv directory and bank:
what reaches stdout, stderr and the exit code; then a token from the bank with the new client.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.dataprovider import DataProvider
from raidiam_devenv.directory import Directory
from raidiam_devenv.pki import TestPKI

from .conftest import CliResult, Participant
from .test_registration_servers import fresh_ssa

pytestmark = pytest.mark.authserver


@dataclass
class Software(Participant):
    """The participant, with its transport certificate on disk for the command line."""

    cert: Path = Path()
    key: Path = Path()


@pytest.fixture
def software(participant: Participant) -> Software:
    cert, key = participant.transport_files()
    return Software(**vars(participant), cert=cert, key=key)


def raidiam_operator(*args: str) -> CliResult:
    completed = subprocess.run(
        [sys.executable, "-m", "raidiam_operator", *args],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


Register = Callable[..., CliResult]


@pytest.fixture
def register(
    auth_server: AuthServer,
    directory: Directory,
    clean_data_provider: DataProvider,
    software: Software,
) -> Register:
    """`register` at the bank with an SSA fresh from the directory (a directory token got by
    the command itself), tls_client_auth and the SSA's first redirect URI; `args` add to or,
    with `--issuer` etc. given again, override these."""

    def run(*args: str, from_directory: bool = True) -> CliResult:
        command = [
            "register",
            "--issuer",
            clean_data_provider.issuer,
            "--ca-file",
            str(clean_data_provider.ca_path),
            "--cert",
            str(software.cert),
            "--key",
            str(software.key),
        ]
        if from_directory:
            command += [
                *software_statement_at(directory, software),
                "--directory-issuer",
                auth_server.issuer,
                "--directory-client-id",
                software.directory_client_id,
            ]
        if "--redirect-uri" not in args and not {"--read", "--delete"} & set(args):
            command += ["--redirect-uri", software.redirect_uris[0]]
        if "--scope" not in args and not {"--read", "--delete"} & set(args):
            command += ["--scope", "accounts"]
        return raidiam_operator(*command, *args)

    return run


def software_statement_at(directory: Directory, software: Software) -> list[str]:
    """Where the directory issues the software's SSA."""
    return [
        "--directory-api",
        directory.api_base_url,
        "--organisation-id",
        software.organisation_id,
        "--software-statement-id",
        software.software_statement_id,
    ]


def with_directory_token(directory: Directory, software: Software, token_file: Path) -> list[str]:
    """The SSA from the directory, with the directory token in `token_file`."""
    return [*software_statement_at(directory, software), "--directory-token", str(token_file)]


def token(
    server: AuthServer, software: Software, client_id: str, scope: str = "accounts"
) -> CliResult:
    """`raidiam-operator token` by tls_client_auth with the software's transport certificate."""
    return raidiam_operator(
        "token",
        "--issuer",
        server.issuer,
        "--ca-file",
        str(server.ca_path),
        "--client-id",
        client_id,
        "--auth-method",
        "tls_client_auth",
        "--cert",
        str(software.cert),
        "--key",
        str(software.key),
        "--scope",
        scope,
    )


def test_register_from_the_directory_gives_a_client_that_gets_tokens_from_the_bank(
    register: Register, clean_data_provider: DataProvider, software: Software
) -> None:
    result = register()

    assert result.code == 0, result.stderr
    registration = result.json()
    client_id = registration["client_id"]
    assert (
        registration["tls_client_auth_subject_dn"] == software.certificate.open_finance_subject_dn
    )
    assert registration["registration_client_uri"].endswith(client_id)
    assert "registration_access_token" not in registration
    assert "software_statement" not in registration
    assert result.stderr == ""
    issued = token(clean_data_provider, software, client_id)
    assert issued.code == 0, issued.stderr
    assert issued.json()["certificate_thumbprint"] == software.certificate.x5t_s256
    assert clean_data_provider.registrations(client_id)["created"] == 1


def test_registration_token_is_printed_only_when_asked_and_saved_privately(
    register: Register, software: Software
) -> None:
    saved = software.workdir / "registration-token"

    result = register("--show-registration-token", "--save-registration-token", str(saved))

    assert result.code == 0, result.stderr
    printed = result.json()["registration_access_token"]
    assert saved.read_text().strip() == printed
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def test_a_directory_token_from_a_file_fetches_the_software_statement(
    register: Register, auth_server: AuthServer, directory: Directory, software: Software
) -> None:
    got = token(auth_server, software, software.directory_client_id, "directory:software")
    assert got.code == 0, got.stderr
    token_file = software.workdir / "directory-token"
    token_file.write_text(got.json()["access_token"] + "\n")

    result = register(*with_directory_token(directory, software, token_file), from_directory=False)

    assert result.code == 0, result.stderr
    assert result.json()["software_id"] == software.software_statement_id


@pytest.mark.parametrize(
    ("args", "fault", "error", "hint"),
    [
        pytest.param(
            ("--redirect-uri", "https://elsewhere.example/cb"),
            None,
            "invalid_redirect_uri",
            "software_redirect_uris",
            id="redirect-outside-ssa",
        ),
        pytest.param(
            ("--jwks-uri", "https://elsewhere.example/jwks"),
            None,
            "invalid_client_metadata",
            "jwks_uri must be the software statement's software_jwks_uri",
            id="other-jwks-uri",
        ),
        pytest.param(
            ("--subject-dn", "CN=someone.example,O=Other,C=BR"),
            None,
            "invalid_client_metadata",
            "tls_client_auth_subject_dn the transport certificate's subject",
            id="subject-dn-of-another-certificate",
        ),
        pytest.param(
            (),
            Directory.issue_stale_ssa,
            "invalid_software_statement",
            "s before this request, and the Brasil profile takes one at most 300 s old",
            id="stale-ssa",
        ),
        pytest.param(
            (),
            Directory.issue_foreign_signed_ssa,
            "invalid_software_statement",
            "signed by the directory the server trusts",
            id="foreign-signed-ssa",
        ),
    ],
)
def test_each_rejection_exits_3_with_the_servers_error_and_what_to_fix(
    register: Register,
    directory: Directory,
    clean_data_provider: DataProvider,
    args: tuple[str, ...],
    fault: Callable[[Directory], object] | None,
    error: str,
    hint: str,
) -> None:
    if fault is not None:
        fault(directory)

    result = register(*args)

    assert result.code == 3, result.stderr
    assert (
        f"RegistrationRejected: the authorization server rejected the registration request with {error} (HTTP 400)"
        in result.stderr
    )
    assert hint in result.stderr
    assert result.stdout == ""
    assert clean_data_provider.stats()["registrations_created_total"] == 0
    assert "eyJ" not in result.stderr  # no SSA, no token


def test_a_directory_outage_exits_4_and_registers_nothing(
    register: Register, clean_directory: Directory, clean_data_provider: DataProvider
) -> None:
    clean_directory.outage(count=2)  # the command's quick retry meets it too

    result = register()

    assert result.code == 4
    assert "SoftwareStatementUnavailable: the directory answered HTTP 503" in result.stderr
    assert clean_data_provider.stats()["registration_requests_total"] == 0


def test_a_directory_token_that_is_not_bound_to_the_certificate_exits_3(
    register: Register, directory: Directory, software: Software
) -> None:
    token_file = software.workdir / "directory-token"
    token_file.write_text("not-a-token-the-directory-knows\n")

    result = register(*with_directory_token(directory, software, token_file), from_directory=False)

    assert result.code == 3
    assert "SoftwareStatementRefused" in result.stderr
    assert "invalid_token" in result.stderr
    assert "not-a-token-the-directory-knows" not in result.stderr


def test_read_update_and_delete_manage_the_registration(
    register: Register, clean_data_provider: DataProvider, software: Software
) -> None:
    saved = software.workdir / "registration-token"
    registered = register("--save-registration-token", str(saved))
    assert registered.code == 0, registered.stderr
    client_id = registered.json()["client_id"]
    manage = ("--registration-client-uri", registered.json()["registration_client_uri"])
    manage += ("--registration-token", str(saved))

    read = register("--read", *manage, from_directory=False)
    updated = register(
        "--update",
        *manage,
        "--client-id",
        client_id,
        "--redirect-uri",
        software.redirect_uris[0],
        "--redirect-uri",
        software.redirect_uris[1],
    )
    deleted = register("--delete", *manage, from_directory=False)
    gone = register("--read", *manage, from_directory=False)
    deleted_again = register("--delete", *manage, from_directory=False)

    assert read.code == 0, read.stderr
    assert read.json()["client_id"] == client_id
    assert updated.code == 0, updated.stderr
    assert updated.json()["redirect_uris"] == software.redirect_uris
    assert deleted.code == 0, deleted.stderr
    assert deleted.json() == {"registration_client_uri": manage[1], "deleted": True}
    assert gone.code == 3
    assert "RegistrationGone" in gone.stderr
    assert deleted_again.code == 0
    assert "the registration was already gone at the server" in deleted_again.stderr
    assert clean_data_provider.registrations(client_id) == {
        "created": 1,
        "read": 1,
        "updated": 1,
        "deleted": 1,
    }
    assert saved.read_text().strip() not in "".join(
        r.stdout + r.stderr for r in (registered, read, updated, deleted, gone, deleted_again)
    )


def test_a_rotated_registration_token_is_written_back_to_its_file(
    tmp_path: Path, test_pki: TestPKI
) -> None:
    certificate = test_pki.client_certificate("plain.example")
    cert, key = certificate.write(tmp_path, "plain")
    initial = tmp_path / "initial-access-token"
    initial.write_text("initial-access-token-for-tests\n")
    with DataProvider(
        tmp_path / "plain",
        test_pki,
        initial_access_token="initial-access-token-for-tests",
        rotate_registration_access_token=True,
    ) as plain:
        common = ("--issuer", plain.issuer, "--ca-file", str(plain.ca_path))
        common += ("--cert", str(cert), "--key", str(key), "--scope", "accounts")
        saved = tmp_path / "registration-token"
        refused = raidiam_operator("register", *common, "--subject-dn", certificate.subject_dn)
        registered = raidiam_operator(
            "register",
            *common,
            "--subject-dn",
            certificate.subject_dn,
            "--initial-access-token",
            str(initial),
            "--save-registration-token",
            str(saved),
        )
        assert registered.code == 0, registered.stderr
        first = saved.read_text().strip()
        registration = registered.json()

        updated = raidiam_operator(
            "register",
            *common,
            "--update",
            "--subject-dn",
            certificate.subject_dn,
            "--client-id",
            registration["client_id"],
            "--registration-client-uri",
            registration["registration_client_uri"],
            "--registration-token",
            str(saved),
        )
        read = raidiam_operator(
            "register",
            *common,
            "--read",
            "--registration-client-uri",
            registration["registration_client_uri"],
            "--registration-token",
            str(saved),
        )

    assert refused.code == 3
    assert "invalid_token" in refused.stderr
    assert "the initial access token" in refused.stderr
    assert updated.code == 0, updated.stderr
    assert "rotated the registration access token" in updated.stderr
    assert saved.read_text().strip() != first
    assert read.code == 0, read.stderr


def test_a_server_without_registration_exits_2(
    clean_auth_server: AuthServer, software: Software
) -> None:
    statement = software.workdir / "ssa.jwt"
    statement.write_text("eyJhbGciOiJQUzI1NiJ9.eyJzb2Z0d2FyZV9pZCI6InMifQ.c2lnbmF0dXJl\n")

    result = raidiam_operator(
        "register",
        "--issuer",
        clean_auth_server.issuer,
        "--ca-file",
        str(clean_auth_server.ca_path),
        "--cert",
        str(software.cert),
        "--key",
        str(software.key),
        "--software-statement",
        str(statement),
    )

    assert result.code == 2
    assert "RegistrationEndpointMissing" in result.stderr
    assert "has no registration_endpoint" in result.stderr


def test_a_bank_that_refuses_delete_exits_3_and_keeps_the_registration(
    register: Register, clean_data_provider: DataProvider, software: Software
) -> None:
    saved = software.workdir / "registration-token"
    registered = register("--save-registration-token", str(saved))
    assert registered.code == 0, registered.stderr
    manage = ("--registration-client-uri", registered.json()["registration_client_uri"])
    manage += ("--registration-token", str(saved))
    clean_data_provider.refuse_delete()

    deleted = register("--delete", *manage, from_directory=False)

    assert deleted.code == 3
    assert "method_not_allowed (HTTP 405)" in deleted.stderr
    assert "does not support this RFC 7592 operation" in deleted.stderr
    assert register("--read", *manage, from_directory=False).code == 0


def test_a_renewed_certificate_is_registered_by_update_and_the_old_one_refused(
    register: Register,
    auth_server: AuthServer,
    clean_data_provider: DataProvider,
    software: Software,
    test_pki: TestPKI,
) -> None:
    saved = software.workdir / "registration-token"
    registered = register("--save-registration-token", str(saved))
    assert registered.code == 0, registered.stderr
    client_id = registered.json()["client_id"]
    old = replace(software)
    software.rotate_certificate(test_pki, auth_server)
    software.cert, software.key = software.certificate.write(software.workdir, "renewed")
    before_update = token(clean_data_provider, software, client_id)

    updated = register(
        "--update",
        "--registration-client-uri",
        registered.json()["registration_client_uri"],
        "--registration-token",
        str(saved),
        "--client-id",
        client_id,
    )

    assert before_update.code == 3
    assert updated.code == 0, updated.stderr
    assert (
        updated.json()["tls_client_auth_subject_dn"] == software.certificate.open_finance_subject_dn
    )
    assert token(clean_data_provider, software, client_id).code == 0
    assert token(clean_data_provider, old, client_id).code == 3


def test_a_software_statement_from_a_file_registers(
    register: Register, auth_server: AuthServer, directory: Directory, software: Software
) -> None:
    statement = software.workdir / "ssa.jwt"
    statement.write_text(fresh_ssa(auth_server, directory, software) + "\n")

    result = register("--software-statement", str(statement), from_directory=False)

    assert result.code == 0, result.stderr
    assert result.json()["software_id"] == software.software_statement_id


def test_a_private_key_jwt_client_signs_with_the_keys_of_the_ssa(
    register: Register, clean_data_provider: DataProvider, software: Software
) -> None:
    assert software.signing_key is not None
    signing_key = software.workdir / "signing.pem"
    signing_key.write_bytes(software.signing_key.private_pem)

    result = register("--auth-method", "private_key_jwt", "--signing-alg", "PS256")
    assert result.code == 0, result.stderr
    issued = raidiam_operator(
        "token",
        "--issuer",
        clean_data_provider.issuer,
        "--ca-file",
        str(clean_data_provider.ca_path),
        "--client-id",
        result.json()["client_id"],
        "--auth-method",
        "private_key_jwt",
        "--signing-key",
        str(signing_key),
        "--kid",
        "sig-1",
        "--cert",
        str(software.cert),
        "--key",
        str(software.key),
        "--scope",
        "accounts",
    )

    assert "tls_client_auth_subject_dn" not in result.json()
    assert issued.code == 0, issued.stderr
    assert issued.json()["certificate_thumbprint"] == software.certificate.x5t_s256
