"""The scheduler's tenant shares: who runs, who waits, and what a waiting client costs."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest

from raidiam_operator.refresh.scheduler import Scheduler, tenant_share
from raidiam_operator.refresh.state import Key


def _now() -> datetime:
    return datetime.now(UTC)


class Attempts:
    """Attempts that hold until released, counting how many of each tenant run at once."""

    def __init__(self, issuer_of: dict[Key, str]) -> None:
        self.issuer_of = issuer_of
        self.release = asyncio.Event()
        self.running: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.done: list[Key] = []

    async def __call__(self, key: Key) -> None:
        tenants = (f"namespace {key[0]}", f"issuer {self.issuer_of[key]}")
        for tenant in tenants:
            self.running[tenant] += 1
            self.most[tenant] = max(self.most[tenant], self.running[tenant])
        await self.release.wait()
        for tenant in tenants:
            self.running[tenant] -= 1
        self.done.append(key)


async def _until(condition: object, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.01)


def _all_due(
    issuer_of: dict[Key, str], *, share: int | None
) -> tuple[Attempts, Scheduler, asyncio.Task[None]]:
    """A running scheduler of 64 slots with every client of `issuer_of` due now (`share`: None
    for the default shares)."""
    attempts = Attempts(issuer_of)
    scheduler = Scheduler(
        attempts,
        clock=_now,
        concurrency=64,
        tenant_concurrency=share,
        issuer_of=issuer_of.__getitem__,
    )
    runner = asyncio.create_task(scheduler.run())
    for key in issuer_of:
        scheduler.schedule(key, _now())
    return attempts, scheduler, runner


async def test_clients_waiting_for_their_tenants_share_hold_no_task() -> None:
    """1,000 due clients of one namespace, share 4: four tasks run, the rest wait as keys
    (a task each cost about 2.7 KiB: 27 MiB for a restart that finds 10,000 due)."""
    issuer_of = {("busy", f"c{i}"): "https://auth.example" for i in range(1000)}
    attempts, scheduler, runner = _all_due(issuer_of, share=4)
    await _until(lambda: scheduler.running == 1000 and attempts.running["namespace busy"] == 4)
    tasks = len(asyncio.all_tasks())
    attempts.release.set()
    await _until(lambda: len(attempts.done) == 1000)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)

    assert tasks <= 4 + 2, f"{tasks} tasks for 4 clients at work and 996 waiting"
    assert sorted(attempts.done) == sorted(issuer_of), "a waiting client never ran"
    assert attempts.most["namespace busy"] == 4


async def test_an_issuer_shared_by_namespaces_holds_its_share_and_serves_them_all() -> None:
    """Three namespaces of 10 clients on one issuer, share 3: never more than 3 at that issuer;
    a fourth namespace on its own issuer runs at once; every client gets its turn."""
    issuer_of = {(f"ns{n}", f"c{i}"): "https://slow.example" for n in range(3) for i in range(10)}
    issuer_of[("other", "c0")] = "https://auth.example"
    attempts, scheduler, runner = _all_due(issuer_of, share=3)
    await _until(lambda: attempts.running["issuer https://auth.example"] == 1)
    other_ran = attempts.running["issuer https://auth.example"] == 1
    attempts.release.set()
    await _until(lambda: len(attempts.done) == len(issuer_of))
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)

    assert other_ran, "the other issuer's client waited behind the busy issuer"
    assert attempts.most["issuer https://slow.example"] == 3
    assert sorted(attempts.done) == sorted(issuer_of)
    namespaces, issuers = scheduler.shares_held()
    assert not namespaces, "a namespace kept a share nobody holds"
    assert not issuers, "an issuer kept a share nobody holds"


async def test_three_namespaces_whose_servers_hang_leave_a_quarter_of_the_slots_to_the_rest() -> (
    None
):
    """The default shares: 40 hanging clients in each of three namespaces, each on its own
    issuer, hold 16 slots each; all 16 clients of a fourth namespace run at once."""
    issuer_of = {
        (f"hostile{n}", f"c{i}"): f"https://slow{n}.example" for n in range(3) for i in range(40)
    }
    attempts, scheduler, runner = _all_due(issuer_of, share=None)
    await _until(lambda: sum(attempts.running[f"namespace hostile{n}"] for n in range(3)) == 48)
    for i in range(16):
        issuer_of[("good", f"c{i}")] = "https://auth.example"
        scheduler.schedule(("good", f"c{i}"), _now())
    await _until(lambda: attempts.running["namespace good"] == 16)
    good_ran = attempts.running["namespace good"]
    attempts.release.set()
    await _until(lambda: len(attempts.done) == len(issuer_of))
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)

    assert good_ran == 16, f"only {good_ran} of the good namespace's 16 clients ran"
    assert [attempts.most[f"namespace hostile{n}"] for n in range(3)] == [16, 16, 16]
    assert sorted(attempts.done) == sorted(issuer_of)


@pytest.mark.parametrize(("concurrency", "share"), [(64, 16), (128, 32), (16, 4), (8, 4), (2, 2)])
def test_a_tenants_share_is_a_quarter_of_the_slots_and_at_least_four(
    concurrency: int, share: int
) -> None:
    assert tenant_share(concurrency) == share


async def test_a_stopped_scheduler_leaves_no_attempt_behind() -> None:
    issuer_of = {("busy", f"c{i}"): "https://auth.example" for i in range(20)}
    attempts, _, runner = _all_due(issuer_of, share=2)
    await _until(lambda: attempts.running["namespace busy"] == 2)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await asyncio.sleep(0.05)

    assert [task for task in asyncio.all_tasks() if task is not asyncio.current_task()] == []


async def test_the_lease_lost_right_after_a_launch_leaves_no_share_held() -> None:
    """Attempts launched and cancelled before their first step give their shares and keys
    back: once active again, every client runs."""
    issuer_of = {("busy", f"c{i}"): "https://auth.example" for i in range(8)}
    attempts, scheduler, runner = _all_due(issuer_of, share=2)
    await asyncio.sleep(0)  # launched, not yet started
    scheduler.set_active(False)
    await asyncio.sleep(0.05)
    scheduler.set_active(True)
    for key in issuer_of:
        scheduler.schedule(key, _now())
    attempts.release.set()
    await _until(lambda: len(attempts.done) == len(issuer_of))
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)

    assert sorted(attempts.done) == sorted(issuer_of)
    assert scheduler.running == 0
