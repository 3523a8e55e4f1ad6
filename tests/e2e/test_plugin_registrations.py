"""`kubectl raidiam status|describe|refresh|check` with RaidiamRegistrations, against the real API
server, the devenv directory and the data-provider bank: what a person sees, and that no
registration access token appears in any of it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from . import test_registration
from .conftest import GROUP, VERSION, kubectl_raidiam
from .test_registration import Participant

pytestmark = [pytest.mark.kube, pytest.mark.authserver]
#: the fixture: a participant's software in the directory, with its directory RaidiamClient
participant = test_registration.participant


def _shown(*results: subprocess.CompletedProcess[str]) -> str:
    return "".join(result.stdout + result.stderr for result in results)


def _assert_no_token_in(participant: Participant, text: str, name: str = "bank") -> None:
    token = participant.credentials(name)["registration_access_token"]
    assert token
    assert token not in text


def _manifest(participant: Participant, path: Path, name: str, spec: dict[str, Any]) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RaidiamRegistration",
                "metadata": {"name": name, "namespace": participant.world.namespace},
                "spec": spec,
            }
        )
    )
    return path


def test_status_lists_registrations_after_the_clients_in_every_format(
    participant: Participant,
) -> None:
    client_id = participant.registered("bank")
    plane, ns = participant.world.control_plane, ("-n", participant.world.namespace)

    table = kubectl_raidiam(plane, "status", *ns)
    every = kubectl_raidiam(plane, "status", "-A")
    wide = kubectl_raidiam(plane, "status", *ns, "-o", "wide")
    as_json = kubectl_raidiam(plane, "status", *ns, "-o", "json")
    names = kubectl_raidiam(plane, "status", *ns, "-o", "name")
    one = kubectl_raidiam(plane, "status", *ns, "raidiamregistration/bank")
    missing = kubectl_raidiam(plane, "status", *ns, "raidiamreg/nope")

    for result in (table, every, wide, as_json, names, one):
        assert result.returncode == 0, result.stderr
    clients, registrations = table.stdout.split("\n\n")[:2]
    assert clients.splitlines()[0].startswith("NAME")
    assert "directory" in clients
    header, row = registrations.splitlines()
    assert header.split() == [
        "RAIDIAMREGISTRATION", "SERVER", "CLIENT", "ID", "READY", "REASON", "LAST", "CHECK", "AGE"
    ]  # fmt: skip
    assert row.split()[:5] == ["bank", participant.bank.issuer, client_id, "True", "Registered"]
    assert any(
        line.startswith(participant.world.namespace) and " bank " in line
        for line in every.stdout.splitlines()
    )
    assert "bank-registration" in wide.stdout
    kinds = [(i["kind"], i["metadata"]["name"]) for i in json.loads(as_json.stdout)["items"]]
    assert ("RaidiamRegistration", "bank") in kinds
    assert ("RaidiamClient", "directory") in kinds
    assert "raidiamregistration.raidiam.io/bank" in names.stdout.split()
    assert one.stdout.splitlines()[0].startswith("RAIDIAMREGISTRATION")
    assert "directory" not in one.stdout
    assert missing.returncode == 2
    assert "RaidiamRegistration nope not found" in missing.stderr
    _assert_no_token_in(participant, _shown(table, every, wide, as_json, names, one))


def test_a_user_who_may_not_list_registrations_still_gets_the_clients(
    participant: Participant, tmp_path: Path
) -> None:
    participant.registered("bank")
    plane, namespace = participant.world.control_plane, participant.world.namespace
    plane.kubectl("create", "serviceaccount", "clients-only", "-n", namespace)
    plane.kubectl(
        "create", "role", "clients-only", "--verb=get,list",
        "--resource=raidiamclients.raidiam.io", "-n", namespace,
    )  # fmt: skip
    plane.kubectl(
        "create", "rolebinding", "clients-only", "--role=clients-only",
        f"--serviceaccount={namespace}:clients-only", "-n", namespace,
    )  # fmt: skip
    kubeconfig = plane.service_account_kubeconfig(
        namespace, "clients-only", tmp_path / "clients-only.kubeconfig"
    )

    result = kubectl_raidiam(plane, "status", "-n", namespace, kubeconfig=kubeconfig)

    assert result.returncode == 0, result.stderr
    assert "directory" in result.stdout
    assert "RAIDIAMREGISTRATION" not in result.stdout
    assert "listing RaidiamRegistrations" in result.stderr
    assert "HTTP 403" in result.stderr


def test_describe_shows_the_registration_and_its_secrets_keys_without_the_token(
    participant: Participant,
) -> None:
    client_id = participant.registered("bank")
    plane, ns = participant.world.control_plane, ("-n", participant.world.namespace)

    text = kubectl_raidiam(plane, "describe", "raidiamregistration/bank", *ns)
    as_json = kubectl_raidiam(plane, "describe", "raidiamregistration/bank", *ns, "-o", "json")
    missing = kubectl_raidiam(plane, "describe", "raidiamregistration/nope", *ns)

    assert text.returncode == 0, text.stderr
    assert f"Client ID:          {client_id}" in text.stdout
    assert f"Server:             {participant.bank.issuer}" in text.stdout
    assert ["Ready", "True", "Registered:"] in [
        line.split()[:3] for line in text.stdout.splitlines()
    ]
    assert "Name:     bank-registration" in text.stdout
    assert (
        "Keys:     client_id, registration_access_token, registration_client_uri "
        "(values not shown)" in text.stdout
    )
    assert "(as the status says)" in text.stdout
    detail = json.loads(as_json.stdout)
    assert detail["credentialsSecret"]["digestMatchesStatus"] is True
    assert detail["registeredDigest"]
    assert missing.returncode == 2
    assert 'RaidiamRegistration "nope" not found' in missing.stderr
    _assert_no_token_in(participant, _shown(text, as_json))


def test_refresh_reads_a_registration_back_and_waits_for_checked(
    participant: Participant,
) -> None:
    client_id = participant.registered("bank")
    plane, ns = participant.world.control_plane, ("-n", participant.world.namespace)

    waited = kubectl_raidiam(
        plane, "refresh", "raidiamregistration/bank", *ns, "--wait", "--timeout", "60s"
    )
    every = kubectl_raidiam(plane, "refresh", "--all", *ns)

    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert (
        f"raidiamregistration {participant.world.namespace}/bank: Checked: client {client_id} "
        "read back from the server" in waited.stdout
    )
    assert participant.bank.registrations(client_id)["read"] >= 1
    assert participant.bank.stats()["registrations_created_total"] == 1
    assert every.returncode == 0, every.stderr
    assert f"raidiamclient {participant.world.namespace}/directory: refresh requested" in (
        every.stdout
    )
    assert f"raidiamregistration {participant.world.namespace}/bank: read requested" in (
        every.stdout
    )
    _assert_no_token_in(participant, _shown(waited, every))


def test_refresh_wait_of_a_registration_gone_at_the_bank_exits_3(
    participant: Participant,
) -> None:
    participant.bank.delete_registration(participant.registered("bank"))
    token = participant.credentials("bank")["registration_access_token"]

    result = kubectl_raidiam(
        participant.world.control_plane,
        "refresh",
        "raidiamregistration/bank",
        "-n",
        participant.world.namespace,
        "--wait",
    )

    assert result.returncode == 3, result.stdout + result.stderr
    assert f"raidiamregistration {participant.world.namespace}/bank: RegistrationGone" in (
        result.stderr
    )
    assert token not in _shown(result)


def test_check_validates_a_registration_without_registering_anything(
    participant: Participant, tmp_path: Path
) -> None:
    participant.world.wait_ready("directory")
    good = _manifest(participant, tmp_path / "good.yaml", "checked", participant.spec())

    result = kubectl_raidiam(participant.world.control_plane, "check", "-f", str(good))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"RaidiamRegistration {participant.world.namespace}/checked" in result.stdout
    assert "ok    transport certificate in Secret directory-transport valid until" in result.stdout
    assert "ok    directory RaidiamClient directory is Ready" in result.stdout
    assert f"ok    discovery: issuer {participant.bank.issuer} matches" in result.stdout
    assert "registration endpoint https://" in result.stdout
    assert participant.bank.stats()["registrations_created_total"] == 0
    assert participant.registration("checked") is None


@pytest.mark.parametrize(
    ("changes", "flags", "says", "code"),
    [
        pytest.param(
            {"transportCertificate": None},
            (),
            "FAIL  InvalidConfiguration: spec.transportCertificate.secretName is required",
            2,
            id="spec",
        ),
        pytest.param(
            {"softwareStatement": {"secretRef": {"name": "no-such-ssa"}}},
            (),
            "FAIL  SecretNotFound: Secret",
            2,
            id="ssa-secret",
        ),
        pytest.param(
            {"issuer": "https://127.0.0.1:1"},
            (),
            "FAIL  AuthorizationServerUnreachable",
            4,
            id="unreachable",
        ),
        pytest.param(
            {},
            ("--issuer-policy", "references-only"),
            "FAIL  IssuerNotAllowed",
            2,
            id="policy",
        ),
    ],
)
def test_check_reports_what_to_fix_in_a_registration(
    participant: Participant,
    tmp_path: Path,
    changes: dict[str, Any],
    flags: tuple[str, ...],
    says: str,
    code: int,
) -> None:
    spec = {key: value for key, value in participant.spec(**changes).items() if value is not None}
    manifest = _manifest(participant, tmp_path / "bad.yaml", "bad", spec)

    result = kubectl_raidiam(participant.world.control_plane, "check", "-f", str(manifest), *flags)

    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stdout
    assert participant.bank.stats()["registrations_created_total"] == 0


def test_check_names_the_missing_directory_client(participant: Participant, tmp_path: Path) -> None:
    spec = participant.spec()
    spec["softwareStatement"]["fromDirectory"]["clientRef"] = {"name": "nobody"}
    manifest = _manifest(participant, tmp_path / "orphan.yaml", "orphan", spec)

    result = kubectl_raidiam(participant.world.control_plane, "check", "-f", str(manifest))

    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"FAIL  DirectoryTokenMissing: RaidiamClient {participant.world.namespace}/nobody "
        "(from spec.softwareStatement.fromDirectory.clientRef) does not exist"
    ) in result.stdout
