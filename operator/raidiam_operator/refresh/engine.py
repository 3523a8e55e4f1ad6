"""The refresh engine: one for every RaidiamClient the operator watches.

kopf tells the engine what exists (`observe`, `forget`) and what changed (`secret_changed`);
the watch cache remembers it, the scheduler decides when each client's next attempt runs, and
the reconciler runs one attempt at a time per client. This module only wires them together and
keeps one client's failure from stopping the rest.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from raidiam_operator.core.errors import Conflict, RaidiamOperatorError
from raidiam_operator.core.issuers import IssuerPolicy
from raidiam_operator.core.options import CERTIFICATE_EXPIRY_WARNING
from raidiam_operator.core.times import Clock, utc_now
from raidiam_operator.kube.gateway import ClientKube
from raidiam_operator.kube.leader import UNFENCED, Fence, FencedGateway, LeaseNotHeld
from raidiam_operator.metrics import Metrics
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.keychecks import KeyChecker
from raidiam_operator.refresh.budget import CLIENT_WRITES, NAMESPACE_WRITES, Rate, WriteBudget
from raidiam_operator.refresh.client_ids import NoRegistrations, RegistrationReader
from raidiam_operator.refresh.inputs import PrivateKeys
from raidiam_operator.refresh.reconciler import Reconciler
from raidiam_operator.refresh.scheduler import Scheduler
from raidiam_operator.refresh.state import Key
from raidiam_operator.refresh.watch import Change, SecretNames, WatchCache

logger = logging.getLogger(__name__)

# While the API server misbehaves, try again after this long.
API_RETRY = timedelta(seconds=5)
# A client planned this long ago and not started yet counts as overdue in the liveness probe.
OVERDUE = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    #: token requests and reconciliations running at once, across all clients
    concurrency: int = 128
    #: of those, at most this many for one namespace, and at most this many for one issuer (a
    #: ClusterRaidiamIssuer, or an inline issuer URL): a tenant whose issuer is slow (or hostile)
    #: delays its own clients, not everyone's. None: `scheduler.tenant_share(concurrency)`, 32
    #: of the default 128, so that it takes four such tenants to hold every slot
    tenant_concurrency: int | None = None
    #: a seed for the jitter; None for a random one
    seed: int | None = None
    #: warn (condition, Event, metric) when a certificate expires sooner than this
    certificate_expiry_warning: timedelta = CERTIFICATE_EXPIRY_WARNING
    #: which inline issuers clients may name
    issuer_policy: IssuerPolicy = field(default_factory=IssuerPolicy)
    #: where ClusterRaidiamIssuers' CA bundle ConfigMaps live
    cluster_resource_namespace: str = "default"
    #: token Secret writes, and status patches, for one client (budget.py)
    client_writes: Rate = CLIENT_WRITES
    #: the same for one namespace: what one tenant may spend of the operator's API share
    namespace_writes: Rate = NAMESPACE_WRITES


class RefreshEngine:
    def __init__(
        self,
        kube: ClientKube,
        tokens: TokenClient,
        settings: EngineSettings | None = None,
        *,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
        secret_names: SecretNames | None = None,
        fence: Fence = UNFENCED,
        keys: PrivateKeys | None = None,
        registrations: RegistrationReader | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self._clock = clock
        # Asked before every token request and write (the Lease, with --leader-election).
        self._fence = fence
        self._metrics = metrics or Metrics()
        self._metrics.leader.set(1)
        self._watch = WatchCache(kube, clock=clock, secret_names=secret_names)
        self._scheduler = Scheduler(
            self._attempt,
            clock=clock,
            concurrency=self.settings.concurrency,
            tenant_concurrency=self.settings.tenant_concurrency,
            issuer_of=self._issuer_of,
            prepare=self._prepare,
        )
        self._reconciler = Reconciler(
            FencedGateway(kube, fence),
            tokens,
            self._watch,
            self._scheduler,
            self._metrics,
            # The operator checks keys in worker processes (handlers.py); here and now by default.
            keys=keys or KeyChecker(),
            # spec.clientIdFrom's registrations: the RegistrationController's (handlers.py)
            registrations=registrations or NoRegistrations(),
            certificate_expiry_warning=self.settings.certificate_expiry_warning,
            issuer_policy=self.settings.issuer_policy,
            cluster_resource_namespace=self.settings.cluster_resource_namespace,
            clock=clock,
            rng=random.Random(self.settings.seed),  # noqa: S311 - jitter, not secrecy
            fence=fence,
            write_budget=WriteBudget(
                client=self.settings.client_writes, namespace=self.settings.namespace_writes
            ),
        )
        # False on a standby replica: it keeps watching but sends and writes nothing.
        self._active = True

    def planned(self, key: Key) -> datetime | None:
        """When the next attempt of `key` runs, if one is planned."""
        return self._scheduler.planned(key)

    def plan(self) -> Mapping[Key, datetime]:
        """When the next attempt of each client runs, for the clients that have one planned."""
        return MappingProxyType(self._scheduler.due)

    # -- what kopf tells us ----------------------------------------------------------------

    def observe(self, body: Mapping[str, Any]) -> None:
        """A RaidiamClient was listed, created or changed."""
        state, change = self._watch.observe(body)
        key = state.observed.key
        if change is Change.NEW:
            if self._active:
                self._metrics.client_seen(*key)
            self._scheduler.schedule(key, self._clock())
        elif change is Change.CHANGED:
            # The token Secret's name, labels or annotations may have changed with the spec.
            state.token.secret_unverified = True
            self._scheduler.schedule(key, self._clock())

    def forget(self, namespace: str, name: str) -> None:
        """A RaidiamClient was deleted; its Secret goes with it through the ownerReference."""
        key = (namespace, name)
        self._watch.forget(key)
        self._scheduler.cancel(key)
        self._metrics.forget(namespace, name)

    def secret_changed(self, namespace: str, name: str, resource_version: str | None) -> None:
        """A Secret changed (now at `resource_version`) or went away (None): an input to read
        again, or a token Secret to check. The Secret watch delivers metadata only."""
        readers, owners = self._watch.secret_changed((namespace, name), resource_version)
        for key in readers:
            self._scheduler.schedule(key, self._clock())
        for owner_key in owners:
            state = self._watch.clients.get(owner_key)
            if state is None:
                continue
            token = state.token
            if self._scheduler.is_running(owner_key) and resource_version is not None:
                # Likely our own write, whose answer has not arrived yet: judge it afterwards.
                token.secret_events_while_running.append(resource_version)
                continue
            if resource_version is None or resource_version != token.written_secret_version:
                token.secret_unverified = True
                self._scheduler.schedule(owner_key, self._clock())

    def issuer_changed(self, body: Mapping[str, Any]) -> None:
        """A ClusterRaidiamIssuer was listed, created or changed: its clients look again at once
        (and ask for a token only if what they would send changed)."""
        for key in self._watch.issuer_changed(body):
            self._scheduler.schedule(key, self._clock())

    def issuer_deleted(self, name: str) -> None:
        """A ClusterRaidiamIssuer was deleted: its clients report it, keeping their tokens."""
        for key in self._watch.issuer_deleted(name):
            self._scheduler.schedule(key, self._clock())

    def registration_changed(self, namespace: str, name: str) -> None:
        """A RaidiamRegistration was listed, changed or deleted: the clients that take their
        client id from it look again at once (a new client id asks for a new token)."""
        for key in self._watch.registration_changed((namespace, name)):
            self._scheduler.schedule(key, self._clock())

    def set_active(self, active: bool) -> None:
        """Start or stop refreshing, as leadership comes and goes."""
        if active and not self._active:
            now = self._clock()
            for key, state in self._watch.clients.items():
                # Another replica refreshed meanwhile: forget what we knew and read the Secrets.
                token = state.token
                token.record, token.next_refresh, token.secret_unverified = None, None, True
                self._scheduler.replan(key, now)
                self._metrics.client_seen(*key)
        self._metrics.leader.set(1 if active else 0)
        if not active:
            # A standby's figures would be stale: only the leader publishes per-client series.
            for namespace, name in self._watch.clients:
                self._metrics.forget(namespace, name)
        self._active = active
        self._scheduler.set_active(active)

    def summary(self) -> dict[str, Any]:
        """Counts for the liveness probe; no names, no secrets."""
        clients = self._watch.clients
        secrets, config_maps = self._watch.kept
        return {
            "active": self._active,
            "clients": len(clients),
            "reconciling": self._scheduler.running,
            "failing": sum(1 for s in clients.values() if s.backoff.failure is not None),
            "overdue": self._scheduler.overdue(now=self._clock(), grace=OVERDUE),
            "cachedSecrets": secrets,
            "cachedConfigMaps": config_maps,
        }

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch due reconciliations until cancelled."""
        await self._scheduler.run()

    async def reconcile(self, key: Key) -> None:
        """One attempt for `key`, now."""
        state = self._watch.clients.get(key)
        if state is None or not self._active or not self._fence.holds_lease():
            return
        await self._reconciler.reconcile(state)

    async def events_posted(self) -> None:
        """Wait for the Normal Events that attempts left to be posted behind them."""
        await self._reconciler.events_posted()

    def _issuer_of(self, key: Key) -> str:
        state = self._watch.clients.get(key)
        return state.observed.issuer_share if state else ""

    async def _prepare(self, key: Key) -> None:
        state = self._watch.clients.get(key)
        if state is None or not self._active:
            return
        try:
            await self._reconciler.discover_first(state)
        except RaidiamOperatorError:  # reading the inputs failed: the attempt will say why
            return

    async def _attempt(self, key: Key) -> None:
        try:
            await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except LeaseNotHeld:
            pass  # nothing was sent; the replica that holds the Lease does this work
        except Conflict:
            self._scheduler.schedule(key, self._clock())
        except Exception as error:  # the API server or a bug; never let one client stop the rest
            logger.error(
                "reconciling %s/%s failed: %s: %s; retrying in %ds",
                key[0],
                key[1],
                type(error).__name__,
                _safe(error),
                API_RETRY.total_seconds(),
            )
            if key in self._watch.clients:
                self._scheduler.schedule(key, self._clock() + API_RETRY)
        finally:
            state = self._watch.clients.get(key)
            if state is not None and state.token.secret_events_while_running:
                token = state.token
                versions, token.secret_events_while_running = token.secret_events_while_running, []
                if any(version != token.written_secret_version for version in versions):
                    token.secret_unverified = True
                    self._scheduler.run_again(key)


def _safe(error: Exception) -> str:
    """An exception summary for logs: our own messages are safe; others (bugs) only by name."""
    return error.message if isinstance(error, RaidiamOperatorError) else type(error).__name__
