"""What the engine must not do once per client, or again and again, when clients number thousands.

Found by the benchmarks (docs/benchmarks.md); the fakes are those of engine_fakes.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from raidiam_devenv.pki import TestPKI
from raidiam_operator.refresh.watch import WatchCache
from tests.unit.engine_fakes import BODY, KEY, NS, Clock, FakeKube, Server, _engine


class CountingKube(FakeKube):
    def __init__(self, base: FakeKube) -> None:
        super().__init__()
        self.all_secrets, self.all_config_maps = base.all_secrets, base.all_config_maps
        self.secret_reads: list[str] = []

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.secret_reads.append(name)
        return await super().read_secret(namespace, name)


async def test_a_restart_keeps_the_planned_refresh_and_writes_nothing(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    first = _engine(kube, server, clock)
    first.observe(BODY)
    await first.reconcile(KEY)
    status = kube.statuses[-1]
    writes = kube.writes

    clock.advance(30)
    second = _engine(kube, server, clock)
    second.observe({**BODY, "status": status})
    await second.reconcile(KEY)

    assert server.token_requests == 1
    assert kube.writes == writes, "a restart patched a status that had not changed"
    assert second.planned(KEY).isoformat().replace("+00:00", "Z") == status["nextRefreshTime"]


async def test_the_planned_refresh_is_a_whole_second_as_the_status_shows_it(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)

    assert engine.planned(KEY).microsecond == 0


async def test_referenced_secrets_are_read_once_and_again_only_when_the_watch_says_they_changed(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    counting = CountingKube(kube)
    engine = _engine(counting, server, clock)  # type: ignore[arg-type]
    engine.observe(BODY)
    engine.secret_changed(NS, "transport", "0")
    await engine.reconcile(KEY)
    clock.advance(230)
    await engine.reconcile(KEY)
    engine.secret_changed(NS, "transport", "0")  # an event for the version we hold

    assert server.token_requests == 2
    assert counting.secret_reads.count("transport") == 1

    engine.secret_changed(NS, "transport", "1")  # rotated
    await engine.reconcile(KEY)

    assert counting.secret_reads.count("transport") == 2


async def test_our_own_write_seen_before_its_answer_does_not_cost_a_reconciliation(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    class EchoingKube(CountingKube):
        """Delivers the watch event of a write before the write's answer, as a busy API server
        and event loop do."""

        engine: Any = None

        async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
            written = await super().create_secret(namespace, body)
            self.engine.secret_changed(
                namespace, written["metadata"]["name"], written["metadata"]["resourceVersion"]
            )
            for _ in range(50):  # the answer is still on its way
                await asyncio.sleep(0)
            return written

    echoing = EchoingKube(kube)
    engine = _engine(echoing, server, clock)
    echoing.engine = engine
    passes: list[tuple[str, str]] = []
    reconcile = engine.reconcile

    async def counted(key: tuple[str, str]) -> None:
        passes.append(key)
        await reconcile(key)

    engine.reconcile = counted  # type: ignore[method-assign]
    engine.observe(BODY)
    runner = asyncio.create_task(engine.run())
    # The TLS context is built in a worker thread: wait for the request, then let events settle.
    for _ in range(500):
        if server.token_requests:
            break
        await asyncio.sleep(0.01)
    for _ in range(1000):
        await asyncio.sleep(0)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)

    assert server.token_requests == 1
    assert passes == [KEY], "our own write cost a second pass"
    assert engine.planned(KEY) > clock.now


def test_many_clients_are_indexed_without_scanning_every_index_entry(
    kube: FakeKube, clock: Clock
) -> None:
    # The engine's cache of what it watches, on its own: the engine only hands it the clients.
    watch = WatchCache(kube, clock=clock)
    for i in range(3000):
        body = copy.deepcopy(BODY)
        body["metadata"].update(name=f"c{i}", uid=f"uid-{i}")
        watch.observe(body)
    watch.forget((NS, "c7"))

    assert len(watch.by_token_secret) == 2999
    assert watch.by_input_secret[(NS, "transport")] == {(NS, f"c{i}") for i in range(3000)} - {
        (NS, "c7")
    }


async def test_a_ca_bundle_shared_by_a_burst_of_clients_is_read_once(
    kube: FakeKube, server: Server, clock: Clock, pki: TestPKI
) -> None:
    class CountingConfigMaps(CountingKube):
        config_map_reads = 0

        async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
            self.config_map_reads += 1
            return await super().read_config_map(namespace, name)

    counting = CountingConfigMaps(kube)
    counting.config_maps["ca"] = {
        "metadata": {"name": "ca"},
        "data": {"ca.crt": pki.ca_pem.decode()},
    }
    engine = _engine(counting, server, clock)
    keys = []
    for i in range(20):
        body = copy.deepcopy(BODY)
        body["metadata"].update(name=f"c{i}", uid=f"uid-{i}")
        body["spec"]["caBundle"] = {"configMapName": "ca"}
        engine.observe(body)
        keys.append((NS, f"c{i}"))

    for key in keys:
        await engine.reconcile(key)

    assert server.token_requests == 20
    assert counting.config_map_reads == 1
