"""What an operations team sees: metrics and certificate-expiry warnings."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.operator_process import OperatorProcess

from .conftest import World, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def _sample(metrics: str, metric: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text format, or None if it is absent."""
    for line in metrics.splitlines():
        if not line.startswith(metric + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[len(metric) : line.index("}") + 1]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_show_each_client_and_disappear_when_it_is_deleted(world: World) -> None:
    issued = world.tls_client("observed")
    world.wait_ready("observed")
    ns = world.namespace

    def ready_metric() -> str | None:
        metrics = world.operator.metrics()
        return (
            metrics
            if _sample(metrics, "raidiam_client_ready", namespace=ns, name="observed") == 1
            else None
        )

    metrics = wait_for(ready_metric, timeout=10, what="the ready metric")

    expires_at = datetime.fromisoformat(
        world.client("observed")["status"]["expiresAt"].replace("Z", "+00:00")
    )
    assert (
        _sample(
            metrics, "raidiam_token_expiration_timestamp_seconds", namespace=ns, name="observed"
        )
        == expires_at.timestamp()
    )
    assert _sample(
        metrics, "raidiam_token_next_refresh_timestamp_seconds", namespace=ns, name="observed"
    )
    assert (
        _sample(
            metrics,
            "raidiam_token_requests_total",
            namespace=ns,
            name="observed",
            result="success",
            error="",
        )
        == 1
    )
    assert _sample(
        metrics, "raidiam_token_request_duration_seconds_count", auth_method="tls_client_auth"
    )
    assert (
        _sample(
            metrics,
            "raidiam_input_certificate_expiration_timestamp_seconds",
            namespace=ns,
            name="observed",
            secret="observed-transport",
        )
        == issued.not_valid_after.timestamp()
    )
    token = world.token("observed")
    assert token
    assert token not in metrics

    world.custom.delete_namespaced_custom_object(
        "raidiam.io", "v1alpha1", ns, "raidiamclients", "observed"
    )

    def series_gone() -> str | None:
        metrics = world.operator.metrics()
        return metrics if 'name="observed"' not in metrics else None

    gone = wait_for(series_gone, timeout=10, what="the deleted client's series to disappear")
    assert _sample(gone, "raidiam_client_ready", namespace=ns, name="observed") is None


def test_failed_requests_are_counted_by_oauth_error_code(world: World) -> None:
    issued = world.pki.client_certificate("not-registered-metrics")
    world.tls_secret("stranger-transport", issued)
    world.create_client(
        "stranger",
        world.spec(
            "not-registered-metrics", transportCertificate={"secretName": "stranger-transport"}
        ),
    )
    world.wait_reason("stranger", "invalid_client", kind="Degraded")

    metrics = world.operator.metrics()

    assert (
        _sample(
            metrics,
            "raidiam_token_requests_total",
            namespace=world.namespace,
            name="stranger",
            result="failure",
            error="invalid_client",
        )
        == 1
    )
    assert _sample(metrics, "raidiam_client_ready", namespace=world.namespace, name="stranger") == 0


def test_a_certificate_close_to_expiry_gives_a_condition_one_warning_event_and_a_metric(
    world: World,
) -> None:
    now = datetime.now(UTC)
    client_id = f"expiring-{uuid.uuid4().hex[:8]}"
    soon = world.pki.client_certificate(
        client_id, not_before=now - timedelta(days=1), not_after=now + timedelta(days=3)
    )
    world.auth.register_tls_client(client_id, soon)
    world.tls_secret("soon-transport", soon)
    world.create_client(
        "soon", world.spec(client_id, transportCertificate={"secretName": "soon-transport"})
    )

    condition = wait_for(
        lambda: (
            world.condition("soon", "CertificateExpiringSoon")
            if world.condition("soon", "CertificateExpiringSoon").get("status") == "True"
            else None
        ),
        timeout=20,
        what="CertificateExpiringSoon",
    )
    assert "soon-transport" in condition["message"]
    assert "renew it" in condition["message"]
    assert world.condition("soon")["status"] == "True", (
        "a certificate that still works keeps the client Ready"
    )

    for attempt in range(2):  # more reconciliations must not repeat the Warning the same day
        world.patch_client(
            "soon",
            {"metadata": {"annotations": {"raidiam.io/refresh-requested-at": f"again-{attempt}"}}},
        )
        time.sleep(2)
    warnings = [e for e in world.events("soon") if e.reason == "CertificateExpiringSoon"]
    assert len(warnings) == 1
    assert warnings[0].type == "Warning"
    assert world.client("soon")["status"]["certificateNotAfter"] == soon.not_valid_after.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    metric = _sample(
        world.operator.metrics(),
        "raidiam_input_certificate_expiration_timestamp_seconds",
        namespace=world.namespace,
        name="soon",
        secret="soon-transport",
    )
    assert metric == soon.not_valid_after.timestamp()


def test_an_expired_transport_certificate_is_reported_before_any_request(world: World) -> None:
    now = datetime.now(UTC)
    client_id = f"expired-{uuid.uuid4().hex[:8]}"
    expired = world.pki.client_certificate(
        client_id, not_before=now - timedelta(days=30), not_after=now - timedelta(hours=1)
    )
    world.auth.register_tls_client(client_id, expired)
    world.tls_secret("expired-transport", expired)
    world.create_client(
        "expired", world.spec(client_id, transportCertificate={"secretName": "expired-transport"})
    )

    ready = world.wait_reason("expired", "CertificateExpired")

    assert ready["status"] == "False"
    assert "renew it and update the Secret" in ready["message"]
    assert world.requests_for(client_id) == 0


def test_every_metric_the_alerts_and_dashboard_use_is_served(world: World) -> None:
    import json
    import subprocess

    import yaml

    world.tls_client("alerted")
    world.wait_ready("alerted")
    rendered = subprocess.run(
        [
            str(world.control_plane.binaries.helm),
            "template",
            "t",
            "charts/raidiam-token-operator",
            "--set",
            "prometheusRule.enabled=true",
            "--set",
            "grafanaDashboard.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    dashboard = next(
        d for d in documents if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    )
    expressions = [r["expr"] for r in rule["spec"]["groups"][0]["rules"]]
    panels = json.loads(dashboard["data"]["raidiam-token-operator.json"])["panels"]
    expressions += [t["expr"] for p in panels for t in p["targets"]]
    used = {name for e in expressions for name in re.findall(r"\b(raidiam_[a-z_]+)", e)}
    served = world.operator.metrics()

    missing = sorted(
        name for name in used if f"\n{name}" not in served and f"\n{name}{{" not in served
    )
    assert not missing, f"alerts or dashboard use metrics the operator does not serve: {missing}"
    assert {r["alert"] for r in rule["spec"]["groups"][0]["rules"]} >= {
        "RaidiamTokenExpired",
        "RaidiamTokenRefreshFailing",
        "RaidiamCertificateExpiringSoon",
    }


@pytest.mark.parametrize("verbose", [False, True], ids=["default-level", "verbose"])
def test_health_probes_are_logged_only_with_verbose(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path, verbose: bool
) -> None:
    operator = OperatorProcess(
        control_plane.kubeconfig,
        tmp_path / "operator.log",
        namespaces=[kube_namespace],
        verbose=verbose,
    ).start()
    try:
        url = f"http://127.0.0.1:{operator.liveness_port}/healthz"
        for _ in range(3):  # as the startup, readiness and liveness probes would
            assert httpx.get(url, timeout=5, trust_env=False).status_code == 200
        metrics = operator.metrics()
    finally:
        operator.stop()

    probe_lines = [line for line in operator.log_text().splitlines() if "GET /healthz" in line]
    if verbose:
        assert len(probe_lines) >= 3, "--verbose should keep aiohttp's access log"
    else:
        assert probe_lines == [], "every probe is logged at the default level"
    # The same process serves the usual process and Python series, and its build.
    assert "\nprocess_resident_memory_bytes " in metrics
    assert "\npython_info{" in metrics
    assert '\nraidiam_operator_build_info{kopf_version="' in metrics
