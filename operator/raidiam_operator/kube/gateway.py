"""The operator's reads and writes on the Kubernetes API, and the Protocol callers type against.

It reads the Secrets and ConfigMaps a RaidiamClient names, writes its token Secret, patches its
status and posts Events. Every call is scoped to the RaidiamClient's own namespace: there is no
method that takes a namespace from anywhere else than the object being reconciled.

The official client is synchronous; calls run in a small thread pool so they never block the
event loop. Responses are read as raw JSON (no model objects): cheaper, and what we need. Its
exceptions are translated once, in `kube.errors`, into the error tree of `core.errors`.
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

from raidiam_operator.core.errors import (
    Conflict,
    KubernetesError,
    KubernetesUnavailable,
    ObjectNotFound,
)
from raidiam_operator.core.spec import GROUP, VERSION, Owner
from raidiam_operator.core.texts import EVENT_NOTE_LIMIT, cut_bytes
from raidiam_operator.core.times import Clock, rfc3339, utc_now
from raidiam_operator.kube.api import (
    JSON,
    MERGE_PATCH,
    api_request,
    client_from_environment,
    clients_path,
    core_path,
    issuer_path,
    lease_path,
    namespace_path,
    registrations_path,
)
from raidiam_operator.kube.errors import translated
from raidiam_operator.kube.listing import (
    ListingChoice,
    StreamingListProbe,
    choose_listing,
    probe_streaming_lists,
)
from raidiam_operator.kube.secret_watch import SecretEvent, SecretMetadataWatch

logger = logging.getLogger(__name__)


class ClientKube(Protocol):
    """What the refresh engine reads and writes for a RaidiamClient: the Secrets, ConfigMaps and
    Namespace it names, its token Secret, its status and Events (`leader.FencedGateway` fences
    the writes)."""

    async def read_secret(self, namespace: str, name: str) -> JSON | None: ...
    async def read_config_map(self, namespace: str, name: str) -> JSON | None: ...
    async def create_secret(self, namespace: str, body: JSON) -> JSON: ...
    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON: ...
    async def patch_status(self, owner: Owner, status: JSON) -> None: ...
    async def read_namespace(self, name: str) -> JSON | None: ...
    async def post_event(
        self, owner: Owner, *, warning: bool, reason: str, message: str
    ) -> None: ...


class KubeGateway(ClientKube, Protocol):
    """Everything the operator and the command line do on the API server. Callers that need a
    part name a narrower Protocol: `ClientKube`, `leader.LeaseGateway`, and in `refresh`
    `InputReader`, `IssuerReader`, `IssuerGateway`, `RegistrationKube`."""

    async def list_clients(
        self, namespace: str | None, *, selector: str | None = None
    ) -> list[JSON]: ...
    async def list_issuers(self) -> list[JSON]: ...
    async def read_issuer(self, name: str) -> JSON | None: ...
    async def patch_issuer_status(self, name: str, status: JSON) -> None: ...
    async def read_client(self, namespace: str, name: str) -> JSON | None: ...
    async def annotate_client(
        self, namespace: str, name: str, annotations: dict[str, str]
    ) -> None: ...
    async def read_lease(self, namespace: str, name: str) -> JSON | None: ...
    async def create_lease(self, namespace: str, body: JSON) -> JSON: ...
    async def replace_lease(self, namespace: str, name: str, body: JSON) -> JSON: ...
    def close(self) -> None: ...
    async def listing_choice(
        self, namespace: str | None, *, attempts: int = 3, pause: float = 1.0
    ) -> ListingChoice: ...
    async def probe_streaming_lists(self, namespace: str | None) -> StreamingListProbe: ...
    def secret_metadata_watch(
        self, namespaces: tuple[str, ...], on_event: SecretEvent
    ) -> SecretMetadataWatch: ...
    async def patch_registration(self, namespace: str, name: str, patch: JSON) -> None: ...
    async def patch_registration_status(self, owner: Owner, status: JSON) -> None: ...
    async def list_registrations(
        self, namespace: str | None, *, selector: str | None = None
    ) -> list[JSON]: ...
    async def read_registration(self, namespace: str, name: str) -> JSON | None: ...
    async def annotate_registration(
        self, namespace: str, name: str, annotations: dict[str, str]
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
        """A gateway with the pod's credentials, else the kubeconfig's
        (`api.client_from_environment`), and a connection per thread.

        Raises `ConfigurationError` when there is no usable kubeconfig or context."""
        api_client = client_from_environment(
            kubeconfig=kubeconfig, context=context, pool_size=int(kwargs.get("threads", 16))
        )
        return cls(api_client, **kwargs)

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
            listing = await self._json(what, "GET", clients_path(None), query=filters)
        else:
            listing = await self._json(what, "GET", clients_path(namespace), query=filters)
        return list(listing.get("items", []))

    async def list_issuers(self) -> list[JSON]:
        """Every ClusterRaidiamIssuer."""
        listing = await self._json("listing ClusterRaidiamIssuers", "GET", issuer_path())
        return list(listing.get("items", []))

    async def read_issuer(self, name: str) -> JSON | None:
        """One ClusterRaidiamIssuer (for `raidiam-operator check`, with the user's rights)."""
        return await self._read(f"reading ClusterRaidiamIssuer {name}", issuer_path(name))

    async def patch_issuer_status(self, name: str, status: JSON) -> None:
        try:
            await self._call(
                f"patching the status of ClusterRaidiamIssuer {name}",
                "PATCH",
                issuer_path(name) + "/status",
                body={"status": status},
                content_type=MERGE_PATCH,
            )
        except ObjectNotFound:  # deleted meanwhile
            return

    async def read_namespace(self, name: str) -> JSON | None:
        """A Namespace, for its labels (a ClusterRaidiamIssuer's namespaceSelector)."""
        return await self._read(f"reading Namespace {name}", namespace_path(name))

    async def read_client(self, namespace: str, name: str) -> JSON | None:
        return await self._read(
            f"reading RaidiamClient {namespace}/{name}", clients_path(namespace, name)
        )

    async def annotate_client(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        await self._call(
            f"annotating RaidiamClient {namespace}/{name}",
            "PATCH",
            clients_path(namespace, name),
            body={"metadata": {"annotations": annotations}},
            content_type=MERGE_PATCH,
        )

    async def read_lease(self, namespace: str, name: str) -> JSON | None:
        return await self._read(f"reading Lease {namespace}/{name}", lease_path(namespace, name))

    async def create_lease(self, namespace: str, body: JSON) -> JSON:
        return await self._json(
            f"creating Lease {namespace}/{body['metadata']['name']}",
            "POST",
            lease_path(namespace),
            body=body,
        )

    async def replace_lease(self, namespace: str, name: str, body: JSON) -> JSON:
        return await self._replace(
            f"replacing Lease {namespace}/{name}", lease_path(namespace, name), body
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def listing_choice(
        self, namespace: str | None, *, attempts: int = 3, pause: float = 1.0
    ) -> ListingChoice:
        """How kopf is to list in `namespace` (None: in all of them), from this gateway's probe
        (`listing.choose_listing`)."""
        probe = functools.partial(self.probe_streaming_lists, namespace)
        return await choose_listing(probe, attempts=attempts, pause=pause)

    async def probe_streaming_lists(self, namespace: str | None) -> StreamingListProbe:
        """`listing.probe_streaming_lists` in the thread pool; never raises."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, probe_streaming_lists, self._api_client, namespace
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
            f"reading Secret {namespace}/{name}", core_path(namespace, "secrets", name)
        )

    async def read_config_map(self, namespace: str, name: str) -> JSON | None:
        return await self._read(
            f"reading ConfigMap {namespace}/{name}", core_path(namespace, "configmaps", name)
        )

    async def create_secret(self, namespace: str, body: JSON) -> JSON:
        return await self._json(
            f"creating Secret {namespace}/{body['metadata']['name']}",
            "POST",
            core_path(namespace, "secrets"),
            body=body,
        )

    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON:
        return await self._replace(
            f"replacing Secret {namespace}/{name}", core_path(namespace, "secrets", name), body
        )

    async def patch_status(self, owner: Owner, status: JSON) -> None:
        try:
            await self._call(
                f"patching the status of RaidiamClient {owner.namespace}/{owner.name}",
                "PATCH",
                clients_path(owner.namespace, owner.name) + "/status",
                body={"status": status},
                content_type=MERGE_PATCH,
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
                registrations_path(namespace, name),
                body=patch,
                content_type=MERGE_PATCH,
            )
        except ObjectNotFound:  # gone meanwhile: nothing left to hold
            return

    async def patch_registration_status(self, owner: Owner, status: JSON) -> None:
        try:
            await self._call(
                f"patching the status of RaidiamRegistration {owner.namespace}/{owner.name}",
                "PATCH",
                registrations_path(owner.namespace, owner.name) + "/status",
                body={"status": status},
                content_type=MERGE_PATCH,
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
                core_path(owner.namespace, "events"),
                body=body,
            )
        except (KubernetesError, KubernetesUnavailable) as error:
            # Events are best effort: a failure to report must never fail the refresh itself.
            logger.warning("could not post an Event: %s", error.message)

    # -- RaidiamRegistrations for the command line (status, describe, refresh) --

    async def list_registrations(
        self, namespace: str | None, *, selector: str | None = None
    ) -> list[JSON]:
        """RaidiamRegistrations in one namespace, or in all of them; `selector` as kubectl's."""
        where = "all namespaces" if namespace is None else f"namespace {namespace}"
        what = f"listing RaidiamRegistrations in {where}" + (
            f" with labels {selector}" if selector else ""
        )
        filters = {"labelSelector": selector} if selector else {}
        path = registrations_path(namespace)
        return list((await self._json(what, "GET", path, query=filters)).get("items", []))

    async def read_registration(self, namespace: str, name: str) -> JSON | None:
        return await self._read(
            f"reading RaidiamRegistration {namespace}/{name}",
            registrations_path(namespace, name),
        )

    async def annotate_registration(
        self, namespace: str, name: str, annotations: dict[str, str]
    ) -> None:
        """Unlike `patch_registration`, a registration that is not there is an error."""
        await self._call(
            f"annotating RaidiamRegistration {namespace}/{name}",
            "PATCH",
            registrations_path(namespace, name),
            body={"metadata": {"annotations": annotations}},
            content_type=MERGE_PATCH,
        )
