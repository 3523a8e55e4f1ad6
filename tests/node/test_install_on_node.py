"""The operator as users run it: its image, installed with its Helm chart, on a real node, writing
a token that a workload pod reads from its mounted file and uses against a resource server that
checks the certificate binding."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from raidiam_devenv.workload import CallerLog
from tests.e2e.conftest import wait_for
from tests.node.conftest import NodeWorld, record_figure

pytestmark = pytest.mark.node

OPENSHIFT_UID = 1000680000
# Each rotation samples where the kubelet's sync falls between the two Secret updates.
ROTATIONS = 3


def _ready(pod: dict) -> bool:  # type: ignore[type-arg]
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _process_uids(needle: str) -> set[int]:
    """Real UIDs of this host's processes whose command line contains ``needle``."""
    uids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle.encode() not in (proc / "cmdline").read_bytes().replace(b"\0", b" "):
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        uids.add(int(uid_line.split()[1]))
    return uids


def test_helm_install_serves_every_namespace_and_a_pod_calls_the_resource_with_the_token(
    node_world: NodeWorld,
) -> None:
    operator_ns = node_world.namespace("operator")
    app_ns = node_world.namespace("payments")
    started = time.time()

    node_world.helm_install(operator_ns)
    client_id, issued = node_world.tls_client(app_ns, "directory")
    node_world.caller(app_ns, "caller", "directory")
    log = node_world.wait_accepted_calls(app_ns, "caller")

    # The operator runs from its image as the chart's ServiceAccount, Ready by its own probes,
    # in a namespace that enforces the restricted Pod Security Standard.
    (pod,) = node_world.operator_pods(operator_ns)
    assert _ready(pod)
    assert pod["spec"]["serviceAccountName"] == "raidiam-token-operator"
    assert pod["spec"]["containers"][0]["image"] == "raidiam-token-operator:0.1.0"
    # The workload read a token bound to its certificate and the server accepted the call.
    claims = log.tokens[0]["claims"]
    assert claims["client_id"] == client_id
    assert claims["cnf"]["x5t#S256"] == issued.x5t_s256
    assert log.accepted()[0]["cert_x5t"] == issued.x5t_s256
    assert node_world.auth.stats()["resource_accepted_total"] >= 1
    record_figure(
        "helm install -> first token in the workload's file", log.tokens[0]["at"] - started
    )


def test_rotating_the_transport_certificate_gives_the_pod_a_token_for_the_new_certificate(
    node_world: NodeWorld,
) -> None:
    _, app_ns = node_world.install_operator()
    client_id, _ = node_world.tls_client(app_ns, "directory")
    node_world.caller(app_ns, "caller", "directory", interval=0.5)
    node_world.wait_accepted_calls(app_ns, "caller", 3)

    for _ in range(ROTATIONS):
        _rotate_and_measure(node_world, app_ns, client_id)


def _rotate_and_measure(node_world: NodeWorld, namespace: str, client_id: str) -> None:
    # cert-manager style: same subject, new key, the Secret updated in place.
    rotated = node_world.pki.client_certificate(client_id)
    rotated_at = time.time()
    node_world.transport_secret(namespace, "directory-transport", rotated)

    def settled() -> CallerLog | None:
        log = node_world.caller_log(namespace, "caller")
        latest = [c for c in log.calls if c["at"] > rotated_at][-3:]
        done = len(latest) == 3 and all(
            c.get("status") == 200 and c.get("token_x5t") == rotated.x5t_s256 for c in latest
        )
        return log if done else None

    log = wait_for(settled, timeout=240, what="the pod to call with the rotated pair", interval=1)
    after = [c for c in log.calls if c["at"] > rotated_at]
    new_token_at = next(c["at"] for c in after if c.get("token_x5t") == rotated.x5t_s256)
    mismatched = [c for c in after if c in log.mismatched()]
    failed = [c for c in after if c.get("status") != 200]
    window = 0.0
    if mismatched:
        # From the first call that saw the two files disagree to the first that saw them agree.
        agreed = next(c for c in after if c["at"] > mismatched[0]["at"] and c not in mismatched)
        window = agreed["at"] - mismatched[0]["at"]
    record_figure("rotation -> new token in the pod", new_token_at - rotated_at)
    record_figure("token/certificate mismatch window in the pod", window)
    record_figure("failed calls after the rotation (count)", float(len(failed)))
    print(
        json.dumps(
            {
                "rotation_to_new_token_s": round(new_token_at - rotated_at, 1),
                "mismatch_window_s": round(window, 1),
                "mismatched_calls": len(mismatched),
                "failed_calls": len(failed),
                "calls_after_rotation": len(after),
            }
        )
    )
    # Every failure is explained by the two files disagreeing, never by anything else.
    assert all(c in mismatched for c in failed), failed


def test_watch_namespaces_serves_only_the_listed_namespaces(node_world: NodeWorld) -> None:
    operator_ns = node_world.namespace("operator")
    served = node_world.namespace("payments")
    other = node_world.namespace("elsewhere")
    node_world.helm_install(operator_ns, f"watchNamespaces={{{served}}}")

    node_world.tls_client(served, "directory")
    node_world.tls_client(other, "directory")
    wait_for(
        lambda: node_world.client_ready(served, "directory"),
        timeout=60,
        what="the client in the watched namespace to be Ready",
    )
    time.sleep(5)

    assert node_world.secret_data(served, "directory-token")["access_token"]
    assert node_world.get("secret", "directory-token", other) is None
    assert not (node_world.get("raidiamclient", "directory", other) or {}).get("status")
    # What its ServiceAccount may do: the watched namespace's Secrets and clients, nothing of
    # the other namespace's.
    account = f"system:serviceaccount:{operator_ns}:raidiam-token-operator"

    def can(verb: str, resource: str, namespace: str) -> bool:
        answer = node_world.cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, "--as", account, check=False
        )
        return answer.stdout.strip() == "yes"

    assert can("get", "secrets", served)
    assert can("watch", "raidiamclients.raidiam.io", served)
    assert not can("get", "secrets", other)
    assert not can("list", "raidiamclients.raidiam.io", other)


def test_an_arbitrary_uid_without_a_passwd_entry_runs_the_operator(node_world: NodeWorld) -> None:
    """OpenShift's restricted SCC: a UID from the namespace's range, no passwd entry."""
    operator_ns = node_world.namespace("operator")
    app_ns = node_world.namespace("payments")
    node_world.helm_install(
        operator_ns,
        f"podSecurityContext.runAsUser={OPENSHIFT_UID}",
        "podSecurityContext.runAsGroup=null",
        "podSecurityContext.fsGroup=null",
        "securityContext.runAsUser=null",
        "securityContext.runAsGroup=null",
    )
    node_world.tls_client(app_ns, "directory")
    wait_for(
        lambda: node_world.client_ready(app_ns, "directory"),
        timeout=60,
        what="the client to be Ready",
    )

    (pod,) = node_world.operator_pods(operator_ns)
    assert _ready(pod)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert _process_uids("raidiam-operator run") == {OPENSHIFT_UID}
    assert node_world.secret_data(app_ns, "directory-token")["access_token"]
