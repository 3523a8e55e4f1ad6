"""How kopf is to list: streaming where the API server was seen to stream, else in pages. One
probe asks the API server (`probe_streaming_lists`); `listing_choice` says what its answer means.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import kubernetes
from kubernetes.client.exceptions import ApiException

from raidiam_operator.kube.api import JSON, REQUEST_TIMEOUT, api_request, clients_path, watch_lines

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
    which stops kopf. A streaming list has no tokens. Whether the server streams
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


def probe_streaming_lists(
    api_client: kubernetes.client.ApiClient, namespace: str | None
) -> StreamingListProbe:
    """Ask the API server once for a streaming list of RaidiamClients (`sendInitialEvents`)
    that matches nothing, in `namespace` (None: in all of them), and say what it answered.
    Blocking; run it in a thread.

    Never raises: a probe that fails says how, and the caller lists in pages."""
    try:
        return _probe(api_client, namespace)
    except Exception as error:  # unreachable, reset, unreadable: the caller lists in pages
        status = getattr(error, "status", None)
        return StreamingListProbe(
            status=int(status) if status else None, failure=type(error).__name__
        )


def _probe(api_client: kubernetes.client.ApiClient, namespace: str | None) -> StreamingListProbe:
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
    try:
        response = api_request(
            api_client,
            "GET",
            clients_path(namespace),
            query=query,
            timeout=(REQUEST_TIMEOUT[0], _PROBE_SECONDS + 10.0),
            stream=True,
        )
    except ApiException as refused:
        return StreamingListProbe(status=refused.status)
    try:
        for line in watch_lines(response):
            if ends_initial_events(json.loads(line)):
                return StreamingListProbe(status=response.status, initial_events_ended=True)
        return StreamingListProbe(status=response.status)
    finally:
        # Closed, not released: the rest of a watch must not be read by the next caller.
        response.close()


async def choose_listing(
    probe: Callable[[], Awaitable[StreamingListProbe]], *, attempts: int = 3, pause: float = 1.0
) -> ListingChoice:
    """How kopf is to list, from what `probe` finds; asked up to `attempts` times, `pause`
    seconds apart, while the answer is not settled (a busy API server, or one whose watch cache
    is still filling after a restart)."""
    choice = listing_choice(await probe())
    for _ in range(attempts - 1):
        if choice.settled:
            break
        await asyncio.sleep(pause)
        choice = listing_choice(await probe())
    return choice
