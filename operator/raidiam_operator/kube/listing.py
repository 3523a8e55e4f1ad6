"""How kopf is to list: streaming where the API server was seen to stream, else in pages."""

from __future__ import annotations

from dataclasses import dataclass

from raidiam_operator.kube.api import JSON

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
