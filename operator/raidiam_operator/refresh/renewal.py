"""When to refresh and when to retry. Pure: `now` and the random source come from the caller."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from raidiam_operator.core.spec import DEFAULT_RENEW_BEFORE_PERCENTAGE, RefreshPolicy

JITTER_FRACTION = 0.05
# Jitter never pushes a refresh closer to expiry than this, so a slow request still lands in time.
LATEST_BEFORE_EXPIRY = timedelta(seconds=30)
# Never schedule a refresh sooner than this after issue, whatever the policy: no hot loops.
MINIMUM_TOKEN_USE = timedelta(seconds=1)

BACKOFF_BASE = timedelta(seconds=1)
BACKOFF_CAP = timedelta(seconds=60)
# A rejection (invalid_client, ...) is usually fixed in the directory's console, not in the spec.
REJECTION_RETRY = timedelta(minutes=5)
CONFIGURATION_RETRY = timedelta(minutes=5)


def renew_before(policy: RefreshPolicy, lifetime: timedelta) -> timedelta:
    """How long before expiry to refresh; a duration at least as long as the token falls back."""
    if policy.renew_before is not None and policy.renew_before < lifetime:
        return policy.renew_before
    percentage = policy.renew_before_percentage or DEFAULT_RENEW_BEFORE_PERCENTAGE
    return lifetime * percentage / 100


def renewal_time(
    *,
    issued_at: datetime,
    expires_at: datetime,
    policy: RefreshPolicy,
    rng: random.Random,
) -> datetime:
    """`expires_at - renewBefore`, moved by up to ±5 % of the lifetime.

    Jitter spreads refreshes of tokens issued together, so they don't come due together forever.
    It never moves the time past 30 s before expiry (unless the policy itself is later, for very
    short tokens), nor earlier than a second after issue.
    """
    lifetime = expires_at - issued_at
    planned = expires_at - renew_before(policy, lifetime)
    jittered = planned + lifetime * rng.uniform(-JITTER_FRACTION, JITTER_FRACTION)
    latest = max(planned, expires_at - LATEST_BEFORE_EXPIRY)
    earliest = issued_at + min(MINIMUM_TOKEN_USE, lifetime / 2)
    return max(earliest, min(jittered, latest))


def retry_delay(
    failed_attempts: int, *, retry_after: float | None, rng: random.Random
) -> timedelta:
    """Exponential backoff with full jitter, between 1 s and 60 s; `Retry-After` is a floor."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(0, failed_attempts - 1)))
    delay = timedelta(
        seconds=rng.uniform(BACKOFF_BASE.total_seconds(), max(1.0, ceiling.total_seconds()))
    )
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay
