"""The status of every ClusterRaidiamIssuer: is its authorization server there, and where does
it take token requests?

kopf tells the reconciler what exists (`observe`, `forget`); it checks each issuer at once when
it appears or its spec changes, then every `interval`, and sooner again after a failure (10 s,
doubling up to `interval`). A check is a real discovery fetch over the issuer's CA bundle (or,
with `spec.tokenEndpoint`, a GET of that endpoint), through the same HTTP client the token
requests use, so a fresh discovery document also serves the issuer's clients.

The status is informational: a client of a not-Ready issuer still tries and reports its own
errors. Only the active replica (the Lease holder) checks and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from raidiam_operator.core.errors import RaidiamOperatorError
from raidiam_operator.core.issuers import parse_issuer
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.times import Clock, rfc3339, utc_now
from raidiam_operator.kube.leader import UNFENCED, Fence
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.metadata import discovery_url
from raidiam_operator.refresh.inputs import config_map_value
from raidiam_operator.refresh.render import Condition, conditions, status_differs

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
#: how often a healthy issuer is checked again
CHECK_INTERVAL = timedelta(minutes=5)
#: the first retry after a failed check; it doubles up to CHECK_INTERVAL
FIRST_RETRY = timedelta(seconds=10)


class IssuerGateway(Protocol):
    async def read_config_map(self, namespace: str, name: str) -> JSON | None: ...
    async def patch_issuer_status(self, name: str, status: JSON) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check found: the endpoints, or the problem."""

    token_endpoint: str | None = None
    mtls_token_endpoint: str | None = None
    problem: RaidiamOperatorError | None = None
    #: a fixed spec.tokenEndpoint answered (discovery was not read)
    fixed_endpoint_status: int | None = None


@dataclass(slots=True)
class _Issuer:
    body: Mapping[str, Any]
    generation: int
    observed_status: Mapping[str, Any] | None
    failures: int = 0


