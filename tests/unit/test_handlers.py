"""What the kopf handlers hand the engine."""

from __future__ import annotations

from typing import Any

from raidiam_operator.handlers import what_the_engine_reads


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
