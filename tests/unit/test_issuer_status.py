"""A ClusterRaidiamIssuer's status, from a discovery fetch over httpx.MockTransport."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from raidiam_operator.protocol.client import HttpSettings, TokenClient
from raidiam_operator.refresh.issuer_status import (
    CheckResult,
    IssuerStatusReconciler,
    issuer_status,
)

ISSUER = "https://auth.example"
NOW = datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC)


class Gateway:
    def __init__(self) -> None:
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses: list[tuple[str, dict[str, Any]]] = []

    async def read_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.config_maps.get((namespace, name))

    async def patch_issuer_status(self, name: str, status: dict[str, Any]) -> None:
        self.statuses.append((name, status))


def _server(document: dict[str, Any] | None = None, *, status: int = 200) -> Any:
    requests: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return httpx.Response(
            status,
            json=document
            or {
                "issuer": ISSUER,
                "token_endpoint": ISSUER + "/token",
                "mtls_endpoint_aliases": {"token_endpoint": "https://matls.example/token"},
            },
        )

    return handle, requests


def _issuer(generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "sandbox", "generation": generation},
        "spec": {"issuer": ISSUER, **spec},
    }


def _reconciler(handler: Any, gateway: Gateway) -> IssuerStatusReconciler:
    tokens = TokenClient(transport=httpx.MockTransport(handler))
    return IssuerStatusReconciler(
        gateway, tokens, cluster_resource_namespace="operator", clock=lambda: NOW
    )


async def test_a_discovered_issuer_is_ready_with_its_endpoints_and_check_time() -> None:
    handler, requests = _server()
    gateway = Gateway()
    reconciler = _reconciler(handler, gateway)

    result = await reconciler.check(_issuer())
    status = issuer_status(result, previous=None, issuer=ISSUER, generation=1, now=NOW)

    assert requests == [ISSUER + "/.well-known/openid-configuration"]
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Discovered")
    assert "mTLS alias https://matls.example/token" in ready["message"]
    assert status["tokenEndpoint"] == ISSUER + "/token"
    assert status["mtlsTokenEndpoint"] == "https://matls.example/token"
    assert status["lastCheckTime"] == "2026-12-02T01:00:00Z"
    assert status["observedGeneration"] == 1


async def test_every_check_fetches_discovery_again() -> None:
    handler, requests = _server()
    reconciler = _reconciler(handler, Gateway())

    await reconciler.check(_issuer())
    await reconciler.check(_issuer())

    assert len(requests) == 2


async def test_an_issuer_mismatch_is_not_ready_and_keeps_the_last_good_endpoints() -> None:
    handler, _ = _server({"issuer": "https://evil.example", "token_endpoint": ISSUER + "/token"})
    reconciler = _reconciler(handler, Gateway())
    previous = {"tokenEndpoint": ISSUER + "/token", "conditions": []}

    result = await reconciler.check(_issuer())
    status = issuer_status(result, previous=previous, issuer=ISSUER, generation=2, now=NOW)

    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "IssuerMismatch")
    assert "names issuer 'https://evil.example'" in ready["message"]
    assert status["tokenEndpoint"] == ISSUER + "/token"


async def test_a_missing_ca_bundle_config_map_names_the_operators_namespace() -> None:
    handler, requests = _server()
    reconciler = _reconciler(handler, Gateway())

    result = await reconciler.check(_issuer(caBundle={"configMapName": "directory-ca"}))

    assert result.problem is not None
    assert result.problem.reason == "ConfigMapNotFound"
    assert "ConfigMap operator/directory-ca" in result.problem.message
    assert requests == [], "nothing is sent without the CA bundle"


async def test_a_fixed_token_endpoint_is_only_reached_not_discovered() -> None:
    handler, requests = _server(status=405)
    reconciler = _reconciler(handler, Gateway())

    result = await reconciler.check(_issuer(tokenEndpoint=ISSUER + "/token"))
    status = issuer_status(result, previous=None, issuer=ISSUER, generation=1, now=NOW)

    assert requests == [ISSUER + "/token"]
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "TokenEndpointReachable")
    assert "HTTP 405" in ready["message"]


async def test_a_server_that_never_answers_ends_the_check_at_the_attempt_deadline() -> None:
    async def silent(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    tokens = TokenClient(HttpSettings(attempt_deadline=0.2), transport=httpx.MockTransport(silent))
    reconciler = IssuerStatusReconciler(
        Gateway(), tokens, cluster_resource_namespace="operator", clock=lambda: NOW
    )

    result = await asyncio.wait_for(reconciler.check(_issuer()), timeout=2)

    assert result.problem is not None
    assert result.problem.reason == "AuthorizationServerUnreachable"
    assert result.problem.message == (
        f"checking {ISSUER} took longer than 0 s (discovery); the server is too slow or trickles "
        "its answer"
    )


def test_a_condition_keeps_its_transition_time_while_it_does_not_flip() -> None:
    first = issuer_status(
        CheckResult(token_endpoint="t"), previous=None, issuer=ISSUER, generation=1, now=NOW
    )
    later = issuer_status(
        CheckResult(token_endpoint="t"),
        previous=first,
        issuer=ISSUER,
        generation=1,
        now=NOW + timedelta(minutes=5),
    )

    assert later["conditions"][0]["lastTransitionTime"] == "2026-12-02T01:00:00Z"
    assert later["lastCheckTime"] == "2026-12-02T01:05:00Z"


async def test_the_reconciler_checks_a_new_issuer_at_once_and_writes_its_status() -> None:
    handler, _ = _server()
    gateway = Gateway()
    reconciler = _reconciler(handler, gateway)
    task = asyncio.create_task(reconciler.run())
    try:
        reconciler.observe(_issuer())
        for _ in range(100):
            if gateway.statuses:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    name, status = gateway.statuses[0]
    assert name == "sandbox"
    assert status["conditions"][0]["reason"] == "Discovered"


async def test_a_standby_checks_nothing() -> None:
    handler, requests = _server()
    gateway = Gateway()
    reconciler = _reconciler(handler, gateway)
    reconciler.set_active(False)
    task = asyncio.create_task(reconciler.run())
    try:
        reconciler.observe(_issuer())
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert requests == []
    assert gateway.statuses == []
