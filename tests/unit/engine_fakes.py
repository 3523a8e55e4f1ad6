"""An in-memory Kubernetes, a MockTransport authorization server and a hand-set clock for the
engine's unit tests."""

from __future__ import annotations

import base64
import copy
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


class FakeKube:
    """Just enough of the API server: Secrets with resourceVersions, status, events."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.config_maps: dict[str, dict[str, Any]] = {}
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[bool, str, str]] = []
        self.writes = 0
        self._version = 0

    def _stored(self, body: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self._version)
        self.secrets[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.secrets.get(name))

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.config_maps.get(name)

    async def read_namespace(self, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name, "labels": self.namespace_labels.get(name, {})}}

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if body["metadata"]["name"] in self.secrets:
            raise Conflict("exists", status_code=409)
        self.writes += 1
        return self._stored(body)

    async def replace_secret(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        current = self.secrets.get(name)
        if current is None or current["metadata"]["resourceVersion"] != body["metadata"].get(
            "resourceVersion"
        ):
            raise Conflict("changed", status_code=409)
        self.writes += 1
        return self._stored(body)

    async def patch_status(self, owner: Owner, status: dict[str, Any]) -> None:
        self.writes += 1
        self.statuses.append(copy.deepcopy(status))

    async def post_event(self, owner: Owner, *, warning: bool, reason: str, message: str) -> None:
        self.events.append((warning, reason, message))

    def put_tls_secret(self, name: str, cert_pem: bytes, key_pem: bytes) -> None:
        self.secrets[name] = {
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
