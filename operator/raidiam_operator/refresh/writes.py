"""What an attempt writes to Kubernetes: the token Secret, the status, Events. Each only when it
would change something: a steady client costs no API writes, a renewal two. Events are rate
limited per client and reason: a long outage, or a server whose tokens live a second, must not
flood them (the API server stores each one). Secret writes and status patches keep to the
client's and the namespace's write budget (budget.py): one beyond it is deferred, not queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from raidiam_operator.core.spec import ClientSpec, Owner
from raidiam_operator.kube.gateway import ClientKube
from raidiam_operator.kube.leader import LeaseNotHeld
from raidiam_operator.metrics import Metrics
from raidiam_operator.refresh import policy
from raidiam_operator.refresh.budget import Write, WriteBudget
from raidiam_operator.refresh.inputs import Inputs
from raidiam_operator.refresh.render import (
    Problem,
    StatusView,
    client_status,
    secret_differs,
    status_differs,
    token_secret,
)
from raidiam_operator.refresh.state import ClientState

logger = logging.getLogger(__name__)

# One Event per client and reason at most this often, Normal or Warning.
EVENT_REPEAT = timedelta(minutes=5)
# Normal Events (TokenIssued) are posted behind the attempt, this many at once: a burst of new
# clients spends the API server's time first on the Secrets and statuses that make them Ready,
# and the Events follow. Warnings go out at once. Beyond MAX_PENDING_EVENTS waiting, a Normal
# Event is dropped (logged): Events are best effort, and the status says the same.
BACKGROUND_EVENTS = 4
MAX_PENDING_EVENTS = 10_000


class Writes:
    def __init__(self, kube: ClientKube, metrics: Metrics, budget: WriteBudget) -> None:
        self._kube = kube
        self._metrics = metrics
        self._budget = budget
        self._background = asyncio.Semaphore(BACKGROUND_EVENTS)
        self._pending: set[asyncio.Task[None]] = set()

    async def events_posted(self) -> None:
        """Wait for the Normal Events posted behind attempts (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def warn(self, state: ClientState, problem: Problem, *, now: datetime) -> None:
        state.notices.last_warning = (problem.reason, now)
        await self.event(state, problem, warning=True, now=now)

    async def event(
        self,
        state: ClientState,
        problem: Problem,
        *,
        warning: bool,
        now: datetime,
    ) -> None:
        """Post an Event, unless one of the same `event_key` went out for this client within
        EVENT_REPEAT."""
        if not state.notices.event_due(problem.event_key, now=now, every=EVENT_REPEAT):
            return
        owner = state.observed.owner
        if warning:
            await self._kube.post_event(
                owner, warning=True, reason=problem.reason, message=problem.event_note
            )
        elif len(self._pending) < MAX_PENDING_EVENTS:
            task = asyncio.create_task(self._post_behind(owner, problem))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        else:
            logger.debug("%s/%s: Event %s dropped", owner.namespace, owner.name, problem.reason)

    async def _post_behind(self, owner: Owner, problem: Problem) -> None:
        async with self._background:
            with contextlib.suppress(LeaseNotHeld):  # the new holder reports for itself
                await self._kube.post_event(
                    owner, warning=False, reason=problem.reason, message=problem.event_note
                )

    def issue_writes_at(self, state: ClientState, *, now: datetime) -> datetime | None:
        """When the budget allows the writes a new token needs (its Secret and the status that
        tells of it), if not now: the token request waits for both, so that every token issued
        is written at once and the status never lags the Secret."""
        key = state.observed.key
        when = max(self._budget.next_write(key, kind, now=now) for kind in Write)
        return when if when > now else None

    def _deferred(self, state: ClientState, kind: Write, *, now: datetime) -> bool:
        """Count a write of `kind`, or defer it (True) to when the budget allows."""
        key = state.observed.key
        when = self._budget.take(key, kind, now=now)
        if when is None:
            return False
        state.deferred_write = min(when, state.deferred_write or when)
        logger.debug("%s/%s: %s write deferred by the write budget", key[0], key[1], kind.value)
        return True

    async def secret(
        self,
        state: ClientState,
        spec: ClientSpec,
        existing: Mapping[str, Any] | None,
        *,
        renewed: bool,
        now: datetime,
        desired: dict[str, Any] | None = None,
    ) -> None:
        """Make the token Secret hold the token we hold, writing only when needed.

        `existing` is the Secret as read at the start of this attempt, when it had to be read
        (first sight, or someone touched it); otherwise our own last write is the truth and a
        renewal replaces it without reading it first. `desired` is the Secret already rendered
        for this token, if it was. Raises `ConfigurationError`, before any write, when the
        Secret's template cannot be rendered for this token.
        """
        token, owner = state.token, state.observed.owner
        assert token.record is not None
        if not renewed and not token.secret_unverified:
            return
        namespace, name = owner.namespace, spec.token_secret.name
        if desired is None:
            desired = token_secret(owner, spec.token_secret, token.record)
        if renewed:
            self._budget.spend(state.observed.key, Write.SECRET, now=now)
        elif (existing is None or secret_differs(existing, desired)) and self._deferred(
            state, Write.SECRET, now=now
        ):
            return  # still unverified: restored when the budget allows
        try:
            if not token.secret_unverified and token.written_secret_version:
                desired["metadata"]["resourceVersion"] = token.written_secret_version
                written: Mapping[str, Any] = await self._kube.replace_secret(
                    namespace, name, desired
                )
            elif existing is None:
                written = await self._kube.create_secret(namespace, desired)
            elif secret_differs(existing, desired):
                desired["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                written = await self._kube.replace_secret(namespace, name, desired)
                if not renewed:
                    logger.info(
                        "%s/%s: restored the token Secret %s from the current token",
                        namespace,
                        owner.name,
                        name,
                    )
            else:
                written = existing
        except Exception:
            # A conflict, or an API server that went away mid-write: read the Secret afresh next
            # time and restore it, or the new token would live only in memory.
            token.secret_unverified = True
            raise
        token.secret_unverified = False
        token.written_secret_version = written["metadata"].get("resourceVersion")
        token.secret_in_use = name

    async def status(
        self,
        state: ClientState,
        inputs: Inputs | None,
        *,
        blocked: Problem | None,
        now: datetime,
        suspended: bool = False,
    ) -> None:
        observed, token, backoff, notices = (
            state.observed,
            state.token,
            state.backoff,
            state.notices,
        )
        if blocked is not None or inputs is None:
            next_refresh = None  # nothing is planned until the user fixes the input
        elif backoff.failure is not None:
            next_refresh = policy.earliest(backoff.retry_at, token.next_refresh)
        else:
            next_refresh = token.next_refresh
        rendered = client_status(
            StatusView(
                record=token.record,
                inputs_fingerprint=inputs.fingerprint if inputs else None,
                blocked=blocked,
                failure=backoff.failure,
                failed_attempts=backoff.failed_attempts,
                last_failure_time=backoff.last_failure_time,
                next_refresh=next_refresh,
                suspended=suspended,
                generation=observed.generation,
                previous_conditions=observed.previous_conditions,
                certificate_warning=notices.certificate_warning,
                certificate_not_after=notices.certificate_not_after,
                last_certificate_warning=notices.last_certificate_warning,
                token_secret_name=token.secret_in_use,
                lifetime_warning=token.lifetime_warning,
            ),
            now=now,
        )
        self._metrics.token_state(
            observed.owner.namespace,
            observed.owner.name,
            ready=rendered.ready,
            expires_at=token.record.expires_at if token.record else None,
            next_refresh=rendered.next_refresh,
        )
        if not status_differs(observed.status, rendered.status):
            return
        if self._deferred(state, Write.STATUS, now=now):
            return  # the latest status is rendered again then
        await self._kube.patch_status(observed.owner, rendered.status)
        observed.status = rendered.status
        observed.previous_conditions = rendered.status["conditions"]
