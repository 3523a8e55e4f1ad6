"""`kubectl raidiam` as kubectl users expect it, against the real API server: every output
format, kubectl's flags (-n, -A, -l, -o, --kubeconfig, --context) and every exit code that
docs/cli.md promises, with messages named as the command was invoked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.process import free_port

from .conftest import GROUP, PLURAL, VERSION, World, kubectl_raidiam

pytestmark = [pytest.mark.kube]


def _kubeconfig(control_plane: ControlPlane, path: Path, **changes: Any) -> Path:
    """The admin kubeconfig with `changes` applied to its first context's cluster or context."""
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    for key, value in changes.items():
        if key == "server":
            config["clusters"][0]["cluster"]["server"] = value
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


def _labelled(world: World, name: str, team: str) -> None:
    world.tls_client(name)
    world.patch_client(name, {"metadata": {"labels": {"team": team}}})


# --------------------------------------------------------------------------- #
# Output formats
# --------------------------------------------------------------------------- #


@pytest.mark.authserver
def test_status_prints_the_table_wide_json_yaml_and_names_and_filters_by_label(
    world: World,
) -> None:
    _labelled(world, "alpha", "payments")
    _labelled(world, "beta", "onboarding")
    world.wait_ready("alpha")
    world.wait_ready("beta")
    ns = ("-n", world.namespace)

    table = kubectl_raidiam(world.control_plane, "status", *ns)
    wide = kubectl_raidiam(world.control_plane, "status", *ns, "-o", "wide")
    as_json = kubectl_raidiam(world.control_plane, "status", *ns, "-o", "json")
    as_yaml = kubectl_raidiam(world.control_plane, "status", *ns, "-o", "yaml")
    names = kubectl_raidiam(world.control_plane, "status", *ns, "-o", "name")
    selected = kubectl_raidiam(world.control_plane, "status", *ns, "-l", "team=payments")
    one = kubectl_raidiam(world.control_plane, "status", *ns, "beta", "-o", "name")

    for result in (table, wide, as_json, as_yaml, names, selected, one):
        assert result.returncode == 0, result.stderr
    assert table.stdout.split("\n")[0].split()[:4] == ["NAME", "READY", "REASON", "REFRESH"]
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == ["alpha", "beta"]
    header = wide.stdout.splitlines()[0]
    assert header.endswith("FAILURES   TOKEN SECRET   MESSAGE")
    assert "beta-token" in wide.stdout
    assert "the last token request succeeded" in wide.stdout
    listing = json.loads(as_json.stdout)
    assert listing["kind"] == "List"
    assert [item["metadata"]["name"] for item in listing["items"]] == ["alpha", "beta"]
    assert listing["items"][0]["status"]["conditions"][0]["type"] == "Ready"
    assert yaml.safe_load(as_yaml.stdout) == listing
    assert names.stdout.split() == [
        "raidiamclient.raidiam.io/alpha",
        "raidiamclient.raidiam.io/beta",
    ]
    assert [line.split()[0] for line in selected.stdout.splitlines()[1:]] == ["alpha"]
    assert one.stdout.split() == ["raidiamclient.raidiam.io/beta"]


@pytest.mark.authserver
def test_describe_shows_the_claims_and_the_binding_check_never_the_token(world: World) -> None:
    world.tls_client("described")
    world.wait_ready("described")
    token = world.token("described")
    assert token
    ns = ("-n", world.namespace)

    text = kubectl_raidiam(world.control_plane, "describe", "described", *ns)
    as_json = kubectl_raidiam(world.control_plane, "describe", "described", *ns, "-o", "json")
    as_yaml = kubectl_raidiam(world.control_plane, "describe", "described", *ns, "-o", "yaml")

    for result in (text, as_json, as_yaml):
        assert result.returncode == 0, result.stderr
        assert token not in result.stdout
        assert token.split(".")[2] not in result.stdout  # not even the signature
    assert re.search(r"^  Ready +True +TokenValid: ", text.stdout, re.MULTILINE), text.stdout
    assert "Claims (read from the Secret's token, which is not shown):" in text.stdout
    assert f"client_id:  {world.client('described')['spec']['clientId']}" in text.stdout
    assert "bound: bound to the certificate now in the transport Secret" in text.stdout
    detail = json.loads(as_json.stdout)
    assert yaml.safe_load(as_yaml.stdout) == detail
    assert detail["binding"]["result"] == "bound"
    claims = world.claims("described")
    assert detail["token"]["claims"] == claims
    assert detail["binding"]["tokenThumbprint"] == claims["cnf"]["x5t#S256"]
    assert detail["transportCertificate"]["thumbprint"] == claims["cnf"]["x5t#S256"]


