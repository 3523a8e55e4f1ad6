"""Leader election with a coordination.k8s.io Lease: with several replicas, one refreshes.

Why a Lease and not kopf's peering: kopf's peering pauses kopf's own handlers, but our refresh
engine keeps its timers outside them. A Lease gates the engine itself, while every replica keeps
watching, so a standby already knows every client when it takes over. Leases are also what
platform teams already read (`kubectl get lease`), and need only namespaced RBAC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from raidiam_operator.core.errors import Conflict
from raidiam_operator.core.times import Clock, parse_rfc3339, utc_now

logger = logging.getLogger(__name__)

JSON = dict[str, Any]


class LeaseGateway(Protocol):
    async def read_lease(self, namespace: str, name: str) -> JSON | None: ...
    async def create_lease(self, namespace: str, body: JSON) -> JSON: ...
    async def replace_lease(self, namespace: str, name: str, body: JSON) -> JSON: ...


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str
    identity: str
    #: a holder that has not renewed for this long is presumed dead
    duration: timedelta = timedelta(seconds=15)
    #: how often the holder renews
    renew_every: timedelta = timedelta(seconds=5)
    #: how often a standby looks at the Lease
    retry_every: timedelta = timedelta(seconds=2)


def lease_action(
    lease: JSON | None, *, identity: str, now: datetime
) -> Literal["create", "take", "renew", "wait"]:
    """What to do with the Lease as read. Pure."""
    if lease is None:
        return "create"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if holder == identity:
        return "renew"
    renewed = parse_rfc3339(spec.get("renewTime") or "")
    duration = timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
    if not holder or renewed is None or renewed + duration < now:
        return "take"
    return "wait"


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self, kube: LeaseGateway, settings: LeaseSettings, *, clock: Clock = utc_now
    ) -> None:
        self._kube = kube
        self.settings = settings
        self._clock = clock
        self.leading = False
        self._last_renewal: datetime | None = None

    async def run(self, on_change: Callable[[bool], None]) -> None:
        """Campaign until cancelled, calling `on_change` whenever leadership flips."""
        try:
            while True:
                leading = await self._attempt()
                if leading != self.leading:
                    self.leading = leading
                    logger.info(
                        "%s leadership of Lease %s/%s as %s",
                        "acquired" if leading else "lost",
                        self.settings.namespace,
                        self.settings.name,
                        self.settings.identity,
                    )
                    on_change(leading)
                pause = self.settings.renew_every if leading else self.settings.retry_every
                await asyncio.sleep(pause.total_seconds())
        finally:
            if self.leading:
                self.leading = False
                on_change(False)

    async def _attempt(self) -> bool:
        now = self._clock()
        settings = self.settings
        try:
            lease = await self._kube.read_lease(settings.namespace, settings.name)
            action = lease_action(lease, identity=settings.identity, now=now)
            if action == "wait":
                return False
            body = self._lease_body(lease, now=now, taking=action != "renew")
            if action == "create":
                await self._kube.create_lease(settings.namespace, body)
            else:
                await self._kube.replace_lease(settings.namespace, settings.name, body)
            self._last_renewal = now
            return True
        except Conflict:
            return False  # someone else wrote it first; look again next round
        except Exception as error:
            logger.warning(
                "cannot reach Lease %s/%s: %s",
                settings.namespace,
                settings.name,
                type(error).__name__,
            )
            # A leader that cannot renew steps down before its Lease could be taken over.
            still_valid = (
                self._last_renewal is not None
                and now - self._last_renewal < settings.duration - settings.renew_every
            )
            return self.leading and still_valid

    def _lease_body(self, lease: JSON | None, *, now: datetime, taking: bool) -> JSON:
        previous = (lease or {}).get("spec") or {}
        spec = {
            "holderIdentity": self.settings.identity,
            "leaseDurationSeconds": int(self.settings.duration.total_seconds()),
            "renewTime": _micro_time(now),
            "acquireTime": _micro_time(now)
            if taking
            else previous.get("acquireTime", _micro_time(now)),
            "leaseTransitions": int(previous.get("leaseTransitions") or 0)
            + (1 if taking and lease else 0),
        }
        metadata: JSON = {"name": self.settings.name, "namespace": self.settings.namespace}
        if lease is not None:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    async def release(self) -> None:
        """On a clean shutdown, hand over at once instead of after the Lease runs out."""
        if not self.leading:
            return
        try:
            lease = await self._kube.read_lease(self.settings.namespace, self.settings.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.settings.identity:
                lease["spec"]["holderIdentity"] = ""
                await self._kube.replace_lease(self.settings.namespace, self.settings.name, lease)
        except Exception as error:
            logger.warning("could not release Lease: %s", type(error).__name__)
        self.leading = False
