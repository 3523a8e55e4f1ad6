"""The API server as the benchmark sees it: plain HTTPS with the admin certificate.

The harness talks HTTP directly (httpx) rather than through the official client: it has to create
thousands of objects quickly and follow a watch without competing with the operator for CPU.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

GROUP, VERSION, PLURAL = "raidiam.io", "v1alpha1", "raidiamclients"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"})
READ_VERBS = frozenset({"GET", "LIST"})
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def admin_ssl_context(kubeconfig: Path, workdir: Path) -> tuple[str, ssl.SSLContext]:
    """The server URL and a TLS context with the kubeconfig's CA and client certificate."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
        path = workdir / key.replace("-data", ".pem")
        path.write_bytes(base64.b64decode(cluster.get(key) or user.get(key)))
        path.chmod(0o600)
        paths[key] = path
    context = ssl.create_default_context(cafile=str(paths["certificate-authority-data"]))
    context.load_cert_chain(str(paths["client-certificate-data"]), str(paths["client-key-data"]))
    return str(cluster["server"]), context


def clients_path(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


class Kube:
    """A thin admin client for the harness."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.server, self.ssl = admin_ssl_context(kubeconfig, workdir)
        self.http = httpx.Client(
            base_url=self.server, verify=self.ssl, timeout=120.0, trust_env=False
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(method, path, json=body, params=params or None)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def create_namespace(self, name: str) -> None:
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        # The service account controller adds "default"; nothing here needs to wait for it.

    def delete_namespace(self, name: str, *, wait: float = 0.0) -> None:
        self.http.delete(f"/api/v1/namespaces/{name}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.http.get(f"/api/v1/namespaces/{name}").status_code == 404:
                return
            time.sleep(1.0)

    def create(self, path: str, body: Mapping[str, Any]) -> None:
        self.request("POST", path, dict(body))

    def create_many(
        self, path: str, bodies: Iterable[Mapping[str, Any]], *, concurrency: int = 32
    ) -> float:
        """POST every body with `concurrency` requests in flight; returns the seconds it took."""
        return asyncio.run(self._create_many(path, list(bodies), concurrency))

    async def _create_many(
        self, path: str, bodies: list[Mapping[str, Any]], concurrency: int
    ) -> float:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=self.server, verify=self.ssl, timeout=120.0, limits=limits, trust_env=False
        ) as client:
            queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
            for body in bodies:
                queue.put_nowait(body)

            async def worker() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    for attempt in range(5):
                        response = await client.post(path, json=body)
                        if response.status_code < 300 or response.status_code == 409:
                            break
                        if response.status_code not in (429, 500, 503, 504) or attempt == 4:
                            raise RuntimeError(
                                f"POST {path}: HTTP {response.status_code} {response.text[:300]}"
                            )
                        await asyncio.sleep(0.5 * (attempt + 1))

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.monotonic() - started

    def request_counts(self) -> Counter[tuple[str, str]]:
        """apiserver_request_total summed by (verb, resource[/subresource])."""
        text = self.http.get("/metrics").text
        counts: Counter[tuple[str, str]] = Counter()
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if not match:
                continue
            counts[_verb_and_resource(match.group("labels"))] += int(float(match.group("value")))
        return counts


def _verb_and_resource(labels_text: str) -> tuple[str, str]:
    """(verb, resource[/subresource]) from an apiserver metric sample's labels."""
    labels = dict(_LABEL.findall(labels_text))
    resource = labels.get("resource", "")
    if labels.get("subresource"):
        resource += "/" + labels["subresource"]
    return labels.get("verb", ""), resource


_DURATION = re.compile(
    r"^apiserver_request_duration_seconds_(?P<kind>sum|count)\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
)


def request_latency(kube: Kube) -> dict[tuple[str, str], tuple[float, float]]:
    """apiserver_request_duration_seconds (sum, count) by (verb, resource[/subresource])."""
    text = kube.http.get("/metrics").text
    totals: dict[tuple[str, str], list[float]] = {}
    for line in text.splitlines():
        match = _DURATION.match(line)
        if not match:
            continue
        entry = totals.setdefault(_verb_and_resource(match.group("labels")), [0.0, 0.0])
        entry[0 if match.group("kind") == "sum" else 1] += float(match.group("value"))
    return {key: (value[0], value[1]) for key, value in totals.items()}


def latency_delta(
    before: dict[tuple[str, str], tuple[float, float]],
    after: dict[tuple[str, str], tuple[float, float]],
) -> dict[str, float]:
    """Mean API server latency (ms) of each verb and resource between two snapshots."""
    result = {}
    for key, (total, count) in after.items():
        old_total, old_count = before.get(key, (0.0, 0.0))
        if count - old_count >= 10:
            result[f"{key[0]} {key[1]}"] = round(
                (total - old_total) / (count - old_count) * 1000, 1
            )
    return result


def count_delta(
    before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]
) -> dict[str, dict[str, int]]:
    """{'writes': {verb resource: n}, 'reads': {...}} between two snapshots, zero rows dropped."""
    result: dict[str, dict[str, int]] = {"writes": {}, "reads": {}}
    for (verb, resource), value in after.items():
        delta = value - before.get((verb, resource), 0)
        if delta <= 0:
            continue
        kind = "writes" if verb in WRITE_VERBS else "reads" if verb in READ_VERBS else None
        if kind:
            result[kind][f"{verb} {resource}"] = delta
    return result


