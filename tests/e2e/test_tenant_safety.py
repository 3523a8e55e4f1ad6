"""One tenant cannot starve, hammer or exhaust the operator.

Whoever may create a RaidiamClient chooses its issuer, and so chooses what answers the operator.
Each case here puts a hostile (or merely broken) server or input in one tenant's hands, on the
real control plane with the real test authorization server, and shows what everyone else sees:
nothing. Figures go to build/fault-figures.json (docs/reliability.md quotes them).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import TestPKI
from raidiam_devenv.slowloris import SlowLorisIssuer

from .bulkhead_helpers import two_tenants
from .conftest import World, wait_for
from .fault_helpers import (
    client_id_of,
    is_ready,
    most_in_a_minute,
    ready_and_degraded,
    record_figure,
    token_requests,
    wait_all,
)

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def _parse(moment: str | None) -> datetime | None:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")) if moment else None


@pytest.fixture
def tenants(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path: Path,
) -> Iterator[tuple[World, World]]:
    """Two namespaces served by one operator: a hostile tenant's and a good one's."""
    with two_tenants(control_plane, auth_server, test_pki, kube_api, tmp_path) as worlds:
        yield worlds


# -- a slow issuer starves no one else --------------------------------------------------------


def test_a_slow_loris_issuer_with_80_clients_delays_no_other_tenant(
    tenants: tuple[World, World], tmp_path: Path
) -> None:
    """80 clients of one namespace point at a TLS server that trickles a byte every 2 s; 3
    clients of another namespace get their first token within 30 s and are never late for a
    refresh over 2 minutes."""
    hostile, good = tenants
    with SlowLorisIssuer(tmp_path / "slowloris", hostile.pki, interval=2.0) as issuer:
        issued = hostile.pki.client_certificate(f"hostile-{uuid.uuid4().hex[:6]}")
        hostile.tls_secret("hostile-transport", issued)
        for i in range(80):
            hostile.create_client(
                f"slow-{i}",
                hostile.spec(
                    f"slow-{i}",
                    issuer=issuer.url,
                    authMethod="tls_client_auth",
                    transportCertificate={"secretName": "hostile-transport"},
                ),
            )
        # The operator is busy with the hostile tenant before the good one arrives.
        deadline = time.monotonic() + 30
        while issuer.open < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert issuer.open >= 1, "the operator never called the slow issuer"
        time.sleep(3)

        names = [f"good-{i}" for i in range(3)]
        created = time.monotonic()
        for name in names:
            good.tls_client(name, token_ttl=20)
        first_token = wait_all(
            good, names, is_ready, timeout=30, what="the good tenant's first tokens"
        )
        first_token_s = time.monotonic() - created

        # Two minutes of refreshes: each new token arrives before the old one expires, and
        # within a few seconds of the planned refresh.
        window_end = time.monotonic() + 120
        planned: dict[str, datetime | None] = {}
        expires: dict[str, datetime | None] = {}
        lateness: list[float] = []
        expired_seen: list[str] = []
        refreshes = 0
        while time.monotonic() < window_end:
            for name in names:
                status = good.client(name).get("status", {})
                now = datetime.now(UTC)
                new_expiry = _parse(status.get("expiresAt"))
                old_expiry = expires.get(name)
                if old_expiry is not None and new_expiry == old_expiry and now > old_expiry:
                    expired_seen.append(name)
                if old_expiry is not None and new_expiry != old_expiry:
                    refreshes += 1
                    if planned.get(name) is not None:
                        lateness.append((now - planned[name]).total_seconds())  # type: ignore[operator]
                expires[name] = new_expiry
                planned[name] = _parse(status.get("nextRefreshTime"))
            time.sleep(0.5)
        hostile_open, hostile_accepted = issuer.open, issuer.accepted

    record_figure(
        "slow_loris",
        {
            "hostile_clients": 80,
            "good_first_token_s": round(first_token_s, 1),
            "good_refreshes_in_2_min": refreshes,
            "good_refresh_lateness_max_s": round(max(lateness, default=0.0), 1),
            "slow_connections_accepted": hostile_accepted,
            "slow_connections_open_at_end": hostile_open,
        },
    )
    assert first_token <= 30
    assert not expired_seen, f"a good client's token expired unrefreshed: {expired_seen}"
    assert refreshes >= 3 * 6, f"only {refreshes} refreshes of 20 s tokens in 2 minutes"
    # Lateness as polled: the poll interval, the status write and a second of rounding.
    assert max(lateness) < 5, f"a refresh came {max(lateness):.1f} s late"
    slow_ready, slow_degraded = ready_and_degraded(hostile, "slow-0")
    assert slow_ready["status"] == "False"
    assert slow_degraded["reason"] == "AuthorizationServerUnreachable"
    assert "took longer than 30 s" in slow_degraded["message"]


# -- a server that issues one-second tokens is not hammered -----------------------------------


@pytest.mark.parametrize("lifetime", [1, 0.5])
def test_tokens_that_live_a_second_or_less_are_requested_at_most_30_times_a_minute(
    world: World, lifetime: float
) -> None:
    """A server that answers expires_in 1 or 0.5: the token is used, the user is told, and the
    client asks at most 30 times a minute, with at most 30 Events."""
    name = "blink"
    world.tls_client(name, token_ttl=lifetime)
    client_id = client_id_of(world, name)
    # The Warning Event, not the Ready reason: a 0.5 s token is expired most of the time (at
    # least 2 s between requests), so Ready reads ShortTokenLifetime for moments only.
    wait_for(
        lambda: any(e.reason == "ShortTokenLifetime" for e in world.events(name)),
        timeout=30,
        what="the ShortTokenLifetime Warning Event",
    )
    started = datetime.now(UTC)
    time.sleep(70)

    requests = token_requests(world.auth, client_id)
    ready, degraded = ready_and_degraded(world, name)
    events = world.events(name)
    warnings = [e for e in events if e.reason == "ShortTokenLifetime"]
    in_window = [r.started for r in requests if r.started >= started]
    record_figure(
        f"short_lifetime_{lifetime}s",
        {
            "requests_in_70_s": len(in_window),
            "most_requests_in_one_minute": most_in_a_minute([r.started for r in requests]),
            "events": len(events),
        },
    )
    assert world.token(name) is not None, "the short-lived token is used"
    assert most_in_a_minute([r.started for r in requests]) <= 30
    assert len(in_window) >= 20, "the client keeps refreshing"
    assert len(events) <= 30
    assert len(warnings) == 1, "one Warning for the short lifetime, not one per token"
    assert f"lives {lifetime:g} s, less than the 30 s minimum" in warnings[0].message
    assert degraded["status"] == "False", "a server's choice, not a failure"
    assert ready["reason"] in ("ShortTokenLifetime", "TokenExpired")
    assert "less than the 30 s minimum" in ready["message"], "Ready says why, expired or not"


# -- recovery once the token has expired ------------------------------------------------------


def test_after_an_outage_that_outlived_the_token_every_client_is_ready_within_15_s(
    world: World,
) -> None:
    """While the old token is valid the usual backoff holds (up to 60 s); once it has expired,
    attempts come every few seconds, so the server's return is noticed within 15 s."""
    names = ["lapse-a", "lapse-b", "lapse-c"]
    for name in names:
        world.tls_client(name, token_ttl=10)
    wait_all(world, names, is_ready, timeout=30, what="Ready")
    world.auth.set_fault(mode="status", status=503)
    wait_all(
        world,
        names,
        lambda w, n: ready_and_degraded(w, n)[0].get("reason") == "TokenExpired",
        timeout=40,
        what="TokenExpired",
    )
    time.sleep(40)  # long enough for the backoff to have climbed towards its 60 s cap
    world.auth.clear_faults()
    recovery = wait_all(world, names, is_ready, timeout=30, what="Ready again", interval=0.2)

    record_figure("recovery_after_expiry_s", round(recovery, 1))
    assert recovery <= 15, f"Ready {recovery:.1f} s after the server came back"


