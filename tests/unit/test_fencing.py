"""Fencing: a replica sends a token request or a write only while it holds the Lease, by its own
steady clock; losing it cancels what runs; a leader resumed after a freeze sends nothing."""

from __future__ import annotations

import asyncio
import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from raidiam_operator.core.errors import Conflict
from raidiam_operator.kube.leader import LeaderElector, LeaseNotHeld, LeaseSettings
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine
from raidiam_operator.refresh.issuer_status import IssuerStatusReconciler
from raidiam_operator.refresh.scheduler import Scheduler
from raidiam_operator.refresh.state import Key
from tests.unit.engine_fakes import BODY, KEY, Clock, FakeKube, Server

JSON = dict[str, Any]


class Fence:
    """A fence the test opens and closes by hand."""

    def __init__(self) -> None:
        self.open = True

    def holds_lease(self) -> bool:
        return self.open


class SteadyClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


class Leases:
    """The Lease API of an in-memory API server; `taken_by` makes another replica the holder."""

    def __init__(self) -> None:
        self.lease: JSON | None = None
        self.version = 0

    async def read_lease(self, namespace: str, name: str) -> JSON | None:
        return copy.deepcopy(self.lease)

    async def create_lease(self, namespace: str, body: JSON) -> JSON:
        if self.lease is not None:
            raise Conflict("exists", status_code=409)
        return self._store(body)

    async def replace_lease(self, namespace: str, name: str, body: JSON) -> JSON:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise Conflict("changed", status_code=409)
        return self._store(body)

    def _store(self, body: JSON) -> JSON:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    def taken_by(self, identity: str) -> None:
        assert self.lease is not None
        self.lease["spec"]["holderIdentity"] = identity


def _engine(kube: FakeKube, server: Server, clock: Clock, fence: Any) -> RefreshEngine:
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    return RefreshEngine(kube, tokens, EngineSettings(seed=1), clock=clock, fence=fence)


async def _until(condition: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


# -- the fence, closed ---------------------------------------------------------------------------


async def test_a_closed_fence_sends_no_token_request_and_writes_nothing(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    fence = Fence()
    engine = _engine(kube, server, clock, fence)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    await engine.events_posted()
    requests, writes, events = server.requests, kube.writes, len(kube.events)

    fence.open = False
    clock.advance(400)  # the token has expired: without the fence, a request and two writes
    await engine.reconcile(KEY)
    await engine.events_posted()

    assert (server.requests, kube.writes, len(kube.events)) == (requests, writes, events)
    assert engine.summary()["failing"] == 0, "no failure is recorded as if the server failed"


class ClosingKube(FakeKube):
    """The fence closes while the attempt reads the transport Secret: a freeze mid-attempt."""

    def __init__(self, fence: Fence) -> None:
        super().__init__()
        self.fence = fence
        self.close_on_read = False

    async def read_secret(self, namespace: str, name: str) -> JSON | None:
        if self.close_on_read and name == "transport":
            self.fence.open = False
        return await super().read_secret(namespace, name)


async def test_a_fence_that_closes_during_an_attempt_stops_it_before_the_token_request(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    fence = Fence()
    closing = ClosingKube(fence)
    closing.all_secrets = kube.all_secrets
    engine = _engine(closing, server, clock, fence)
    engine.observe(BODY)
    closing.close_on_read = True

    with pytest.raises(LeaseNotHeld):
        await engine.reconcile(KEY)

    assert server.token_requests == 0
    assert closing.writes == 0
    assert closing.events == []


async def test_a_fence_that_closes_while_the_token_request_runs_keeps_the_token_out_of_the_secret(
    kube: FakeKube, clock: Clock
) -> None:
    fence = Fence()

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "issuer": BODY["spec"]["issuer"],
                    "token_endpoint": "https://auth.example/token",
                },
            )
        fence.open = False  # the Lease lapsed while the server answered
        return httpx.Response(
            200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 300}
        )

    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    engine = RefreshEngine(kube, tokens, EngineSettings(seed=1), clock=clock, fence=fence)
    engine.observe(BODY)

    with pytest.raises(LeaseNotHeld):
        await engine.reconcile(KEY)

    assert "directory-token" not in kube.secrets
    assert (kube.writes, kube.events) == (0, [])


