"""A tenant's key that is costly to check costs only that tenant (issue 22, point 1).

The hostile tenant's transport Secret holds a malformed RSA key, named by 5 RaidiamClients, and a
label on the Secret changes every 3 s (each change wakes every client that reads it). Beside it a
good tenant's 3 clients with 20 s tokens are sampled every second (bulkhead_helpers): their
renewals are never late, their tokens never expire, and the liveness endpoint answers within 1 s
throughout.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.hostile_keys import oversized_rsa_key_pem, slow_rsa_key_pem
from raidiam_devenv.pki import TestPKI

from .bulkhead_helpers import GoodTenant, Served, two_tenants
from .conftest import World
from .fault_helpers import record_figure, wait_all

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

HOSTILE_CLIENTS = [f"keyed-{i}" for i in range(5)]
#: the operator's time limit for one key's check (KeyCheckSettings.time_limit)
TIME_LIMIT_S = 3


def _transport_secret_with(world: World, name: str, key_pem: bytes) -> None:
    """A kubernetes.io/tls Secret with a real certificate and `key_pem` as its key."""
    issued = world.pki.client_certificate(f"{world.namespace}-{name}")
    world.secrets_seen.append(key_pem)
    world.core.create_namespaced_secret(
        world.namespace,
        {
            "metadata": {"name": name},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(issued.cert_pem).decode(),
                "tls.key": base64.b64encode(key_pem).decode(),
            },
        },
    )


def _clients_naming(world: World, secret: str) -> None:
    for name in HOSTILE_CLIENTS:
        world.create_client(
            name,
            world.spec(
                f"{name}-client",
                authMethod="tls_client_auth",
                transportCertificate={"secretName": secret},
            ),
        )


def _churn(world: World, secret: str, *, seconds: float, every: float = 3.0) -> int:
    """Change a label on the Secret every `every` seconds (its bytes stay the same)."""
    changes = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        changes += 1
        world.core.patch_namespaced_secret(
            secret, world.namespace, {"metadata": {"labels": {"churn": str(changes)}}}
        )
        time.sleep(every)
    return changes


@dataclass
class Trial:
    """What the hostile tenant's key did, and what the good tenant saw meanwhile."""

    hostile: World
    served: Served
    #: seconds from the clients' creation until all 5 reported the key
    reported_after_s: float
    label_changes: int


@contextmanager
def hostile_key_beside_a_good_tenant(
    servers: tuple[ControlPlane, AuthServer, TestPKI, Any],
    tmp_path: Path,
    key_pem: bytes,
    *,
    reason: str,
    within: float,
    churn_for: float,
    figure: str,
) -> Iterator[Trial]:
    """The good tenant sampled while 5 hostile clients name `key_pem` (each reporting `reason`
    within `within` seconds) and its Secret is churned for `churn_for` seconds; what the good
    tenant saw is recorded as `figure`."""
    with two_tenants(*servers, tmp_path) as (hostile, good):
        with GoodTenant(good, clients=3, token_ttl=20) as tenant:
            _transport_secret_with(hostile, "hostile-transport", key_pem)
            _clients_naming(hostile, "hostile-transport")
            took = wait_all(
                hostile,
                HOSTILE_CLIENTS,
                lambda world, name: world.condition(name).get("reason") == reason,
                timeout=within,
                what=f"the clients of the key to report {reason}",
            )
            changes = _churn(hostile, "hostile-transport", seconds=churn_for)
        served = tenant.stop()
        record_figure(figure, {**served.figures(), "reported_after_s": round(took, 1)})
        yield Trial(hostile, served, took, changes)


@pytest.fixture
def servers(
    control_plane: ControlPlane, auth_server: AuthServer, test_pki: TestPKI, kube_api: Any
) -> tuple[ControlPlane, AuthServer, TestPKI, Any]:
    return control_plane, auth_server, test_pki, kube_api


def test_a_key_that_takes_seconds_to_check_holds_up_no_other_tenant(
    servers: tuple[ControlPlane, AuthServer, TestPKI, Any], tmp_path: Path
) -> None:
    """The key's check (seconds of CPU) runs once, in a worker process, and is stopped at the
    time limit; the 5 clients report it, and the churned Secret costs no further check."""
    with hostile_key_beside_a_good_tenant(
        servers,
        tmp_path,
        slow_rsa_key_pem(),
        reason="KeyCheckTooSlow",
        within=30,
        churn_for=45,
        figure="bulkhead_parsing_slow_key",
    ) as trial:
        trial.served.assert_unharmed(min_refreshes=6)
        condition = trial.hostile.condition(HOSTILE_CLIENTS[0])
        assert condition["status"] == "False"
        assert condition["message"] == (
            f"checking the transport certificate's private key took longer than {TIME_LIMIT_S} "
            "s and was stopped; a good 2048-bit RSA key takes a small fraction of that, so this "
            "key is likely malformed: put a 2048-bit RSA key (or an EC P-256 key) in the Secret"
        )
        # One check for 5 clients and every label change.
        log = trial.hostile.operator.log_text()
        assert trial.label_changes >= 10
        assert log.count(f"took longer than {TIME_LIMIT_S} s; stopped it") == 1


def test_an_8192_bit_key_is_refused_at_once_with_the_reason(
    servers: tuple[ControlPlane, AuthServer, TestPKI, Any], tmp_path: Path
) -> None:
    """An RSA key over 4096 bits is refused before any check, saying why; and the worker that
    checked the good tenant's keys stops with the operator."""
    with hostile_key_beside_a_good_tenant(
        servers,
        tmp_path,
        oversized_rsa_key_pem(),
        reason="KeyTooLarge",
        within=15,
        churn_for=20,
        figure="bulkhead_parsing_8192_bit_key",
    ) as trial:
        trial.served.assert_unharmed(min_refreshes=3)
        assert trial.reported_after_s < 10
        assert trial.hostile.condition(HOSTILE_CLIENTS[0])["message"] == (
            "the transport certificate's private key is an RSA key of 8192 bits; at most 4096 "
            "bits are accepted, because checking a larger key costs the operator seconds of "
            "CPU, and Open Finance and FAPI use 2048-bit keys: use a 2048-bit key"
        )
        assert "stopped it" not in trial.hostile.operator.log_text()
        # The worker that checked the good tenant's keys waits for more, until the operator stops.
        workers = key_workers_of(trial.hostile.operator.pid)
        assert len(workers) == 1
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def key_workers_of(pid: int) -> list[int]:
    """The key-check worker processes that `pid` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the fields after the command's closing parenthesis: state, then the parent's pid
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"keycheck_worker" in command:
            found.append(int(entry.name))
    return found
