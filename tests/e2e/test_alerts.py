"""The chart's alert rules, checked by Prometheus' own promtool against what the operator serves.

`promtool check rules` parses the PrometheusRule the chart renders. `promtool test rules` then
evaluates the rules over the series scraped from a running operator, with a healthy client, a
client whose certificate expires in three days and a client the server rejects, and checks
exactly which alerts fire. The scrape is turned into promtool input as a Prometheus Operator
ServiceMonitor with `honorLabels: true` would store it: the target's labels (job, namespace,
pod, ...) are added, and where the operator's own series carry a label of the same name (the
RaidiamClient's `namespace`), the series' value is kept.
"""

from __future__ import annotations

import math
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from raidiam_devenv.promtool import ensure_promtool

from .chart_helpers import objects, one
from .conftest import World

RELEASE_NAMESPACE = "raidiam-system"
JOB = "raidiam-token-operator-metrics"  # the metrics Service's name: the ServiceMonitor's job
TARGET_LABELS = {
    "job": JOB,
    "namespace": RELEASE_NAMESPACE,
    "service": JOB,
    "endpoint": "metrics",
    "pod": "raidiam-token-operator-7d9c5b-x2x4q",
    "instance": "10.1.2.3:8080",
    "container": "operator",
}
EVALUATION_MINUTES = 40
# The absent alert's labels: those of its `up` selector, whichever way it fires.
OPERATOR_ABSENT = {
    "alertname": "RaidiamOperatorAbsent",
    "job": JOB,
    "namespace": RELEASE_NAMESPACE,
    "severity": "critical",
}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure_promtool()


def _rule_file(directory: Path, values: Mapping[str, Any] | None = None) -> Path:
    rule = one(
        objects(
            values={"prometheusRule": {"enabled": True}, **(values or {})},
            namespace=RELEASE_NAMESPACE,
        ),
        "PrometheusRule",
    )
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def _promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_promtool_accepts_the_rendered_alert_rules(promtool: Path, tmp_path: Path) -> None:
    rules = _rule_file(tmp_path)
    alerts = [r["alert"] for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"]]
    result = _promtool(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts)} rules found" in result.stdout
    assert "RaidiamOperatorAbsent" in alerts


def test_the_absent_alert_follows_the_scrape_job_value(tmp_path: Path) -> None:
    rules = yaml.safe_load(
        _rule_file(
            tmp_path, {"prometheusRule": {"enabled": True, "scrapeJob": "tokens"}}
        ).read_text()
    )
    absent = next(r for r in rules["groups"][0]["rules"] if r["alert"] == "RaidiamOperatorAbsent")
    assert f'up{{job="tokens", namespace="{RELEASE_NAMESPACE}"}}' in absent["expr"]


# --------------------------------------------------------------------------- #
# Against the series a running operator serves
# --------------------------------------------------------------------------- #


def _stored_series(exposition: str, *, now: float) -> dict[str, float]:
    """Each served sample as Prometheus would store it: target labels added (the series' own
    win, as with honorLabels), and Unix timestamps made relative to `now`, because promtool's
    clock starts at 0."""
    stored = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if math.isnan(sample.value):
                continue
            relative = sample.name.endswith("_timestamp_seconds") or sample.name.endswith(
                "_start_time_seconds"
            )
            value = sample.value - now if relative else sample.value
            stored[_series(sample.name, {**TARGET_LABELS, **sample.labels})] = value
    return stored


def _series(name: str, labels: Mapping[str, str]) -> str:
    pairs = ", ".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in sorted(labels.items())
    )
    return f"{name}{{{pairs}}}"


def _input(series: Mapping[str, float]) -> list[dict[str, str]]:
    """The same value every minute for the whole evaluation."""
    return [
        {"series": name, "values": f"{value:f}+0x{EVALUATION_MINUTES}"}
        for name, value in sorted(series.items())
    ]


def _firing(labels: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
    return [
        {"labels": _series("ALERTS", {**alert, "alertstate": "firing"}), "value": 1}
        for alert in labels
    ]


def _run_tests(promtool: Path, directory: Path, tests: list[dict[str, Any]]) -> None:
    rules = _rule_file(directory)
    test_file = directory / "alerts-test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = _promtool(promtool, "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.kube
@pytest.mark.authserver
def test_alerts_fire_for_the_clients_in_trouble_and_only_for_them(
    world: World, promtool: Path, tmp_path: Path
) -> None:
    world.tls_client("healthy")
    now = datetime.now(UTC)
    expiring_id = f"expiring-{uuid.uuid4().hex[:8]}"
    expiring = world.pki.client_certificate(
        expiring_id, not_before=now - timedelta(days=1), not_after=now + timedelta(days=3)
    )
    world.auth.register_tls_client(expiring_id, expiring)
    world.tls_secret("expiring-transport", expiring)
    world.create_client(
        "expiring",
        world.spec(expiring_id, transportCertificate={"secretName": "expiring-transport"}),
    )
    world.tls_secret("stranger-transport", world.pki.client_certificate("not-registered-alerts"))
    world.create_client(
        "stranger",
        world.spec(
            "not-registered-alerts", transportCertificate={"secretName": "stranger-transport"}
        ),
    )
    world.wait_ready("healthy")
    world.wait_ready("expiring")
    world.wait_reason("stranger", "invalid_client", kind="Degraded")
    time.sleep(1)  # the metrics follow the status write

    series = _stored_series(world.operator.metrics(), now=time.time())
    up = {_series("up", TARGET_LABELS): 1.0}
    ns = world.namespace

    _run_tests(
        promtool,
        tmp_path,
        [
            {
                "name": "the operator is up and serves three clients",
                "interval": "1m",
                "input_series": _input({**series, **up}),
                "promql_expr_test": [
                    # Nothing fires before the `for:` durations have passed.
                    {"expr": 'ALERTS{alertstate="firing"}', "eval_time": "5m", "exp_samples": []},
                    {
                        "expr": 'ALERTS{alertstate="firing"}',
                        "eval_time": "20m",
                        "exp_samples": _firing(
                            [
                                {
                                    **TARGET_LABELS,
                                    "alertname": "RaidiamCertificateExpiringSoon",
                                    "namespace": ns,
                                    "name": "expiring",
                                    "secret": "expiring-transport",
                                    "severity": "warning",
                                },
                                {
                                    **TARGET_LABELS,
                                    "alertname": "RaidiamClientNotReady",
                                    "namespace": ns,
                                    "name": "stranger",
                                    "severity": "warning",
                                },
                                {
                                    **TARGET_LABELS,
                                    "alertname": "RaidiamTokenRefreshFailing",
                                    "namespace": ns,
                                    "name": "stranger",
                                    "severity": "warning",
                                },
                            ]
                        ),
                    },
                ],
            },
            {
                "name": "the operator's last series, then its target down",
                "interval": "1m",
                "input_series": _input({**series, _series("up", TARGET_LABELS): 0.0}),
                "promql_expr_test": [
                    {
                        "expr": 'ALERTS{alertname="RaidiamOperatorAbsent",alertstate="firing"}',
                        "eval_time": "6m",
                        "exp_samples": _firing([OPERATOR_ABSENT]),
                    }
                ],
            },
            {
                "name": "no operator target at all",
                "interval": "1m",
                "input_series": [
                    {"series": _series("up", {"job": "something-else"}), "values": "1+0x10"}
                ],
                "promql_expr_test": [
                    {
                        "expr": 'ALERTS{alertstate="firing"}',
                        "eval_time": "6m",
                        "exp_samples": _firing([OPERATOR_ABSENT]),
                    }
                ],
            },
        ],
    )
