"""The engine's share of tenant safety, with the in-memory fakes: how often one client may ask,
how soon it retries once its token has expired, how many Events it may post, how much of the
shared concurrency one tenant may hold, and what it keeps in memory. The same behaviours against
the real servers are in tests/e2e/test_tenant_safety.py."""

from __future__ import annotations

import asyncio
import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from raidiam_operator.core.errors import Conflict
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine
from raidiam_operator.refresh.state import MAX_EVENT_KEYS, Notices
from raidiam_operator.refresh.writes import EVENT_REPEAT
from tests.unit.engine_fakes import BODY, ISSUER, KEY, NS, Clock, FakeKube, Server, _engine


def _short_tokens(server: Server, lifetime: float) -> None:
    server.response = httpx.Response(
        200, json={"access_token": "blink", "token_type": "Bearer", "expires_in": lifetime}
    )


async def _run_for(engine: RefreshEngine, clock: Clock, seconds: float, step: float = 0.1) -> None:
    """Advance the hand-set clock in small steps, reconciling whenever the engine plans to."""
    for _ in range(int(seconds / step)):
        clock.advance(step)
        due = engine.planned(KEY)
        if due is not None and due <= clock.now:
            await engine.reconcile(KEY)


async def test_one_second_tokens_are_requested_at_most_every_2_seconds(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    _short_tokens(server, 1)
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)

    await _run_for(engine, clock, 60)

    assert 25 <= server.token_requests <= 31  # the first, then one every 2 s
    assert kube.degraded()["status"] == "False", "a server's choice, not a failure"
    shown = [
        c for s in kube.statuses for c in s["conditions"] if c["reason"] == "ShortTokenLifetime"
    ]
    assert shown[0]["type"] == "Ready"
    assert shown[0]["status"] == "True"
    assert "lives 1 s, less than the 30 s minimum" in shown[0]["message"]


async def test_a_short_lived_token_costs_one_warning_and_few_events(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    _short_tokens(server, 0.5)
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)

    await _run_for(engine, clock, 120)
    await engine.events_posted()

    reasons = [reason for _, reason, _ in kube.events]
    assert reasons.count("ShortTokenLifetime") == 1
    assert len(kube.events) <= 4, reasons
    assert kube.secrets["directory-token"]["data"]["access_token"], "the token is used"


async def test_once_the_token_has_expired_a_failing_server_is_retried_within_10_seconds(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    server.response = httpx.Response(503)
    clock.advance(300)  # expired, and the server is down
    requests = []
    for _ in range(30):
        await engine.reconcile(KEY)
        sent = engine._watch.clients[KEY].token.last_request_at
        if sent is not None and sent not in requests:
            requests.append(sent)
        clock.now = engine.planned(KEY)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(requests)]

    assert len(gaps) >= 10
    assert max(gaps) <= 10
    assert min(gaps) >= 2


