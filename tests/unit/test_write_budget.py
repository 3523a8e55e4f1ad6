"""The write budget: token Secret writes and status patches, per client and per namespace."""

from __future__ import annotations

import base64
import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from raidiam_operator.core.spec import Owner
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.budget import (
    CLIENT_WRITES,
    NAMESPACE_WRITES,
    SWEEP_AT,
    Rate,
    Write,
    WriteBudget,
)
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine
from tests.unit.engine_fakes import BODY, KEY, NS, Clock, FakeKube, Server

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def _most_in_a_minute(moments: list[datetime]) -> int:
    return max(
        (sum(1 for m in moments if start <= m < start + timedelta(minutes=1)) for start in moments),
        default=0,
    )


def _every_write_allowed(
    budget: WriteBudget, key: tuple[str, str], *, seconds: int
) -> list[datetime]:
    """Ask for a write every 0.1 s for `seconds`; the moments it was allowed."""
    allowed = []
    for tenth in range(seconds * 10):
        now = T0 + timedelta(seconds=tenth / 10)
        if budget.take(key, Write.STATUS, now=now) is None:
            allowed.append(now)
    return allowed


# -- the buckets, pure ------------------------------------------------------------------------------


def test_a_client_writes_at_most_30_times_in_any_minute_in_bursts_of_5() -> None:
    allowed = _every_write_allowed(WriteBudget(), ("ns", "hot"), seconds=300)

    assert allowed[4] - T0 < timedelta(seconds=0.5), "a quiet client's first five go at once"
    assert 28 <= _most_in_a_minute(allowed) <= CLIENT_WRITES.per_minute == 30
    gaps = {round((b - a).total_seconds(), 1) for a, b in itertools.pairwise(allowed[5:])}
    assert gaps <= {2.4, 2.5}, "then one every 2.4 s"


def test_a_deferred_write_is_told_when_the_budget_allows_it() -> None:
    budget = WriteBudget(client=Rate(per_minute=3, burst=1))
    key = ("ns", "c")
    assert budget.take(key, Write.SECRET, now=T0) is None

    when = budget.take(key, Write.SECRET, now=T0 + timedelta(seconds=10))

    assert when == T0 + timedelta(seconds=30)
    assert budget.take(key, Write.SECRET, now=when) is None


def test_the_kinds_and_the_clients_have_budgets_of_their_own() -> None:
    budget = WriteBudget(client=Rate(per_minute=2, burst=1))
    budget.spend(("ns", "a"), Write.STATUS, now=T0)

    assert budget.next_write(("ns", "a"), Write.STATUS, now=T0) > T0
    assert budget.next_write(("ns", "a"), Write.SECRET, now=T0) == T0
    assert budget.next_write(("ns", "b"), Write.STATUS, now=T0) == T0


def test_a_namespace_that_spent_its_budget_waits_and_the_others_do_not() -> None:
    budget = WriteBudget(namespace=Rate(per_minute=12, burst=2))
    budget.spend(("busy", "a"), Write.SECRET, now=T0)
    budget.spend(("busy", "b"), Write.SECRET, now=T0)

    assert budget.take(("busy", "c"), Write.SECRET, now=T0) == T0 + timedelta(seconds=6)
    assert budget.take(("quiet", "c"), Write.SECRET, now=T0) is None


def test_a_write_that_could_not_wait_is_paid_back_before_the_next() -> None:
    budget = WriteBudget(client=Rate(per_minute=7, burst=1))  # one every 10 s
    for _ in range(3):
        budget.spend(("ns", "c"), Write.SECRET, now=T0)

    assert budget.next_write(("ns", "c"), Write.SECRET, now=T0) == T0 + timedelta(seconds=30)


def test_the_tables_keep_only_the_clients_that_wrote_lately() -> None:
    budget = WriteBudget()
    for i in range(10 * SWEEP_AT):
        now = T0 + timedelta(seconds=i)  # one new client a second
        budget.spend(("ns", f"c{i}"), Write.STATUS, now=now)

    # A client's bucket is full again 12 s after its write: the table holds the latest few.
    assert len(budget) <= SWEEP_AT


@pytest.mark.parametrize("rate", [(30, 0), (30, 30), (5, 6)])
def test_a_budget_that_would_never_refill_or_never_write_is_refused(rate: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="burst < per_minute"):
        Rate(per_minute=rate[0], burst=rate[1])


def test_the_namespace_budget_lets_a_burst_of_5000_new_clients_write_at_once() -> None:
    budget = WriteBudget()
    for i in range(5000):
        assert budget.take(("bank", f"c{i}"), Write.SECRET, now=T0) is None
    assert NAMESPACE_WRITES.refill_per_second == 100


# -- the engine keeping to it ------------------------------------------------------------------------