# -- oversize inputs and server strings -------------------------------------------------------


def test_oversize_inputs_and_server_strings_get_a_clear_condition(world: World) -> None:
    issued = world.pki.client_certificate(f"big-{uuid.uuid4().hex[:6]}")
    # Half a megabyte of certificate chain (the real one, padded with comment lines; the API
    # server takes up to 1 MiB per Secret).
    padded = issued.cert_pem + b"# padding\n" * (512 * 1024 // 10)
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": "big-transport"},
            "data": {
                "tls.crt": base64.b64encode(padded).decode(),
                "tls.key": base64.b64encode(issued.key_pem).decode(),
            },
        },
    )
    world.secrets_seen.append(issued.key_pem)
    world.create_client(
        "big-cert",
        world.spec(
            "big-cert",
            authMethod="tls_client_auth",
            transportCertificate={"secretName": "big-transport"},
        ),
    )
    world.core.create_namespaced_config_map(
        world.namespace,
        {
            "metadata": {"name": "big-ca"},
            "data": {"ca.crt": _repeated(world.auth.ca_path.read_text(), 600 * 1024)},
        },
    )
    world.tls_client("big-ca-client", caBundle={"configMapName": "big-ca"})
    world.auth.set_fault(
        mode="discovery_issuer", issuer="https://evil.example/" + "a" * 500_000, count=1000
    )
    world.tls_client("huge-issuer-2", issuer=world.auth.issuer + "/")

    cert = world.wait_reason("big-cert", "InputTooLarge", timeout=30)
    ca = world.wait_reason("big-ca-client", "InputTooLarge", timeout=30)
    assert cert["message"].startswith(
        f"Secret {world.namespace}/big-transport key 'tls.crt' (from spec.transportCertificate) "
        "holds 51"
    )
    assert "KiB, more than the 64 KiB accepted" in cert["message"]
    assert "(from spec.caBundle) holds" in ca["message"]
    assert "more than the 512 KiB accepted" in ca["message"]
    mismatch = world.wait_reason("huge-issuer-2", "IssuerMismatch", timeout=30)
    assert len(mismatch["message"]) < 1024
    assert "names issuer 'https://evil.example/aaa" in mismatch["message"]
    for name in ("big-cert", "big-ca-client", "huge-issuer-2"):
        warning = [e for e in world.events(name) if e.type == "Warning"]
        assert warning, f"{name}: no Warning Event"
        assert len(warning[0].message) <= 1024
    assert world.operator.running


