"""The token and its certificate in one Secret (`spec.tokenSecret.includeCertificate`), proven on a
real node against two volumes.

One RaidiamClient, two workload pods calling a resource server that checks the certificate
binding: one reads the token from the token Secret and the certificate from the transport
Secret (two volumes), the other reads both from the token Secret (the bundle). The transport
certificate rotates, as cert-manager renews it, and each pod records for every call whether the
token it read is bound to the certificate it read with it (`cnf.x5t#S256` against the
certificate's thumbprint) and whether the server accepted the call.

Some rotations happen while the authorization server is down, so the new token comes only after
the kubelet has synced the pods' volumes at least once: the certificate Secret has changed and
the token Secret cannot follow yet. That is what a server outage, a rate limit or a slow server
does in production; the two-volume pod then holds a mismatched pair, the bundle never does.
"""

from __future__ import annotations

import json
import time

import pytest

from raidiam_devenv.workload import CallerLog
from tests.e2e.conftest import wait_for
from tests.node.conftest import NodeWorld, record_figure

pytestmark = pytest.mark.node

# Rotations while the server answers at once, and while it is down for longer than a kubelet sync.
QUICK_ROTATIONS = 3
OUTAGE_ROTATIONS = 2
OUTAGE = 25.0  # seconds; the node's kubelet syncs every 10 s


def test_the_bundle_never_pairs_a_token_with_another_certificate(node_world: NodeWorld) -> None:
    _, app_ns = node_world.install_operator()
    client_id, _ = node_world.tls_client(app_ns, "directory", include_certificate=True)
    node_world.caller(app_ns, "two-volumes", "directory", interval=0.2)
    node_world.caller(app_ns, "bundle", "directory", interval=0.2, bundle=True)
    node_world.wait_accepted_calls(app_ns, "two-volumes", 3)
    node_world.wait_accepted_calls(app_ns, "bundle", 3)
    started = time.time()
    for _ in range(QUICK_ROTATIONS):
        _rotate(node_world, app_ns, client_id, outage=False)
    outages_started = time.time()
    for _ in range(OUTAGE_ROTATIONS):
        _rotate(node_world, app_ns, client_id, outage=True)

    results: dict[str, dict[str, float]] = {}
    for pod in ("two-volumes", "bundle"):
        log = node_world.caller_log(app_ns, pod)
        for phase, since, until in (
            ("server answering", started, outages_started),
            ("server down 25 s", outages_started, time.time()),
        ):
            calls = CallerLog(calls=[c for c in log.calls if since < c["at"] <= until])
            figures = {
                "calls": len(calls.calls),
                "mismatched": len(calls.mismatched()),
                "failed": len(calls.failed()),
                "mismatch_seconds": round(calls.mismatch_seconds(), 1),
            }
            results[f"{pod}, {phase}"] = figures
            record_figure(f"{pod}, {phase}: calls with a mismatched pair", figures["mismatched"])
            record_figure(
                f"{pod}, {phase}: seconds with a mismatched pair", figures["mismatch_seconds"]
            )
    print(json.dumps(results))

    for phase in ("server answering", "server down 25 s"):
        bundle = results[f"bundle, {phase}"]
        assert bundle["calls"] > 50
        assert bundle["mismatched"] == 0
        assert bundle["failed"] == 0
    # Outages make the two-volume pod hold the new certificate with the old token.
    assert results["two-volumes, server down 25 s"]["mismatched"] > 0


def _rotate(node_world: NodeWorld, namespace: str, client_id: str, *, outage: bool) -> None:
    rotated = node_world.pki.client_certificate(client_id)  # same subject, new key
    rotated_at = time.time()
    if outage:
        node_world.auth.set_fault(mode="status", status=503, client_id=client_id)
    node_world.transport_secret(namespace, "directory-transport", rotated)
    if outage:
        time.sleep(OUTAGE)
        node_world.auth.clear_faults()

    def settled(pod: str) -> CallerLog | None:
        log = node_world.caller_log(namespace, pod)
        latest = [c for c in log.calls if c["at"] > rotated_at][-3:]
        done = len(latest) == 3 and all(
            c.get("status") == 200 and c.get("token_x5t") == rotated.x5t_s256 for c in latest
        )
        return log if done else None

    for pod in ("two-volumes", "bundle"):
        wait_for(
            lambda pod=pod: settled(pod),  # type: ignore[misc]
            timeout=240,
            what=f"pod {pod} to call with the rotated pair",
            interval=1,
        )