class CountingKube(FakeKube):
    """Remembers when each Secret write and status patch happened."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.secret_writes: list[datetime] = []
        self.status_patches: list[tuple[str, datetime]] = []

    def store_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["name"] != "transport":
            self.secret_writes.append(self.clock.now)
        return super().store_secret(namespace, body)

    async def patch_status(self, owner: Owner, status: dict[str, Any]) -> None:
        self.status_patches.append((owner.name, self.clock.now))
        await super().patch_status(owner, status)


class BlinkingServer(Server):
    """Tokens that live `lifetime` seconds."""

    def __init__(self, lifetime: float) -> None:
        super().__init__()
        self.lifetime = lifetime

    def __call__(self, request: httpx.Request) -> httpx.Response:
        response = super().__call__(request)
        if request.url.path.endswith("/token") and self.response is None:
            body = {**response.json(), "expires_in": self.lifetime}
            return httpx.Response(200, json=body)
        return response


def _counting(
    kube: FakeKube, clock: Clock, server: Server, settings: EngineSettings | None = None
) -> tuple[CountingKube, RefreshEngine]:
    counting = CountingKube(clock)
    counting.all_secrets = kube.all_secrets
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    engine = RefreshEngine(counting, tokens, settings or EngineSettings(seed=1), clock=clock)
    return counting, engine


async def _run_for(engine: RefreshEngine, clock: Clock, seconds: float) -> None:
    """Run each planned attempt at its planned moment, on the test's clock."""
    end = clock.now + timedelta(seconds=seconds)
    while (plan := engine.plan()) and (when := min(plan.values())) < end:
        clock.now = max(clock.now, when)
        for key in [k for k, w in plan.items() if w <= clock.now]:
            await engine.reconcile(key)
    clock.now = end


@pytest.mark.parametrize("lifetime", [1, 0.5])
async def test_a_client_whose_tokens_live_a_second_writes_at_most_30_times_a_minute_each(
    kube: FakeKube, clock: Clock, lifetime: float
) -> None:
    server = BlinkingServer(lifetime)
    counting, engine = _counting(kube, clock, server)
    engine.observe(BODY)

    await _run_for(engine, clock, 300)

    patches = [at for _, at in counting.status_patches]
    assert _most_in_a_minute(counting.secret_writes) <= 30
    assert _most_in_a_minute(patches) <= 30
    assert len(counting.secret_writes) >= 100, "the client keeps refreshing"
    assert server.token_requests == len(counting.secret_writes), "every token issued is written"
    stored = base64.b64decode(kube.secrets["directory-token"]["data"]["access_token"]).decode()
    assert stored == f"token-{server.token_requests}", "the Secret holds the newest token"


async def test_a_deferred_status_is_written_with_the_latest_state(
    kube: FakeKube, clock: Clock
) -> None:
    server = Server()
    counting, engine = _counting(
        kube, clock, server, EngineSettings(seed=1, client_writes=Rate(per_minute=2, burst=1))
    )
    engine.observe(BODY)
    await engine.reconcile(KEY)  # the first token: a Secret write and a status patch
    assert len(counting.status_patches) == 1

    changed = copy.deepcopy(BODY)
    changed["metadata"]["generation"] = 2
    changed["spec"]["scope"] = "payments"
    engine.observe(changed)
    await engine.reconcile(KEY)  # a new token is needed, but its Secret write must wait

    assert server.token_requests == 1, "no token is requested that could not be written"
    assert len(counting.status_patches) == 1, "the status waits for the budget too"
    planned = engine.planned(KEY)
    assert planned <= clock.now + timedelta(seconds=60)

    clock.now = planned
    await engine.reconcile(KEY)

    assert server.token_requests == 2
    assert len(counting.status_patches) == 2
    assert counting.statuses[-1]["observedGeneration"] == 2, (
        "the latest state, not the deferred one"
    )
    assert counting.ready()["status"] == "True"


async def test_a_namespace_over_its_budget_delays_its_own_clients_only(
    kube: FakeKube, clock: Clock
) -> None:
    server = Server()
    _, engine = _counting(
        kube,
        clock,
        server,
        EngineSettings(seed=1, namespace_writes=Rate(per_minute=3, burst=2)),
    )
    kube.secrets_in("other")["transport"] = copy.deepcopy(kube.secrets["transport"])
    bodies = []
    for namespace, name in ((NS, "a"), (NS, "b"), (NS, "c"), ("other", "d")):
        body = copy.deepcopy(BODY)
        body["metadata"].update(namespace=namespace, name=name, uid=f"uid-{name}")
        body["spec"]["tokenSecret"] = {"name": f"{name}-token"}
        bodies.append(body)
        engine.observe(body)

    for body in bodies:
        await engine.reconcile((body["metadata"]["namespace"], body["metadata"]["name"]))

    assert sorted(kube.secrets) == ["a-token", "b-token", "transport"]
    assert sorted(kube.secrets_in("other")) == ["d-token", "transport"]
    assert server.token_requests == 3, "c asks once its namespace may write its token"
    assert engine.planned((NS, "c")) == clock.now + timedelta(seconds=60)
