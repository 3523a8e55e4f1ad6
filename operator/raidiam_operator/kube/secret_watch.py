"""Every Secret in the served namespaces, watched as metadata only, in a thread of its own."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes

from raidiam_operator.kube.api import REQUEST_TIMEOUT, api_request, core_path, watch_lines

logger = logging.getLogger(__name__)

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
    noticed at once: a longer cap leaves the watch down long after the API server is back (the
    fault suite's restart case)."""
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
            for line in watch_lines(response):
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
        path = "/api/v1/secrets" if scope is None else core_path(scope, "secrets")
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
