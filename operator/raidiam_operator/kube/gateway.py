"""The only module that talks to the Kubernetes API on the operator's behalf.

It reads the Secrets and ConfigMaps a RaidiamClient names, writes its token Secret, patches its
status and posts Events. Every call is scoped to the RaidiamClient's own namespace: there is no
method that takes a namespace from anywhere else than the object being reconciled.

The official client is synchronous; calls run in a small thread pool so they never block the
event loop. Responses are read as raw JSON (no model objects): cheaper, and what we need.
Its exceptions are translated here, once, into the error tree of `core.errors`: a refusal is a
`KubernetesError` (`ObjectNotFound`, `Conflict`, `Forbidden`), an API server that is down,
overloaded or unreachable a `KubernetesUnavailable`, which is transient.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from urllib3.util.retry import Retry

from raidiam_operator.core.errors import (
    ConfigurationError,
    Conflict,
    KubernetesError,
    KubernetesUnavailable,
    ObjectNotFound,
)
from raidiam_operator.core.spec import GROUP, VERSION, Owner
from raidiam_operator.core.texts import EVENT_NOTE_LIMIT, cut_bytes
from raidiam_operator.core.times import Clock, rfc3339, utc_now
from raidiam_operator.kube.api import (
    _MERGE_PATCH,
    JSON,
    REQUEST_TIMEOUT,
    _clients_path,
    _core_path,
    _issuer_path,
    _lease_path,
    _lines,
    _quoted,
    _registrations_path,
    api_request,
)
from raidiam_operator.kube.errors import translated
from raidiam_operator.kube.listing import (
    _PROBE_LABEL,
    _PROBE_SECONDS,
    ListingChoice,
    StreamingListProbe,
    ends_initial_events,
    listing_choice,
)
from raidiam_operator.kube.secret_watch import SecretEvent, SecretMetadataWatch

logger = logging.getLogger(__name__)


class KubeGateway(Protocol):
    async def read_secret(self, namespace: str, name: str) -> JSON | None: ...
    async def read_config_map(self, namespace: str, name: str) -> JSON | None: ...
    async def create_secret(self, namespace: str, body: JSON) -> JSON: ...
    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON: ...
    async def patch_status(self, owner: Owner, status: JSON) -> None: ...
    async def read_namespace(self, name: str) -> JSON | None: ...
    async def post_event(
        self, owner: Owner, *, warning: bool, reason: str, message: str
    ) -> None: ...


class KubernetesGateway:
    """`KubeGateway` over the official client."""

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        *,
        threads: int = 16,
        clock: Clock = utc_now,
        reporting_instance: str = "raidiam-token-operator",
    ) -> None:
        self._api_client = api_client
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube-api")
        self._clock = clock
        self._instance = reporting_instance

    @classmethod
    def from_environment(
        cls, *, kubeconfig: str | None = None, context: str | None = None, **kwargs: Any
    ) -> KubernetesGateway:
        """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG, or
        `kubeconfig`) and its current context (or `context`); naming either skips the pod's.

        Raises `ConfigurationError` when there is no usable kubeconfig or context."""
        configuration = kubernetes.client.Configuration()
        try:
            if kubeconfig is None and context is None:
                try:
                    kubernetes.config.load_incluster_config(client_configuration=configuration)
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config(client_configuration=configuration)
            else:
                kubernetes.config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
        except (kubernetes.config.ConfigException, OSError) as error:
            raise ConfigurationError(
                f"no cluster to talk to: {error}. Point KUBECONFIG (or --kubeconfig) at a "
                "kubeconfig file and pick a context with --context",
                reason="NoKubeconfig",
            ) from None
        threads = int(kwargs.get("threads", 16))
        configuration.connection_pool_maxsize = threads
        # urllib3 retries a GET or PUT that timed out three more times by default, so a call to an
        # API server whose etcd is down held a thread for a minute instead of REQUEST_TIMEOUT.
        # Refused connections are still retried at once; the engine retries everything else.
        configuration.retries = Retry(total=2, connect=2, read=0, status=0, redirect=0)
        return cls(kubernetes.client.ApiClient(configuration), **kwargs)

    @staticmethod
    def current_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
        """The namespace of the kubeconfig's current (or named) context, or the pod's, else
        "default"."""
        try:
            contexts, current = kubernetes.config.list_kube_config_contexts(kubeconfig)
            chosen = (
                next((c for c in contexts if c.get("name") == context), None)
                if context
                else current
            )
            namespace = (chosen or {}).get("context", {}).get("namespace")
            if namespace:
                return str(namespace)
        except (kubernetes.config.ConfigException, OSError):
            pass
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
                return file.read().strip() or "default"
        except OSError:
            return "default"

    async def list_clients(
        self, namespace: str | None, *, selector: str | None = None
    ) -> list[JSON]:
        """RaidiamClients in one namespace, or in all of them; `selector` is a label selector."""
        where = "all namespaces" if namespace is None else f"namespace {namespace}"
        what = f"listing RaidiamClients in {where}" + (
            f" with labels {selector}" if selector else ""
        )
        filters = {"labelSelector": selector} if selector else {}
        if namespace is None:
            listing = await self._json(what, "GET", _clients_path(None), query=filters)
        else:
            listing = await self._json(what, "GET", _clients_path(namespace), query=filters)
        return list(listing.get("items", []))

    async def list_issuers(self) -> list[JSON]:
        """Every ClusterRaidiamIssuer."""
        listing = await self._json("listing ClusterRaidiamIssuers", "GET", _issuer_path())
        return list(listing.get("items", []))

    async def read_issuer(self, name: str) -> JSON | None:
        """One ClusterRaidiamIssuer (for `raidiam-operator check`, with the user's rights)."""
        return await self._read(f"reading ClusterRaidiamIssuer {name}", _issuer_path(name))

    async def patch_issuer_status(self, name: str, status: JSON) -> None:
        try:
            await self._call(
                f"patching the status of ClusterRaidiamIssuer {name}",
                "PATCH",
                _issuer_path(name) + "/status",
                body={"status": status},
                content_type=_MERGE_PATCH,
            )
        except ObjectNotFound:  # deleted meanwhile
            return

    async def read_namespace(self, name: str) -> JSON | None:
        """A Namespace, for its labels (a ClusterRaidiamIssuer's namespaceSelector)."""
        return await self._read(f"reading Namespace {name}", f"/api/v1/namespaces/{_quoted(name)}")

    async def read_client(self, namespace: str, name: str) -> JSON | None:
        return await self._read(
            f"reading RaidiamClient {namespace}/{name}", _clients_path(namespace, name)
        )

    async def annotate_client(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        await self._call(
            f"annotating RaidiamClient {namespace}/{name}",
            "PATCH",
            _clients_path(namespace, name),
            body={"metadata": {"annotations": annotations}},
            content_type=_MERGE_PATCH,
        )

    async def read_lease(self, namespace: str, name: str) -> JSON | None:
        return await self._read(f"reading Lease {namespace}/{name}", _lease_path(namespace, name))

    async def create_lease(self, namespace: str, body: JSON) -> JSON:
        return await self._json(
            f"creating Lease {namespace}/{body['metadata']['name']}",
            "POST",
            _lease_path(namespace),
            body=body,
        )

    async def replace_lease(self, namespace: str, name: str, body: JSON) -> JSON:
        return await self._replace(
            f"replacing Lease {namespace}/{name}", _lease_path(namespace, name), body
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def listing_choice(
        self, namespace: str | None, *, attempts: int = 3, pause: float = 1.0
    ) -> ListingChoice:
        """How kopf is to list, from `probe_streaming_lists` in `namespace`; asked up to
        `attempts` times, `pause` seconds apart, while the answer is not settled (a busy API
        server, or one whose watch cache is still filling after a restart)."""
        choice = listing_choice(await self.probe_streaming_lists(namespace))
        for _ in range(attempts - 1):
            if choice.settled:
                break
            await asyncio.sleep(pause)
            choice = listing_choice(await self.probe_streaming_lists(namespace))
        return choice

    async def probe_streaming_lists(self, namespace: str | None) -> StreamingListProbe:
        """Ask the API server once for a streaming list of RaidiamClients (`sendInitialEvents`)
        that matches nothing, in `namespace` (None: in all of them), and say what it answered.

        Never raises: a probe that fails says how, and the caller lists in pages."""
        query = {
            "watch": "true",
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
            # Nothing has a label and lacks it: the answer is the bookmark alone, however many
            # clients there are.
            "labelSelector": f"{_PROBE_LABEL},!{_PROBE_LABEL}",
            "timeoutSeconds": str(_PROBE_SECONDS),
        }

        def probe() -> StreamingListProbe:
            try:
                response = api_request(
                    self._api_client,
                    "GET",
                    _clients_path(namespace),
                    query=query,
                    timeout=(REQUEST_TIMEOUT[0], _PROBE_SECONDS + 10.0),
                    stream=True,
                )
            except ApiException as refused:
                return StreamingListProbe(status=refused.status)
            try:
                for line in _lines(response):
                    if ends_initial_events(json.loads(line)):
                        return StreamingListProbe(status=response.status, initial_events_ended=True)
                return StreamingListProbe(status=response.status)
            finally:
                # Closed, not released: the rest of a watch must not be read by the next caller.
                response.close()

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, probe)
        except Exception as error:  # unreachable, reset, unreadable: the caller lists in pages
            status = getattr(error, "status", None)
            return StreamingListProbe(
                status=int(status) if status else None, failure=type(error).__name__
            )

    def secret_metadata_watch(
        self, namespaces: tuple[str, ...], on_event: SecretEvent
    ) -> SecretMetadataWatch:
        """A `SecretMetadataWatch` over this gateway's connection, reporting to the running loop."""
        return SecretMetadataWatch(
            self._api_client, namespaces, on_event, asyncio.get_running_loop()
        )

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: JSON | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API request in the thread pool, its body read; `what` names it in errors."""
        request = functools.partial(
            api_request,
            self._api_client,
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
        )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, request)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise translated(error, what=what, now=self._clock) from None

    async def _json(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: JSON | None = None,
    ) -> JSON:
        response = await self._call(what, method, path, query=query, body=body)
        return json.loads(response.data)  # type: ignore[no-any-return]

    async def _read(self, what: str, path: str) -> JSON | None:
        """A read, where 404 means the object is not there."""
        try:
            return await self._json(what, "GET", path)
        except ObjectNotFound:
            return None

    async def _replace(self, what: str, path: str, body: JSON) -> JSON:
        """A replace, where 404 means the object changed under us, like 409: read it again."""
        try:
            return await self._json(what, "PUT", path, body=body)
        except ObjectNotFound as error:
            raise Conflict(f"{what} failed: it is gone", status_code=error.status_code) from None

    async def read_secret(self, namespace: str, name: str) -> JSON | None:
        return await self._read(
            f"reading Secret {namespace}/{name}", _core_path(namespace, "secrets", name)
        )

    async def read_config_map(self, namespace: str, name: str) -> JSON | None:
        return await self._read(
            f"reading ConfigMap {namespace}/{name}", _core_path(namespace, "configmaps", name)
        )

    async def create_secret(self, namespace: str, body: JSON) -> JSON:
        return await self._json(
            f"creating Secret {namespace}/{body['metadata']['name']}",
            "POST",
            _core_path(namespace, "secrets"),
            body=body,
        )

    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON:
        return await self._replace(
            f"replacing Secret {namespace}/{name}", _core_path(namespace, "secrets", name), body
        )

    async def patch_status(self, owner: Owner, status: JSON) -> None:
        try:
            await self._call(
                f"patching the status of RaidiamClient {owner.namespace}/{owner.name}",
                "PATCH",
                _clients_path(owner.namespace, owner.name) + "/status",
                body={"status": status},
                content_type=_MERGE_PATCH,
            )
        except ObjectNotFound:  # deleted meanwhile; nothing to report on
            return

    async def patch_registration(self, namespace: str, name: str, patch: JSON) -> None:
        """A merge patch of a RaidiamRegistration's metadata (its finalizer); with
        `metadata.resourceVersion` in `patch`, a `Conflict` if it changed meanwhile."""
        try:
            await self._call(
                f"patching RaidiamRegistration {namespace}/{name}",
                "PATCH",
                _registrations_path(namespace, name),
                body=patch,
                content_type=_MERGE_PATCH,
            )
        except ObjectNotFound:  # gone meanwhile: nothing left to hold
            return

    async def patch_registration_status(self, owner: Owner, status: JSON) -> None:
        try:
            await self._call(
                f"patching the status of RaidiamRegistration {owner.namespace}/{owner.name}",
                "PATCH",
                _registrations_path(owner.namespace, owner.name) + "/status",
                body={"status": status},
                content_type=_MERGE_PATCH,
            )
        except ObjectNotFound:
            return

    async def post_event(self, owner: Owner, *, warning: bool, reason: str, message: str) -> None:
        now = rfc3339(self._clock())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": owner.kind,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
            },
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": cut_bytes(message, EVENT_NOTE_LIMIT),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "raidiam-token-operator"},
            "reportingComponent": "raidiam.io/token-operator",
            "reportingInstance": self._instance,
        }
        try:
            await self._call(
                f"posting Event {reason} for {owner.namespace}/{owner.name}",
                "POST",
                _core_path(owner.namespace, "events"),
                body=body,
            )
        except (KubernetesError, KubernetesUnavailable) as error:
            # Events are best effort: a failure to report must never fail the refresh itself.
            logger.warning("could not post an Event: %s", error.message)
