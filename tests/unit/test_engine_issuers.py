"""The refresh engine with ClusterRaidiamIssuers and the issuer policy: who is refused before
any request, and which issuer changes ask for a token."""

from __future__ import annotations

import copy
from typing import Any

import httpx

from raidiam_operator.core.issuers import issuer_policy
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine
from tests.unit.engine_fakes import BODY, ISSUER, KEY, NS, Clock, FakeKube, Server

ISSUER_NAME = "directory"


def _engine(kube: FakeKube, server: Server, clock: Clock, policy: str = "any") -> RefreshEngine:
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    settings = EngineSettings(seed=1, issuer_policy=issuer_policy(policy, []))
    return RefreshEngine(kube, tokens, settings, clock=clock)


def _issuer(generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": ISSUER_NAME, "generation": generation},
        "spec": {"issuer": ISSUER, **spec},
    }


def _referring() -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    del body["spec"]["issuer"]
    body["spec"]["issuerRef"] = {"name": ISSUER_NAME}
    return body


async def _with_a_token_through_an_issuer(
    kube: FakeKube, server: Server, clock: Clock
) -> RefreshEngine:
    engine = _engine(kube, server, clock)
    engine.issuer_changed(_issuer())
    engine.observe(_referring())
    await engine.reconcile(KEY)
    return engine


async def test_an_inline_issuer_under_references_only_sends_nothing(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock, "references-only")
    engine.observe(BODY)

    await engine.reconcile(KEY)

    assert server.requests == 0
    assert kube.ready()["reason"] == "IssuerNotAllowed"
    assert kube.events[-1][:2] == (True, "IssuerNotAllowed")


async def test_a_reference_gets_its_token_under_references_only(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock, "references-only")
    engine.issuer_changed(_issuer())
    engine.observe(_referring())

    await engine.reconcile(KEY)

    assert server.token_requests == 1
    assert kube.ready()["reason"] == "TokenValid"


async def test_a_namespace_the_selector_does_not_match_sends_nothing_until_it_is_labelled(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.issuer_changed(_issuer(namespaceSelector={"matchLabels": {"tier": "gold"}}))
    engine.observe(_referring())

    await engine.reconcile(KEY)
    assert server.requests == 0
    assert kube.ready()["reason"] == "IssuerNotAllowed"

    kube.namespace_labels[NS] = {"tier": "gold"}
    clock.advance(61)  # the namespace's labels are not watched: read again on the retry
    await engine.reconcile(KEY)
    assert server.token_requests == 1


async def test_who_may_use_an_issuer_changes_no_token_but_where_it_sends_does(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = await _with_a_token_through_an_issuer(kube, server, clock)

    engine.issuer_changed(_issuer(2, namespaces=[NS, "other"]))
    await engine.reconcile(KEY)
    assert server.token_requests == 1

    clock.advance(10)  # past the minimum interval between two requests of one client
    engine.issuer_changed(_issuer(3, tokenEndpoint=f"{ISSUER}/token"))
    await engine.reconcile(KEY)
    assert server.token_requests == 2


async def test_a_status_update_of_the_issuer_reschedules_no_client(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = await _with_a_token_through_an_issuer(kube, server, clock)
    planned = dict(engine.plan())

    engine.issuer_changed({**_issuer(), "status": {"lastCheckTime": "2026-12-02T01:00:00Z"}})

    assert engine.plan() == planned


async def test_a_deleted_issuer_keeps_the_token_and_reports_it_missing(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = await _with_a_token_through_an_issuer(kube, server, clock)
    token = kube.secrets["directory-token"]["data"]["access_token"]

    engine.issuer_deleted(ISSUER_NAME)
    await engine.reconcile(KEY)

    assert kube.ready()["reason"] == "IssuerNotFound"
    assert kube.secrets["directory-token"]["data"]["access_token"] == token
    assert kube.statuses[-1]["expiresAt"] is not None
    assert server.token_requests == 1