async def test_a_token_that_expires_during_a_long_backoff_is_retried_soon_after(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    expires_at = kube.statuses[-1]["expiresAt"]
    server.response = httpx.Response(503)
    # Fail repeatedly while the token is valid, so the backoff climbs towards 60 s.
    clock.advance(270)
    for _ in range(6):
        await engine.reconcile(KEY)
        clock.now = max(clock.now + timedelta(seconds=2), engine.planned(KEY))
    record = engine._watch.clients[KEY].token.record
    assert record is not None
    expiry = record.expires_at
    clock.now = expiry  # the engine wakes when the token expires (to report TokenExpired)
    await engine.reconcile(KEY)

    assert expires_at is not None
    assert engine.planned(KEY) - expiry <= timedelta(seconds=10)


async def test_retry_after_holds_even_once_the_token_has_expired(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    server.response = httpx.Response(503, headers={"Retry-After": "45"})
    clock.advance(301)
    await engine.reconcile(KEY)

    assert engine.planned(KEY) - clock.now >= timedelta(seconds=45)


async def _good_client_served(
    engine: RefreshEngine, kube: FakeKube, good: dict[str, Any], release: asyncio.Event
) -> bool:
    """Run the engine, the hostile clients observed already; half a second in, the client
    `good` arrives: whether it has its token within 2 s, before `release` lets the hostile
    server answer."""
    runner = asyncio.create_task(engine.run())
    await asyncio.sleep(0.5)
    engine.observe(good)
    for _ in range(200):
        if kube.secrets.get("good-token"):
            break
        await asyncio.sleep(0.01)
    served = "good-token" in kube.secrets
    release.set()
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    return served


async def test_a_busy_namespace_holds_at_most_its_share_of_the_slots(
    kube: FakeKube, clock: Clock
) -> None:
    """A namespace whose 40 clients all hang holds 4 of the 16 slots; another namespace's client
    is served at once."""
    release = asyncio.Event()
    in_flight = {"hostile": 0, "good": 0}
    most = {"hostile": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            issuer = f"https://{request.url.host}"
            return httpx.Response(200, json={"issuer": issuer, "token_endpoint": f"{issuer}/token"})
        tenant = "hostile" if request.url.host == "slow.example" else "good"
        in_flight[tenant] += 1
        most["hostile"] = max(most["hostile"], in_flight["hostile"])
        if tenant == "hostile":
            await release.wait()
        in_flight[tenant] -= 1
        return httpx.Response(
            200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 300}
        )

    tokens = TokenClient(transport=httpx.MockTransport(handler), clock=clock)
    engine = RefreshEngine(
        kube, tokens, EngineSettings(seed=1, concurrency=16, tenant_concurrency=4), clock=clock
    )
    for i in range(40):
        body: dict[str, Any] = copy.deepcopy(BODY)
        body["metadata"].update(namespace="hostile", name=f"h{i}", uid=f"h{i}")
        body["spec"]["issuer"] = "https://slow.example"
        engine.observe(body)
    good: dict[str, Any] = copy.deepcopy(BODY)
    good["metadata"].update(namespace=NS, name="good", uid="good")
    kube.secrets["transport-hostile"] = kube.secrets["transport"]
    good_served = await _good_client_served(engine, kube, good, release)

    assert good_served, "the good client waited for the hostile namespace"
    assert most["hostile"] <= 4


async def test_clients_of_two_cluster_issuers_wait_only_for_their_own_issuers_share(
    kube: FakeKube, clock: Clock
) -> None:
    """40 clients of a ClusterRaidiamIssuer whose server hangs hold its issuer share (4); a
    client of another ClusterRaidiamIssuer, in another namespace, gets its token at once."""
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "slow.example":
            await release.wait()
            return httpx.Response(503)
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "token_endpoint": f"{ISSUER}/t"})
        return httpx.Response(
            200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 300}
        )

    tokens = TokenClient(transport=httpx.MockTransport(handler), clock=clock)
    engine = RefreshEngine(
        kube, tokens, EngineSettings(seed=1, concurrency=16, tenant_concurrency=4), clock=clock
    )
    engine.issuer_changed(
        {"metadata": {"name": "slow", "generation": 1}, "spec": {"issuer": "https://slow.example"}}
    )
    engine.issuer_changed(
        {"metadata": {"name": "good", "generation": 1}, "spec": {"issuer": ISSUER}}
    )

    def referring(namespace: str, name: str, issuer: str) -> dict[str, Any]:
        body: dict[str, Any] = copy.deepcopy(BODY)
        body["metadata"].update(namespace=namespace, name=name, uid=name)
        del body["spec"]["issuer"]
        body["spec"]["issuerRef"] = {"name": issuer}
        return body

    for i in range(40):
        engine.observe(referring("hostile", f"h{i}", "slow"))
    good_served = await _good_client_served(engine, kube, referring(NS, "good", "good"), release)

    assert good_served, "the good issuer's client waited for the slow issuer's share"


