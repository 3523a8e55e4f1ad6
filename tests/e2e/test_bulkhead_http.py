"""A slow server costs only its own clients (issue 22, point 3), on the real control plane.

A hostile tenant points many clients at a slow-loris server (a TLS server that trickles its
answer a byte every 2 s) with the same transport certificate and CA bundle as a healthy tenant:
one company's namespaces share a certificate, and an Open Finance participant uses one for
every bank it calls. The healthy tenant's new clients get their first tokens within 10 s, from
a server the operator has discovered and from one it has not; the same holds when the slow
server is one ClusterRaidiamIssuer and the healthy one another. Meanwhile a good tenant's
renewals are sampled every second (never late, never expired) and the liveness endpoint is
timed (under 1 s).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import IssuedCertificate, TestPKI
from raidiam_devenv.slowloris import SlowLorisIssuer

from .bulkhead_helpers import GoodTenant, two_tenants
from .conftest import GROUP, PLURAL, VERSION, World, wait_for
from .fault_helpers import (
    drop_namespace,
    is_ready,
    new_namespace,
    ready_and_degraded,
    record_figure,
    wait_all,
)

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

#: the transport certificate Secret both tenants hold, with the same certificate and key
SHARED = "shared-transport"
#: how soon the healthy tenant's new clients must hold their first token
FIRST_TOKEN_WITHIN_S = 10.0
ISSUERS = "clusterraidiamissuers"
CA_CONFIG_MAP = "directory-ca"


@pytest.fixture(scope="module")
def fresh_auth_server(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI
) -> Iterator[AuthServer]:
    """A second authorization server (same CA): each test's operator has never discovered it."""
    with AuthServer(tmp_path_factory.mktemp("fresh-authserver"), test_pki) as server:
        yield server


@contextmanager
def _beside_a_slow_server(
    control_plane: ControlPlane,
    auth: AuthServer,
    pki: TestPKI,
    kube_api: Any,
    tmp_path: Path,
    *,
    operator_args: Sequence[str],
) -> Iterator[tuple[World, World, SlowLorisIssuer]]:
    """The hostile and the good tenant (`two_tenants`), and a slow-loris server whose TLS
    certificate the test PKI's CA signed: the CA bundle both tenants name trusts it."""
    with (
        two_tenants(control_plane, auth, pki, kube_api, tmp_path, operator_args=operator_args) as (
            hostile,
            good,
        ),
        SlowLorisIssuer(tmp_path / "slowloris", pki, interval=2.0) as slow,
    ):
        yield hostile, good, slow


def _shared_certificate(*worlds: World) -> IssuedCertificate:
    """One transport certificate, stored as SHARED in every tenant's namespace."""
    issued = worlds[0].pki.client_certificate(f"shared-{uuid.uuid4().hex[:6]}")
    for world in worlds:
        world.tls_secret(SHARED, issued)
    return issued


def _healthy_clients(
    world: World,
    auth: AuthServer,
    issued: IssuedCertificate,
    stem: str,
    spec: dict[str, Any],
    *,
    count: int = 3,
) -> list[str]:
    """`count` tls_client_auth clients of `auth` with the shared certificate; their names."""
    names = [f"{stem}-{i}" for i in range(count)]
    for name in names:
        client_id = f"{name}-{uuid.uuid4().hex[:8]}"
        auth.register_tls_client(client_id, issued, token_ttl=60)
        world.create_client(
            name,
            {
                "scope": "directory:software",
                **spec,
                "clientId": client_id,
                "authMethod": "tls_client_auth",
                "transportCertificate": {"secretName": SHARED},
            },
        )
    return names


def _first_tokens_s(world: World, names: Sequence[str], what: str) -> float:
    """Seconds until every client in `names` (created just before) holds its first token."""
    return wait_all(world, names, is_ready, timeout=60, what=what, interval=0.2)


def _wait_for_connections(issuer: SlowLorisIssuer, at_least: int) -> None:
    deadline = time.monotonic() + 45
    while issuer.open < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    assert issuer.open >= at_least, (
        f"the operator held only {issuer.open} connections to the slow server"
    )