class IssuerStatusReconciler:
    def __init__(
        self,
        kube: IssuerGateway,
        tokens: TokenClient,
        *,
        cluster_resource_namespace: str,
        clock: Clock = utc_now,
        interval: timedelta = CHECK_INTERVAL,
        fence: Fence = UNFENCED,
    ) -> None:
        self._kube = kube
        self._fence = fence
        self._tokens = tokens
        self._namespace = cluster_resource_namespace
        self._clock = clock
        self._interval = interval
        self._issuers: dict[str, _Issuer] = {}
        self._due: dict[str, datetime] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()
        self._active = True

    # -- what kopf tells us ----------------------------------------------------------------

    def observe(self, body: Mapping[str, Any]) -> None:
        """A ClusterRaidiamIssuer was listed, created or changed."""
        name = body["metadata"]["name"]
        generation = int(body["metadata"].get("generation") or 0)
        known = self._issuers.get(name)
        if known is not None and known.generation == generation:
            known.body = body  # a status update (our own, most likely): nothing to check
            return
        self._issuers[name] = _Issuer(body, generation, body.get("status"))
        self._plan(name, self._clock())

    def forget(self, name: str) -> None:
        self._issuers.pop(name, None)
        self._due.pop(name, None)

    def set_active(self, active: bool) -> None:
        """Check and write only while holding the Lease; a new holder checks every issuer."""
        if active and not self._active:
            now = self._clock()
            for name in self._issuers:
                self._plan(name, now)
        self._active = active
        if not active:
            for task in self._running.values():
                task.cancel()
        self._wakeup.set()

    # -- the loop --------------------------------------------------------------------------

    def _plan(self, name: str, when: datetime) -> None:
        self._due[name] = when
        self._wakeup.set()

    async def run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                now = self._clock()
                if self._active:
                    for name, when in list(self._due.items()):
                        if when <= now and name not in self._running:
                            del self._due[name]
                            task = asyncio.create_task(self._check(name), name=f"issuer {name}")
                            self._running[name] = task
                            task.add_done_callback(lambda _, n=name: self._done(n))  # type: ignore[misc]
                upcoming = [w for n, w in self._due.items() if n not in self._running]
                timeout = (
                    max(0.0, (min(upcoming) - now).total_seconds())
                    if upcoming and self._active
                    else None
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wakeup.wait()
        finally:
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def _done(self, name: str) -> None:
        self._running.pop(name, None)
        self._wakeup.set()

    async def _check(self, name: str) -> None:
        state = self._issuers.get(name)
        if state is None or not self._fence.holds_lease():
            return
        generation = state.generation
        result = await self.check(state.body)
        now = self._clock()
        if self._issuers.get(name) is not state or state.generation != generation:
            return  # changed or deleted meanwhile; the newer version has its own check planned
        state.failures = 0 if result.problem is None else state.failures + 1
        if result.problem is not None:
            logger.warning(
                "ClusterRaidiamIssuer %s: %s: %s",
                name,
                result.problem.reason,
                result.problem.message,
            )
        status = issuer_status(
            result,
            previous=state.observed_status,
            issuer=str((state.body.get("spec") or {}).get("issuer", "")),
            generation=generation,
            now=now,
        )
        try:
            if not self._fence.holds_lease():
                return  # the new holder checks every issuer again
            if status_differs(state.observed_status, status):
                await self._kube.patch_issuer_status(name, status)
                state.observed_status = status
        except Exception as error:  # the API server: try again soon, like a failed check
            logger.warning(
                "ClusterRaidiamIssuer %s: could not write the status: %s",
                name,
                getattr(error, "status", None) or type(error).__name__,
            )
            state.failures = max(state.failures, 1)
        if name not in self._due:
            self._plan(name, now + self._next_check(state.failures))

    def _next_check(self, failures: int) -> timedelta:
        if failures == 0:
            return self._interval
        backoff: timedelta = FIRST_RETRY * 2 ** min(failures - 1, 16)
        return min(self._interval, backoff)

    async def check(self, body: Mapping[str, Any]) -> CheckResult:
        """One check of one issuer's authorization server. Never raises our own errors."""
        try:
            issuer = parse_issuer(body, cluster_resource_namespace=self._namespace)
            ca_bundle = None
            if issuer.ca_bundle is not None:
                ref = issuer.ca_bundle
                config_map = await self._kube.read_config_map(self._namespace, ref.config_map_name)
                ca_bundle = config_map_value(
                    config_map, namespace=self._namespace, name=ref.config_map_name, key=ref.key
                )
            fixed = issuer.token_endpoint is not None
            async with self._tokens.attempt_deadline(
                f"checking {issuer.issuer}", "its token endpoint" if fixed else "discovery"
            ):
                if issuer.token_endpoint is not None:
                    status = await self._tokens.reach(issuer.token_endpoint, ca_bundle=ca_bundle)
                    return CheckResult(
                        token_endpoint=issuer.token_endpoint, fixed_endpoint_status=status
                    )
                metadata = await self._tokens.discover(
                    issuer.issuer, ca_bundle=ca_bundle, fresh=True
                )
        except RaidiamOperatorError as error:
            return CheckResult(problem=error)
        return CheckResult(
            token_endpoint=metadata.token_endpoint, mtls_token_endpoint=metadata.mtls_token_endpoint
        )


def issuer_status(
    result: CheckResult,
    *,
    previous: Mapping[str, Any] | None,
    issuer: str,
    generation: int,
    now: datetime,
) -> JSON:
    """The whole status subresource of a ClusterRaidiamIssuer. Pure."""
    if result.problem is not None:
        ready = Condition("Ready", False, result.problem.reason, result.problem.message)
    elif result.fixed_endpoint_status is not None:
        ready = Condition(
            "Ready",
            True,
            Reason.TOKEN_ENDPOINT_REACHABLE,
            f"the token endpoint {result.token_endpoint} answered over verified TLS (HTTP "
            f"{result.fixed_endpoint_status}); discovery is not used",
        )
    else:
        alias = (
            f", mTLS alias {result.mtls_token_endpoint}"
            if result.mtls_token_endpoint
            else "; it publishes no mtls_endpoint_aliases, so mutual-TLS requests go to the "
            "plain token endpoint"
        )
        ready = Condition(
            "Ready",
            True,
            Reason.DISCOVERED,
            f"the discovery document at {discovery_url(issuer)} names this issuer; token "
            f"endpoint {result.token_endpoint}{alias}",
        )
    previous_conditions: Sequence[Mapping[str, Any]] = (previous or {}).get("conditions") or []
    return {
        "observedGeneration": generation,
        "conditions": conditions(previous_conditions, [ready], generation=generation, now=now),
        # A failed check keeps what the last good one found: still where clients send requests.
        "tokenEndpoint": result.token_endpoint
        if result.problem is None
        else (previous or {}).get("tokenEndpoint"),
        "mtlsTokenEndpoint": result.mtls_token_endpoint
        if result.problem is None
        else (previous or {}).get("mtlsTokenEndpoint"),
        "lastCheckTime": rfc3339(now),
    }
