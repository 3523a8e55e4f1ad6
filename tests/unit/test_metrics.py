"""What Prometheus scrapes besides the clients' series: the process, Python and the build."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import generate_latest
from prometheus_client.utils import floatToGoString

from raidiam_operator import __version__
from raidiam_operator.metrics import Metrics


def _exposition(metrics: Metrics) -> str:
    return str(generate_latest(metrics.registry).decode())


def test_process_and_python_series_are_served_like_any_python_exporter() -> None:
    served = _exposition(Metrics())

    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    ):
        assert f"\n{name}" in served, name


def test_build_info_names_the_operator_kopf_and_python_versions() -> None:
    served = _exposition(Metrics())

    expected = (
        f'raidiam_operator_build_info{{kopf_version="{metadata.version("kopf")}",'
        f'python_version="{platform.python_version()}",version="{__version__}"}} 1.0'
    )
    assert expected in served.splitlines()


def test_several_registries_can_serve_the_process_series_at_once() -> None:
    first, second = Metrics(), Metrics()

    assert "process_open_fds" in _exposition(first)
    assert "process_open_fds" in _exposition(second)


def _client_lines(served: str) -> list[str]:
    families = ("raidiam_token_", "raidiam_client_", "raidiam_input_")
    return sorted(
        line
        for line in served.splitlines()
        if line.startswith(families)
        and "_created" not in line
        and not line.startswith("raidiam_token_request_duration")
    )


def test_a_clients_series_are_served_with_their_values_and_go_when_it_goes() -> None:
    from datetime import UTC, datetime

    from raidiam_operator.core.errors import AuthorizationServerRejection

    metrics = Metrics()
    expires = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    metrics.client_seen("payments", "directory")
    metrics.request_failed(
        "payments",
        "directory",
        AuthorizationServerRejection("invalid_client", "no", status_code=401),
        auth_method="tls_client_auth",
        duration=0.1,
    )
    metrics.request_succeeded("payments", "directory", auth_method="tls_client_auth", duration=0.1)
    metrics.token_state(
        "payments", "directory", ready=True, expires_at=expires, next_refresh=expires
    )
    metrics.certificate_expiration("payments", "directory", "transport", expires)
    served = _exposition(metrics)
    metrics.forget("payments", "directory")

    stamp = floatToGoString(expires.timestamp())
    assert _client_lines(served) == sorted(
        [
            'raidiam_client_ready{name="directory",namespace="payments"} 1.0',
            f'raidiam_input_certificate_expiration_timestamp_seconds{{name="directory",namespace="payments",secret="transport"}} {stamp}',
            f'raidiam_token_expiration_timestamp_seconds{{name="directory",namespace="payments"}} {stamp}',
            f'raidiam_token_next_refresh_timestamp_seconds{{name="directory",namespace="payments"}} {stamp}',
            'raidiam_token_request_consecutive_failures{name="directory",namespace="payments"} 0.0',
            'raidiam_token_requests_total{error="",name="directory",namespace="payments",result="success"} 1.0',
            'raidiam_token_requests_total{error="invalid_client",name="directory",namespace="payments",result="failure"} 1.0',
        ]
    )
    assert "# TYPE raidiam_token_requests_total counter" in served
    assert 'raidiam_token_requests_created{error="",name="directory"' in served
    assert _client_lines(_exposition(metrics)) == []
