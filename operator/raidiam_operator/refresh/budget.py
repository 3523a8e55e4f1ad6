"""How often the operator writes for one client and for one namespace: token buckets.

Every tenant's writes go to the API server as the operator's, in the one share that the API
server's Priority and Fairness gives it. So each client, and each namespace, has a budget for each
kind of write; a write beyond it waits, and the attempt that wanted it runs again when the budget
allows, writing the latest state then (nothing is queued but the moment). A token request waits
for its token Secret's budget before it goes out, so every token issued is written at once.

Pure: `now` comes from the caller. The tables keep only buckets that are not full (a full one is
the same as none), so they hold the clients and namespaces that wrote lately.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TypeVar

from raidiam_operator.refresh.state import Key

T = TypeVar("T")


class Write(Enum):
    SECRET = "token Secret"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `per_minute` writes in any 60 seconds, up to `burst` of them at once: the bucket
    holds `burst` and refills by `per_minute - burst` a minute."""

    per_minute: int
    burst: int

    def __post_init__(self) -> None:
        if not 1 <= self.burst < self.per_minute:
            raise ValueError("a write budget needs 1 <= burst < per_minute")

    @property
    def refill_per_second(self) -> float:
        return (self.per_minute - self.burst) / 60


#: each kind of write, per client: as many as the token requests a client may make (30 a minute)
CLIENT_WRITES = Rate(per_minute=30, burst=5)
#: each kind of write, per namespace: 5,000 new clients at once, and then 100 a second (a
#: namespace of 5,000 clients renewing 2-minute tokens writes about 60 a second)
NAMESPACE_WRITES = Rate(per_minute=12_000, burst=6_000)
#: the tables are swept of full buckets when they grow past this (and twice what was left)
SWEEP_AT = 1024


@dataclass(frozen=True, slots=True)
class Bucket:
    #: writes available as of `at` (below zero after a write that could not wait)
    level: float
    at: datetime


def level(bucket: Bucket | None, rate: Rate, *, now: datetime) -> float:
    if bucket is None:
        return rate.burst
    refilled = (now - bucket.at).total_seconds() * rate.refill_per_second
    return min(float(rate.burst), bucket.level + max(0.0, refilled))


def next_write(bucket: Bucket | None, rate: Rate, *, now: datetime) -> datetime:
    """When the bucket next has a write to give: `now`, or the moment it refills to one."""
    available = level(bucket, rate, now=now)
    if available >= 1:
        return now
    return now + timedelta(seconds=(1 - available) / rate.refill_per_second)


def after_write(bucket: Bucket | None, rate: Rate, *, now: datetime) -> Bucket:
    return Bucket(level(bucket, rate, now=now) - 1, now)


class WriteBudget:
    """The buckets of the clients and namespaces that wrote lately, per kind of write."""

    def __init__(self, *, client: Rate = CLIENT_WRITES, namespace: Rate = NAMESPACE_WRITES) -> None:
        self._client_rate = client
        self._namespace_rate = namespace
        self._clients: dict[tuple[Key, Write], Bucket] = {}
        self._namespaces: dict[tuple[str, Write], Bucket] = {}
        self._sweep_at = SWEEP_AT

    def __len__(self) -> int:
        return len(self._clients) + len(self._namespaces)

    def next_write(self, key: Key, kind: Write, *, now: datetime) -> datetime:
        """When `key` may make a write of `kind`: `now`, or later."""
        return max(
            next_write(self._clients.get((key, kind)), self._client_rate, now=now),
            next_write(self._namespaces.get((key[0], kind)), self._namespace_rate, now=now),
        )

    def take(self, key: Key, kind: Write, *, now: datetime) -> datetime | None:
        """Count a write of `kind` for `key` if the budget has one now (None); else, spending
        nothing, say when it will."""
        when = self.next_write(key, kind, now=now)
        if when > now:
            return when
        self.spend(key, kind, now=now)
        return None

    def spend(self, key: Key, kind: Write, *, now: datetime) -> None:
        """Count a write that does not wait (a new token's Secret, whose request waited for
        the budget already): the bucket may go below zero, and the next write waits longer."""
        client, namespace = (key, kind), (key[0], kind)
        self._clients[client] = after_write(self._clients.get(client), self._client_rate, now=now)
        self._namespaces[namespace] = after_write(
            self._namespaces.get(namespace), self._namespace_rate, now=now
        )
        if len(self) >= self._sweep_at:
            self._sweep(now)

    def _sweep(self, now: datetime) -> None:
        _drop_full(self._clients, self._client_rate, now=now)
        _drop_full(self._namespaces, self._namespace_rate, now=now)
        self._sweep_at = max(SWEEP_AT, 2 * len(self))


def _drop_full(table: dict[T, Bucket], rate: Rate, *, now: datetime) -> None:
    for key in [key for key, bucket in table.items() if level(bucket, rate, now=now) >= rate.burst]:
        del table[key]
