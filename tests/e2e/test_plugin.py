"""`kubectl raidiam status|refresh|check` against the test cluster, as a person on call uses it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from .conftest import World, kubectl_raidiam, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def test_status_shows_health_expiry_and_certificate_expiry(world: World) -> None:
    world.tls_client("healthy")
    world.wait_ready("healthy")
    issued = world.pki.client_certificate("orphan")
    world.tls_secret("failing-transport", issued)
    world.create_client(
        "failing",
        world.spec("never-registered", transportCertificate={"secretName": "failing-transport"}),
    )
    world.wait_reason("failing", "invalid_client", kind="Degraded")

    result = kubectl_raidiam(world.control_plane, "status", "-n", world.namespace)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "READY",
        "REASON",
        "REFRESH",
        "EXPIRES",
        "IN",
        "NEXT",
        "REFRESH",
        "CERTIFICATE",
        "EXPIRES",
        "IN",
    ]
    healthy = next(line for line in lines if line.startswith("healthy"))
    assert "True" in healthy
    assert "TokenValid" in healthy
    assert "4m" in healthy or "5m" in healthy  # a 300 s token
    assert "29d" in healthy or "30d" in healthy  # the test certificate lives 30 days
    failing = next(line for line in lines if line.startswith("failing"))
    assert "False" in failing
    assert "invalid_client" in failing


def test_status_across_namespaces_names_the_namespace(world: World) -> None:
    world.tls_client("anywhere")
    world.wait_ready("anywhere")

    result = kubectl_raidiam(world.control_plane, "status", "-A")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("NAMESPACE")
    assert any(
        line.startswith(world.namespace) and "anywhere" in line
        for line in result.stdout.splitlines()
    )


def test_refresh_by_name_and_all_issue_new_tokens(world: World) -> None:
    world.tls_client("one")
    world.tls_client("two")
    world.wait_ready("one")
    world.wait_ready("two")
    first = {name: world.token(name) for name in ("one", "two")}

    result = kubectl_raidiam(world.control_plane, "refresh", "one", "-n", world.namespace)
    assert result.returncode == 0, result.stderr
    assert f"{world.namespace}/one: refresh requested" in result.stdout
    wait_for(lambda: world.token("one") != first["one"], timeout=10, what="a new token for one")
    assert world.token("two") == first["two"]

    second = {name: world.token(name) for name in ("one", "two")}
    result = kubectl_raidiam(world.control_plane, "refresh", "--all", "-n", world.namespace)
    assert result.returncode == 0, result.stderr
    wait_for(
        lambda: all(world.token(n) != second[n] for n in ("one", "two")),
        timeout=10,
        what="new tokens for all",
    )


def test_refresh_without_a_name_says_what_to_do(world: World) -> None:
    result = kubectl_raidiam(world.control_plane, "refresh", "-n", world.namespace)

    assert result.returncode == 2
    assert "name one or more RaidiamClients, or pass --all" in result.stderr


def test_check_validates_a_good_spec_without_writing_or_requesting_anything(
    world: World, tmp_path: Path
) -> None:
    client_id = f"checked-{uuid.uuid4().hex[:8]}"
    issued = world.pki.client_certificate(client_id)
    world.auth.register_tls_client(client_id, issued)
    world.tls_secret("checked-transport", issued)
    manifest = world.manifest(
        tmp_path,
        "checked",
        world.spec(client_id, transportCertificate={"secretName": "checked-transport"}),
    )

    result = kubectl_raidiam(world.control_plane, "check", "-f", str(manifest))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    transport certificate in Secret checked-transport valid until" in result.stdout
    assert "ok    discovery: issuer" in result.stdout
    assert "ok    the server supports tls_client_auth" in result.stdout
    assert f"ok    token endpoint {world.auth.mtls_token_endpoint} answers" in result.stdout
    assert world.requests_for(client_id) == 0
    assert world.secret("checked-token") is None


def test_check_reports_what_to_fix(world: World, tmp_path: Path) -> None:
    signing = world.pki.signing_key("ec")
    world.signing_secret("ec-signing", signing)
    manifest = world.manifest(
        tmp_path,
        "wrong",
        world.spec(
            "whoever",
            authMethod="private_key_jwt",
            signingKey={"secretName": "ec-signing", "keyId": "k", "algorithm": "PS256"},
        ),
    )

    result = kubectl_raidiam(world.control_plane, "check", "-f", str(manifest))

    assert result.returncode == 2
    assert (
        "FAIL  AlgorithmKeyMismatch: signing algorithm PS256 does not fit the signing key (EC secp256r1)"
        in result.stdout
    )
    assert "1 problem(s) to fix" in result.stderr


def test_check_reports_an_unreachable_issuer_with_exit_4(world: World, tmp_path: Path) -> None:
    issued = world.pki.client_certificate("nowhere")
    world.tls_secret("nowhere-transport", issued)
    spec = {
        **world.spec("nowhere", transportCertificate={"secretName": "nowhere-transport"}),
        "issuer": "https://127.0.0.1:1",
    }
    manifest = world.manifest(tmp_path, "nowhere", spec)

    result = kubectl_raidiam(world.control_plane, "check", "-f", str(manifest))

    assert result.returncode == 4
    assert (
        "FAIL  AuthorizationServerUnreachable: could not connect to https://127.0.0.1:1"
        in result.stdout
    )


def _table(output: str, columns: list[str]) -> dict[str, dict[str, str]]:
    """kubectl's table by the headers' positions (cells may be empty or hold spaces)."""
    header, *rows = output.splitlines()
    starts = [header.index(column) for column in columns]
    assert starts == sorted(starts), header
    ends = [*starts[1:], None]
    parsed = [
        {c: row[a:b].strip() for c, a, b in zip(columns, starts, ends, strict=True)} for row in rows
    ]
    return {row[columns[0]]: row for row in parsed}


def test_kubectl_get_and_status_show_failing_renewals_beside_a_still_valid_token(
    world: World,
) -> None:
    """Ready keeps its meaning (the Secret's token is valid for the current certificate) while
    the Refresh column shows why the next token cannot be had, as ESO's STATUS column does."""
    world.tls_client("flaky")
    world.tls_client("steady")
    world.wait_ready("flaky")
    world.wait_ready("steady")
    world.auth.delete_client(world.client("flaky")["spec"]["clientId"])
    world.patch_client(
        "flaky", {"metadata": {"annotations": {"raidiam.io/refresh-requested-at": "now"}}}
    )
    world.wait_reason("flaky", "invalid_client", kind="Degraded")
    assert world.condition("flaky")["reason"] == "TokenValid"
    default_columns = ["NAME", "READY", "REASON", "REFRESH", "EXPIRES", "NEXT REFRESH", "AGE"]

    get = world.control_plane.kubectl("get", "raidiamclients", "-n", world.namespace)
    table = _table(get.stdout, default_columns)
    assert get.stdout.splitlines()[0].split() == [
        "NAME", "READY", "REASON", "REFRESH", "EXPIRES", "NEXT", "REFRESH", "AGE"
    ]  # fmt: skip
    assert [table["flaky"][c] for c in ("READY", "REASON", "REFRESH")] == [
        "True",
        "TokenValid",
        "invalid_client",
    ]
    assert [table["steady"][c] for c in ("READY", "REASON", "REFRESH")] == [
        "True",
        "TokenValid",
        "AsExpected",
    ]

    wide = world.control_plane.kubectl("get", "raidiamclients", "-n", world.namespace, "-o", "wide")
    columns = [
        *default_columns,
        "SECRET",
        "METHOD",
        "BINDING",
        "FAILURES",
        "CERTIFICATE EXPIRES",
        "MESSAGE",
    ]
    flaky = _table(wide.stdout, columns)["flaky"]
    assert flaky["SECRET"] == "flaky-token"
    assert (flaky["METHOD"], flaky["BINDING"]) == ("tls_client_auth", "verified")
    assert flaky["FAILURES"] == "1"
    assert flaky["CERTIFICATE EXPIRES"] == world.client("flaky")["status"]["certificateNotAfter"]
    assert "rejected the token request with invalid_client" in flaky["MESSAGE"]

    status = kubectl_raidiam(world.control_plane, "status", "-n", world.namespace)
    assert status.returncode == 0, status.stderr
    row = _table(status.stdout, ["NAME", "READY", "REASON", "REFRESH", "EXPIRES IN"])["flaky"]
    assert [row["READY"], row["REASON"], row["REFRESH"]] == ["True", "TokenValid", "invalid_client"]
