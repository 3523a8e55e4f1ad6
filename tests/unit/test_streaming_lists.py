"""kopf streams its initial lists only where the API server was seen to stream them.

A paged list needs `continue` tokens, which expire after about 5 minutes; one that took longer
stopped kopf (issue 13). Whether the server streams depends on a feature gate, not only on its
version, so the operator asks once at start-up; these are the answers it may get, served by a
fake API server over HTTP, and the choice each leads to.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import kubernetes
import pytest

from raidiam_operator.kube.gateway import KubernetesGateway
from raidiam_operator.kube.listing import StreamingListProbe, ends_initial_events, listing_choice

BOOKMARK = {
    "type": "BOOKMARK",
    "object": {
        "apiVersion": "raidiam.io/v1alpha1",
        "kind": "RaidiamClient",
        "metadata": {
            "resourceVersion": "4711",
            "annotations": {"k8s.io/initial-events-end": "true"},
        },
    },
}
REFUSAL = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": 'ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: Forbidden: '
    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
    "reason": "Invalid",
    "code": 422,
}


# -- the choice ---------------------------------------------------------------------------------


def test_a_server_that_streams_and_ends_with_the_bookmark_is_listed_as_a_stream() -> None:
    choice = listing_choice(StreamingListProbe(status=200, initial_events_ended=True))
    assert choice.streaming
    assert "streams" in choice.why


@pytest.mark.parametrize("status", [400, 422])
def test_a_server_that_refuses_send_initial_events_is_listed_in_pages(status: int) -> None:
    choice = listing_choice(StreamingListProbe(status=status))
    assert not choice.streaming
    assert f"HTTP {status}" in choice.why
    assert "WatchList is off" in choice.why


def test_a_probe_the_operator_may_not_make_lists_in_pages_without_blaming_the_gate() -> None:
    choice = listing_choice(StreamingListProbe(status=403))
    assert not choice.streaming
    assert "HTTP 403" in choice.why
    assert "WatchList" not in choice.why
    assert choice.settled


def test_an_unreachable_api_server_lists_in_pages_and_says_why() -> None:
    choice = listing_choice(StreamingListProbe(status=None, failure="MaxRetryError"))
    assert not choice.streaming
    assert "MaxRetryError" in choice.why
    assert not choice.settled


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_busy_api_server_is_asked_again_before_listing_in_pages(status: int) -> None:
    # A new CRD's or a restarted API server's watch cache answers 429 until it is filled.
    choice = listing_choice(StreamingListProbe(status=status))
    assert not choice.streaming
    assert not choice.settled


@pytest.mark.parametrize("status", [200, 400, 422])
def test_a_clear_answer_is_not_asked_again(status: int) -> None:
    assert listing_choice(StreamingListProbe(status=status, initial_events_ended=True)).settled
    assert listing_choice(StreamingListProbe(status=status)).settled


def test_a_watch_without_the_closing_bookmark_is_listed_in_pages() -> None:
    # An API server that ignores sendInitialEvents answers a plain watch, which ends silently.
    assert not listing_choice(StreamingListProbe(status=200)).streaming


def test_only_a_bookmark_annotated_as_the_end_of_the_initial_events_ends_them() -> None:
    assert ends_initial_events(BOOKMARK)
    plain = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "4711"}}}
    assert not ends_initial_events(plain)
    assert not ends_initial_events({"type": "ADDED", "object": BOOKMARK["object"]})


# -- the probe, against a fake API server --------------------------------------------------------


@dataclass
class FakeApiServer:
    """Answers every request with `status` and `events` (newline-separated JSON), then keeps the
    connection open for `linger` seconds, as a watch does until its timeout. While `first` holds
    statuses, the next request is answered with the first of them instead, and no body."""

    status: int = 200
    events: list[dict[str, object]] = field(default_factory=list)
    body: dict[str, object] | None = None
    linger: float = 0.0
    first: list[int] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeApiServer, KubernetesGateway]]:
    fake = FakeApiServer()

    class Handler(BaseHTTPRequestHandler):
        # Chunked, as the API server streams a watch: each event arrives as it is sent.
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            fake.requests.append(self.path)
            if fake.first:
                self.send_response(fake.first.pop(0))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if fake.body is not None:
                self._chunk(json.dumps(fake.body).encode())
            for event in fake.events:
                self._chunk(json.dumps(event).encode() + b"\n")
            time.sleep(fake.linger)
            self._chunk(b"")
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    gateway = _gateway(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield fake, gateway
    finally:
        gateway.close()
        server.shutdown()
        server.server_close()


def _gateway(host: str) -> KubernetesGateway:
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    configuration.retries = 0
    return KubernetesGateway(kubernetes.client.ApiClient(configuration))


async def test_the_probe_asks_for_a_streaming_list_that_matches_nothing_in_a_served_namespace(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    fake.events = [BOOKMARK]
    await gateway.probe_streaming_lists("payments")
    [request] = fake.requests
    path, query = urlsplit(request).path, parse_qs(urlsplit(request).query)
    # A namespaced install may watch only where it serves.
    assert path == "/apis/raidiam.io/v1alpha1/namespaces/payments/raidiamclients"
    assert query["watch"] == ["true"]
    assert query["sendInitialEvents"] == ["true"]
    assert query["resourceVersionMatch"] == ["NotOlderThan"]
    assert query["allowWatchBookmarks"] == ["true"]
    assert query["timeoutSeconds"] == ["1"]
    # Having a label and lacking it: no object matches, however many clients there are.
    [selector] = query["labelSelector"]
    present, absent = selector.split(",")
    assert absent == f"!{present}"


async def test_the_probe_watches_cluster_wide_when_the_operator_serves_every_namespace(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    fake.events = [BOOKMARK]
    await gateway.probe_streaming_lists(None)
    assert urlsplit(fake.requests[0]).path == "/apis/raidiam.io/v1alpha1/raidiamclients"


async def test_a_streaming_answer_is_taken_at_the_bookmark_without_waiting_for_the_timeout(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    fake.events, fake.linger = [BOOKMARK], 3.0
    started = time.monotonic()
    probe = await gateway.probe_streaming_lists("payments")
    assert probe == StreamingListProbe(status=200, initial_events_ended=True)
    assert time.monotonic() - started < 2.0
    assert listing_choice(probe).streaming


@pytest.mark.parametrize("status", [400, 422])
async def test_a_refusal_of_send_initial_events_leads_to_pages(
    fake_api: tuple[FakeApiServer, KubernetesGateway], status: int
) -> None:
    fake, gateway = fake_api
    fake.status, fake.body = status, {**REFUSAL, "code": status}
    probe = await gateway.probe_streaming_lists("payments")
    assert probe == StreamingListProbe(status=status)
    assert not listing_choice(probe).streaming


async def test_a_forbidden_probe_leads_to_pages(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    fake.status, fake.body = 403, {"kind": "Status", "reason": "Forbidden", "code": 403}
    probe = await gateway.probe_streaming_lists("payments")
    assert probe == StreamingListProbe(status=403)
    assert not listing_choice(probe).streaming


async def test_a_plain_watch_that_ends_without_the_bookmark_leads_to_pages(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    plain_bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    fake.events = [plain_bookmark]
    probe = await gateway.probe_streaming_lists("payments")
    assert probe == StreamingListProbe(status=200)
    assert not listing_choice(probe).streaming


async def test_an_api_server_that_cannot_be_reached_leads_to_pages_without_raising() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    gateway = _gateway(f"http://127.0.0.1:{port}")
    try:
        probe = await gateway.probe_streaming_lists("payments")
    finally:
        gateway.close()
    assert probe.status is None
    assert probe.failure
    assert not listing_choice(probe).streaming


async def test_an_api_server_busy_at_start_up_is_asked_again_and_then_streams(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    fake.first, fake.events = [503, 503], [BOOKMARK]
    choice = await gateway.listing_choice("payments", attempts=3, pause=0.01)
    assert choice.streaming
    assert len(fake.requests) == 3


async def test_an_api_server_busy_for_every_attempt_is_listed_in_pages(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    fake.status = 503
    choice = await gateway.listing_choice("payments", attempts=3, pause=0.01)
    assert not choice.streaming
    assert "HTTP 503" in choice.why
    assert len(fake.requests) == 3


async def test_a_refusal_is_taken_at_once(
    fake_api: tuple[FakeApiServer, KubernetesGateway],
) -> None:
    fake, gateway = fake_api
    fake.status, fake.body = 422, REFUSAL
    choice = await gateway.listing_choice("payments", attempts=3, pause=0.01)
    assert not choice.streaming
    assert len(fake.requests) == 1
