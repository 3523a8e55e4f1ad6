"""High availability: two replicas, one Lease, one refreshing; the standby takes over in time."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from raidiam_devenv.operator_process import OperatorProcess

from .conftest import World, wait_for
from .fault_helpers import lease_holder

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def test_the_standby_takes_over_within_30_s_and_no_token_expires(
    world: World, tmp_path: Path
) -> None:
    world.operator.stop()
    replicas = [
        OperatorProcess(
            world.control_plane.kubeconfig,
            tmp_path / f"replica-{i}.log",
            namespaces=[world.namespace],
            extra_args=["--leader-election", "--leader-election-namespace", world.namespace],
        ).start()
        for i in range(2)
    ]
    try:
        names = [f"ha-{i}" for i in range(3)]
        for name in names:
            world.tls_client(name, token_ttl=20)
        for name in names:
            world.wait_ready(name)
        holder = wait_for(lambda: lease_holder(world), timeout=20, what="a Lease holder")
        active = next(r for r in replicas if holder == f"{socket.gethostname()}-{r.pid}")
        standby = next(r for r in replicas if r is not active)
        assert "issued token" not in standby.log_text(), "the standby sends no token request"

        active.stop(kill=True)
        killed_at = time.monotonic()
        expired: list[str] = []
        took_over = None
        refreshed_after = set()
        tokens_at_kill = {name: world.token(name) for name in names}
        while time.monotonic() - killed_at < 45:
            if took_over is None and lease_holder(world) == f"{socket.gethostname()}-{standby.pid}":
                took_over = time.monotonic() - killed_at
            for name in names:
                token = world.token(name)
                assert token is not None
                exp = jwt.decode(token, options={"verify_signature": False})["exp"]
                if exp <= datetime.now(UTC).timestamp():
                    expired.append(name)
                if token != tokens_at_kill[name]:
                    refreshed_after.add(name)
            time.sleep(0.5)

        print(f"takeover after SIGKILL of the active replica: {took_over:.1f} s")
        assert took_over is not None
        assert took_over < 30
        assert expired == [], f"tokens expired during the failover: {expired}"
        assert refreshed_after == set(names), "the new leader kept refreshing"
        assert "issued token" in standby.log_text()
    finally:
        for replica in replicas:
            replica.stop()
