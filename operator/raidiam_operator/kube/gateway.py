"""The only module that talks to the Kubernetes API on the operator's behalf.

It reads the Secrets and ConfigMaps a RaidiamClient names, writes its token Secret, patches its
status and posts Events. Every call is scoped to the RaidiamClient's own namespace: there is no
method that takes a namespace from anywhere else than the object being reconciled.

The official client is synchronous; calls run in a small thread pool so they never block the
event loop. Responses are read as raw JSON (no model objects): cheaper, and what we need.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.util.retry import Retry

from raidiam_operator.core.spec import GROUP, KIND, PLURAL, VERSION, Owner
from raidiam_operator.core.times import Clock, rfc3339, utc_now

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
T = TypeVar("T")
#: (connect, read) seconds for every API call
REQUEST_TIMEOUT = (5.0, 15.0)


class ConflictError(Exception):
    """The object changed since we read it (HTTP 409); read again and retry."""


class KubeGateway(Protocol):
    async def read_secret(self, namespace: str, name: str) -> JSON | None: ...
    async def read_config_map(self, namespace: str, name: str) -> JSON | None: ...
    async def create_secret(self, namespace: str, body: JSON) -> JSON: ...
    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON: ...
    async def patch_status(self, owner: Owner, status: JSON) -> None: ...
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
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._coordination = kubernetes.client.CoordinationV1Api(api_client)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube-api")
        self._clock = clock
        self._instance = reporting_instance

    @classmethod
    def from_environment(cls, **kwargs: Any) -> KubernetesGateway:
        """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=configuration)
        threads = int(kwargs.get("threads", 16))
        configuration.connection_pool_maxsize = threads
        # urllib3 retries a GET or PUT that timed out three more times by default, so a call to an
        # API server whose etcd is down held a thread for a minute instead of REQUEST_TIMEOUT.
        # Refused connections are still retried at once; the engine retries everything else.
        configuration.retries = Retry(total=2, connect=2, read=0, status=0, redirect=0)
        return cls(kubernetes.client.ApiClient(configuration), **kwargs)

    @staticmethod
    def current_namespace() -> str:
        """The namespace of the kubeconfig's current context (or the pod's), else "default"."""
        try:
            _, context = kubernetes.config.list_kube_config_contexts()
            namespace = (context or {}).get("context", {}).get("namespace")
            if namespace:
                return str(namespace)
        except (kubernetes.config.ConfigException, OSError):
            pass
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
                return file.read().strip() or "default"
        except OSError:
            return "default"

    async def list_clients(self, namespace: str | None) -> list[JSON]:
        """RaidiamClients in one namespace, or in all of them."""
        if namespace is None:
            listing = await self._json(
                self._custom.list_cluster_custom_object, GROUP, VERSION, PLURAL
            )
        else:
            listing = await self._json(
                self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL
            )
        return list(listing.get("items", []))

    async def annotate_client(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        await self._call(
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": annotations}},
            _preload_content=False,
        )

    async def read_lease(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self._json(self._coordination.read_namespaced_lease, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, body: JSON) -> JSON:
        try:
            return await self._json(self._coordination.create_namespaced_lease, namespace, body)
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(
                    f"Lease {namespace}/{body['metadata']['name']} exists"
                ) from None
            raise

    async def replace_lease(self, namespace: str, name: str, body: JSON) -> JSON:
        try:
            return await self._json(
                self._coordination.replace_namespaced_lease, name, namespace, body
            )
        except ApiException as error:
            if error.status in (404, 409):
                raise ConflictError(f"Lease {namespace}/{name} changed") from None
            raise

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Without a timeout, a call to an API server whose etcd is down blocks a worker thread for
        # a minute; bounded calls fail fast and the engine retries.
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)

        def call() -> Any:
            response = function(*args, **kwargs)
            if kwargs.get("_preload_content") is False:
                # Read the body here in the worker: read on the event loop it would block the
                # loop, and left unread it keeps its connection out of the pool, so every call
                # paid a new TLS handshake with the API server. Reading caches it in `.data`.
                _ = response.data
            return response

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)

    async def _json(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> JSON:
        response = await self._call(function, *args, _preload_content=False, **kwargs)
        return json.loads(response.data)  # type: ignore[no-any-return]

    async def read_secret(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self._json(self._core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def read_config_map(self, namespace: str, name: str) -> JSON | None:
        try:
            return await self._json(self._core.read_namespaced_config_map, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def create_secret(self, namespace: str, body: JSON) -> JSON:
        try:
            return await self._json(self._core.create_namespaced_secret, namespace, body)
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(
                    f"Secret {namespace}/{body['metadata']['name']} already exists"
                ) from None
            raise

    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON:
        try:
            return await self._json(self._core.replace_namespaced_secret, name, namespace, body)
        except ApiException as error:
            if error.status in (404, 409):
                raise ConflictError(
                    f"Secret {namespace}/{name} changed while we wrote it"
                ) from None
            raise

    async def patch_status(self, owner: Owner, status: JSON) -> None:
        try:
            await self._call(
                self._custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                owner.namespace,
                PLURAL,
                owner.name,
                {"status": status},
                _preload_content=False,
            )
        except ApiException as error:
            if error.status == 404:  # deleted meanwhile; nothing to report on
                return
            raise

    async def post_event(self, owner: Owner, *, warning: bool, reason: str, message: str) -> None:
        now = rfc3339(self._clock())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
            },
            "type": "Warning" if warning else "Normal",
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "raidiam-token-operator"},
            "reportingComponent": "raidiam.io/token-operator",
            "reportingInstance": self._instance,
        }
        try:
            await self._call(
                self._core.create_namespaced_event, owner.namespace, body, _preload_content=False
            )
        except ApiException as error:
            # Events are best effort: a failure to report must never fail the refresh itself.
            logger.warning(
                "could not post event %s for %s/%s: HTTP %s",
                reason,
                owner.namespace,
                owner.name,
                error.status,
            )