def _slow_client(world: World, slow: SlowLorisIssuer, i: int) -> None:
    """The hostile tenant's client `slow-{i}`, with an issuer of its own on the slow server (so
    no issuer share holds them back): even ones discover it, odd ones send their token request
    to the slow server's token endpoint."""
    where: dict[str, str] = {"issuer": f"{slow.url}/{i}"}
    if i % 2:
        where["tokenEndpoint"] = f"{slow.url}/token"
    world.create_client(
        f"slow-{i}",
        world.spec(
            f"slow-{i}",
            authMethod="tls_client_auth",
            transportCertificate={"secretName": SHARED},
            **where,
        ),
    )


def _messages(worlds: Sequence[World], text: str) -> list[str]:
    """The Degraded messages of every client in `worlds` that say `text`."""
    found = []
    for world in worlds:
        listed = world.custom.list_namespaced_custom_object(GROUP, VERSION, world.namespace, PLURAL)
        for item in listed["items"]:
            for condition in (item.get("status") or {}).get("conditions", []):
                if condition["type"] == "Degraded" and text in condition.get("message", ""):
                    found.append(condition["message"])
    return found


def _unreachable(world: World, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (
            degraded
            if (degraded := ready_and_degraded(world, name)[1]).get("reason")
            == "AuthorizationServerUnreachable"
            else None
        ),
        timeout=60,
        what=f"{name} to report AuthorizationServerUnreachable",
    )


def test_a_slow_loris_server_with_the_healthy_tenants_certificate_delays_none_of_its_tokens(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    fresh_auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path: Path,
) -> None:
    """81 clients in three namespaces of a hostile tenant keep a slow-loris server busy with
    discovery (an issuer each) and token requests (its token endpoint), all with the certificate
    and CA bundle of the healthy tenant: more than any one server's connections. 3 new healthy
    clients of a server the operator knows, and 3 of one it has never discovered, hold tokens
    within 10 s."""
    more_hostile = [new_namespace(control_plane, "hostile-tenant") for _ in range(2)]
    try:
        with _beside_a_slow_server(
            control_plane,
            auth_server,
            test_pki,
            kube_api,
            tmp_path,
            operator_args=[arg for ns in more_hostile for arg in ("--namespace", ns)],
        ) as (hostile, good, slow):
            hostiles = [
                hostile,
                *(replace(hostile, namespace=ns, secrets_seen=[]) for ns in more_hostile),
            ]
            issued = _shared_certificate(*hostiles, good)
            with GoodTenant(good) as sampled:
                started = time.monotonic()
                for i in range(27):
                    for world in hostiles:
                        _slow_client(world, slow, i)
                # The operator is busy with the slow server before the healthy clients arrive:
                # every hostile namespace's share at work, more requests than its connections.
                _wait_for_connections(slow, at_least=16)
                time.sleep(6)
                held_at_start = slow.open

                known = _healthy_clients(good, auth_server, issued, "known", good.spec("unused"))
                known_s = _first_tokens_s(good, known, "first tokens from the discovered server")
                fresh = _healthy_clients(
                    good,
                    fresh_auth_server,
                    issued,
                    "fresh",
                    {**good.spec("unused"), "issuer": fresh_auth_server.issuer},
                )
                fresh_s = _first_tokens_s(good, fresh, "first tokens from the undiscovered server")

                token_degraded = _unreachable(hostile, "slow-1")
                discovery_degraded = _unreachable(hostile, "slow-0")
                waited = _messages(hostiles, "for one of the 16 connections to")
                # Renewals of the good tenant's 20 s tokens go on beside the slow server.
                time.sleep(max(0.0, 50 - (time.monotonic() - started)))
            served = sampled.stop()
            held_at_end = slow.open
    finally:
        for namespace in more_hostile:
            drop_namespace(control_plane, namespace)

    record_figure(
        "bulkhead_http_slow_loris",
        {
            "hostile_clients": 81,
            "slow_connections_held": [held_at_start, held_at_end],
            "first_token_discovered_server_s": round(known_s, 1),
            "first_token_undiscovered_server_s": round(fresh_s, 1),
            **served.figures(),
        },
    )
    assert known_s <= FIRST_TOKEN_WITHIN_S, f"first tokens from the known server: {known_s:.1f} s"
    assert fresh_s <= FIRST_TOKEN_WITHIN_S, f"first tokens from the new server: {fresh_s:.1f} s"
    served.assert_unharmed(min_refreshes=3 * 2)
    # The slow server's clients say why they have no token, and those beyond its connections
    # that they waited for one.
    assert "took longer than 30 s" in token_degraded["message"]
    assert slow.url.removesuffix("/slow") in discovery_degraded["message"]
    origin = slow.url.removesuffix("/slow")
    assert any(
        f"waited 10 s for one of the 16 connections to {origin}, all busy" in m for m in waited
    ), waited[:3]