# -- losing the Lease cancels what runs -----------------------------------------------------------


class HeldServer(Server):
    """Token requests wait until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        response = self(request)
        if not request.url.path.endswith("openid-configuration"):
            await self.release.wait()
        return response


async def test_losing_the_lease_cancels_the_attempt_in_flight(kube: FakeKube, clock: Clock) -> None:
    server = HeldServer()
    tokens = TokenClient(transport=httpx.MockTransport(server.handle), clock=clock)
    engine = RefreshEngine(kube, tokens, EngineSettings(seed=1), clock=clock)
    runner = asyncio.create_task(engine.run())
    engine.observe(BODY)
    await _until(lambda: server.token_requests == 1)

    engine.set_active(False)
    server.release.set()
    await _until(lambda: engine.summary()["reconciling"] == 0)
    await asyncio.sleep(0.05)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)

    assert "directory-token" not in kube.secrets, "the token of a cancelled attempt is not written"
    assert kube.writes == 0


async def test_stepping_down_cancels_queued_attempts_and_frees_their_shares() -> None:
    started: list[Key] = []
    release = asyncio.Event()

    async def attempt(key: Key) -> None:
        started.append(key)
        await release.wait()

    def now() -> datetime:
        return datetime.now(UTC)

    scheduler = Scheduler(attempt, clock=now, concurrency=8, tenant_concurrency=1)
    runner = asyncio.create_task(scheduler.run())
    for name in ("a", "b", "c"):
        scheduler.schedule(("busy", name), now())
    await _until(lambda: started == [("busy", "a")] and scheduler.running == 3)

    scheduler.set_active(False)
    await _until(lambda: scheduler.running == 0)
    scheduler.set_active(True)
    release.set()
    scheduler.schedule(("busy", "c"), now())
    await _until(lambda: ("busy", "c") in started)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)

    assert started == [("busy", "a"), ("busy", "c")], "the queued b went with the plans"


# -- the Lease's window, on the replica's own clock -----------------------------------------------


def _elector(leases: Leases, steady: SteadyClock, clock: Clock) -> LeaderElector:
    return LeaderElector(
        leases,
        LeaseSettings(namespace="ops", name="lease", identity="me"),
        clock=clock,
        steady=steady,
    )


async def _leading(elector: LeaderElector, changes: list[bool]) -> asyncio.Task[None]:
    task = asyncio.create_task(elector.run(changes.append))
    await _until(lambda: elector.leading)
    return task


async def test_the_lease_is_held_until_its_duration_less_the_margin_after_the_renewal_was_sent(
    clock: Clock,
) -> None:
    leases, steady, changes = Leases(), SteadyClock(), []
    elector = _elector(leases, steady, clock)
    task = await _leading(elector, changes)

    steady.seconds += 9.9  # duration 15 s, margin 5 s
    assert elector.holds_lease()
    steady.seconds += 0.2
    assert not elector.holds_lease()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert changes == [True, False], "stepped down once, when the window closed"
    assert not elector.leading


async def test_a_leader_resumed_past_its_window_sends_nothing_until_it_holds_the_lease_again(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    leases, steady, changes = Leases(), SteadyClock(), []
    elector = _elector(leases, steady, clock)
    engine = _engine(kube, server, clock, elector)
    engine.set_active(False)
    engine.observe(BODY)

    def lead(active: bool) -> None:
        changes.append(active)
        engine.set_active(active)

    task = asyncio.create_task(elector.run(lead))
    await _until(lambda: elector.leading)
    await engine.reconcile(KEY)
    token = kube.secrets["directory-token"]["data"]["access_token"]
    requests, writes = server.requests, kube.writes

    # Frozen for 45 s: another replica took the Lease over and renewed the token meanwhile.
    steady.seconds += 45
    clock.advance(45)
    leases.taken_by("other")
    await engine.reconcile(KEY)  # whatever runs first on resume

    assert changes == [True, False]
    assert engine.summary()["active"] is False
    assert (server.requests, kube.writes) == (requests, writes)
    assert kube.secrets["directory-token"]["data"]["access_token"] == token
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_renewal_keeps_the_lease_until_its_window_runs_out(clock: Clock) -> None:
    class Unreachable(Leases):
        down = False

        async def read_lease(self, namespace: str, name: str) -> JSON | None:
            if self.down:
                raise ConnectionError("the API server went away")
            return await super().read_lease(namespace, name)

    leases, steady, changes = Unreachable(), SteadyClock(), []
    elector = LeaderElector(
        leases,
        LeaseSettings(
            namespace="ops",
            name="lease",
            identity="me",
            renew_every=timedelta(seconds=0.01),
            retry_every=timedelta(seconds=0.01),
        ),
        clock=clock,
        steady=steady,
    )
    task = await _leading(elector, changes)
    leases.down = True
    steady.seconds += 5
    await asyncio.sleep(0.05)  # a few renewals fail
    assert elector.holds_lease(), "5 s into a 10 s window"

    steady.seconds += 5
    await _until(lambda: not elector.leading)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert changes == [True, False]


async def test_a_slow_renewal_is_followed_by_the_next_one_renew_every_after_it_was_sent(
    clock: Clock,
) -> None:
    class Slow(Leases):
        """An API server that takes 7 s to answer each write."""

        renewals = 0

        async def create_lease(self, namespace: str, body: JSON) -> JSON:
            steady.seconds += 7
            return await super().create_lease(namespace, body)

        async def replace_lease(self, namespace: str, name: str, body: JSON) -> JSON:
            self.renewals += 1
            steady.seconds += 7
            return await super().replace_lease(namespace, name, body)

    leases, steady, changes = Slow(), SteadyClock(), []
    elector = _elector(leases, steady, clock)
    task = await _leading(elector, changes)
    await _until(lambda: leases.renewals >= 3, seconds=1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert changes == [True, False], (
        "never stepped down: each renewal came before the window ran out"
    )


async def test_a_standby_that_takes_over_reads_the_secrets_instead_of_requesting_tokens(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    first = _engine(kube, server, clock, Fence())
    first.observe(BODY)
    await first.reconcile(KEY)
    elector = _elector(Leases(), SteadyClock(), clock)
    second = _engine(kube, server, clock, elector)
    second.set_active(False)
    second.observe(BODY)
    clock.advance(60)

    task = asyncio.create_task(elector.run(second.set_active))
    await _until(lambda: elector.leading)
    await second.reconcile(KEY)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert server.token_requests == 1, "the token the first replica wrote is still good"
    assert base64.b64decode(kube.secrets["directory-token"]["data"]["access_token"]) == b"token-1"


async def test_a_closed_fence_checks_no_cluster_issuer_and_writes_no_issuer_status() -> None:
    requests: list[str] = []
    statuses: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(
            200, json={"issuer": "https://auth.example", "token_endpoint": "https://auth.example/t"}
        )

    class Gateway:
        async def read_config_map(self, namespace: str, name: str) -> JSON | None:
            return None

        async def patch_issuer_status(self, name: str, status: JSON) -> None:
            statuses.append(name)

    fence = Fence()
    fence.open = False
    reconciler = IssuerStatusReconciler(
        Gateway(),
        TokenClient(transport=httpx.MockTransport(server)),
        cluster_resource_namespace="operator",
        fence=fence,
    )
    task = asyncio.create_task(reconciler.run())
    reconciler.observe(
        {
            "metadata": {"name": "sandbox", "generation": 1},
            "spec": {"issuer": "https://auth.example"},
        }
    )
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert (requests, statuses) == ([], [])
