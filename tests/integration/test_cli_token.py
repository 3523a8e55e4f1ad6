"""`raidiam-operator token`: what a user sees on stdout, stderr and in the exit code."""

from __future__ import annotations

from collections.abc import Callable

import jwt
import pytest

from raidiam_devenv.authserver import AuthServer

from .conftest import CliResult, Files, mtls_args, private_key_jwt_args

pytestmark = pytest.mark.authserver
Cli = Callable[..., CliResult]


@pytest.mark.parametrize("method", ["tls_client_auth", "private_key_jwt"])
def test_token_prints_json_with_a_token_bound_to_the_printed_thumbprint(
    cli: Cli, tls_client: Files, jwt_client: Files, clean_auth_server: AuthServer, method: str
) -> None:
    result = cli(
        *(
            mtls_args(tls_client)
            if method == "tls_client_auth"
            else private_key_jwt_args(jwt_client)
        )
    )

    assert result.code == 0, result.stderr
    document = result.json()
    claims = jwt.decode(document["access_token"], options={"verify_signature": False})
    assert claims["cnf"]["x5t#S256"] == document["certificate_thumbprint"]
    assert document["token_type"] == "Bearer"
    assert document["expires_in"] == 300
    assert document["expires_at"].endswith("Z")
    assert document["scope"] == "directory:software"
    assert document["token_endpoint"] == clean_auth_server.mtls_token_endpoint


def test_extra_parameters_reach_the_server(
    cli: Cli, tls_client: Files, clean_auth_server: AuthServer
) -> None:
    result = cli(*mtls_args(tls_client), "--param", f"resource={clean_auth_server.resource}")

    assert result.code == 0, result.stderr
    claims = jwt.decode(result.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == clean_auth_server.resource


def test_a_key_that_does_not_match_the_certificate_exits_2(
    cli: Cli, tls_client: Files, jwt_client: Files
) -> None:
    result = cli(
        "--client-id",
        tls_client.client_id,
        "--auth-method",
        "tls_client_auth",
        "--cert",
        str(tls_client.cert),
        "--key",
        str(jwt_client.key),
    )

    assert result.code == 2
    assert "KeyCertificateMismatch" in result.stderr
    assert "does not belong to the certificate" in result.stderr
    assert result.stdout == ""


def test_missing_flags_exit_2_with_what_is_missing(cli: Cli, tls_client: Files) -> None:
    result = cli("--client-id", tls_client.client_id, "--auth-method", "tls_client_auth")

    assert result.code == 2
    assert "needs --cert and --key" in result.stderr


def test_an_unknown_auth_method_is_a_usage_error(cli: Cli) -> None:
    result = cli("--client-id", "x", "--auth-method", "client_secret_basic")

    assert result.code == 2
    assert "invalid choice" in result.stderr


def test_an_untrusted_server_exits_2_and_says_to_set_the_ca(cli: Cli, tls_client: Files) -> None:
    result = cli(*mtls_args(tls_client), ca=False)

    assert result.code == 2
    assert "not trusted" in result.stderr


def test_a_rejection_exits_3_with_the_oauth_error_on_stderr(cli: Cli, tls_client: Files) -> None:
    args = mtls_args(tls_client)
    args[1] = "not-registered"

    result = cli(*args)

    assert result.code == 3
    assert "invalid_client" in result.stderr
    assert "client authentication failed" in result.stderr  # the server's error_description


def test_invalid_scope_exits_3(cli: Cli, tls_client: Files) -> None:
    result = cli(*mtls_args(tls_client)[:-2], "--scope", "accounts:all-of-them")

    assert result.code == 3
    assert "invalid_scope" in result.stderr


def test_a_server_that_stays_unavailable_exits_4_after_one_quick_retry(
    cli: Cli, tls_client: Files, clean_auth_server: AuthServer
) -> None:
    clean_auth_server.set_fault(mode="status", status=503, retry_after="1")

    result = cli(*mtls_args(tls_client))

    assert result.code == 4
    assert "HTTP 503" in result.stderr
    assert clean_auth_server.stats()["token_requests_total"] == 2


def test_a_single_blip_is_absorbed_by_the_quick_retry(
    cli: Cli, tls_client: Files, clean_auth_server: AuthServer
) -> None:
    clean_auth_server.set_fault(mode="status", status=503, count=1)

    result = cli(*mtls_args(tls_client))

    assert result.code == 0, result.stderr


def test_rate_limiting_that_asks_for_a_long_wait_exits_4_at_once(
    cli: Cli, tls_client: Files, clean_auth_server: AuthServer
) -> None:
    clean_auth_server.set_fault(mode="status", status=429, retry_after="3600")

    result = cli(*mtls_args(tls_client))

    assert result.code == 4
    assert "3600" in result.stderr
    assert clean_auth_server.stats()["token_requests_total"] == 1


def test_an_unreachable_server_exits_4(cli: Cli, tls_client: Files) -> None:
    result = cli(*mtls_args(tls_client), issuer="https://127.0.0.1:1")

    assert result.code == 4
    assert "could not connect" in result.stderr