# --------------------------------------------------------------------------- #
# refresh --wait
# --------------------------------------------------------------------------- #


@pytest.mark.authserver
def test_refresh_wait_exits_0_for_a_new_token_3_for_a_refusal_and_2_for_inputs_to_fix(
    world: World,
) -> None:
    _labelled(world, "fresh", "payments")
    world.tls_client("refused")
    world.wait_ready("fresh")
    world.wait_ready("refused")
    world.auth.delete_client(world.client("refused")["spec"]["clientId"])
    world.create_client(
        "orphan", world.spec("orphan", transportCertificate={"secretName": "no-such-secret"})
    )
    world.wait_reason("orphan", "SecretNotFound")
    before = world.token("fresh")
    ns = ("-n", world.namespace)

    fresh = kubectl_raidiam(
        world.control_plane, "refresh", "--all", "-l", "team=payments", "--wait", *ns
    )
    refused = kubectl_raidiam(world.control_plane, "refresh", "refused", "--wait", *ns)
    orphan = kubectl_raidiam(
        world.control_plane, "refresh", "orphan", "--wait", "--timeout", "4s", *ns
    )

    assert fresh.returncode == 0, fresh.stderr
    assert f"raidiamclient {world.namespace}/fresh: new token, valid until" in fresh.stdout
    assert world.token("fresh") != before
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert f"raidiamclient {world.namespace}/refused: invalid_client:" in refused.stderr
    assert world.condition("refused")["status"] == "True", "the old token is still valid"
    assert orphan.returncode == 2, orphan.stdout + orphan.stderr
    assert "no new token after 4 s; SecretNotFound:" in orphan.stderr


def test_refresh_wait_without_a_running_operator_exits_4(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RaidiamClient",
                "metadata": {"name": "unserved", "namespace": kube_namespace},
                "spec": {
                    "issuer": "https://auth.example",
                    "clientId": "c",
                    "transportCertificate": {"secretName": "t"},
                },
            }
        ),
    )

    result = kubectl_raidiam(
        control_plane, "refresh", "unserved", "-n", kube_namespace, "--wait", "--timeout", "3s"
    )

    assert result.returncode == 4, result.stdout + result.stderr
    assert "no answer from the operator after 3 s: is it running" in result.stderr
    requested = json.loads(
        control_plane.kubectl("get", PLURAL, "unserved", "-n", kube_namespace, "-o", "json").stdout
    )["metadata"]["annotations"]
    assert "raidiam.io/refresh-requested-at" in requested


# --------------------------------------------------------------------------- #
# Which cluster, and the exit codes when it cannot be used
# --------------------------------------------------------------------------- #


def test_no_kubeconfig_exits_2_naming_the_command_as_invoked(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.kubeconfig"

    plugin = kubectl_raidiam(control_plane, "status", kubeconfig=missing, home=tmp_path)
    direct = kubectl_raidiam(
        control_plane, "status", kubeconfig=missing, home=tmp_path, plugin=False
    )
    refresh = kubectl_raidiam(
        control_plane, "refresh", "x", "-n", "y", kubeconfig=missing, home=tmp_path
    )
    describe = kubectl_raidiam(control_plane, "describe", "x", kubeconfig=missing, home=tmp_path)

    for result in (plugin, direct, refresh, describe):
        assert result.returncode == 2, result.stderr
        assert "no cluster to talk to" in result.stderr
        assert "--kubeconfig" in result.stderr
    assert plugin.stderr.startswith("kubectl raidiam: error: cannot list RaidiamClients:")
    assert direct.stderr.startswith("raidiam-operator: error: cannot list RaidiamClients:")


def test_an_unreachable_api_server_exits_4(control_plane: ControlPlane, tmp_path: Path) -> None:
    unreachable = _kubeconfig(
        control_plane,
        tmp_path / "unreachable.kubeconfig",
        server=f"https://127.0.0.1:{free_port()}",
    )
    manifest = tmp_path / "client.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RaidiamClient",
                "metadata": {"name": "c", "namespace": "payments"},
                "spec": {
                    "issuer": "https://auth.example",
                    "clientId": "c",
                    "transportCertificate": {"secretName": "t"},
                },
            }
        )
    )

    results = {
        "status": kubectl_raidiam(control_plane, "status", "-A", kubeconfig=unreachable),
        "describe": kubectl_raidiam(
            control_plane, "describe", "c", "-n", "x", kubeconfig=unreachable
        ),
        "refresh": kubectl_raidiam(
            control_plane, "refresh", "c", "-n", "x", kubeconfig=unreachable
        ),
        "check": kubectl_raidiam(
            control_plane, "check", "-f", str(manifest), kubeconfig=unreachable
        ),
    }

    for command, result in results.items():
        assert result.returncode == 4, f"{command}: {result.stdout}{result.stderr}"
    assert "the API server could not be reached" in results["status"].stderr


