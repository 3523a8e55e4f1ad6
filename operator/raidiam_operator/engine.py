"""The refresh engine: one scheduler for every RaidiamClient the operator watches.

kopf tells the engine what exists (`observe`, `forget`) and what changed (`secret_changed`); the
engine decides when each client is due and runs at most one reconciliation per client at a time.
One timer heap instead of a task per object keeps thousands of clients cheap, and lets a burst be
throttled by a single semaphore.

A reconciliation reads the inputs, asks the pure policy whether a new token is needed, and
funnels every outcome through `_succeeded` or `_failed`, which write the Secret, the status and
the Event. A failed refresh never touches a token Secret that still holds a valid token.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from raidiam_operator.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    RaidiamOperatorError,
    TransientError,
)
from raidiam_operator.inputs import Inputs, build_inputs, expiring_certificates
from raidiam_operator.kube import ConflictError, KubeGateway
from raidiam_operator.metrics import Metrics
from raidiam_operator.oauth import TokenClient
from raidiam_operator.render import (
    REFRESH_REQUESTED_AT,
    Owner,
    Problem,
    TokenRecord,
    client_status,
    is_owned_by,
    record_from_secret,
    secret_differs,
    status_differs,
    token_secret,
)
from raidiam_operator.schedule import (
    CONFIGURATION_RETRY,
    REJECTION_RETRY,
    renewal_time,
    retry_delay,
)
from raidiam_operator.spec import ClientSpec, parse_spec
from raidiam_operator.times import Clock, parse_rfc3339, rfc3339, utc_now
from raidiam_operator.tokens import IssuedToken

logger = logging.getLogger(__name__)

Key = tuple[str, str]
# Repeat an unchanged Warning Event at most this often, so a long outage doesn't flood Events.
WARNING_REPEAT = timedelta(minutes=5)
# A CertificateExpiringSoon Warning Event at most this often.
CERTIFICATE_WARNING_REPEAT = timedelta(days=1)
# While the API server misbehaves, try again after this long.
API_RETRY = timedelta(seconds=5)
# A CA bundle ConfigMap read this recently is used again: a burst or a restart of thousands of
# clients that share one would otherwise read it once each. (ConfigMaps are not watched.)
CONFIG_MAP_REUSE = timedelta(seconds=5)


@dataclass
class ClientState:
    """What the engine knows about one RaidiamClient between reconciliations."""

    owner: Owner
    generation: int
    spec_body: Mapping[str, Any]
    refresh_requested_at: str | None
    observed_status: Mapping[str, Any] | None
    record: TokenRecord | None = None
    #: the token Secret must be read again: first sight, or someone touched it
    secret_unverified: bool = True
    written_secret_version: str | None = None
    next_refresh: datetime | None = None
    #: when our own backoff (or the 5-minute wait after a rejection) allows the next attempt
    retry_at: datetime | None = None
    #: the server's Retry-After, as a moment; no request goes out before it
    not_before: datetime | None = None
    #: the inputs and refresh request that failed; a change lifts our own backoff
    failed_inputs: tuple[str, str | None] | None = None
    failed_attempts: int = 0
    last_failure_time: datetime | None = None
    failure: Problem | None = None
    last_warning: tuple[str, datetime] | None = None
    referenced_secrets: frozenset[str] = frozenset()
    token_secret_name: str | None = None
    previous_conditions: list[dict[str, Any]] = field(default_factory=list)
    certificate_warning: Problem | None = None
    certificate_not_after: datetime | None = None
    last_certificate_warning: datetime | None = None
    #: resourceVersions of token Secret events that arrived while a reconciliation ran
    secret_events_while_running: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EngineSettings:
    #: token requests and reconciliations running at once, across all clients
    concurrency: int = 64
    #: a seed for the jitter; None for a random one
    seed: int | None = None
    #: warn (condition, Event, metric) when a certificate expires sooner than this
    certificate_expiry_warning: timedelta = timedelta(days=14)


class RefreshEngine:
    def __init__(
        self,
        kube: KubeGateway,
        tokens: TokenClient,
        settings: EngineSettings | None = None,
        *,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self._metrics = metrics
        if metrics is not None:
            metrics.leader.set(1)
        self._kube = kube
        self._tokens = tokens
        self._clock = clock
        self._rng = random.Random(self.settings.seed)  # noqa: S311 - jitter, not secrecy
        self._clients: dict[Key, ClientState] = {}
        self._heap: list[tuple[datetime, int, Key]] = []
        self._due: dict[Key, datetime] = {}
        self._sequence = 0
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._by_input_secret: dict[Key, set[Key]] = {}
        # Referenced Secrets as the watch last delivered them, so a refresh (and a restart) reads
        # them from memory rather than the API server; only Secrets some client references.
        self._input_secrets: dict[Key, Mapping[str, Any]] = {}
        self._config_maps: dict[Key, tuple[float, Mapping[str, Any]]] = {}
        # Several clients may name one token Secret: its owner guards it, the others report
        # SecretConflict, and all of them hear when it changes.
        self._by_token_secret: dict[Key, set[Key]] = {}
        # False on a standby replica: it keeps watching but sends and writes nothing.
        self._active = True

    # -- what kopf tells us ----------------------------------------------------------------

    def observe(self, body: Mapping[str, Any]) -> None:
        """A RaidiamClient was listed, created or changed."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        owner = Owner(namespace=key[0], name=key[1], uid=metadata["uid"])
        generation = int(metadata.get("generation") or 0)
        requested = (metadata.get("annotations") or {}).get(REFRESH_REQUESTED_AT)
        state = self._clients.get(key)
        if state is None or state.owner.uid != owner.uid:
            if state is not None:  # deleted and created again under the same name
                self._unindex(key, state)
            state = ClientState(
                owner=owner,
                generation=generation,
                spec_body=body.get("spec") or {},
                refresh_requested_at=requested,
                observed_status=body.get("status"),
                previous_conditions=list((body.get("status") or {}).get("conditions") or []),
                # Survives restarts through the status, so the daily Warning stays daily.
                last_certificate_warning=parse_rfc3339(
                    (body.get("status") or {}).get("lastCertificateWarningTime") or ""
                ),
            )
            self._clients[key] = state
            self._index(key, state)
            if self._metrics is not None and self._active:
                self._metrics.client_seen(key[0], key[1])
            self.schedule(key, self._clock())
            return
        changed = generation != state.generation or requested != state.refresh_requested_at
        state.generation = generation
        state.spec_body = body.get("spec") or {}
        state.refresh_requested_at = requested
        if changed:
            self._index(key, state)
            # The token Secret's name, labels or annotations may have changed with the spec.
            state.secret_unverified = True
            self.schedule(key, self._clock())

    def forget(self, namespace: str, name: str) -> None:
        """A RaidiamClient was deleted; its Secret goes with it through the ownerReference."""
        key = (namespace, name)
        state = self._clients.pop(key, None)
        self._due.pop(key, None)
        if state is not None:
            self._unindex(key, state)
        if self._metrics is not None:
            self._metrics.forget(namespace, name)

    def secret_changed(
        self,
        namespace: str,
        name: str,
        resource_version: str | None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """A Secret changed (`body` as it is now) or went away (None): an input to re-read, or a
        token Secret to check."""
        secret_key = (namespace, name)
        if secret_key in self._by_input_secret:
            if body is None:
                self._input_secrets.pop(secret_key, None)
            else:
                self._input_secrets[secret_key] = copy.deepcopy(dict(body))
        for key in self._by_input_secret.get(secret_key, ()):
            self.schedule(key, self._clock())
        for owner_key in self._by_token_secret.get(secret_key, ()):
            state = self._clients.get(owner_key)
            if state is not None and owner_key in self._running and resource_version is not None:
                # Likely our own write, whose answer has not arrived yet: judge it afterwards.
                state.secret_events_while_running.append(resource_version)
                continue
            if state is not None and (
                resource_version is None or resource_version != state.written_secret_version
            ):
                state.secret_unverified = True
                self.schedule(owner_key, self._clock())

    def _index(self, key: Key, state: ClientState) -> None:
        self._unindex(key, state)
        state.referenced_secrets, state.token_secret_name = frozenset(), None
        try:
            spec = parse_spec(state.spec_body, name=key[1])
        except ConfigurationError:
            return
        state.referenced_secrets = spec.referenced_secrets()
        state.token_secret_name = spec.token_secret.name
        for secret in state.referenced_secrets:
            self._by_input_secret.setdefault((key[0], secret), set()).add(key)
        self._by_token_secret.setdefault((key[0], spec.token_secret.name), set()).add(key)

    def _unindex(self, key: Key, state: ClientState) -> None:
        # Only the entries this client is in: a scan of the whole index per client would make
        # a burst of N new clients cost N² steps.
        names = [(self._by_input_secret, name) for name in state.referenced_secrets]
        if state.token_secret_name is not None:
            names.append((self._by_token_secret, state.token_secret_name))
        for index, name in names:
            keys = index.get((key[0], name))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[(key[0], name)]
                    if index is self._by_input_secret:
                        self._input_secrets.pop((key[0], name), None)

    def set_active(self, active: bool) -> None:
        """Start or stop refreshing, as leadership comes and goes."""
        if active and not self._active:
            now = self._clock()
            for key, state in self._clients.items():
                # Another replica refreshed meanwhile: forget what we knew and read the Secrets.
                state.record, state.next_refresh, state.secret_unverified = None, None, True
                self._replan(key, now)
                if self._metrics is not None:
                    self._metrics.client_seen(*key)
        if self._metrics is not None:
            self._metrics.leader.set(1 if active else 0)
            if not active:
                # A standby's figures would be stale: only the leader publishes per-client series.
                for namespace, name in self._clients:
                    self._metrics.forget(namespace, name)
        self._active = active
        self._wakeup.set()

    def summary(self) -> dict[str, Any]:
        """Counts for the liveness probe; no names, no secrets."""
        now = self._clock()
        return {
            "active": self._active,
            "clients": len(self._clients),
            "reconciling": len(self._running),
            "failing": sum(1 for s in self._clients.values() if s.failure is not None),
            "overdue": sum(1 for when in self._due.values() if when < now - timedelta(seconds=5)),
        }

    # -- scheduling ------------------------------------------------------------------------

    def schedule(self, key: Key, when: datetime) -> None:
        """Reconcile `key` at `when`; an earlier time already planned wins over a later one."""
        planned = self._due.get(key)
        if planned is not None and planned <= when:
            return
        self._due[key] = when
        self._sequence += 1
        heapq.heappush(self._heap, (when, self._sequence, key))
        self._wakeup.set()

    def _replan(self, key: Key, when: datetime) -> None:
        """Replace whatever was planned for `key` by `when` (after a reconciliation)."""
        self._due.pop(key, None)
        self.schedule(key, when)

    async def run(self) -> None:
        """Dispatch due reconciliations until cancelled."""
        try:
            while True:
                self._wakeup.clear()
                now = self._clock()
                while self._active and self._heap and self._heap[0][0] <= now:
                    when, _, key = heapq.heappop(self._heap)
                    if self._due.get(key) != when:
                        continue  # superseded by a newer plan
                    del self._due[key]
                    self._start(key)
                timeout = (
                    (self._heap[0][0] - now).total_seconds()
                    if self._heap and self._active
                    else None
                )
                # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that arrives while
                # the event is being set, and the operator then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wakeup.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _start(self, key: Key) -> None:
        if key in self._running:
            self._again.add(key)  # changed while running: go again right after
            return
        self._running.add(key)
        task = asyncio.create_task(
            self._reconcile_guarded(key), name=f"reconcile {key[0]}/{key[1]}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_guarded(self, key: Key) -> None:
        try:
            async with self._slots:
                await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except ConflictError:
            self.schedule(key, self._clock())
        except Exception as error:  # the API server or a bug; never let one client stop the rest
            logger.error(
                "reconciling %s/%s failed: %s: %s; retrying in %ds",
                key[0],
                key[1],
                type(error).__name__,
                _safe(error),
                API_RETRY.total_seconds(),
            )
            if key in self._clients:
                self.schedule(key, self._clock() + API_RETRY)
        finally:
            self._running.discard(key)
            state = self._clients.get(key)
            if state is not None and state.secret_events_while_running:
                versions, state.secret_events_while_running = state.secret_events_while_running, []
                if any(version != state.written_secret_version for version in versions):
                    state.secret_unverified = True
                    self._again.add(key)
            if key in self._again:
                self._again.discard(key)
                self.schedule(key, self._clock())

    # -- one reconciliation ----------------------------------------------------------------

    async def reconcile(self, key: Key) -> None:
        state = self._clients.get(key)
        if state is None or not self._active:
            return
        now = self._clock()
        try:
            spec = parse_spec(state.spec_body, name=key[1])
        except ConfigurationError as error:
            await self._blocked(state, error, now=now)
            return

        existing = None
        if state.secret_unverified:
            existing = await self._kube.read_secret(key[0], spec.token_secret.name)
            if existing is not None and not is_owned_by(existing, state.owner):
                await self._blocked(state, _conflict(key[0], spec.token_secret.name), now=now)
                return
            if state.record is None and existing is not None:
                state.record = record_from_secret(existing)
                if state.record is not None and state.next_refresh is None:
                    state.next_refresh = self._planned_in_status(
                        state, state.record
                    ) or self._renewal(state.record, spec)

        try:
            inputs = await self._load_inputs(spec, key[0], now=now)
        except ConfigurationError as error:
            await self._blocked(state, error, now=now)
            return

        await self._check_certificates(state, inputs, now=now)
        if spec.suspend:
            await self._write_status(state, inputs, blocked=None, suspended=True, now=now)
            self._due.pop(key, None)
            if state.record is not None and state.record.valid_at(now):
                self._replan(key, state.record.expires_at)  # to report TokenExpired on time
            return

        reason = refresh_reason(state, inputs, now=now)
        if reason is None:
            await self._ensure_secret(state, spec, existing, renewed=False)
            await self._write_status(state, inputs, blocked=None, now=now)
            assert state.next_refresh is not None
            self._replan(key, state.next_refresh)
            return
        wait_until = self._held_back_until(state, inputs, now=now)
        if wait_until is not None:
            await self._write_status(state, inputs, blocked=None, now=now)
            self._replan(key, _earliest(wait_until, _expiry_if_valid(state.record, now)))
            return

        started = time.monotonic()
        try:
            token = await self._tokens.fetch_token(inputs.request)
        except (TransientError, AuthorizationServerRejection, ConfigurationError) as error:
            await self._failed(
                state, inputs, error, reason=reason, duration=time.monotonic() - started
            )
            return
        await self._succeeded(
            state, spec, inputs, token, existing, reason=reason, duration=time.monotonic() - started
        )

    def _held_back_until(
        self, state: ClientState, inputs: Inputs, *, now: datetime
    ) -> datetime | None:
        """After a failure, when the next request may go out. The server's Retry-After always
        holds; our own backoff gives way when the user changed something since the failure."""
        if state.not_before is not None and now < state.not_before:
            return state.not_before
        unchanged = state.failed_inputs == (inputs.fingerprint, state.refresh_requested_at)
        if state.retry_at is not None and now < state.retry_at and unchanged:
            return state.retry_at
        return None

    async def _check_certificates(
        self, state: ClientState, inputs: Inputs, *, now: datetime
    ) -> None:
        """Warn before a certificate expires: the token flow dies with it."""
        warning_period = self.settings.certificate_expiry_warning
        expiring = expiring_certificates(inputs, now=now, warning=warning_period)
        state.certificate_not_after = min((c.not_after for c in inputs.certificates), default=None)
        if self._metrics is not None:
            for certificate in inputs.certificates:
                self._metrics.certificate_expiration(
                    state.owner.namespace,
                    state.owner.name,
                    certificate.secret_name,
                    certificate.not_after,
                )
        if not expiring:
            state.certificate_warning = None
            return
        first = expiring[0]
        state.certificate_warning = Problem(
            "CertificateExpiringSoon",
            f"the {first.role} in Secret {first.secret_name} expires at {rfc3339(first.not_after)} "
            f"(in {_days(first.not_after - now)}); renew it before then",
        )
        last = state.last_certificate_warning
        if last is None or now - last >= CERTIFICATE_WARNING_REPEAT:
            state.last_certificate_warning = now
            await self._kube.post_event(
                state.owner,
                warning=True,
                reason="CertificateExpiringSoon",
                message=state.certificate_warning.message,
            )

    async def _load_inputs(self, spec: ClientSpec, namespace: str, *, now: datetime) -> Inputs:
        secrets = {
            name: await self._input_secret(namespace, name) for name in spec.referenced_secrets()
        }
        ca = (
            await self._config_map(namespace, spec.ca_bundle.config_map_name)
            if spec.ca_bundle
            else None
        )
        return build_inputs(spec, namespace=namespace, secrets=secrets, ca_config_map=ca, now=now)

    async def _config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        cached = self._config_maps.get((namespace, name))
        if cached is not None and time.monotonic() - cached[0] < CONFIG_MAP_REUSE.total_seconds():
            return cached[1]
        read_at = time.monotonic()
        config_map = await self._kube.read_config_map(namespace, name)
        if config_map is None:
            self._config_maps.pop((namespace, name), None)
        else:
            self._config_maps[(namespace, name)] = (read_at, config_map)
        return config_map

    async def _input_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        secret_key = (namespace, name)
        cached = self._input_secrets.get(secret_key)
        if cached is not None:
            return cached
        secret = await self._kube.read_secret(namespace, name)
        if secret is not None and secret_key in self._by_input_secret:
            # A watch event that arrived meanwhile is newer than what we read.
            self._input_secrets.setdefault(secret_key, secret)
        return secret

    def _renewal(self, record: TokenRecord, spec: ClientSpec) -> datetime:
        # Whole seconds, rounded down, like every time the status shows: the nextRefreshTime a
        # user (or a restarted operator) reads is exactly the moment the engine plans.
        return renewal_time(
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            policy=spec.refresh,
            rng=self._rng,
        ).replace(microsecond=0)

    def _planned_in_status(self, state: ClientState, record: TokenRecord) -> datetime | None:
        """The renewal the status shows for this very token, if it shows one (after a restart).

        Keeping it instead of drawing new jitter keeps the schedule steady across restarts and
        spares a status write per client.
        """
        status = state.observed_status or {}
        if status.get("failedAttempts") or status.get("expiresAt") != rfc3339(record.expires_at):
            return None
        planned = parse_rfc3339(status.get("nextRefreshTime") or "")
        if planned is None or not record.issued_at < planned <= record.expires_at:
            return None
        return planned

    # -- the two funnels -------------------------------------------------------------------

    async def _succeeded(
        self,
        state: ClientState,
        spec: ClientSpec,
        inputs: Inputs,
        token: IssuedToken,
        existing: Mapping[str, Any] | None,
        *,
        reason: str,
        duration: float,
    ) -> None:
        state.record = TokenRecord.issued(
            token,
            inputs_fingerprint=inputs.fingerprint,
            refresh_requested_at=state.refresh_requested_at,
        )
        expires_at = state.record.expires_at
        recovered = state.failure is not None
        if self._metrics is not None:
            self._metrics.request_succeeded(
                state.owner.namespace,
                state.owner.name,
                auth_method=spec.auth_method,
                duration=duration,
            )
        state.next_refresh = self._renewal(state.record, spec)
        state.retry_at, state.not_before, state.failed_inputs = None, None, None
        state.failure, state.failed_attempts = None, 0
        await self._ensure_secret(state, spec, existing, renewed=True)
        now = self._clock()
        await self._write_status(state, inputs, blocked=None, now=now)
        self._replan((state.owner.namespace, state.owner.name), state.next_refresh)
        logger.info(
            "%s/%s: issued token (%s), expires %s, next refresh %s, took %.0f ms",
            state.owner.namespace,
            state.owner.name,
            reason,
            rfc3339(expires_at),
            rfc3339(state.next_refresh),
            duration * 1000,
        )
        # Routine renewals stay quiet: an Event per refresh would double the API writes.
        if reason != "RenewalDue" or recovered:
            await self._kube.post_event(
                state.owner,
                warning=False,
                reason="TokenIssued",
                message=f"Issued a token for client {spec.client_id} ({_describe(reason)}); "
                f"it expires at {rfc3339(expires_at)}",
            )

    async def _failed(
        self,
        state: ClientState,
        inputs: Inputs,
        error: RaidiamOperatorError,
        *,
        reason: str,
        duration: float,
    ) -> None:
        now = self._clock()
        key = (state.owner.namespace, state.owner.name)
        state.failed_attempts += 1
        state.last_failure_time = now
        if isinstance(error, AuthorizationServerRejection):
            problem = Problem(error.error, error.message)
            state.retry_at = now + REJECTION_RETRY
        elif isinstance(error, TransientError):
            problem = Problem(error.reason, error.message)
            state.retry_at = now + retry_delay(
                state.failed_attempts, retry_after=error.retry_after, rng=self._rng
            )
        else:
            problem = Problem(error.reason, error.message)
            state.retry_at = now + CONFIGURATION_RETRY
        state.failure = problem
        if self._metrics is not None:
            self._metrics.request_failed(
                key[0], key[1], error, auth_method=inputs.request.auth_method, duration=duration
            )
        state.failed_inputs = (inputs.fingerprint, state.refresh_requested_at)
        retry_after = getattr(error, "retry_after", None)
        state.not_before = now + timedelta(seconds=retry_after) if retry_after else None
        await self._write_status(state, inputs, blocked=None, now=now)
        self._replan(key, _earliest(state.retry_at, _expiry_if_valid(state.record, now)))
        logger.warning(
            "%s/%s: token request failed (%s): %s: %s; attempt %d, retrying at %s, took %.0f ms",
            key[0],
            key[1],
            reason,
            problem.reason,
            problem.message,
            state.failed_attempts,
            rfc3339(state.retry_at),
            duration * 1000,
        )
        await self._warn(state, problem, now=now)

    async def _blocked(
        self, state: ClientState, error: ConfigurationError, *, now: datetime
    ) -> None:
        """Input only the user can fix. The token Secret is left as it is."""
        key = (state.owner.namespace, state.owner.name)
        problem = Problem(error.reason, error.message)
        state.failure = None
        not_after = getattr(error, "not_after", None)
        if not_after is not None:
            state.certificate_warning = problem
            state.certificate_not_after = not_after
            if self._metrics is not None and error.reason == "CertificateExpired":
                ref = parse_spec(state.spec_body, name=key[1]).transport_certificate
                if ref is not None:
                    self._metrics.certificate_expiration(key[0], key[1], ref.secret_name, not_after)
        await self._write_status(state, None, blocked=problem, now=now)
        # Secret events wake us when the input appears; the timer is a safety net.
        retry = CONFIGURATION_RETRY if error.reason != "SecretNotFound" else timedelta(seconds=60)
        self._replan(key, _earliest(now + retry, _expiry_if_valid(state.record, now)))
        if state.last_warning is None or state.last_warning[0] != problem.reason:
            logger.warning("%s/%s: %s: %s", key[0], key[1], problem.reason, problem.message)
        await self._warn(state, problem, now=now)

    async def _warn(self, state: ClientState, problem: Problem, *, now: datetime) -> None:
        last = state.last_warning
        if last is not None and last[0] == problem.reason and now - last[1] < WARNING_REPEAT:
            return
        state.last_warning = (problem.reason, now)
        await self._kube.post_event(
            state.owner, warning=True, reason=problem.reason, message=problem.message
        )

    # -- writing ---------------------------------------------------------------------------

    async def _ensure_secret(
        self,
        state: ClientState,
        spec: ClientSpec,
        existing: Mapping[str, Any] | None,
        *,
        renewed: bool,
    ) -> None:
        """Make the token Secret hold `state.record`, writing only when needed.

        `existing` is the Secret as read at the start of this reconciliation, when it had to be
        read (first sight, or someone touched it); otherwise our own last write is the truth and
        a renewal replaces it without reading it first.
        """
        assert state.record is not None
        if not renewed and not state.secret_unverified:
            return
        namespace, name = state.owner.namespace, spec.token_secret.name
        desired = token_secret(state.owner, spec.token_secret, state.record)
        try:
            if not state.secret_unverified and state.written_secret_version:
                desired["metadata"]["resourceVersion"] = state.written_secret_version
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
                        state.owner.name,
                        name,
                    )
            else:
                written = existing
        except Exception:
            # A conflict, or an API server that went away mid-write: read the Secret afresh next
            # time and restore it, or the new token would live only in memory.
            state.secret_unverified = True
            raise
        state.secret_unverified = False
        state.written_secret_version = written["metadata"].get("resourceVersion")

    async def _write_status(
        self,
        state: ClientState,
        inputs: Inputs | None,
        *,
        blocked: Problem | None,
        now: datetime,
        suspended: bool = False,
    ) -> None:
        status = client_status(
            record=state.record,
            inputs_fingerprint=inputs.fingerprint if inputs else None,
            blocked=blocked,
            failure=state.failure,
            failed_attempts=state.failed_attempts,
            last_failure_time=state.last_failure_time,
            next_refresh=_earliest(state.retry_at, state.next_refresh)
            if state.failure
            else state.next_refresh,
            suspended=suspended,
            generation=state.generation,
            previous_conditions=state.previous_conditions,
            now=now,
            certificate_warning=state.certificate_warning,
            certificate_not_after=state.certificate_not_after,
            last_certificate_warning=state.last_certificate_warning,
        )
        if blocked is not None or inputs is None:
            status["nextRefreshTime"] = None
        if self._metrics is not None:
            ready = (
                next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"
            )
            self._metrics.token_state(
                state.owner.namespace,
                state.owner.name,
                ready=ready,
                expires_at=state.record.expires_at if state.record else None,
                next_refresh=parse_rfc3339(status["nextRefreshTime"])
                if status["nextRefreshTime"]
                else None,
            )
        if not status_differs(state.observed_status, status):
            return
        await self._kube.patch_status(state.owner, status)
        state.observed_status = status
        state.previous_conditions = status["conditions"]


def refresh_reason(state: ClientState, inputs: Inputs, *, now: datetime) -> str | None:
    """Why a new token is needed now, or None. The first reason that applies names it."""
    record = state.record
    if record is None:
        return "Issuing"
    if record.inputs_fingerprint != inputs.fingerprint:
        if record.certificate_thumbprint != inputs.request.certificate_thumbprint:
            return "CertificateChanged"
        return "SpecChanged"
    if state.refresh_requested_at and state.refresh_requested_at != record.refresh_requested_at:
        return "RefreshRequested"
    if not record.valid_at(now):
        return "TokenExpired"
    if state.next_refresh is not None and now >= state.next_refresh:
        return "RenewalDue"
    return None


_REASONS = {
    "Issuing": "first token",
    "CertificateChanged": "the transport certificate changed",
    "SpecChanged": "the spec or signing key changed",
    "RefreshRequested": "refresh requested through the annotation",
    "TokenExpired": "the previous token had expired",
    "RenewalDue": "renewal after a failure",
}


def _describe(reason: str) -> str:
    return _REASONS.get(reason, reason)


def _conflict(namespace: str, name: str) -> ConfigurationError:
    return ConfigurationError(
        f"Secret {namespace}/{name} already exists and is not owned by this RaidiamClient; it is "
        "left untouched. Delete it, or set spec.tokenSecret.name to another name",
        reason="SecretConflict",
    )


def _expiry_if_valid(record: TokenRecord | None, now: datetime) -> datetime | None:
    return record.expires_at if record is not None and record.valid_at(now) else None


def _earliest(*moments: datetime | None) -> datetime:
    present = [m for m in moments if m is not None]
    return min(present)


def _days(remaining: timedelta) -> str:
    if remaining < timedelta(days=2):
        return f"{max(0, int(remaining.total_seconds() // 3600))} hours"
    return f"{remaining.days} days"


def _safe(error: Exception) -> str:
    """An exception summary for logs: our own messages are safe; others are cut to the status."""
    if isinstance(error, RaidiamOperatorError):
        return error.message
    status = getattr(error, "status", None)
    return f"HTTP {status}" if status else type(error).__name__
