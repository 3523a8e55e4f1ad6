"""Day-2 operations on a real node, as README describes them: two replicas and a lost leader,
helm upgrade, helm uninstall."""

from __future__ import annotations

import datetime
import time

import pytest

from tests.e2e.conftest import wait_for
from tests.node.conftest import CHART, RELEASE, NodeWorld, record_figure

pytestmark = pytest.mark.node

LEASE = "raidiam-token-operator"  # values.yaml leaderElection.leaseName


def _lease_holder(world: NodeWorld, namespace: str) -> str | None:
    lease = world.get("lease", LEASE, namespace) or {}
    holder = (lease.get("spec") or {}).get("holderIdentity")
    return str(holder) if holder else None


def _expires_at(world: NodeWorld, namespace: str, secret: str) -> datetime.datetime:
    value = world.secret_data(namespace, secret)["expires_at"]
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_deleting_the_leader_pod_hands_over_and_no_token_expires(node_world: NodeWorld) -> None:
    operator_ns, app_ns = node_world.install_operator("replicas=2")
    # Short-lived tokens, so that the new leader must refresh soon after taking over.
    client_id, _ = node_world.tls_client(app_ns, "directory", token_ttl=60)
    node_world.caller(app_ns, "caller", "directory")
    node_world.wait_accepted_calls(app_ns, "caller")
    leader = wait_for(
        lambda: _lease_holder(node_world, operator_ns), timeout=60, what="a Lease holder"
    )
    pods = {p["metadata"]["name"] for p in node_world.operator_pods(operator_ns)}
    assert leader in pods
    assert len(pods) == 2
    requests_before = node_world.auth.stats()["token_requests_by_client"].get(client_id, 0)

    deleted_at = time.monotonic()
    node_world.cluster.kubectl("delete", "pod", leader, "-n", operator_ns, "--wait=false")
    new_leader = wait_for(
        lambda: h if (h := _lease_holder(node_world, operator_ns)) not in (None, leader) else None,
        timeout=90,
        what="another pod to take the Lease",
        interval=0.2,
    )
    record_figure("leader pod deleted -> Lease taken over", time.monotonic() - deleted_at)
    # The standby, or the pod that replaces the deleted one: the leader released the Lease as it
    # stopped, and whichever asks first holds it (a replacement that starts within the standby's
    # retry period wins). Either way it is a pod of this release, and not the deleted one.
    current = {p["metadata"]["name"] for p in node_world.operator_pods(operator_ns)}
    assert new_leader in pods | current
    # The new leader renews the token before it expires (60 s lifetime, renewed at ~33% left).
    wait_for(
        lambda: (
            node_world.auth.stats()["token_requests_by_client"].get(client_id, 0) > requests_before
        ),
        timeout=90,
        what="the new leader to renew the token",
    )
    # ... and the workload reads the renewed token from its file.
    log = wait_for(
        lambda: log if len((log := node_world.caller_log(app_ns, "caller")).tokens) >= 2 else None,
        timeout=90,
        what="the renewed token in the workload's file",
    )
    assert log.calls
    assert not log.failed(), log.failed()
    assert _expires_at(node_world, app_ns, "directory-token") > datetime.datetime.now(datetime.UTC)


def test_helm_upgrade_replaces_the_pod_without_new_tokens_and_uninstall_keeps_them(
    node_world: NodeWorld,
) -> None:
    operator_ns, app_ns = node_world.install_operator()
    client_id, _ = node_world.tls_client(app_ns, "directory")
    wait_for(lambda: node_world.client_ready(app_ns, "directory"), timeout=60, what="Ready client")
    token = node_world.secret_data(app_ns, "directory-token")["access_token"]
    (old_pod,) = node_world.operator_pods(operator_ns)
    requests = node_world.auth.stats()["token_requests_by_client"][client_id]

    # README: `helm upgrade ... --reuse-values` replaces a single replica.
    node_world.cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds")
    )
    node_world.cluster.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        operator_ns,
        "--reuse-values",
        "--set",
        "podAnnotations.upgraded=yes",
        "--wait",
        "--timeout=180s",
        timeout=210,
    )
    (new_pod,) = node_world.operator_pods(operator_ns)
    assert new_pod["metadata"]["name"] != old_pod["metadata"]["name"]
    wait_for(lambda: node_world.client_ready(app_ns, "directory"), timeout=60, what="Ready client")
    time.sleep(5)
    assert node_world.secret_data(app_ns, "directory-token")["access_token"] == token
    assert node_world.auth.stats()["token_requests_by_client"][client_id] == requests

    # README: uninstall removes the operator, its RBAC and Service; the CRD, the clients and
    # their token Secrets stay.
    node_world.helm_uninstall(operator_ns)
    assert node_world.operator_pods(operator_ns) == []
    for kind in ("deployment", "serviceaccount", "service"):
        assert node_world.get(kind, RELEASE, operator_ns) is None, kind
    clusterroles = node_world.cluster.kubectl("get", "clusterroles", "-o", "name").stdout
    assert RELEASE not in clusterroles
    assert node_world.get("raidiamclient", "directory", app_ns) is not None
    assert node_world.secret_data(app_ns, "directory-token")["access_token"] == token
