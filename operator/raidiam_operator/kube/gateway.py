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
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from urllib3.util.retry import Retry

from raidiam_operator.core.errors import (
    ConfigurationError,
    Conflict,
    Forbidden,
    KubernetesError,
    KubernetesUnavailable,
    ObjectNotFound,
    RaidiamOperatorError,
)
from raidiam_operator.core.issuers import ISSUER_PLURAL
from raidiam_operator.core.registration_spec import REGISTRATION_PLURAL
from raidiam_operator.core.spec import GROUP, PLURAL, VERSION, Owner
from raidiam_operator.core.texts import EVENT_NOTE_LIMIT, cut_bytes
from raidiam_operator.core.times import Clock, parse_retry_after, rfc3339, utc_now

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
#: (connect, read) seconds for every API call
REQUEST_TIMEOUT = (5.0, 15.0)
#: how the operator patches its objects: a JSON merge patch (RFC 7386), as kubectl patch --type
#: merge; custom resources have no strategic merge
_MERGE_PATCH = "application/merge-patch+json"


def api_request(
    api_client: kubernetes.client.ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    body: JSON | None = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    timeout: tuple[float, float] = REQUEST_TIMEOUT,
    stream: bool = False,
) -> Any:
    """One request to the API server through the official client's `ApiClient`: its kubeconfig
    or in-cluster credentials, TLS, connection pool and retries. Blocking; run it in a thread.

    The client's typed API classes are not used: CoreV1Api alone builds validators for hundreds
    of methods on first use, about 21 MiB that the operator's dozen calls never need
    (docs/benchmarks.md). Returns urllib3's response with its body read, or unread with
    `stream`; raises `ApiException` for any status outside 2xx, as the typed methods do."""
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    request = api_client.param_serialize(
        method,
        path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    answer = api_client.call_api(*request, _request_timeout=timeout)
    if not 200 <= answer.status <= 299:
        answer.read()
        raise ApiException.from_response(http_resp=answer, body=None, data=None)
    response = answer.response
    if not stream:
        # Read here in the worker: read on the event loop it would block the loop, and left
        # unread it keeps its connection out of the pool, so every call paid a new TLS
        # handshake with the API server. Reading caches it in `.data`.
        _ = response.data
    return response


def _quoted(name: str) -> str:
    return quote(name, safe="")


def _core_path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{_quoted(namespace)}/{plural}"
    return path if name is None else f"{path}/{_quoted(name)}"


def _clients_path(namespace: str | None, name: str | None = None) -> str:
    where = "" if namespace is None else f"/namespaces/{_quoted(namespace)}"
    path = f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}"
    return path if name is None else f"{path}/{_quoted(name)}"