# Resources the operator writes; anything else in a window (the API server's own leases) is
# reported but not charged to it.
OPERATOR_RESOURCES = ("secrets", "raidiamclients/status", "events")


def operator_writes(delta: Mapping[str, Mapping[str, int]]) -> int:
    return sum(
        n for key, n in delta["writes"].items() if key.split(" ", 1)[1] in OPERATOR_RESOURCES
    )


# What the operator reads; the garbage collector's owner look-ups (GET raidiamclients) and
# discovery (/api, /openapi) are not its own.
OPERATOR_READS = ("GET secrets", "LIST secrets", "GET configmaps", "LIST raidiamclients")


def operator_reads(delta: Mapping[str, Mapping[str, int]]) -> int:
    return sum(n for key, n in delta["reads"].items() if key in OPERATOR_READS)


# -- following RaidiamClients ------------------------------------------------------------------


@dataclass
class ClientTrack:
    """What the watch saw of one RaidiamClient's status."""

    ready: bool = False
    ready_since: float | None = None
    #: (seen at, expiresAt, nextRefreshTime) whenever either changed
    history: list[tuple[float, str | None, str | None]] = field(default_factory=list)


class ClientWatch:
    """Follows the RaidiamClients of one namespace in a thread (list, then watch)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self.clients: dict[str, ClientTrack] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = 0
        self._thread = threading.Thread(target=self._run, name="client-watch", daemon=True)
        self.errors: list[str] = []

    @property
    def ready_count(self) -> int:
        with self._lock:
            return self._ready

    def start(self) -> ClientWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def wait_ready(self, count: int, *, timeout: float) -> float | None:
        """Wall time (time.time) when `count` clients were Ready, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_count >= count:
                with self._lock:
                    return max(
                        (t.ready_since or 0.0 for t in self.clients.values() if t.ready),
                        default=0.0,
                    )
            time.sleep(0.1)
        return None

    def _observe(self, body: Mapping[str, Any], now: float) -> None:
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        with self._lock:
            track = self.clients.setdefault(name, ClientTrack())
            if ready != track.ready:
                self._ready += 1 if ready else -1
                track.ready = ready
                track.ready_since = now if ready else None
            point = (status.get("expiresAt"), status.get("nextRefreshTime"))
            if not track.history or track.history[-1][1:] != point:
                track.history.append((now, *point))

    def _run(self) -> None:
        path = clients_path(self.namespace)
        client = httpx.Client(
            base_url=self._kube.server,
            verify=self._kube.ssl,
            # a watch is quiet for long stretches; the server ends it (timeoutSeconds)
            timeout=httpx.Timeout(10.0, read=120.0),
            trust_env=False,
        )
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = client.get(path).json()
                    now = time.time()
                    for item in listing.get("items", []):
                        self._observe(item, now)
                    version = listing["metadata"]["resourceVersion"]
                params = {
                    "watch": "1",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "60",
                }
                with client.stream("GET", path, params=params) as response:
                    for line in response.iter_lines():
                        if self._stop.is_set():
                            break
                        if not line:
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            version = None  # expired: list again
                            break
                        body = event["object"]
                        version = body["metadata"].get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED"):
                            self._observe(body, time.time())
            except (httpx.HTTPError, json.JSONDecodeError, KeyError) as error:
                self.errors.append(f"{type(error).__name__}: {error}")
                time.sleep(0.5)
        client.close()
