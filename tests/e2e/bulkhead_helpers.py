"""A well-behaved tenant, watched while a hostile one does its worst (issue 22's bulkheads).

Each bulkhead case runs a hostile tenant (a slow key, a huge token, a slow-loris server, a frozen
leader) beside `GoodTenant`: a few clients with short-lived tokens in another namespace, served
by the same operator. A background thread samples, every second, what those clients' pods would
see (the token in each Secret, the refresh the status plans) and how long the operator's liveness
endpoint takes to answer. `Served.assert_unharmed` then says, in a user's terms, whether the good
tenant paid for the hostile one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import kubernetes

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.operator_process import OperatorProcess
from raidiam_devenv.pki import TestPKI

from .conftest import GROUP, PLURAL, VERSION, World
from .fault_helpers import (
    assert_nothing_leaked,
    drop_namespace,
    is_ready,
    new_namespace,
    token_exp,
    tokens_by_client,
    wait_all,
)

#: a refresh seen this long after the time the status planned for it counts as late: the poll
#: interval, the status write and a second of rounding
LATE_AFTER_S = 5.0
#: the liveness endpoint's answer must come within this (the chart's probe waits longer, but a
#: loop that stalls for a second stalls every tenant's renewals with it)
LIVENESS_WITHIN_S = 1.0


@contextmanager
def two_tenants(
    control_plane: ControlPlane,
    auth: AuthServer,
    pki: TestPKI,
    kube_api: Any,
    tmp_path: Path,
    *,
    operator_args: Sequence[str] = (),
    operator_env: dict[str, str] | None = None,
) -> Iterator[tuple[World, World]]:
    """Two namespaces served by one operator, a hostile tenant's and a good one's; the leak
    canary runs on both on the way out."""
    hostile = new_namespace(control_plane, "hostile-tenant")
    good = new_namespace(control_plane, "good-tenant")
    operator = OperatorProcess(
        control_plane.kubeconfig,
        tmp_path / "operator.log",
        namespaces=[hostile, good],
        extra_args=operator_args,
        env=operator_env,
    )
    auth.clear_faults()
    operator.start()
    worlds = (
        World.from_kube_api(control_plane, auth, pki, kube_api, hostile, operator),
        World.from_kube_api(control_plane, auth, pki, kube_api, good, operator),
    )
    try:
        yield worlds
        for world in worlds:
            assert_nothing_leaked(world, tokens=tokens_by_client(world).values())
    finally:
        operator.stop()
        auth.clear_faults()
        drop_namespace(control_plane, hostile)
        drop_namespace(control_plane, good)


@dataclass
class Served:
    """What the samples of the good tenant showed."""

    samples: int = 0
    #: (client, seconds past its expiry) for every sample that found an expired token
    expired: list[tuple[str, float]] = field(default_factory=list)
    #: (client, seconds after the planned refresh) for every refresh that came late
    late: list[tuple[str, float]] = field(default_factory=list)
    refreshes: int = 0
    #: seconds each liveness answer took (a failed or timed-out one counts as its timeout)
    liveness_s: list[float] = field(default_factory=list)
    liveness_failures: int = 0

    @property
    def slowest_liveness_s(self) -> float:
        return max(self.liveness_s, default=0.0)

    def figures(self) -> dict[str, Any]:
        """For record_figure: the facts a reader of docs/reliability.md wants."""
        return {
            "good_samples": self.samples,
            "good_refreshes": self.refreshes,
            "good_expired_samples": len(self.expired),
            "good_late_refreshes": len(self.late),
            "liveness_slowest_s": round(self.slowest_liveness_s, 3),
            "liveness_failures": self.liveness_failures,
        }

    def assert_unharmed(self, *, min_refreshes: int = 1) -> None:
        """The good tenant never held an expired token, no refresh came late, the operator
        answered its liveness probe within LIVENESS_WITHIN_S every time, and renewals kept
        happening (at least `min_refreshes` across its clients)."""
        assert self.samples >= 5, f"only {self.samples} samples of the good tenant were taken"
        assert not self.expired, f"a good client held an expired token: {self.expired[:5]}"
        assert not self.late, f"a good client's refresh came late: {self.late[:5]}"
        assert self.refreshes >= min_refreshes, (
            f"only {self.refreshes} refreshes of the good tenant's tokens, {min_refreshes} expected"
        )
        assert self.liveness_failures == 0, (
            f"the liveness endpoint failed to answer {self.liveness_failures} times"
        )
        assert self.slowest_liveness_s < LIVENESS_WITHIN_S, (
            f"the liveness endpoint took {self.slowest_liveness_s:.2f} s to answer"
        )


class GoodTenant:
    """`clients` tls_client_auth clients with `token_ttl`-second tokens in `world`, Ready before
    sampling starts, then sampled every `interval` seconds until `stop`.

    `liveness` names the operator processes whose liveness endpoint is timed (the world's own by
    default); a process that is not running, or that `paused` says is frozen on purpose, is
    skipped in that round.
    """

    def __init__(
        self,
        world: World,
        *,
        clients: int = 3,
        token_ttl: float = 20,
        interval: float = 1.0,
        liveness: Sequence[OperatorProcess] | None = None,
        paused: Callable[[OperatorProcess], bool] = lambda process: False,
        ready_within: float = 30,
    ) -> None:
        self.world = world
        self.names = [f"good-{i}" for i in range(clients)]
        self.token_ttl = token_ttl
        self.interval = interval
        self.liveness = list(liveness) if liveness is not None else [world.operator]
        self.paused = paused
        self.ready_within = ready_within
        self.served = Served()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self) -> GoodTenant:
        """Create the clients, wait until each is Ready, and start sampling."""
        for name in self.names:
            self.world.tls_client(name, token_ttl=self.token_ttl)
        wait_all(
            self.world,
            self.names,
            is_ready,
            timeout=self.ready_within,
            what="the good tenant's first tokens",
        )
        self._thread = threading.Thread(target=self._sample, name="good-tenant", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Served:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._failure is not None:
            raise AssertionError("sampling the good tenant failed") from self._failure
        return self.served

    def __enter__(self) -> GoodTenant:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the sampler thread ----------------------------------------------------------------

    def _sample(self) -> None:
        # Its own API client: the test's one is not shared across threads.
        api = kubernetes.config.new_client_from_config(
            config_file=str(self.world.control_plane.kubeconfig)
        )
        custom = kubernetes.client.CustomObjectsApi(api)
        expiry: dict[str, datetime | None] = {}
        planned: dict[str, datetime | None] = {}
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self._sample_tokens()
                self._sample_status(custom, expiry, planned)
                self._sample_liveness()
                self.served.samples += 1
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        except BaseException as error:  # reported by stop(), in the test's own thread
            self._failure = error
        finally:
            api.close()

    def _sample_tokens(self) -> None:
        now = datetime.now(UTC)
        tokens = tokens_by_client(self.world)
        for name in self.names:
            token = tokens.get(name)
            if token is None:
                self.served.expired.append((name, float("inf")))
            elif (past := (now - token_exp(token)).total_seconds()) > 0:
                self.served.expired.append((name, past))

    def _sample_status(
        self,
        custom: Any,
        expiry: dict[str, datetime | None],
        planned: dict[str, datetime | None],
    ) -> None:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, self.world.namespace, PLURAL)
        now = datetime.now(UTC)
        for item in listed.get("items", []):
            name = item["metadata"]["name"]
            if name not in self.names:
                continue
            status = item.get("status") or {}
            new_expiry = _moment(status.get("expiresAt"))
            if name in expiry and new_expiry != expiry[name]:
                self.served.refreshes += 1
                plan = planned.get(name)
                if plan is not None and (late := (now - plan).total_seconds()) > LATE_AFTER_S:
                    self.served.late.append((name, late))
            expiry[name] = new_expiry
            planned[name] = _moment(status.get("nextRefreshTime"))

    def _sample_liveness(self) -> None:
        for process in self.liveness:
            if not process.running or self.paused(process):
                continue
            url = f"http://127.0.0.1:{process.liveness_port}/healthz"
            started = time.monotonic()
            try:
                httpx.get(url, timeout=5, trust_env=False)
            except httpx.HTTPError:
                self.served.liveness_failures += 1
                self.served.liveness_s.append(5.0)
                continue
            self.served.liveness_s.append(time.monotonic() - started)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