def _issuer_path(name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/{ISSUER_PLURAL}"
    return path if name is None else f"{path}/{_quoted(name)}"


def _registrations_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{_quoted(namespace)}/{REGISTRATION_PLURAL}/{_quoted(name)}"


def _lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{_quoted(namespace)}/leases"
    return path if name is None else f"{path}/{_quoted(name)}"


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

    async def read_registration(self, namespace: str, name: str) -> JSON | None:
        """A RaidiamRegistration, for the clients that take their client id from it."""
        return await self._read(
            f"reading RaidiamRegistration {namespace}/{name}", _registrations_path(namespace, name)
        )


# -- how kopf lists: streaming when the API server can ------------------------------------------

#: a label no object is given; the probe selects objects that have it and lack it
_PROBE_LABEL = "raidiam.io/streaming-list-probe"
#: the probe's watch ends after this long (the server's side); its bookmark comes at once
_PROBE_SECONDS = 1
#: the annotation that marks the bookmark after a streaming list's last object
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class StreamingListProbe:
    """What the API server answered when asked for a streaming list."""

    #: the HTTP status, or None when there was no answer
    status: int | None
    #: the bookmark that ends the initial events arrived
    initial_events_ended: bool = False
    #: why there was no answer (an exception's name; never a body)
    failure: str = ""


@dataclass(frozen=True)
class ListingChoice:
    """How kopf is to list RaidiamClients (and ClusterRaidiamIssuers), and why."""

    streaming: bool
    why: str
    #: asking again would get the same answer (False: the API server was busy or not there)
    settled: bool = True


def listing_choice(probe: StreamingListProbe) -> ListingChoice:
    """Stream the initial list (`sendInitialEvents`) only where the API server was seen to do it.

    A list in pages needs a `continue` token from one page to the next, and the API server keeps
    one for about 5 minutes (etcd compaction); a listing that takes longer fails with HTTP 410,
    which stops kopf (issue 13). A streaming list has no tokens. Whether the server streams
    depends on the WatchList feature gate (on by default in 1.32 and 1.34+, off in 1.33, and an
    admin can turn it off), so the server is asked, not its version: 200 with the bookmark that
    ends the initial events means it does. It rejects the parameter with 4xx when the gate is
    off; anything else, a probe that could not tell, also means pages, which always work."""
    if probe.status == 200 and probe.initial_events_ended:
        return ListingChoice(True, "the API server streams lists (WatchList)")
    if probe.status is None:
        return ListingChoice(
            False, f"probing for streaming lists failed ({probe.failure})", settled=False
        )
    if probe.status in (400, 422):
        return ListingChoice(
            False, f"the API server refuses streaming lists (HTTP {probe.status}; WatchList is off)"
        )
    if probe.status == 200:
        return ListingChoice(
            False, "the API server answered without the bookmark that ends a streaming list"
        )
    return ListingChoice(
        False,
        f"probing for streaming lists was answered HTTP {probe.status}, which does not tell",
        # Busy or starting (a new CRD's or a restarted API server's watch cache answers 429
        # until it is filled): ask again. A refusal such as 403 stays.
        settled=not (probe.status == 429 or probe.status >= 500),
    )


def ends_initial_events(event: JSON) -> bool:
    """Whether a watch event is the bookmark after a streaming list's last object."""
    if event.get("type") != "BOOKMARK":
        return False
    metadata = (event.get("object") or {}).get("metadata") or {}
    return (metadata.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true"


def translated(error: Exception, *, what: str, now: Clock) -> RaidiamOperatorError:
    """The official client's exception as an error of our tree. The message names the call and
    the HTTP status, never the body: it may quote the object, and a token Secret is one."""
    if not isinstance(error, ApiException) or not error.status:
        return KubernetesUnavailable(
            f"{what} failed: the API server could not be reached ({type(error).__name__})"
        )
    status = int(error.status)
    answered = f"{what} failed: HTTP {status} {error.reason or ''}".rstrip()
    if status == 404:
        return ObjectNotFound(answered, status_code=status)
    if status == 409:
        return Conflict(f"{answered}: it changed since it was read", status_code=status)
    if status == 403 and "NamespaceTerminating" in _cause_reasons(error):
        # Not a missing permission: the namespace is going away, with everything in it.
        return Forbidden(f"{what} failed: the namespace is being deleted", status_code=status)
    if status == 403:
        return Forbidden(
            f"{answered}: the credentials in use may not do this; check their RBAC",
            status_code=status,
        )
    if status == 429 or status >= 500:
        headers = error.headers or {}
        return KubernetesUnavailable(
            answered, retry_after=parse_retry_after(headers.get("Retry-After"), now=now())
        )
    return KubernetesError(answered, status_code=status)


def _cause_reasons(error: ApiException) -> set[str]:
    """The machine-readable reasons of a refusal (`details.causes[].reason` of the Status the
    API server answered), read without quoting anything else of the body."""
    try:
        details = json.loads(error.body or "{}").get("details") or {}
        return {str(cause.get("reason")) for cause in details.get("causes") or []}
    except (ValueError, AttributeError, TypeError):
        return set()


# -- Secrets, as metadata only ------------------------------------------------------------------

#: a Secret as the watch delivers it: ADDED, MODIFIED or DELETED, namespace, name, resourceVersion
SecretEvent = Callable[[str, str, str, str], None]
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#: Secrets per list page: metadata only, so a page is small whatever the Secrets hold
_PAGE = 500
#: a watch request ends after this long (the server's side), and is started again
_WATCH_SECONDS = 300
#: the longest pause before listing Secrets again after a failure
_RELIST_PAUSE_CAP = 5.0


def relist_pause(failures: int) -> float:
    """Seconds to wait before listing again after `failures` failures in a row.

    Doubling from 0.5 s, capped at a few seconds: a failed list is one cheap request, and the
    usual cause is an API server restart, after which a token Secret deleted or changed must be
    noticed at once. A longer cap left the watch down for up to 30 s after the API server was
    back (the fault suite's restart case)."""
    return min(_RELIST_PAUSE_CAP, 0.5 * 2.0 ** max(0, failures - 1))


class SecretMetadataWatch:
    """Every Secret in the served namespaces, as metadata only (PartialObjectMetadata).

    The operator must notice at once when a Secret some RaidiamClient names changes, and whether
    a token Secret's name is already taken; it needs the content only of the few Secrets a client
    names, and reads those itself. Watching whole Secrets would pass every byte of every Secret
    in the cluster through the operator (Helm keeps each release's manifests in one), so it asks
    the API server for metadata only, as cert-manager does for the Secrets it does not own
    (design/20221205-memory-management.md). What it keeps is a name and a resourceVersion per
    Secret.

    It runs in its own thread (one long request per namespace, or one for all of them) and hands
    each change to `on_event` on the event loop. After the first complete listing, `synced` is
    set; from then on `resource_version(namespace, name)` is None exactly when no such Secret
    exists (as far as the watch has heard).
    """

    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespaces: tuple[str, ...],
        on_event: SecretEvent,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._api_client = api_client
        self._namespaces: tuple[str | None, ...] = namespaces or (None,)
        self._on_event = on_event
        self._loop = loop
        self._known: dict[tuple[str, str], str] = {}
        self._synced_scopes: set[str | None] = set()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def synced(self) -> bool:
        return len(self._synced_scopes) == len(self._namespaces)

    def resource_version(self, namespace: str, name: str) -> str | None:
        return self._known.get((namespace, name))

    def start(self) -> None:
        for scope in self._namespaces:
            thread = threading.Thread(
                target=self._run, args=(scope,), name=f"secret-watch {scope or '*'}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()

    def _run(self, scope: str | None) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                version: str | None = self._list(scope)
                failures = 0
                while not self._stopping.is_set() and version is not None:
                    version = self._watch(scope, version)
            except Exception as error:  # the API server went away; list again after a pause
                failures += 1
                status = getattr(error, "status", None)
                logger.warning(
                    "watching Secrets%s failed (%s); listing again",
                    f" in {scope}" if scope else "",
                    f"HTTP {status}" if status else type(error).__name__,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                self._stopping.wait(relist_pause(failures))

    def _list(self, scope: str | None) -> str:
        """List every Secret's metadata, page by page; report what changed since we last knew."""
        seen: dict[tuple[str, str], str] = {}
        token: str | None = None
        version = ""
        while True:
            query = {"limit": str(_PAGE)}
            if token:
                query["continue"] = token
            page = json.loads(self._request(scope, query, accept=_METADATA_LIST).data)
            for item in page.get("items") or []:
                metadata = item.get("metadata") or {}
                seen[(metadata["namespace"], metadata["name"])] = metadata["resourceVersion"]
            token = (page.get("metadata") or {}).get("continue")
            version = str((page.get("metadata") or {}).get("resourceVersion", version))
            if not token:
                break
        in_scope = [k for k in self._known if scope is None or k[0] == scope]
        for key in in_scope:
            if key not in seen:
                self._deliver("DELETED", key, "")
        for key, resource_version in seen.items():
            if self._known.get(key) != resource_version:
                self._deliver("ADDED", key, resource_version)
        self._synced_scopes.add(scope)
        return version

    def _watch(self, scope: str | None, version: str) -> str | None:
        """Follow changes from `version`; the version to go on from, or None to list again."""
        response = self._request(
            scope,
            {
                "watch": "true",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(_WATCH_SECONDS),
            },
            accept=_METADATA_WATCH,
            timeout=(REQUEST_TIMEOUT[0], _WATCH_SECONDS + 30),
            stream=True,
        )
        try:
            for line in _lines(response):
                if self._stopping.is_set():
                    return None
                event = json.loads(line)
                kind, item = event.get("type"), event.get("object") or {}
                metadata = item.get("metadata") or {}
                if kind == "ERROR":
                    return None  # 410 Gone and the like: our version is too old
                version = metadata.get("resourceVersion", version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._deliver(kind, (metadata["namespace"], metadata["name"]), version)
        finally:
            response.release_conn()
        return version

    def _request(
        self,
        scope: str | None,
        query: Mapping[str, str],
        *,
        accept: str,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
        stream: bool = False,
    ) -> Any:
        path = "/api/v1/secrets" if scope is None else _core_path(scope, "secrets")
        return api_request(
            self._api_client,
            "GET",
            path,
            query=query,
            accept=accept,
            timeout=timeout,
            stream=stream,
        )

    def _deliver(self, kind: str, key: tuple[str, str], resource_version: str) -> None:
        if kind == "DELETED":
            self._known.pop(key, None)
        else:
            self._known[key] = resource_version
        self._loop.call_soon_threadsafe(self._on_event, kind, key[0], key[1], resource_version)


def _lines(response: Any) -> Iterator[bytes]:
    """The newline-separated JSON events of a watch response, as they arrive."""
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
