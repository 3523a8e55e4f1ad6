"""Leader election with a coordination.k8s.io Lease: with several replicas, one refreshes.

Why a Lease and not kopf's peering: kopf's peering pauses kopf's own handlers, but our refresh
engine keeps its timers outside them. A Lease gates the engine itself, while every replica keeps
watching, so a standby already knows every client when it takes over. Leases are also what
platform teams already read (`kubectl get lease`), and need only namespaced RBAC.

Fencing: the other replicas judge the Lease by its `renewTime` and their own clocks, and this one
cannot hear that it was taken over while it is frozen (SIGSTOP, a cgroup freeze, a stalled node).
So it judges itself by its own steady clock: it holds the Lease until the moment it sent its last
successful renewal, plus the Lease's duration, less a margin (clock skew between nodes, and a
request still in flight when the window closes). Every token request and every write asks
`holds_lease()` immediately before it goes out; once the window has passed, the answer is no, and
the replica steps down at once (its due and running work is cancelled) before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal, Protocol

from raidiam_operator.core.errors import Conflict
from raidiam_operator.core.spec import Owner
from raidiam_operator.core.times import Clock, parse_rfc3339, utc_now
from raidiam_operator.kube.gateway import ClientKube

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
#: seconds on a clock that only moves forward
SteadyClock = Callable[[], float]


def steady_seconds() -> float:
    """A clock that never goes back and also counts time the machine was suspended
    (CLOCK_BOOTTIME where there is one): a replica whose node slept sees its window pass."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(boottime) if boottime is not None else time.monotonic()


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
    #: the holder stops sending this long before another replica may take the Lease over: it
    #: covers clock skew between nodes and a request still on its way (client-go's
    #: RenewDeadline is `duration - margin`)
    margin: timedelta = timedelta(seconds=5)


# -- the fence ---------------------------------------------------------------------------------


class Fence(Protocol):
    """Whether this replica may send a token request or a write right now."""

    def holds_lease(self) -> bool: ...


class Unfenced:
    """Without --leader-election there is one replica: always open."""

    def holds_lease(self) -> bool:
        return True


UNFENCED = Unfenced()


class LeaseNotHeld(Exception):
    """Raised instead of a token request or a write while this replica does not hold the Lease.

    Not a failure of the client's: the attempt ends without side effects, nothing is recorded,
    and the replica that holds the Lease does the work."""


def require_lease(fence: Fence) -> None:
    if not fence.holds_lease():
        raise LeaseNotHeld("this replica does not hold the Lease")


class FencedGateway:
    """A `ClientKube` whose writes go out only while `fence` is open; reads always do."""

    def __init__(self, kube: ClientKube, fence: Fence) -> None:
        self._kube = kube
        self._fence = fence

    async def read_secret(self, namespace: str, name: str) -> JSON | None:
        return await self._kube.read_secret(namespace, name)

    async def read_config_map(self, namespace: str, name: str) -> JSON | None:
        return await self._kube.read_config_map(namespace, name)

    async def read_namespace(self, name: str) -> JSON | None:
        return await self._kube.read_namespace(name)

    async def create_secret(self, namespace: str, body: JSON) -> JSON:
        require_lease(self._fence)
        return await self._kube.create_secret(namespace, body)

    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON:
        require_lease(self._fence)
        return await self._kube.replace_secret(namespace, name, body)

    async def patch_status(self, owner: Owner, status: JSON) -> None:
        require_lease(self._fence)
        await self._kube.patch_status(owner, status)

    async def post_event(self, owner: Owner, *, warning: bool, reason: str, message: str) -> None:
        require_lease(self._fence)
        await self._kube.post_event(owner, warning=warning, reason=reason, message=message)


# -- the election ------------------------------------------------------------------------------


class _Look(Enum):
    """A look at the Lease that did not renew it."""

    HELD_ELSEWHERE = "another replica holds it"
    UNREACHABLE = "the API server did not answer"


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
    """Campaigns for the Lease, and is the `Fence` of the replica's work."""

    def __init__(
        self,
        kube: LeaseGateway,
        settings: LeaseSettings,
        *,
        clock: Clock = utc_now,
        steady: SteadyClock = steady_seconds,
    ) -> None:
        self._kube = kube
        self.settings = settings
        self._clock = clock
        self._steady = steady
        #: on the steady clock, when this replica stops holding the Lease; None on a standby
        self._holds_until: float | None = None
        self._on_change: Callable[[bool], None] = lambda leading: None
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def leading(self) -> bool:
        """Whether this replica counts itself the holder (`holds_lease` also checks the clock)."""
        return self._holds_until is not None

    def holds_lease(self) -> bool:
        """True while the window of the last renewal is open. Once it has passed, this replica
        steps down (its work is cancelled) before answering False: whatever asks first after a
        freeze sends nothing, and neither does anything after it."""
        until = self._holds_until
        if until is None:
            return False
        if self._steady() < until:
            return True
        self._step_down("its window ran out before it renewed the Lease")
        return False

    async def run(self, on_change: Callable[[bool], None]) -> None:
        """Campaign until cancelled, calling `on_change` whenever leadership flips."""
        self._on_change = on_change
        settings = self.settings
        window = (settings.duration - settings.margin).total_seconds()
        try:
            while True:
                look = await self._attempt()
                pause = settings.retry_every.total_seconds()
                if look is _Look.HELD_ELSEWHERE:
                    self._step_down("another replica holds it")
                elif look is _Look.UNREACHABLE:
                    self.holds_lease()  # steps down if the window ran out meanwhile
                elif self._steady() < look:
                    self._hold(look)
                    # The next renewal is due `renew_every` after this one was sent, however
                    # long it took to answer: a slow API server does not eat the window.
                    sent = look - window
                    pause = max(0.0, sent + settings.renew_every.total_seconds() - self._steady())
                else:
                    self.holds_lease()  # renewed, but only after the window ran out: step down
                await asyncio.sleep(pause)
        finally:
            self._step_down(None)

    def _hold(self, until: float) -> None:
        acquired = self._holds_until is None
        self._holds_until = until
        # Step down when the window closes even if nothing asks (a renewal stuck in a timeout).
        if self._watchdog is not None:
            self._watchdog.cancel()
        delay = max(0.0, until - self._steady())
        self._watchdog = asyncio.get_running_loop().call_later(delay, self.holds_lease)
        if acquired:
            self._log("acquired", None)
            self._on_change(True)

    def _step_down(self, why: str | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._holds_until is None:
            return
        self._holds_until = None
        if why is not None:
            self._log("lost", why)
        self._on_change(False)

    def _log(self, what: str, why: str | None) -> None:
        settings = self.settings
        logger.info(
            "%s leadership of Lease %s/%s as %s%s",
            what,
            settings.namespace,
            settings.name,
            settings.identity,
            f": {why}" if why else "",
        )

    async def _attempt(self) -> float | _Look:
        """One look at the Lease: until when (steady clock) this replica holds it now."""
        # The window starts before the request is sent: the renewTime written is as early.
        now, sent = self._clock(), self._steady()
        settings = self.settings
        try:
            lease = await self._kube.read_lease(settings.namespace, settings.name)
            action = lease_action(lease, identity=settings.identity, now=now)
            if action == "wait":
                return _Look.HELD_ELSEWHERE
            body = self._lease_body(lease, now=now, taking=action != "renew")
            if action == "create":
                await self._kube.create_lease(settings.namespace, body)
            else:
                await self._kube.replace_lease(settings.namespace, settings.name, body)
            return sent + (settings.duration - settings.margin).total_seconds()
        except Conflict:
            return _Look.HELD_ELSEWHERE  # someone else wrote it first; look again next round
        except Exception as error:
            logger.warning(
                "cannot reach Lease %s/%s: %s",
                settings.namespace,
                settings.name,
                type(error).__name__,
            )
            return _Look.UNREACHABLE  # the last renewal's window holds; it runs out by itself

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
        self._step_down(None)
