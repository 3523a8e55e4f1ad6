"""What Prometheus scrapes besides the clients' series: the process, Python and the build."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import generate_latest

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
