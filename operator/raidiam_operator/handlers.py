"""kopf registration only: wire kopf's watches to the refresh engine.

The engine holds the logic; these handlers just tell it what exists and what changed. They are
`on.event` handlers, so kopf writes no progress annotations or finalizers of its own: the only
writes are the token Secret, the status and our Events.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import kopf

from raidiam_operator.core.issuers import ISSUER_PLURAL
from raidiam_operator.core.options import OperatorOptions
from raidiam_operator.core.registration_spec import REGISTRATION_PLURAL
from raidiam_operator.core.spec import GROUP, PLURAL, VERSION
from raidiam_operator.kube.gateway import KubernetesGateway
from raidiam_operator.kube.leader import UNFENCED, Fence, LeaderElector, LeaseSettings
from raidiam_operator.metrics import Metrics
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.keychecks import KeyChecker, WorkerPool
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine
from raidiam_operator.refresh.issuer_status import IssuerStatusReconciler
from raidiam_operator.refresh.registrations import registration_controller
from raidiam_operator.refresh.watch import what_the_engine_reads

logger = logging.getLogger(__name__)

#: how long one watch request of kopf's lasts when it lists by streaming (see start_engine)
STREAMING_WATCH_SECONDS = 1800


@kopf.on.startup(id="start-refresh-engine")
async def start_engine(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # We post our own Events; kopf's would repeat our log lines on the objects.
    settings.posting.enabled = False
    # Serve the namespaces we are given and the CRD as it is at start-up. Watching namespaces and
    # CRDs for changes would need cluster-wide read access to both, which a namespaced install
    # should not have to grant. Install the CRD before the operator (Helm's crds/ does).
    settings.scanning.disabled = True
    # Reconnect watches that go quiet (an API server restart can leave a socket half-open).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # Let kopf's per-object workers exit soon after their last event: a restart meets every
    # client at once, and an idle worker per object would hold them all (the restart peak with
    # and without this is in docs/benchmarks.md).
    settings.queueing.idle_timeout = 0.5
    # At the default level kopf logs every event it hands us, httpx every request and aiohttp
    # every liveness, readiness and startup probe (three a minute that say nothing), and kopf
    # "Activity 'refresh-engine' succeeded" for each probe it runs: with thousands of clients,
    # three lines per refresh where our own one says more. --verbose keeps them (it sets DEBUG).
    if logging.getLogger().getEffectiveLevel() >= logging.INFO:
        for noisy in ("kopf.objects", "httpx", "aiohttp.access", "kopf.activities.probe"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    options: OperatorOptions = memo.get("options") or OperatorOptions()
    metrics = Metrics()
    if options.metrics_port:
        metrics.serve(options.metrics_port, options.metrics_address)
    kube = KubernetesGateway.from_environment()
    # The initial listing, at start-up and after a watch expires: streamed, one object at a time
    # and without `continue` tokens, where the API server can (a paged listing that outlived its
    # token stops kopf, see kube.listing); else in pages of 500, so that a restart does not hold
    # every client at once (the memory this saves is in docs/benchmarks.md).
    # kopf reads both settings when each watch starts, after the startup handlers.
    where = options.namespaces[0] if options.namespaces else None
    listing = await kube.listing_choice(where)
    settings.watching.initial_streaming = listing.streaming
    settings.watching.chunk_size = 500
    if listing.streaming:
        # kopf 1.45 does not start a streaming list again if its watch ends before the initial
        # events do: it watches on from the last object received, and the clients not yet
        # received are missed until they change (docs/reliability.md, known limits). So a
        # watch request may last long enough for any initial listing to end; a half-open
        # socket is still caught by kopf's inactivity timeout (70 s without an event, while
        # the API server sends a bookmark about every minute).
        settings.watching.server_timeout = STREAMING_WATCH_SECONDS
        settings.watching.client_timeout = STREAMING_WATCH_SECONDS + 30
    logger.info(
        "kopf lists RaidiamClients and ClusterRaidiamIssuers %s: %s",
        "as a stream" if listing.streaming else "in pages of 500",
        listing.why,
    )
    tokens = TokenClient()
    # Tenants' private keys are checked in a worker process, never on this event loop.
    keys = KeyChecker(WorkerPool())

    def secret_event(kind: str, namespace: str, name: str, resource_version: str) -> None:
        engine.secret_changed(namespace, name, None if kind == "DELETED" else resource_version)
        registrations.secret_changed(namespace, name)

    # Secrets as metadata only: every Secret in the served namespaces passes through this watch,
    # and most are none of our business (docs/security.md).
    secrets = kube.secret_metadata_watch(options.namespaces, secret_event)
    elector = None
    if options.leader_election is not None:
        namespace, name = options.leader_election
        elector = LeaderElector(
            kube, LeaseSettings(namespace=namespace, name=name, identity=options.identity)
        )
    fence: Fence = elector if elector is not None else UNFENCED
    registrations = registration_controller(kube, tokens, keys, options, fence=fence)
    engine = RefreshEngine(
        kube,
        tokens,
        EngineSettings(
            certificate_expiry_warning=options.certificate_expiry_warning,
            issuer_policy=options.issuer_policy,
            cluster_resource_namespace=options.cluster_resource_namespace,
        ),
        metrics=metrics,
        secret_names=secrets,
        fence=fence,
        keys=keys,
        registrations=registrations,
    )
    issuers = IssuerStatusReconciler(
        kube,
        tokens,
        cluster_resource_namespace=options.cluster_resource_namespace,
        interval=options.issuer_check_interval,
        fence=fence,
    )
    secrets.start()
    memo.kube, memo.tokens, memo.engine, memo.issuers = kube, tokens, engine, issuers
    memo.registrations = registrations
    memo.key_checker = keys
    memo.secrets = secrets
    memo.engine_task = asyncio.create_task(engine.run(), name="refresh engine")
    memo.issuers_task = asyncio.create_task(issuers.run(), name="issuer status")
    if elector is not None:
        engine.set_active(False)
        issuers.set_active(False)
        registrations.set_active(False)

        def lead(active: bool) -> None:
            engine.set_active(active)
            issuers.set_active(active)
            registrations.set_active(active)

        memo.elector = elector
        memo.elector_task = asyncio.create_task(elector.run(lead), name="leader election")


@kopf.on.cleanup(id="stop-refresh-engine")
async def stop_engine(memo: kopf.Memo, **_: Any) -> None:
    # Stop refreshing, then hand the Lease over at once (not after it runs out), then stop.
    if memo.get("engine") is not None:
        memo.engine.set_active(False)
        memo.issuers.set_active(False)
        memo.registrations.set_active(False)
    if memo.get("secrets") is not None:
        memo.secrets.stop()
    if memo.get("elector") is not None:
        await memo.elector.release()
    for name in ("elector_task", "engine_task", "issuers_task"):
        task: asyncio.Task[None] | None = memo.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if memo.get("registrations") is not None:
        await memo.registrations.aclose()
    if memo.get("tokens") is not None:
        await memo.tokens.aclose()
    if memo.get("key_checker") is not None:
        await memo.key_checker.aclose()
    if memo.get("kube") is not None:
        memo.kube.close()


# Coroutines, not functions: kopf runs plain functions in a thread pool, a hop per event that
# thousands of Secrets and status updates make costly; these only touch the engine's memory.
@kopf.on.event(GROUP, VERSION, PLURAL, id="raidiamclient-events")
async def raidiam_client_event(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    if type == "DELETED":
        memo.engine.forget(body.metadata.namespace, body.metadata.name)
    else:
        memo.engine.observe(what_the_engine_reads(body))


# Cluster-scoped: kopf watches them cluster-wide even when it serves a list of namespaces, which
# is why the chart grants list/watch on them in a ClusterRole in every mode.
@kopf.on.event(GROUP, VERSION, ISSUER_PLURAL, id="clusterraidiamissuer-events")
async def cluster_issuer_event(
    type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    if type == "DELETED":
        memo.engine.issuer_deleted(body.metadata.name)
        memo.issuers.forget(body.metadata.name)
    else:
        issuer = copy.deepcopy(dict(body))
        memo.engine.issuer_changed(issuer)
        memo.issuers.observe(issuer)


@kopf.on.event(GROUP, VERSION, REGISTRATION_PLURAL, id="raidiamregistration-events")
async def registration_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        memo.registrations.forget(body.metadata.namespace, body.metadata.name, body.metadata.uid)
    else:
        memo.registrations.observe(copy.deepcopy(dict(body)))
    # After the controller has the new body: the clients that take their client id from it read it.
    memo.engine.registration_changed(body.metadata.namespace, body.metadata.name)


@kopf.on.probe(id="refresh-engine")
def engine_probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    engine: RefreshEngine | None = memo.get("engine")
    task: asyncio.Task[None] | None = memo.get("engine_task")
    if engine is None or task is None or task.done():
        raise kopf.PermanentError("the refresh engine is not running")
    return engine.summary()