def test_a_slow_cluster_issuer_delays_no_client_of_another_cluster_issuer(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    fresh_auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path: Path,
) -> None:
    """60 clients of a ClusterRaidiamIssuer whose server is a slow loris, 3 new clients of
    another ClusterRaidiamIssuer (a server not discovered yet) in another namespace, with the
    same certificate and CA bundle: the 3 hold tokens within 10 s."""
    platform = new_namespace(control_plane, "platform")
    custom = kubernetes.client.CustomObjectsApi(kube_api)
    issuers: list[str] = []
    try:
        with _beside_a_slow_server(
            control_plane,
            auth_server,
            test_pki,
            kube_api,
            tmp_path,
            operator_args=[f"--cluster-resource-namespace={platform}"],
        ) as (hostile, good, slow):
            good.core.create_namespaced_config_map(
                platform,
                {
                    "metadata": {"name": CA_CONFIG_MAP},
                    "data": {"ca.crt": test_pki.ca_path.read_text()},
                },
            )
            issued = _shared_certificate(hostile, good)
            slow_issuer = _cluster_issuer(good, issuers, "slow", slow.url)
            good_issuer = _cluster_issuer(good, issuers, "good", fresh_auth_server.issuer)
            with GoodTenant(good) as sampled:
                started = time.monotonic()
                for i in range(60):
                    hostile.create_client(
                        f"slow-{i}",
                        {
                            "issuerRef": {"name": slow_issuer},
                            "clientId": f"slow-{i}",
                            "authMethod": "tls_client_auth",
                            "transportCertificate": {"secretName": SHARED},
                        },
                    )
                _wait_for_connections(slow, at_least=1)
                time.sleep(3)  # the slow issuer's clients now hold its share, waiting

                names = _healthy_clients(
                    good,
                    fresh_auth_server,
                    issued,
                    "through-good",
                    {"issuerRef": {"name": good_issuer}},
                )
                first_s = _first_tokens_s(good, names, "first tokens through the healthy issuer")

                slow_degraded = _unreachable(hostile, "slow-0")
                time.sleep(max(0.0, 45 - (time.monotonic() - started)))
            served = sampled.stop()
    finally:
        for name in issuers:
            try:
                custom.delete_cluster_custom_object(GROUP, VERSION, ISSUERS, name)
            except ApiException as error:
                if error.status != 404:
                    raise
        drop_namespace(control_plane, platform)

    record_figure(
        "bulkhead_http_cluster_issuers",
        {
            "slow_issuer_clients": 60,
            "first_token_through_healthy_issuer_s": round(first_s, 1),
            **served.figures(),
        },
    )
    assert first_s <= FIRST_TOKEN_WITHIN_S, f"first tokens through the issuer: {first_s:.1f} s"
    served.assert_unharmed(min_refreshes=3 * 2)
    assert slow.url.removesuffix("/slow") in slow_degraded["message"]


# -- the platform team's side -----------------------------------------------------------------


def _cluster_issuer(world: World, names: list[str], stem: str, issuer: str) -> str:
    """A ClusterRaidiamIssuer for `issuer`, whose CA bundle is the test PKI's CA (it signed the
    slow server's certificate and the healthy servers'); its name, kept in `names`."""
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ClusterRaidiamIssuer",
        "metadata": {"name": name},
        "spec": {"issuer": issuer, "caBundle": {"configMapName": CA_CONFIG_MAP}},
    }
    world.custom.create_cluster_custom_object(GROUP, VERSION, ISSUERS, body)
    names.append(name)
    return name
