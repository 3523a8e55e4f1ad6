"""An in-memory Kubernetes, a MockTransport authorization server and a hand-set clock for the
engine's unit tests."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from raidiam_operator.core.errors import Conflict
from raidiam_operator.core.spec import Owner
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine

NS = "payments"
ISSUER = "https://auth.example"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class InNamespace(MutableMapping[str, dict[str, Any]]):
    """One namespace's objects of one kind, by name: a view of a store keyed by (namespace,
    name) as the API server keys them, so that a test names an object as its client does."""

    def __init__(self, store: dict[tuple[str, str], dict[str, Any]], namespace: str) -> None:
        self._store = store
        self._namespace = namespace

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._store[(self._namespace, name)]

    def __setitem__(self, name: str, body: dict[str, Any]) -> None:
        self._store[(self._namespace, name)] = body

    def __delitem__(self, name: str) -> None:
        del self._store[(self._namespace, name)]

    def __iter__(self) -> Iterator[str]:
        return iter([name for namespace, name in self._store if namespace == self._namespace])

    def __len__(self) -> int:
        return sum(1 for namespace, _ in self._store if namespace == self._namespace)


class FakeKube:
    """Just enough of the API server: Secrets with resourceVersions, ConfigMaps, status, events.

    Secrets and ConfigMaps are kept by (namespace, name); `secrets` and `config_maps` are the
    tests' `namespace` (`NS` unless told), `secrets_in` and `config_maps_in` any other."""

    def __init__(self, namespace: str = NS) -> None:
        self.namespace = namespace
        self.all_secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.all_config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[bool, str, str]] = []
        self.writes = 0
        self._version = 0

    @property
    def secrets(self) -> InNamespace:
        return self.secrets_in(self.namespace)

    @property
    def config_maps(self) -> InNamespace:
        return self.config_maps_in(self.namespace)

    def secrets_in(self, namespace: str) -> InNamespace:
        return InNamespace(self.all_secrets, namespace)

    def config_maps_in(self, namespace: str) -> InNamespace:
        return InNamespace(self.all_config_maps, namespace)

    def store_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Keep `body` in `namespace` as the API server does: at a new resourceVersion."""
        self._version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self._version)
        self.all_secrets[(namespace, stored["metadata"]["name"])] = stored
        return copy.deepcopy(stored)

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.all_secrets.get((namespace, name)))

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.all_config_maps.get((namespace, name))

    async def read_namespace(self, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name, "labels": self.namespace_labels.get(name, {})}}

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if (namespace, body["metadata"]["name"]) in self.all_secrets:
            raise Conflict("exists", status_code=409)
        self.writes += 1
        return self.store_secret(namespace, body)

    async def replace_secret(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        current = self.all_secrets.get((namespace, name))
        if current is None or current["metadata"]["resourceVersion"] != body["metadata"].get(
            "resourceVersion"
        ):
            raise Conflict("changed", status_code=409)
        self.writes += 1
        return self.store_secret(namespace, body)

    async def patch_status(self, owner: Owner, status: dict[str, Any]) -> None:
        self.writes += 1
        self.statuses.append(copy.deepcopy(status))

    async def post_event(self, owner: Owner, *, warning: bool, reason: str, message: str) -> None:
        self.events.append((warning, reason, message))

    def put_tls_secret(
        self, name: str, cert_pem: bytes, key_pem: bytes, *, namespace: str | None = None
    ) -> None:
        self.secrets_in(namespace or self.namespace)[name] = {
            "metadata": {"name": name, "resourceVersion": "0"},
            "data": {
                "tls.crt": base64.b64encode(cert_pem).decode(),
                "tls.key": base64.b64encode(key_pem).decode(),
            },
        }

    def ready(self) -> dict[str, Any]:
        return next(c for c in self.statuses[-1]["conditions"] if c["type"] == "Ready")

    def degraded(self) -> dict[str, Any]:
        return next(c for c in self.statuses[-1]["conditions"] if c["type"] == "Degraded")


class Server:
    def __init__(self) -> None:
        self.token_requests = 0
        self.requests = 0
        self.response: httpx.Response | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "token_endpoint": f"{ISSUER}/token"})
        self.token_requests += 1
        if self.response is not None:
            return self.response
        return httpx.Response(
            200,
            json={
                "access_token": f"token-{self.token_requests}",
                "token_type": "Bearer",
                "expires_in": 300,
            },
        )


def _engine(kube: FakeKube, server: Server, clock: Clock) -> RefreshEngine:
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    return RefreshEngine(kube, tokens, EngineSettings(seed=1), clock=clock)


BODY: dict[str, Any] = {
    "metadata": {"namespace": NS, "name": "directory", "uid": "uid-1", "generation": 1},
    "spec": {
        "issuer": ISSUER,
        "clientId": "c1",
        "authMethod": "tls_client_auth",
        "transportCertificate": {"secretName": "transport"},
    },
}
KEY = (NS, "directory")