def test_kubeconfig_and_context_flags_choose_the_cluster_and_the_namespace(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    working = {**admin["contexts"][0], "name": "working"}
    working["context"] = {**working["context"], "namespace": kube_namespace}
    broken_cluster = {
        "name": "elsewhere",
        "cluster": {"server": f"https://127.0.0.1:{free_port()}"},
    }
    broken = {"name": "broken", "context": {**working["context"], "cluster": "elsewhere"}}
    config = {
        **admin,
        "clusters": [*admin["clusters"], broken_cluster],
        "contexts": [working, broken],
        "current-context": "broken",
    }
    path = tmp_path / "two-contexts.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "nothing-here"  # KUBECONFIG points nowhere: only the flag counts

    current = kubectl_raidiam(
        control_plane, "status", "--kubeconfig", str(path), kubeconfig=elsewhere
    )
    chosen = kubectl_raidiam(
        control_plane,
        "status",
        "--kubeconfig",
        str(path),
        "--context",
        "working",
        kubeconfig=elsewhere,
    )
    unknown = kubectl_raidiam(
        control_plane,
        "status",
        "--kubeconfig",
        str(path),
        "--context",
        "nope",
        kubeconfig=elsewhere,
    )

    assert current.returncode == 4, current.stderr
    assert chosen.returncode == 0, chosen.stderr
    # The context's namespace is the default namespace, as with kubectl.
    assert chosen.stderr.strip() == f"No RaidiamClients in namespace {kube_namespace}."
    assert unknown.returncode == 2, unknown.stderr
    assert "nope" in unknown.stderr


def test_rbac_refusals_bad_selectors_unknown_names_and_usage_errors_exit_2(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", kube_namespace)
    nobody = control_plane.service_account_kubeconfig(
        kube_namespace, "nobody", tmp_path / "nobody.kubeconfig"
    )

    results = {
        "forbidden": kubectl_raidiam(control_plane, "status", kubeconfig=nobody),
        "bad selector": kubectl_raidiam(control_plane, "status", "-A", "-l", "team in ((("),
        "unknown client": kubectl_raidiam(control_plane, "describe", "nope", "-n", kube_namespace),
        "unknown in status": kubectl_raidiam(control_plane, "status", "nope", "-n", kube_namespace),
        "nothing to refresh": kubectl_raidiam(control_plane, "refresh", "-n", kube_namespace),
        "selector without --all": kubectl_raidiam(control_plane, "refresh", "x", "-l", "a=b"),
        "bad output": kubectl_raidiam(control_plane, "status", "-o", "table"),
    }

    for case, result in results.items():
        assert result.returncode == 2, f"{case}: {result.stdout}{result.stderr}"
        assert result.stderr.startswith("kubectl raidiam: error:") or result.stderr.startswith(
            "usage: kubectl raidiam"
        ), f"{case}: {result.stderr}"
    assert "HTTP 403" in results["forbidden"].stderr
    assert "check their RBAC" in results["forbidden"].stderr
    assert "HTTP 400" in results["bad selector"].stderr
    assert f'RaidiamClient "nope" not found in namespace {kube_namespace}' in (
        results["unknown client"].stderr
    )
    assert "invalid choice: 'table'" in results["bad output"].stderr
