"""Prometheus metrics. Labels are names and classes only: never a token, key or assertion.

The OAuth `error` label takes codes from RFC 6749 and RFC 8707 only; a server that invents codes
must not be able to grow our series without bound.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from importlib import metadata

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from raidiam_operator import __version__
from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    RaidiamOperatorError,
    TransientError,
)

KNOWN_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
    }
)


def error_label(error: RaidiamOperatorError) -> str:
    """The `error` label: the OAuth code, the transient class, or the configuration reason."""
    if isinstance(error, AuthorizationServerRejection):
        return error.error if error.error in KNOWN_OAUTH_ERRORS else "other_oauth_error"
    if isinstance(error, TransientError):
        return error.kind
    return error.reason


def build_labels() -> dict[str, str]:
    """The `raidiam_operator_build_info` labels: what is running, for dashboards and upgrades."""
    try:
        kopf_version = metadata.version("kopf")
    except metadata.PackageNotFoundError:  # pragma: no cover - kopf is a dependency
        kopf_version = "unknown"
    return {
        "version": __version__,
        "kopf_version": kopf_version,
        "python_version": platform.python_version(),
    }


class Metrics:
    """The operator's series, in their own registry so tests can hold several.

    The registry also serves the process's own `process_*` and `python_*` series (CPU, memory,
    open files, garbage collection), the same collectors every Python exporter has, so the usual
    dashboards and resource alerts work on the operator as they do on anything else.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        Info(
            "raidiam_operator_build",
            "The running operator's version (and those of kopf and Python); always 1.",
            registry=self.registry,
        ).info(build_labels())
        self.duration = Histogram(
            "raidiam_token_request_duration_seconds",
            "Duration of token requests, discovery included.",
            ["auth_method"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.leader = Gauge(
            "raidiam_operator_leader",
            "1 on the replica that refreshes tokens, 0 on a standby.",
            registry=self.registry,
        )
        self._clients = _ClientSeries()
        self.registry.register(self._clients)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from the pod IP
        start_http_server(port, addr=address, registry=self.registry)

    def client_seen(self, namespace: str, name: str) -> None:
        """Create the success series at zero, so that the first increase() is not lost."""
        self._clients.of(namespace, name).count("success", "", by=0)

    def request_succeeded(
        self, namespace: str, name: str, *, auth_method: str, duration: float
    ) -> None:
        client = self._clients.of(namespace, name)
        client.count("success", "")
        client.consecutive_failures = 0
        self.duration.labels(auth_method).observe(duration)

    def request_failed(
        self,
        namespace: str,
        name: str,
        error: RaidiamOperatorError,
        *,
        auth_method: str,
        duration: float,
    ) -> None:
        client = self._clients.of(namespace, name)
        client.count("failure", error_label(error))
        client.consecutive_failures = (client.consecutive_failures or 0) + 1
        self.duration.labels(auth_method).observe(duration)

    def token_state(
        self,
        namespace: str,
        name: str,
        *,
        ready: bool,
        expires_at: datetime | None,
        next_refresh: datetime | None,
    ) -> None:
        client = self._clients.of(namespace, name)
        client.ready = 1 if ready else 0
        if expires_at is not None:
            client.token_expiration = expires_at.timestamp()
        client.next_refresh = next_refresh.timestamp() if next_refresh is not None else None

    def certificate_expiration(
        self, namespace: str, name: str, secret: str, not_after: datetime
    ) -> None:
        self._clients.of(namespace, name).certificates[secret] = not_after.timestamp()

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted RaidiamClient."""
        self._clients.forget(namespace, name)


class _Client:
    """One RaidiamClient's series: a few numbers, not a metric child per series.

    prometheus_client keeps an object with its own lock per label set, which at thousands of
    clients takes a large part of the chart's memory limit (the cost per client is in
    docs/benchmarks.md). These are the same values, rendered when Prometheus scrapes."""

    __slots__ = (
        "certificates",
        "consecutive_failures",
        "next_refresh",
        "ready",
        "requests",
        "token_expiration",
    )

    def __init__(self) -> None:
        self.ready: int | None = None
        self.token_expiration: float | None = None
        self.next_refresh: float | None = None
        self.consecutive_failures: int | None = None
        #: (result, error) -> [count, created (Unix time)]
        self.requests: dict[tuple[str, str], list[float]] = {}
        #: certificate Secret -> notAfter (Unix time)
        self.certificates: dict[str, float] = {}

    def count(self, result: str, error: str, by: float = 1) -> None:
        counted = self.requests.get((result, error))
        if counted is None:
            counted = self.requests[(result, error)] = [0.0, time.time()]
        counted[0] += by


class _ClientSeries(Collector):
    """The per-client families, rendered from `_Client` records at scrape time."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], _Client] = {}
        # A scrape runs in the metrics server's thread while the event loop updates records.
        self._lock = threading.Lock()

    def of(self, namespace: str, name: str) -> _Client:
        client = self._clients.get((namespace, name))
        if client is None:
            with self._lock:
                client = self._clients.setdefault((namespace, name), _Client())
        return client

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._clients.pop((namespace, name), None)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        client_labels = ["namespace", "name"]
        return (
            GaugeMetricFamily(
                "raidiam_token_expiration_timestamp_seconds",
                "When the token in the client's Secret expires (Unix time).",
                labels=client_labels,
            ),
            GaugeMetricFamily(
                "raidiam_token_next_refresh_timestamp_seconds",
                "When the operator will next request a token for the client (Unix time).",
                labels=client_labels,
            ),
            CounterMetricFamily(
                "raidiam_token_requests",
                "Token requests, by outcome; error is the OAuth error code or a transient class.",
                labels=[*client_labels, "result", "error"],
            ),
            GaugeMetricFamily(
                "raidiam_client_ready",
                "1 when the client's Secret holds a valid token for its current spec, else 0.",
                labels=client_labels,
            ),
            GaugeMetricFamily(
                "raidiam_input_certificate_expiration_timestamp_seconds",
                "When a certificate the client uses (transport or signing) expires (Unix time).",
                labels=[*client_labels, "secret"],
            ),
            GaugeMetricFamily(
                "raidiam_token_request_consecutive_failures",
                "Token requests failed in a row for the client (status.failedAttempts); "
                "0 after a success.",
                labels=client_labels,
            ),
        )

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        expiration, next_refresh, requests, ready, certificates, failures = families
        with self._lock:
            clients = list(self._clients.items())
        for (namespace, name), client in clients:
            labels = [namespace, name]
            if client.token_expiration is not None:
                expiration.add_metric(labels, client.token_expiration)
            if client.next_refresh is not None:
                next_refresh.add_metric(labels, client.next_refresh)
            for (result, error), (count, created) in list(client.requests.items()):
                requests.add_metric([*labels, result, error], count, created=created)
            if client.ready is not None:
                ready.add_metric(labels, client.ready)
            for secret, not_after in list(client.certificates.items()):
                certificates.add_metric([*labels, secret], not_after)
            if client.consecutive_failures is not None:
                failures.add_metric(labels, client.consecutive_failures)
        return families
