"""Prometheus metrics. Labels are names and classes only: never a token, key or assertion.

The OAuth `error` label takes codes from RFC 6749 and RFC 8707 only; a server that invents codes
must not be able to grow our series without bound.
"""

from __future__ import annotations

import contextlib
import platform
from collections import defaultdict
from datetime import datetime
from importlib import metadata

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)

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
        client = ["namespace", "name"]
        self.token_expiration = Gauge(
            "raidiam_token_expiration_timestamp_seconds",
            "When the token in the client's Secret expires (Unix time).",
            client,
            registry=self.registry,
        )
        self.next_refresh = Gauge(
            "raidiam_token_next_refresh_timestamp_seconds",
            "When the operator will next request a token for the client (Unix time).",
            client,
            registry=self.registry,
        )
        self.requests = Counter(
            "raidiam_token_requests",
            "Token requests, by outcome; error is the OAuth error code or a transient class.",
            [*client, "result", "error"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "raidiam_token_request_duration_seconds",
            "Duration of token requests, discovery included.",
            ["auth_method"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.ready = Gauge(
            "raidiam_client_ready",
            "1 when the client's Secret holds a valid token for its current spec, else 0.",
            client,
            registry=self.registry,
        )
        self.input_certificate_expiration = Gauge(
            "raidiam_input_certificate_expiration_timestamp_seconds",
            "When a certificate the client uses (transport or signing) expires (Unix time).",
            [*client, "secret"],
            registry=self.registry,
        )
        self.consecutive_failures = Gauge(
            "raidiam_token_request_consecutive_failures",
            "Token requests failed in a row for the client (status.failedAttempts); 0 after a success.",
            client,
            registry=self.registry,
        )
        self.leader = Gauge(
            "raidiam_operator_leader",
            "1 on the replica that refreshes tokens, 0 on a standby.",
            registry=self.registry,
        )
        self._request_labels: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        self._certificate_secrets: dict[tuple[str, str], set[str]] = defaultdict(set)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from the pod IP
        start_http_server(port, addr=address, registry=self.registry)

    def client_seen(self, namespace: str, name: str) -> None:
        """Create the success series at zero, so that the first increase() is not lost."""
        self._count(namespace, name, "success", "", by=0)

    def request_succeeded(
        self, namespace: str, name: str, *, auth_method: str, duration: float
    ) -> None:
        self._count(namespace, name, "success", "")
        self.consecutive_failures.labels(namespace, name).set(0)
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
        self._count(namespace, name, "failure", error_label(error))
        self.consecutive_failures.labels(namespace, name).inc()
        self.duration.labels(auth_method).observe(duration)

    def _count(self, namespace: str, name: str, result: str, error: str, by: float = 1) -> None:
        self._request_labels[(namespace, name)].add((result, error))
        self.requests.labels(namespace, name, result, error).inc(by)

    def token_state(
        self,
        namespace: str,
        name: str,
        *,
        ready: bool,
        expires_at: datetime | None,
        next_refresh: datetime | None,
    ) -> None:
        self.ready.labels(namespace, name).set(1 if ready else 0)
        if expires_at is not None:
            self.token_expiration.labels(namespace, name).set(expires_at.timestamp())
        if next_refresh is not None:
            self.next_refresh.labels(namespace, name).set(next_refresh.timestamp())
        else:
            _remove(self.next_refresh, namespace, name)

    def certificate_expiration(
        self, namespace: str, name: str, secret: str, not_after: datetime
    ) -> None:
        self._certificate_secrets[(namespace, name)].add(secret)
        self.input_certificate_expiration.labels(namespace, name, secret).set(not_after.timestamp())

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted RaidiamClient."""
        for gauge in (
            self.token_expiration,
            self.next_refresh,
            self.ready,
            self.consecutive_failures,
        ):
            _remove(gauge, namespace, name)
        for result, error in self._request_labels.pop((namespace, name), set()):
            _remove(self.requests, namespace, name, result, error)
        for secret in self._certificate_secrets.pop((namespace, name), set()):
            _remove(self.input_certificate_expiration, namespace, name, secret)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
