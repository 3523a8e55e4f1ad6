"""The local control plane really is a working Kubernetes API."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from raidiam_devenv.binaries import KUBERNETES_VERSION
from raidiam_devenv.controlplane import ControlPlane

pytestmark = pytest.mark.kube


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return False


def test_readyz(control_plane: ControlPlane) -> None:
    assert control_plane.readyz().strip() == "ok"


def test_server_version(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert server["gitVersion"] == KUBERNETES_VERSION
    assert server["major"] == "1"
    assert server["minor"] == KUBERNETES_VERSION.split(".")[1]


def test_owner_reference_garbage_collection(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    ns = kube_namespace
    control_plane.kubectl("create", "configmap", "owner", "-n", ns)
    uid = control_plane.kubectl(
        "get", "configmap", "owner", "-n", ns, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": ns,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(child))
    control_plane.kubectl("delete", "configmap", "owner", "-n", ns)

    def child_gone() -> bool:
        result = control_plane.kubectl(
            "get", "configmap", "child", "-n", ns, "--ignore-not-found", "-o", "name"
        )
        return result.stdout.strip() == ""

    assert _wait_for(child_gone), "garbage collector did not delete the owned ConfigMap"


def test_service_account_token(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    control_plane.kubectl("create", "serviceaccount", "robot", "-n", ns)
    token = control_plane.create_token(ns, "robot", duration="10m")
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot"

    kubeconfig = control_plane.service_account_kubeconfig(ns, "robot", tmp_path / "robot.yaml")
    whoami = control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig)
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == claims["sub"]
    # RBAC is enforced: a fresh service account may not read Secrets.
    denied = control_plane.kubectl("get", "secrets", "-n", ns, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def test_audit_log_records_secret_access(control_plane: ControlPlane, kube_namespace: str) -> None:
    assert control_plane.audit_log_path is not None
    control_plane.kubectl(
        "create", "secret", "generic", "audited", "-n", kube_namespace, "--from-literal=k=v"
    )
    events = [
        json.loads(line)
        for line in control_plane.audit_log_path.read_text().splitlines()
        if kube_namespace in line
    ]
    creates = [
        e for e in events if e["verb"] == "create" and e["objectRef"].get("resource") == "secrets"
    ]
    assert creates, "secret creation missing from the audit log"
    # Metadata level: never the secret's body.
    assert all("requestObject" not in e and "responseObject" not in e for e in creates)