async def test_what_the_engine_keeps_of_inputs_goes_when_their_clients_go(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    kube.config_maps["ca"] = {"data": {"ca.crt": "x" * 1000, "other": "y" * 100_000}}
    engine = _engine(kube, server, clock)
    body: dict[str, Any] = copy.deepcopy(BODY)
    body["spec"]["caBundle"] = {"configMapName": "ca"}
    engine.observe(body)
    await engine.reconcile(KEY)
    filled = engine.summary()
    kept_config_map = engine._watch._config_maps[(NS, "ca")][1].body

    engine.forget(*KEY)

    assert (filled["cachedSecrets"], filled["cachedConfigMaps"]) == (1, 1)
    assert kept_config_map["data"]["other"] == "", "only the key a client uses is kept"
    emptied = engine.summary()
    assert (emptied["cachedSecrets"], emptied["cachedConfigMaps"]) == (0, 0)


async def test_only_the_keys_a_client_uses_are_kept_of_a_referenced_secret(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    kube.secrets["transport"]["data"]["helm-release"] = "z" * 100_000
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)

    kept = engine._watch._input_secrets[(NS, "transport")].body["data"]
    assert kept["helm-release"] == ""
    assert kept["tls.crt"]
    assert kept["tls.key"]


class _Names:
    """The Secret watch's list of names, as the engine sees it."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.synced = True

    def resource_version(self, namespace: str, name: str) -> str | None:
        return "1" if name in self.names else None


async def test_a_new_clients_token_secret_is_not_read_when_the_watch_knows_it_does_not_exist(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    reads: list[str] = []
    read = kube.read_secret

    async def counted(namespace: str, name: str) -> dict[str, Any] | None:
        reads.append(name)
        return await read(namespace, name)

    kube.read_secret = counted  # type: ignore[method-assign]
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    engine = RefreshEngine(
        kube, tokens, EngineSettings(seed=1), clock=clock, secret_names=_Names({"transport"})
    )
    engine.observe(BODY)
    await engine.reconcile(KEY)

    assert "directory-token" not in reads
    assert kube.ready()["status"] == "True"


async def test_a_token_secret_the_watch_missed_is_found_by_the_create_and_left_alone(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    kube.secrets["directory-token"] = {
        "metadata": {"name": "directory-token", "resourceVersion": "7"},
        "data": {"mine": "c29tZW9uZSBlbHNl"},
    }
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    engine = RefreshEngine(
        kube, tokens, EngineSettings(seed=1), clock=clock, secret_names=_Names({"transport"})
    )
    engine.observe(BODY)
    with pytest.raises(Conflict):  # the create's 409: the scheduler reconciles again
        await engine.reconcile(KEY)
    await engine.reconcile(KEY)

    assert kube.secrets["directory-token"]["data"] == {"mine": "c29tZW9uZSBlbHNl"}
    assert kube.ready()["reason"] == "SecretConflict"


async def test_clients_that_need_one_secret_at_once_share_one_read(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    reads: list[str] = []
    read = kube.read_secret

    async def slow(namespace: str, name: str) -> dict[str, Any] | None:
        reads.append(name)
        await asyncio.sleep(0.05)
        return await read(namespace, name)

    kube.read_secret = slow  # type: ignore[method-assign]
    engine = _engine(kube, server, clock)
    for i in range(20):
        body: dict[str, Any] = copy.deepcopy(BODY)
        body["metadata"].update(name=f"c{i}", uid=f"c{i}")
        engine.observe(body)
    await asyncio.gather(*(engine.reconcile((NS, f"c{i}")) for i in range(20)))

    assert reads.count("transport") == 1
    assert server.token_requests == 20


async def test_a_token_issued_event_follows_the_attempt_that_made_the_client_ready(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    """In a burst, the API server's time goes first to the writes that make clients Ready."""
    engine = _engine(kube, server, clock)
    engine.observe(BODY)

    await engine.reconcile(KEY)
    ready_before_event = kube.ready()["status"] == "True" and not kube.events
    await engine.events_posted()

    assert ready_before_event
    assert [reason for _, reason, _ in kube.events] == ["TokenIssued"]


async def test_the_keys_kept_of_a_shared_secret_follow_the_clients_that_name_it(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    """Two clients read different keys of one Secret: both are kept while both exist, and
    only the remaining client's once the other goes (or changes to other keys)."""
    engine = _engine(kube, server, clock)
    other = copy.deepcopy(BODY)
    other["metadata"].update(name="other", uid="uid-2")
    other["spec"]["transportCertificate"] = {
        "secretName": "transport",
        "certificateKey": "alt.crt",
        "privateKeyKey": "alt.key",
    }
    engine.observe(BODY)
    engine.observe(other)
    secret = (NS, "transport")

    both = engine._watch._keys_used(secret)
    engine.forget(NS, "other")
    one = engine._watch._keys_used(secret)
    changed = copy.deepcopy(BODY)
    changed["metadata"]["generation"] = 2
    changed["spec"]["transportCertificate"]["certificateKey"] = "new.crt"
    engine.observe(changed)
    after_change = engine._watch._keys_used(secret)
    engine.forget(*KEY)

    assert both == {"tls.crt", "tls.key", "alt.crt", "alt.key", "ca.crt"}
    assert one == {"tls.crt", "tls.key", "ca.crt"}
    assert after_change == {"new.crt", "tls.key", "ca.crt"}
    assert engine._watch._keys_used(secret) == frozenset()


async def test_a_server_that_invents_an_error_code_per_answer_gets_one_event_in_five_minutes(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    await engine.events_posted()
    issued_events = len(kube.events)
    for attempt in range(150):  # a refresh asked for every 2 s, each answered with a new code
        server.response = httpx.Response(400, json={"error": f"invented_{attempt}"})
        clock.advance(2)
        body = copy.deepcopy(BODY)
        body["metadata"]["annotations"] = {"raidiam.io/refresh-requested-at": f"{attempt}"}
        engine.observe(body)
        await engine.reconcile(KEY)

    warnings = kube.events[issued_events:]
    state = engine._watch.clients[KEY]
    # Each failure changes the status, so each request waits for its status patch's budget:
    # 5 at once, then 25 a minute.
    assert server.token_requests == 130
    assert [reason for _, reason, _ in warnings] == ["invented_0"]
    assert kube.degraded()["reason"] == "invented_149", "the condition names the latest code"
    assert list(state.notices.last_events) == ["TokenIssued/Issuing", "TokenRequestRejected"]


def test_a_client_remembers_a_bounded_number_of_event_keys() -> None:
    notices = Notices()
    start = datetime(2026, 12, 7, tzinfo=UTC)

    posted = [
        notices.event_due(f"Reason{i}", now=start + timedelta(seconds=i), every=EVENT_REPEAT)
        for i in range(1000)
    ]

    assert all(posted)
    assert len(notices.last_events) == MAX_EVENT_KEYS
    assert next(iter(notices.last_events)) == f"Reason{1000 - MAX_EVENT_KEYS}"
    later = start + timedelta(seconds=1000)
    assert not notices.event_due("Reason999", now=later, every=EVENT_REPEAT)
    assert notices.event_due("Reason999", now=later + EVENT_REPEAT, every=EVENT_REPEAT)
