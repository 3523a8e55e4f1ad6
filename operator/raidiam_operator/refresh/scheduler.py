"""The timer heap and the concurrency limit: when each client's next attempt runs.

One heap for every client instead of a task or timer per object keeps thousands of clients
cheap, and one semaphore throttles a burst. At most one attempt per client runs at a time: a
client planned again while its attempt runs goes again right after it.

Fairness: one namespace, and one issuer, hold at most `tenant_concurrency` of the shared slots
(by default `tenant_share`: a quarter of them, so that a few busy tenants never hold them all).
An attempt takes its tenant's shares first and the shared slot last, so clients of a tenant that
already holds its share (a slow or hostile issuer, a burst in one namespace) wait without
holding anyone else's slot. Before the shared slot, `prepare` runs (discovery, which may be
slow): only the tenant's shares are held while it does.

A due client whose tenant holds its full share waits in that tenant's queue, a key and nothing
more; its task starts once a share frees. A task per due client, each waiting on a semaphore,
would cost memory for every client a restart finds due at once (the cost per waiting task is in
docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from raidiam_operator.core.times import Clock
from raidiam_operator.refresh.state import Key


class Scheduler:
    def __init__(
        self,
        attempt: Callable[[Key], Awaitable[None]],
        *,
        clock: Clock,
        concurrency: int,
        tenant_concurrency: int | None = None,
        issuer_of: Callable[[Key], str] = lambda key: "",
        prepare: Callable[[Key], Awaitable[None]] | None = None,
    ) -> None:
        self._attempt = attempt
        self._issuer_of = issuer_of
        self._prepare = prepare
        share = tenant_concurrency or tenant_share(concurrency)
        self._namespace_shares = _Shares(share)
        self._issuer_shares = _Shares(share)
        self._clock = clock
        #: the planned moment of every client that has one
        self.due: dict[Key, datetime] = {}
        self._heap: list[tuple[datetime, int, Key]] = []
        self._sequence = 0
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        # False on a standby replica: plans are kept, nothing is started.
        self._active = True
        # Once `run` ends, a share that frees starts no one (the queues go with the scheduler).
        self._stopped = False

    def schedule(self, key: Key, when: datetime) -> None:
        """Run `key` at `when`; an earlier time already planned wins over a later one."""
        planned = self.due.get(key)
        if planned is not None and planned <= when:
            return
        self.due[key] = when
        self._sequence += 1
        heapq.heappush(self._heap, (when, self._sequence, key))
        self._wakeup.set()

    def replan(self, key: Key, when: datetime) -> None:
        """Replace whatever was planned for `key` by `when` (after an attempt)."""
        self.due.pop(key, None)
        self.schedule(key, when)

    def cancel(self, key: Key) -> None:
        """Plan nothing for `key` (its heap entry is skipped when it comes up)."""
        self.due.pop(key, None)

    def planned(self, key: Key) -> datetime | None:
        """When the next attempt of `key` runs, if one is planned."""
        return self.due.get(key)

    def shares_held(self) -> tuple[Mapping[str, int], Mapping[str, int]]:
        """The shares each namespace, and each issuer, holds right now (none once idle)."""
        return self._namespace_shares.held, self._issuer_shares.held

    def is_running(self, key: Key) -> bool:
        return key in self._running

    def run_again(self, key: Key) -> None:
        """Once the running attempt of `key` ends, start another one."""
        self._again.add(key)

    @property
    def running(self) -> int:
        return len(self._running)

    def overdue(self, *, now: datetime, grace: timedelta) -> int:
        return sum(1 for when in self.due.values() if when < now - grace)

    def set_active(self, active: bool) -> None:
        """Start attempts, or stop: a replica that lost the Lease starts none, and the attempts
        running or queued are cancelled at once (their plans go; a new holder makes new ones)."""
        self._active = active
        if not active:
            for key in self._namespace_shares.drop_waiting():
                self._running.discard(key)
            for key in self._issuer_shares.drop_waiting():
                self._namespace_shares.give_back(key[0])  # it held its namespace's share
                self._running.discard(key)
            self._again.clear()
            for task in list(self._tasks):
                task.cancel()
        self._wakeup.set()

    async def run(self) -> None:
        """Start due attempts until cancelled."""
        try:
            while True:
                self._wakeup.clear()
                now = self._clock()
                while self._active and self._heap and self._heap[0][0] <= now:
                    when, _, key = heapq.heappop(self._heap)
                    if self.due.get(key) != when:
                        continue  # superseded by a newer plan
                    del self.due[key]
                    self._start(key)
                timeout = (
                    (self._heap[0][0] - now).total_seconds()
                    if self._heap and self._active
                    else None
                )
                # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that arrives while
                # the event is being set, and the operator then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wakeup.wait()
        finally:
            self._stopped = True
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, key: Key) -> None:
        if key in self._running:
            self._again.add(key)  # changed while running: go again right after
            return
        self._running.add(key)
        self._admit(key)

    def _admit(self, key: Key) -> None:
        """Take the namespace's share, or queue behind it."""
        if self._namespace_shares.take(key[0], key):
            self._admit_to_issuer(key)

    def _admit_to_issuer(self, key: Key) -> None:
        """With the namespace's share held: take the issuer's, or queue behind it (as nested
        semaphores would, holding the namespace's share meanwhile)."""
        issuer = self._issuer_of(key)
        if self._issuer_shares.take(issuer, key):
            self._launch(key, issuer)

    def _launch(self, key: Key, issuer: str) -> None:
        if self._stopped:
            return
        task = asyncio.create_task(self._throttled(key), name=f"reconcile {key[0]}/{key[1]}")
        self._tasks.add(task)
        # A callback, not a `finally`: a task cancelled before its first step (the Lease lost
        # right after the launch) runs no `finally`, and would keep its shares and its key.
        task.add_done_callback(functools.partial(self._ended, key, issuer))

    async def _throttled(self, key: Key) -> None:
        if self._prepare is not None:
            await self._prepare(key)
        async with self._slots:
            await self._attempt(key)

    def _ended(self, key: Key, issuer: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._running.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.schedule(key, self._clock())
        waiting = self._issuer_shares.give_back(issuer)
        if waiting is not None:
            self._launch(waiting, issuer)
        waiting = self._namespace_shares.give_back(key[0])
        if waiting is not None:
            self._admit_to_issuer(waiting)


def tenant_share(concurrency: int) -> int:
    """How many of `concurrency` shared slots one namespace, and one issuer, may hold.

    A quarter (at least 4): it takes four namespaces whose servers all hang to hold every slot,
    and three leave a quarter to everyone else. A burst in one namespace runs 32 wide at the
    default 128 slots: twice the connections one server origin gets (protocol/client.py), so
    that its token requests go on while the attempts that have their answer write it."""
    return min(concurrency, max(4, concurrency // 4))


class _Shares:
    """At most `size` holders per tenant (a namespace, an issuer), and a queue of the clients
    waiting for each. Tenants without holders are dropped, so the tables are as large as the
    set of tenants busy right now."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._held: dict[str, int] = {}
        self._waiting: dict[str, deque[Key]] = {}

    @property
    def held(self) -> Mapping[str, int]:
        return MappingProxyType(self._held)

    def take(self, tenant: str, key: Key) -> bool:
        """Hold a share of `tenant` for `key`, or queue `key` for the next one to free."""
        held = self._held.get(tenant, 0)
        if held < self._size:
            self._held[tenant] = held + 1
            return True
        self._waiting.setdefault(tenant, deque()).append(key)
        return False

    def drop_waiting(self) -> list[Key]:
        """Empty every queue; returns the clients that waited."""
        dropped = [key for waiting in self._waiting.values() for key in waiting]
        self._waiting.clear()
        return dropped

    def give_back(self, tenant: str) -> Key | None:
        """Free a share of `tenant`; the client that waited longest for it now holds it."""
        waiting = self._waiting.get(tenant)
        if waiting:
            key = waiting.popleft()
            if not waiting:
                del self._waiting[tenant]
            return key  # the share passes straight on
        held = self._held[tenant] - 1
        if held:
            self._held[tenant] = held
        else:
            del self._held[tenant]
        return None