def _repeated(text: str, size: int) -> str:
    return text * (size // len(text) + 1)


# -- caches are emptied when clients go -------------------------------------------------------


def _summary_when(world: World, **expected: int) -> dict[str, Any] | None:
    summary = _engine_summary(world)
    return summary if all(summary.get(k) == v for k, v in expected.items()) else None


def _engine_summary(world: World) -> dict[str, Any]:
    url = f"http://127.0.0.1:{world.operator.liveness_port}/healthz"
    summary: dict[str, Any] = httpx.get(url, timeout=5, trust_env=False).json()["refresh-engine"]
    return summary


def test_the_ca_bundle_cache_is_emptied_when_its_clients_are_deleted(world: World) -> None:
    """50 clients, each with its own CA bundle ConfigMap; deleting the clients leaves no CA
    bundle and no input Secret in the operator's memory."""
    names = [f"cached-{i}" for i in range(50)]
    bundle = _repeated(world.auth.ca_path.read_text(), 64 * 1024)
    for name in names:
        world.core.create_namespaced_config_map(
            world.namespace, {"metadata": {"name": f"{name}-ca"}, "data": {"ca.crt": bundle}}
        )
        world.tls_client(name, caBundle={"configMapName": f"{name}-ca"})
    wait_all(world, names, is_ready, timeout=90, what="Ready")
    # kopf answers /healthz from a result up to 10 s old: poll, as for the emptied cache below.
    filled = wait_for(
        lambda: _summary_when(world, cachedConfigMaps=50),
        timeout=30,
        what="the 50 CA bundles in the operator's cache",
    )

    for name in names:
        world.custom.delete_namespaced_custom_object(
            "raidiam.io", "v1alpha1", world.namespace, "raidiamclients", name
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        emptied = _engine_summary(world)
        if emptied["clients"] == 0:
            break
        time.sleep(0.5)

    record_figure(
        "cache_after_deletes",
        {"filled": filled, "after_deleting_every_client": emptied},
    )
    assert filled["cachedConfigMaps"] == 50
    assert emptied["clients"] == 0
    assert emptied["cachedConfigMaps"] == 0
    assert emptied["cachedSecrets"] == 0
