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
# Once the token in the Secret has expired, every minute of backoff is a minute without a token:
# attempts then come at most this far apart (full jitter), so a server that is back is noticed.
EXPIRED_BACKOFF_CAP = timedelta(seconds=10)
# Whatever the server answers (tokens of a second, errors, a refresh asked for by hand), one
# client never sends requests closer together than this: at most 30 a minute.
MINIMUM_REQUEST_INTERVAL = timedelta(seconds=2)
# A token that lives less than this is used, but reported: renewing it costs a request every few
# seconds, and the Secret holds an expired token much of the time.
MINIMUM_TOKEN_LIFETIME = timedelta(seconds=30)
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
    failed_attempts: int,
    *,
    retry_after: float | None,
    rng: random.Random,
    token_expired: bool = False,
) -> timedelta:
    """Exponential backoff with full jitter, between 1 s and 60 s, or between 1 s and 10 s once
    the token in the Secret has expired; `Retry-After` is a floor either way."""
    cap = EXPIRED_BACKOFF_CAP if token_expired else BACKOFF_CAP
    ceiling = min(cap, BACKOFF_BASE * (2 ** min(16, max(0, failed_attempts - 1))))
    delay = timedelta(
        seconds=rng.uniform(BACKOFF_BASE.total_seconds(), max(1.0, ceiling.total_seconds()))
    )
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def retry_once_expired(
    *, failed_at: datetime, expires_at: datetime | None, rng: random.Random
) -> datetime:
    """When to try again if the token expires during the backoff: soon after it does (full
    jitter up to 10 s), rather than whenever a backoff drawn while it was valid says."""
    start = max(failed_at, expires_at) if expires_at is not None else failed_at
    return start + timedelta(
        seconds=rng.uniform(BACKOFF_BASE.total_seconds(), EXPIRED_BACKOFF_CAP.total_seconds())
    )


def short_lifetime(lifetime: timedelta) -> str | None:
    """Why a token's lifetime is a problem worth reporting, or None."""
    if lifetime >= MINIMUM_TOKEN_LIFETIME:
        return None
    seconds = lifetime.total_seconds()
    return (
        f"the authorization server issued a token that lives {seconds:g} s, less than the "
        f"{MINIMUM_TOKEN_LIFETIME.total_seconds():.0f} s minimum; it is used, but requested "
        f"at most every {MINIMUM_REQUEST_INTERVAL.total_seconds():.0f} s, so the Secret holds "
        "an expired token much of the time. Ask the server's operator for longer-lived tokens"
    )
