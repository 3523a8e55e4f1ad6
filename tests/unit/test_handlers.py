"""What the kopf handlers hand the engine (`refresh.watch.what_the_engine_reads`)."""

from __future__ import annotations

import json
from typing import Any

from raidiam_operator.refresh.watch import what_the_engine_reads


def test_the_engine_gets_a_copy_of_spec_status_and_identity_without_managed_fields() -> None:
    body: dict[str, Any] = {
        "apiVersion": "raidiam.io/v1alpha1",
        "kind": "RaidiamClient",
        "metadata": {
            "namespace": "payments",
            "name": "directory",
            "uid": "uid-1",
            "generation": 3,
            "resourceVersion": "42",
            "annotations": {
                "raidiam.io/refresh-requested-at": "2026-12-02T10:00:00Z",
                "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 10_000 + "}",
            },
            "managedFields": [{"manager": "raidiam-token-operator", "fieldsV1": {"f:status": {}}}],
        },
        "spec": {"issuer": "https://auth.example", "scopes": ["accounts"]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }

    seen = what_the_engine_reads(body)
    seen["spec"]["scopes"].append("payments")

    assert seen["metadata"] == {
        "namespace": "payments",
        "name": "directory",
        "uid": "uid-1",
        "generation": 3,
        "annotations": {"raidiam.io/refresh-requested-at": "2026-12-02T10:00:00Z"},
    }
    assert seen["status"] == body["status"]
    assert seen["status"] is not body["status"]
    assert body["spec"]["scopes"] == ["accounts"], "the engine's copy shares kopf's body"


def test_clients_share_the_short_strings_of_their_statuses() -> None:
    """json.loads gives every listed client its own "Ready", "True" and timestamps; the engine
    keeps one of each (a restart with 10,000 clients kept 2.5 KiB more per status before)."""
    listed = [
        json.loads(
            json.dumps(
                {
                    "metadata": {"namespace": "payments", "name": f"c{i}", "uid": f"u{i}"},
                    "spec": {"transportCertificate": {"secretName": "transport"}},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True", "message": "x" * 80}],
                        "expiresAt": "2026-12-02T14:45:22Z",
                    },
                }
            )
        )
        for i in range(2)
    ]
    first, second = (what_the_engine_reads(body) for body in listed)

    one, other = first["status"]["conditions"][0], second["status"]["conditions"][0]
    assert one["type"] is other["type"]
    assert first["status"]["expiresAt"] is second["status"]["expiresAt"]
    assert (
        first["spec"]["transportCertificate"]["secretName"]
        is (second["spec"]["transportCertificate"]["secretName"])
    )
    assert one["message"] == other["message"]
