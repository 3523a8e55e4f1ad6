"""`raidiam-operator token` against the sandbox server in the modes other conformant servers have:
self_signed_tls_client_auth, opaque access tokens, a server that binds nothing, and a server that
wants its token endpoint as the client assertion's audience. What a user sees: stdout, stderr and
the exit code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.pki import TestPKI, self_signed_certificate

from .conftest import CliResult, Files, jwt_files, mtls_args, private_key_jwt_args

pytestmark = pytest.mark.authserver
Cli = Callable[..., CliResult]


@pytest.fixture
def self_signed_client(
    clean_auth_server: AuthServer, tmp_path: Path, unique: Callable[[str], str]
) -> Files:
    client_id = unique("selfsigned")
    issued = self_signed_certificate(client_id)
    clean_auth_server.register_self_signed_tls_client(client_id, issued)
    cert, key = issued.write(tmp_path, client_id)
    return Files(client_id=client_id, cert=cert, key=key, issued=issued)


@pytest.fixture
def token_endpoint_aud_client(
    clean_auth_server: AuthServer, test_pki: TestPKI, tmp_path: Path, unique: Callable[[str], str]
) -> Files:
    """A private_key_jwt client whose assertions must carry the token endpoint as aud."""
    return jwt_files(
        clean_auth_server,
        test_pki,
        tmp_path,
        unique("tokenaud"),
        assertion_audience="token_endpoint",
    )


# -- self_signed_tls_client_auth --------------------------------------------------------------


def test_a_self_signed_client_gets_a_token_bound_to_its_certificate_from_the_mtls_alias(
    cli: Cli, clean_auth_server: AuthServer, self_signed_client: Files
) -> None:
    result = cli(*mtls_args(self_signed_client, "self_signed_tls_client_auth"))

    assert result.code == 0, result.stderr
    document = result.json()
    assert document["binding"] == "verified"
    assert document["certificate_thumbprint"] == self_signed_client.issued.x5t_s256  # type: ignore[union-attr]
    assert document["token_endpoint"] == clean_auth_server.mtls_token_endpoint


def test_a_self_signed_certificate_other_than_the_registered_one_is_refused(
    cli: Cli, clean_auth_server: AuthServer, self_signed_client: Files, tmp_path: Path
) -> None:
    stranger = self_signed_certificate(self_signed_client.client_id)
    cert, key = stranger.write(tmp_path, "stranger")
    files = Files(self_signed_client.client_id, cert, key)

    result = cli(*mtls_args(files, "self_signed_tls_client_auth"))

    assert result.code == 3
    assert "invalid_client" in result.stderr
    assert result.stdout == ""


def test_a_server_that_does_not_list_self_signed_tls_client_auth_is_named_before_sending(
    cli: Cli, test_pki: TestPKI, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    with AuthServer(
        tmp_path / "server",
        test_pki,
        extra_config={"client_auth_methods": ["tls_client_auth", "private_key_jwt"]},
    ) as server:
        issued = self_signed_certificate("nobody")
        cert, key = issued.write(tmp_path, "nobody")

        result = cli(
            *mtls_args(Files("nobody", cert, key), "self_signed_tls_client_auth"), server=server
        )

        assert result.code == 2
        assert "does not support auth method self_signed_tls_client_auth" in result.stderr
        assert server.stats()["token_requests_total"] == 0


# -- opaque tokens and binding ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["tls_client_auth", "private_key_jwt"])
def test_an_opaque_token_from_a_server_that_advertises_binding_is_reported_advertised(
    cli: Cli,
    clean_auth_server: AuthServer,
    test_pki: TestPKI,
    tmp_path: Path,
    unique: Callable[[str], str],
    method: str,
) -> None:
    client_id = unique("opaque")
    if method == "tls_client_auth":
        issued = test_pki.client_certificate(client_id)
        clean_auth_server.register_tls_client(client_id, issued, access_token_format="opaque")
        cert, key = issued.write(tmp_path, client_id)
        args = mtls_args(Files(client_id, cert, key), method)
    else:
        files = jwt_files(
            clean_auth_server, test_pki, tmp_path, client_id, access_token_format="opaque"
        )
        issued = files.issued  # type: ignore[assignment]
        args = private_key_jwt_args(files)

    result = cli(*args)

    assert result.code == 0, result.stderr
    document = result.json()
    assert document["access_token"].count(".") != 2  # opaque, as the server issues it
    assert document["binding"] == "advertised"
    assert document["certificate_thumbprint"] == issued.x5t_s256


def test_an_opaque_token_from_a_server_that_binds_nothing_reports_no_thumbprint(
    cli: Cli,
    unbinding_auth_server: AuthServer,
    test_pki: TestPKI,
    tmp_path: Path,
    unique: Callable[[str], str],
) -> None:
    """The case that used to claim a binding: private_key_jwt with a transport certificate
    against a server that issues opaque tokens and binds nothing."""
    files = jwt_files(
        unbinding_auth_server,
        test_pki,
        tmp_path,
        unique("unbound"),
        access_token_format="opaque",
        bound=False,
    )

    result = cli(*private_key_jwt_args(files), server=unbinding_auth_server)

    assert result.code == 0, result.stderr
    document = result.json()
    assert document["binding"] == "none"
    assert "certificate_thumbprint" not in document
    assert document["token_endpoint"] == unbinding_auth_server.mtls_token_endpoint


def test_a_jwt_from_a_server_that_binds_nothing_reports_no_thumbprint(
    cli: Cli,
    unbinding_auth_server: AuthServer,
    test_pki: TestPKI,
    tmp_path: Path,
    unique: Callable[[str], str],
) -> None:
    files = jwt_files(unbinding_auth_server, test_pki, tmp_path, unique("unbound"), bound=False)

    result = cli(*private_key_jwt_args(files), server=unbinding_auth_server)

    assert result.code == 0, result.stderr
    assert result.json()["binding"] == "none"
    assert "certificate_thumbprint" not in result.json()


# -- a server that wants the token endpoint as the assertion's audience ------------------------


def test_a_server_wanting_the_token_endpoint_as_aud_is_quoted_whole_and_clean(
    cli: Cli, clean_auth_server: AuthServer, token_endpoint_aud_client: Files
) -> None:
    files = token_endpoint_aud_client

    result = cli(*private_key_jwt_args(files))

    assert result.code == 3
    assert result.stdout == ""
    wanted = clean_auth_server.mtls_token_endpoint
    assert (
        f'The "aud" claim of the client_assertion must be the token endpoint URL {wanted}, '
        f'not "{clean_auth_server.issuer}". '
    ) in result.stderr
    assert ".." not in result.stderr
    hint = (
        f"The client assertion's aud was the issuer {clean_auth_server.issuer}; if the server "
        f"wants its token endpoint {wanted} there, set assertionAudience: tokenEndpoint in the "
        "RaidiamClient (--audience token_endpoint on the command line)."
    )
    assert hint in result.stderr
    # The server named the audience, so that hint comes before the usual invalid_client causes.
    assert result.stderr.index(hint) < result.stderr.index("Check that the client id")


def test_a_server_wanting_the_token_endpoint_as_aud_issues_with_audience_token_endpoint(
    cli: Cli, clean_auth_server: AuthServer, token_endpoint_aud_client: Files
) -> None:
    files = token_endpoint_aud_client

    result = cli(*private_key_jwt_args(files), "--audience", "token_endpoint")

    assert result.code == 0, result.stderr
    assert result.json()["binding"] == "verified"


def test_a_long_server_description_reaches_stderr_whole(
    cli: Cli, clean_auth_server: AuthServer, self_signed_client: Files
) -> None:
    description = "Refused: " + "this server explains itself at length. " * 27
    description += "See https://auth.example/docs/errors#invalid_client for the fix."
    clean_auth_server.set_fault(
        mode="status",
        status=401,
        count=1,
        client_id=self_signed_client.client_id,
        body=json.dumps({"error": "invalid_client", "error_description": description}),
    )

    result = cli(*mtls_args(self_signed_client, "self_signed_tls_client_auth"))

    assert result.code == 3
    assert len(description) > 1000
    assert description.strip() in result.stderr
    assert "for the fix. Check that the client id" in result.stderr
