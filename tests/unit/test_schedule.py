from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from raidiam_operator.core.spec import RefreshPolicy
from raidiam_operator.refresh.renewal import (
    renewal_time,
    retry_delay,
    retry_once_expired,
    short_lifetime,
)

ISSUED = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def _renewals(lifetime: timedelta, policy: RefreshPolicy, n: int = 500) -> list[timedelta]:
    rng = random.Random(7)
    return [
        renewal_time(issued_at=ISSUED, expires_at=ISSUED + lifetime, policy=policy, rng=rng)
        - ISSUED
        for _ in range(n)
    ]


def test_default_renews_with_a_third_of_the_lifetime_left_within_five_percent_jitter() -> None:
    offsets = _renewals(timedelta(seconds=300), RefreshPolicy())

    assert min(offsets) >= timedelta(seconds=201 - 15)
    assert max(offsets) <= timedelta(seconds=201 + 15)
    assert max(offsets) - min(offsets) > timedelta(seconds=20), "jitter spreads refreshes"


def test_a_fixed_renew_before_is_honoured() -> None:
    offsets = _renewals(
        timedelta(minutes=10),
        RefreshPolicy(renew_before_percentage=None, renew_before=timedelta(minutes=2)),
    )

    assert all(
        timedelta(minutes=8) - timedelta(seconds=30)
        <= o
        <= timedelta(minutes=8) + timedelta(seconds=30)
        for o in offsets
    )


def test_a_renew_before_longer_than_the_token_falls_back_to_the_default_percentage() -> None:
    offsets = _renewals(
        timedelta(seconds=60),
        RefreshPolicy(renew_before_percentage=None, renew_before=timedelta(minutes=2)),
    )

    assert all(timedelta(seconds=37) <= o <= timedelta(seconds=43) for o in offsets)


def test_jitter_never_pushes_a_refresh_past_30_seconds_before_expiry() -> None:
    lifetime = timedelta(hours=24)
    offsets = _renewals(lifetime, RefreshPolicy(renew_before_percentage=1))

    assert max(offsets) <= lifetime - timedelta(seconds=30)


@pytest.mark.parametrize("seconds", [30, 45, 60])
def test_short_lifetimes_still_refresh_before_expiry_and_not_immediately(seconds: int) -> None:
    offsets = _renewals(timedelta(seconds=seconds), RefreshPolicy())

    assert min(offsets) >= timedelta(seconds=1)
    assert max(offsets) < timedelta(seconds=seconds)


def test_lifetimes_up_to_a_day_work() -> None:
    offsets = _renewals(timedelta(hours=24), RefreshPolicy())

    assert all(timedelta(hours=14.8) < o < timedelta(hours=17.3) for o in offsets)


def test_backoff_grows_from_one_second_and_is_capped_at_sixty() -> None:
    rng = random.Random(3)
    first = [retry_delay(1, retry_after=None, rng=rng) for _ in range(200)]
    late = [retry_delay(12, retry_after=None, rng=rng) for _ in range(200)]

    assert all(d == timedelta(seconds=1) for d in first)
    assert all(timedelta(seconds=1) <= d <= timedelta(seconds=60) for d in late)
    assert max(late) > timedelta(seconds=30), "full jitter uses the whole range"


def test_retry_after_is_a_floor_for_the_next_attempt() -> None:
    assert retry_delay(1, retry_after=90, rng=random.Random(1)) == timedelta(seconds=90)


def test_once_the_token_has_expired_retries_come_at_most_10_s_apart() -> None:
    rng = random.Random(3)
    delays = [retry_delay(12, retry_after=None, rng=rng, token_expired=True) for _ in range(500)]

    assert max(delays) <= timedelta(seconds=10)
    assert min(delays) >= timedelta(seconds=1)
    assert max(delays) > timedelta(seconds=8), "full jitter up to the cap"


def test_retry_after_holds_even_once_the_token_has_expired() -> None:
    delay = retry_delay(3, retry_after=45, rng=random.Random(1), token_expired=True)

    assert delay == timedelta(seconds=45)


def test_a_token_that_expires_during_the_backoff_is_retried_soon_after_it_expires() -> None:
    failed_at = datetime(2026, 1, 1, tzinfo=UTC)
    expires_at = failed_at + timedelta(seconds=7)

    retry = retry_once_expired(failed_at=failed_at, expires_at=expires_at, rng=random.Random(2))

    assert expires_at + timedelta(seconds=1) <= retry <= expires_at + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("lifetime", "reported"), [(0.5, True), (1, True), (29, True), (30, False), (300, False)]
)
def test_tokens_shorter_than_30_s_are_reported(lifetime: float, reported: bool) -> None:
    problem = short_lifetime(timedelta(seconds=lifetime))

    assert (problem is not None) is reported
    if problem:
        assert f"lives {lifetime:g} s, less than the 30 s minimum" in problem
