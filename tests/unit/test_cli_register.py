"""`register`'s flags: what is wrong is said, with exit code 2, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from raidiam_devenv.pki import TestPKI
from raidiam_operator.cli import main

BANK = "https://bank.example"


@pytest.fixture(scope="module")
def files(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    workdir = tmp_path_factory.mktemp("register-flags")
    cert, key = pki.client_certificate("tpp.example").write(workdir, "transport")
    oversize = workdir / "oversize.jwt"
    oversize.write_text("a" * 2000 + "." + "b" * 2000 + ".c")
    token = workdir / "token"
    token.write_text("a-token\n")
    return {"cert": cert, "key": key, "oversize": oversize, "token": token}


DIRECTORY = [
    "--directory-api",
    "https://matls-api.directory.example",
    "--organisation-id",
    "org",
    "--software-statement-id",
    "ss",
]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--auth-method", "tls_client_auth"],
            "tls_client_auth needs --cert and --key",
            id="no-certificate",
        ),
        pytest.param(["--cert", "{cert}"], "--cert and --key go together", id="cert-without-key"),
        pytest.param(
            ["--cert", "{cert}", "--key", "{key}", *DIRECTORY],
            "needs a directory token",
            id="no-directory-token",
        ),
        pytest.param(
            ["--cert", "{cert}", "--key", "{key}", "--directory-api", "https://d.example"],
            "needs --organisation-id, --software-statement-id",
            id="directory-ids-missing",
        ),
        pytest.param(
            [
                "--cert",
                "{cert}",
                "--key",
                "{key}",
                *DIRECTORY,
                "--software-statement",
                "{oversize}",
            ],
            "not both",
            id="two-software-statements",
        ),
        pytest.param(
            [
                "--cert",
                "{cert}",
                "--key",
                "{key}",
                *DIRECTORY,
                "--directory-token",
                "{token}",
                "--directory-issuer",
                "https://auth.example",
            ],
            "not both",
            id="two-directory-tokens",
        ),
        pytest.param(
            ["--auth-method", "private_key_jwt", "--software-statement", "{oversize}"],
            "InvalidSoftwareStatement: the software statement from --software-statement",
            id="oversize-ssa",
        ),
        pytest.param(
            ["--auth-method", "private_key_jwt", "--redirect-uri", "http://tpp.example/cb"],
            "--redirect-uri 'http://tpp.example/cb' must be an https URL",
            id="plain-http-redirect",
        ),
        pytest.param(
            ["--auth-method", "private_key_jwt", "--metadata", "client_id=x"],
            "--metadata may not set client_id",
            id="reserved-metadata",
        ),
        pytest.param(
            ["--auth-method", "private_key_jwt", "--metadata", "novalue"],
            "is not of the form name=value",
            id="metadata-not-a-pair",
        ),
        pytest.param(
            [
                "--auth-method",
                "private_key_jwt",
                "--read",
                "--registration-client-uri",
                "https://bank.example/reg/c",
            ],
            "--read needs --registration-client-uri and --registration-token",
            id="read-without-token",
        ),
        pytest.param(
            [
                "--auth-method",
                "private_key_jwt",
                "--update",
                "--registration-client-uri",
                "https://bank.example/reg/c",
                "--registration-token",
                "{token}",
            ],
            "--update needs --client-id",
            id="update-without-client-id",
        ),
        pytest.param(
            ["--auth-method", "private_key_jwt", "--registration-token", "{token}"],
            "are for --read, --update and --delete",
            id="token-without-operation",
        ),
        pytest.param(
            ["--auth-method", "private_key_jwt", "--initial-access-token", "/nonexistent/iat"],
            "--initial-access-token /nonexistent/iat: No such file or directory",
            id="missing-file",
        ),
    ],
)
def test_flags_that_cannot_work_exit_2_saying_what_to_fix(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["register", "--issuer", BANK, *(a.format(**files) for a in args)]

    code = main(argv)

    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.out == ""
    assert "a-token" not in captured.err


def test_read_and_delete_are_one_at_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["register", "--issuer", BANK, "--read", "--delete"])

    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
