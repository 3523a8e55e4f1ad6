"""The scenarios: burst create against the floor, restart, steady state, and the sidecar.

Each returns a plain dict of figures, every one measured from outside the operator: token
requests from the authorization server (counters and per-request arrival times), API calls from
kube-apiserver's `apiserver_request_total`, Ready and the refresh schedule from a watch on the
RaidiamClients, memory and CPU from /proc.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import procstat
from benchmarks.cluster import (
    ClientWatch,
    Kube,
    clients_path,
    count_delta,
    latency_delta,
    operator_reads,
    operator_writes,
    request_latency,
)
from benchmarks.operator import Operator
from benchmarks.procstat import MIB, Sampler
from benchmarks.sidecar import sidecar_command, token_refresher
from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import IssuedCertificate, TestPKI

REPO_ROOT = Path(__file__).resolve().parent.parent
SCOPE = "directory:software"
CA_CONFIG_MAP = "authserver-ca"
# Tokens of the burst and restart scenarios live long enough that no renewal falls due while
# they are measured: every token request there is one the scenario caused.
LONG_TTL = 3600


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


@dataclass
class Bench:
    """The control plane, the authorization server and the shared inputs of every scenario."""

    workdir: Path
    certificates: int = 10
    #: Secrets no client names, put in every burst namespace (Helm release history, say): the
    #: operator's memory must not grow with them
    unrelated_secrets: int = 0
    unrelated_kib: int = 100
    control_plane: ControlPlane = field(init=False)
    auth: AuthServer = field(init=False)
    pki: TestPKI = field(init=False)
    kube: Kube = field(init=False)
    certs: list[IssuedCertificate] = field(init=False)
    cert_paths: list[tuple[str, str]] = field(init=False)
    registered: set[str] = field(default_factory=set)

    def start(self) -> Bench:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log(f"starting the control plane and the authorization server in {self.workdir}")
        self.control_plane = ControlPlane(self.workdir / "controlplane")
        self.control_plane.start()
        for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):
            self.control_plane.apply_crds(crd)
        self.pki = TestPKI(self.workdir / "pki")
        self.auth = AuthServer(self.workdir / "authserver", self.pki, log_requests=False).start()
        self.kube = Kube(self.control_plane.kubeconfig, self.workdir / "admin")
        self.certs = [
            self.pki.client_certificate(f"bench-transport-{i}") for i in range(self.certificates)
        ]
        self.cert_paths = [
            tuple(str(p) for p in cert.write(self.workdir / "certs", f"transport-{i}"))  # type: ignore[misc]
            for i, cert in enumerate(self.certs)
        ]
        return self

    def stop(self) -> None:
        for closer in (self.kube.close, self.auth.stop, self.control_plane.stop):
            try:
                closer()
            except Exception as error:  # keep tearing down the rest
                log(f"teardown: {type(error).__name__}: {error}")

    # -- inputs ----------------------------------------------------------------------------

    def register(self, prefix: str, count: int, *, ttl: int) -> list[str]:
        """tls_client_auth clients `prefix-0..count-1`, client j on certificate j % k."""
        ids = [f"{prefix}-{j}" for j in range(count)]
        if prefix in self.registered:
            return ids
        for start in range(0, count, 1000):
            self.auth.register_clients(
                [
                    {
                        "client_id": ids[j],
                        "token_endpoint_auth_method": "tls_client_auth",
                        "tls_client_auth_subject_dn": self.certs[j % len(self.certs)].subject_dn,
                        "tls_client_certificate_bound_access_tokens": True,
                        "grant_types": ["client_credentials"],
                        "response_types": [],
                        "scope": SCOPE,
                        "token_ttl": ttl,
                    }
                    for j in range(start, min(count, start + 1000))
                ]
            )
        self.registered.add(prefix)
        return ids

    def namespace(self, name: str) -> str:
        """A namespace with the CA bundle and the transport certificate Secrets."""
        self.kube.create_namespace(name)
        self.kube.create(
            f"/api/v1/namespaces/{name}/configmaps",
            {
                "metadata": {"name": CA_CONFIG_MAP},
                "data": {"ca.crt": self.auth.ca_path.read_text()},
            },
        )
        for i, cert in enumerate(self.certs):
            self.kube.create(
                f"/api/v1/namespaces/{name}/secrets",
                {
                    "metadata": {"name": f"transport-{i}"},
                    "type": "kubernetes.io/tls",
                    "data": {
                        "tls.crt": base64.b64encode(cert.cert_pem).decode(),
                        "tls.key": base64.b64encode(cert.key_pem).decode(),
                    },
                },
            )
        if self.unrelated_secrets:
            # One random payload for all: the API server and etcd store each copy anyway.
            payload = base64.b64encode(os.urandom(self.unrelated_kib * 1024)).decode()
            seconds = self.kube.create_many(
                f"/api/v1/namespaces/{name}/secrets",
                (
                    {"metadata": {"name": f"unrelated-{j}"}, "data": {"blob": payload}}
                    for j in range(self.unrelated_secrets)
                ),
                concurrency=8,
            )
            log(
                f"{name}: {self.unrelated_secrets} unrelated Secrets of {self.unrelated_kib} KiB "
                f"in {seconds:.0f} s"
            )
        return name

    def client_bodies(self, client_ids: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": "raidiam.io/v1alpha1",
                "kind": "RaidiamClient",
                "metadata": {"name": f"c{j}"},
                "spec": {
                    "issuer": self.auth.issuer,
                    "clientId": client_id,
                    "scope": SCOPE,
                    "authMethod": "tls_client_auth",
                    "transportCertificate": {"secretName": f"transport-{j % len(self.certs)}"},
                    "caBundle": {"configMapName": CA_CONFIG_MAP},
                },
            }
            for j, client_id in enumerate(client_ids)
        ]

    def operator(self, namespace: str, label: str) -> Operator:
        return Operator(
            self.control_plane.kubeconfig,
            self.workdir / f"operator-{label}.log",
            namespaces=[namespace],
        )


def _ready_timeout(n: int) -> float:
    return max(120.0, n * 0.2)


# -- floor ------------------------------------------------------------------------------------


def floor(bench: Bench, n: int, repeat: int, *, concurrency: int = 64) -> dict[str, Any]:
    """The plain script: N token requests and N Secret creations, in its own process."""
    namespace = f"floor-{n}-{repeat}"
    bench.kube.create_namespace(namespace)
    client_ids = bench.register(f"b{n}", n, ttl=LONG_TTL)
    config = {
        "issuer": bench.auth.issuer,
        "ca": str(bench.auth.ca_path),
        "certificates": bench.cert_paths,
        "client_ids": client_ids,
        "namespace": namespace,
        "kubeconfig": str(bench.control_plane.kubeconfig),
        "concurrency": concurrency,
        "threads": 16,
        "scope": SCOPE,
    }
    config_path = bench.workdir / f"floor-{n}-{repeat}.json"
    config_path.write_text(json.dumps(config))
    bench.auth.reset_stats()
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.floor", str(config_path)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "devenv")]),
        },
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.time() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the floor script failed with {process.returncode}")
    result = json.loads(output)
    stats = bench.auth.stats()
    return {
        "n": n,
        # from the process start, as the operator's is: interpreter and imports included
        "seconds": seconds,
        "work_seconds": result["seconds"],
        "tokens_per_second": n / seconds,
        "errors": result["errors"],
        "token_requests": stats["token_requests_total"],
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


# -- burst and restart ------------------------------------------------------------------------


def burst_and_restart(bench: Bench, n: int, repeat: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """N clients without tokens, created before the operator starts, so it meets all N at once;
    timed from the operator's process start, as the floor is from its own. Then a restart."""
    namespace = bench.namespace(f"burst-{n}-{repeat}")
    client_ids = bench.register(f"b{n}", n, ttl=LONG_TTL)
    create_seconds = bench.kube.create_many(
        clients_path(namespace), bench.client_bodies(client_ids)
    )
    watch = ClientWatch(bench.kube, namespace).start()
    while len(watch.clients) < n:
        time.sleep(0.1)
    bench.auth.reset_stats()
    before = bench.kube.request_counts()
    operator = bench.operator(namespace, f"burst-{n}-{repeat}").spawn()
    sampler = Sampler({"operator": [operator.pid]}, interval=0.5).start()
    try:
        ready_at = watch.wait_ready(n, timeout=_ready_timeout(n))
        if ready_at is None:
            raise RuntimeError(
                f"burst {n}: only {watch.ready_count} of {n} Ready after {_ready_timeout(n):.0f} s"
                f"\n{operator.log_tail()}"
            )
        seconds = ready_at - operator.spawned_at
        stats = bench.auth.stats()
        delta = count_delta(before, bench.kube.request_counts())
        reading = procstat.sample(operator.pid)
        assert reading is not None
        burst = {
            "n": n,
            "seconds": seconds,
            "create_seconds": create_seconds,
            "tokens_per_second": n / seconds,
            "token_requests": stats["token_requests_total"],
            "issued": stats["issued_total"],
            "api_writes": operator_writes(delta),
            "api": delta,
            "cpu_seconds": reading.cpu,
            "peak_rss_mib": reading.peak_rss / MIB,
            "rss_mib": reading.rss / MIB,
            "rss_series": sampler.series.get("operator", []),
        }
        log(
            f"burst {n} #{repeat}: all Ready {seconds:.1f} s after the operator started, "
            f"{stats['token_requests_total']} token requests, {burst['api_writes']} writes, "
            f"peak RSS {burst['peak_rss_mib']:.0f} MiB, CPU {burst['cpu_seconds']:.1f} s"
        )
        sampler.stop()
        restart = _restart(bench, operator, namespace, n)
        log(
            f"restart {n} #{repeat}: all scheduled {restart['seconds']:.1f} s after the kill, "
            f"{restart['token_requests']} token requests, {restart['api_writes']} writes, "
            f"{restart['api_reads']} reads, peak RSS {restart['peak_rss_mib']:.0f} MiB"
        )
        return burst, restart
    finally:
        sampler.stop()
        watch.stop()
        operator.stop()


def live_burst(bench: Bench, n: int) -> dict[str, Any]:
    """N clients created at once, as fast as the harness can, while the operator runs."""
    namespace = bench.namespace(f"live-{n}")
    client_ids = bench.register(f"b{n}", n, ttl=LONG_TTL)
    operator = bench.operator(namespace, f"live-{n}").start()
    watch = ClientWatch(bench.kube, namespace).start()
    try:
        time.sleep(1.0)
        bench.auth.reset_stats()
        started = time.time()
        create_seconds = bench.kube.create_many(
            clients_path(namespace), bench.client_bodies(client_ids)
        )
        ready_at = watch.wait_ready(n, timeout=_ready_timeout(n))
        if ready_at is None:
            raise RuntimeError(f"live burst {n}: only {watch.ready_count} Ready")
        reading = procstat.sample(operator.pid)
        assert reading is not None
        result = {
            "n": n,
            "seconds": ready_at - started,
            "create_seconds": create_seconds,
            "ready_after_last_create": ready_at - started - create_seconds,
            "token_requests": bench.auth.stats()["token_requests_total"],
            "peak_rss_mib": reading.peak_rss / MIB,
        }
        log(
            f"live burst {n}: creating took {create_seconds:.1f} s, all Ready "
            f"{result['ready_after_last_create']:.1f} s after the last was created"
        )
        return result
    finally:
        watch.stop()
        operator.stop()


def _restart(bench: Bench, operator: Operator, namespace: str, n: int) -> dict[str, Any]:
    """Kill the operator and start a new one while every token is valid."""
    time.sleep(2.0)
    bench.auth.reset_stats()
    before = bench.kube.request_counts()
    killed = time.time()
    operator.stop(kill=True)
    operator.spawn()
    deadline = time.monotonic() + max(300.0, n * 0.1)
    scheduled_at = None
    alive_at = None
    while time.monotonic() < deadline:
        count = operator.scheduled()
        if count and alive_at is None:
            alive_at = time.time()
        if count >= n:
            scheduled_at = time.time()
            break
        if not operator.running:
            raise RuntimeError(f"the operator died on restart:\n{operator.log_tail()}")
        time.sleep(0.25)
    if scheduled_at is None:
        raise RuntimeError(f"restart {n}: only {operator.scheduled()} scheduled")
    time.sleep(3.0)  # anything the restart would still send or write
    stats = bench.auth.stats()
    delta = count_delta(before, bench.kube.request_counts())
    reading = procstat.sample(operator.pid)
    assert reading is not None
    return {
        "n": n,
        "seconds": scheduled_at - killed,
        "token_requests": stats["token_requests_total"],
        "api_writes": operator_writes(delta),
        "api_reads": operator_reads(delta),
        "api": delta,
        "cpu_seconds": reading.cpu,
        "peak_rss_mib": reading.peak_rss / MIB,
    }


def _cpu(pid: int) -> float:
    reading = procstat.sample(pid)
    return reading.cpu if reading else 0.0


# -- steady state -----------------------------------------------------------------------------


def steady(
    bench: Bench,
    n: int,
    *,
    seconds: float,
    ttl: int,
    progress: Callable[[str], None] = log,
) -> dict[str, Any]:
    """N clients with `ttl`-second tokens, watched for `seconds` after all are Ready."""
    namespace = bench.namespace(f"steady-{n}-{ttl}")
    client_ids = bench.register(f"s{n}-{ttl}", n, ttl=ttl)
    operator = bench.operator(namespace, f"steady-{n}")
    operator.start()
    watch = ClientWatch(bench.kube, namespace).start()
    sampler = Sampler({"operator": [operator.pid]}, interval=2.0).start()
    try:
        bench.kube.create_many(clients_path(namespace), bench.client_bodies(client_ids))
        if watch.wait_ready(n, timeout=_ready_timeout(n)) is None:
            raise RuntimeError(f"steady {n}: only {watch.ready_count} Ready\n{operator.log_tail()}")
        bench.auth.reset_stats()
        before = bench.kube.request_counts()
        latency_before = request_latency(bench.kube)
        cpu_before = _cpu(operator.pid)
        window_start = time.time()
        window_end = window_start + seconds
        while time.time() < window_end:
            time.sleep(min(30.0, max(0.0, window_end - time.time())))
            progress(
                f"steady {n}: {time.time() - window_start:.0f}/{seconds:.0f} s, "
                f"{sampler.series['operator'][-1][1]:.0f} MiB"
            )
        stats = bench.auth.stats(timeline=True)
        delta = count_delta(before, bench.kube.request_counts())
        latency = latency_delta(latency_before, request_latency(bench.kube))
        cpu = _cpu(operator.pid) - cpu_before
        time.sleep(5.0)  # the status of the window's last refreshes
        reading = procstat.sample(operator.pid)
        assert reading is not None
        series = [
            (t, rss, c)
            for t, rss, c in sampler.series["operator"]
            if t >= window_start - sampler.started
        ]
    finally:
        sampler.stop()
        watch.stop()
        operator.stop()
    schedule = analyse_schedule(
        client_ids=client_ids,
        timeline=stats.get("token_request_times_by_client", {}),
        tracks={name: track.history for name, track in watch.clients.items()},
        window=(window_start, window_end),
        ttl=ttl,
    )
    refreshes = schedule["refreshes"]
    result = {
        "n": n,
        "ttl": ttl,
        "window_seconds": seconds,
        "token_requests": stats["token_requests_total"],
        "issued": stats["issued_total"],
        **schedule,
        "requests_per_refresh": schedule["requests"] / refreshes if refreshes else None,
        "api_writes": operator_writes(delta),
        "api_writes_per_refresh": operator_writes(delta) / refreshes if refreshes else None,
        "api_reads_per_refresh": operator_reads(delta) / refreshes if refreshes else None,
        "api": delta,
        "api_latency_ms": latency,
        "cpu_seconds": cpu,
        "cpu_seconds_per_refresh": cpu / refreshes if refreshes else None,
        "cpu_seconds_per_client_hour": cpu / n / (seconds / 3600),
        "rss_mib_max": max(rss for _, rss, _ in series),
        "rss_mib_end": reading.rss / MIB,
        "peak_rss_mib": reading.peak_rss / MIB,
        "rss_series": [(round(t - series[0][0], 1), rss) for t, rss, _ in series],
        "watch_errors": len(watch.errors),
    }
    log(
        f"steady {n}: {refreshes} refreshes, lateness p50 {schedule['lateness_p50']:.2f} s "
        f"p99 {schedule['lateness_p99']:.2f} s max {schedule['lateness_max']:.2f} s, "
        f"expired {schedule['expired']}, requests/refresh {result['requests_per_refresh']}, "
        f"writes/refresh {result['api_writes_per_refresh']}, CPU/refresh "
        f"{result['cpu_seconds_per_refresh']}, RSS max {result['rss_mib_max']:.0f} MiB"
    )
    return result


def _parse(moment: str | None) -> float | None:
    if not moment:
        return None
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def analyse_schedule(
    *,
    client_ids: list[str],
    timeline: dict[str, list[int]],
    tracks: dict[str, list[tuple[float, str | None, str | None]]],
    window: tuple[float, float],
    ttl: int,
) -> dict[str, Any]:
    """Lateness, refreshes and expiries from the server's request times and the status history.

    Lateness of a request: its arrival at the server minus the nextRefreshTime the status showed
    just before it. A refresh: a request in the window after which the status showed a new
    expiresAt before the next request. Expired: the status still showed a token past its expiry
    (a new expiresAt seen only after the old one had passed, or an expired one at the end).
    """
    start, end = window
    lateness: list[float] = []
    refreshes = 0
    expired = 0
    server_gaps = 0
    per_second: Counter[int] = Counter()
    by_bucket: dict[int, list[float]] = {}
    for j, client_id in enumerate(client_ids):
        history = tracks.get(f"c{j}", [])
        requests = sorted(t / 1000 for t in timeline.get(client_id, []) if start <= t / 1000 <= end)
        changes = [
            (seen, _parse(expires))
            for (seen, expires, _), previous in zip(history[1:], history[:-1], strict=False)
            if expires != previous[1]
        ]
        for i, request in enumerate(requests):
            per_second[int(request - start)] += 1
            planned = None
            for seen, _, next_refresh in history:
                if seen >= request:
                    break
                planned = _parse(next_refresh) if next_refresh else planned
            if planned is not None:
                lateness.append(request - planned)
                by_bucket.setdefault(int((request - start) // 10), []).append(request - planned)
            following = requests[i + 1] if i + 1 < len(requests) else request + 60.0
            if any(request <= seen < following for seen, _ in changes):
                refreshes += 1
            if i and request - requests[i - 1] > ttl:
                server_gaps += 1
        # the status showing an expired token while the window ran
        expires_at = None
        for seen, expires, _ in history:
            moment = _parse(expires)
            changed = expires_at is not None and moment != expires_at
            if changed and start <= seen <= end and seen > expires_at:  # type: ignore[operator]
                expired += 1
            expires_at = moment if moment is not None else expires_at
        if expires_at is not None and expires_at < end:
            expired += 1
    lateness.sort()
    return {
        "requests": sum(per_second.values()),
        "refreshes": refreshes,
        "expired": expired,
        "server_gaps_over_ttl": server_gaps,
        "lateness_p50": _quantile(lateness, 0.50),
        "lateness_p99": _quantile(lateness, 0.99),
        "lateness_max": lateness[-1] if lateness else 0.0,
        "lateness_min": lateness[0] if lateness else 0.0,
        "lateness_quantiles": [round(_quantile(lateness, q / 100), 3) for q in range(101)],
        "requests_per_second": [per_second.get(s, 0) for s in range(int(end - start) + 1)],
        # p50, p99 and max lateness of the requests in each 10-second slice of the window
        "lateness_by_10s": [
            [
                round(_quantile(sorted(values), 0.5), 3),
                round(_quantile(sorted(values), 0.99), 3),
                round(max(values), 3),
            ]
            if (values := by_bucket.get(b))
            else [0.0, 0.0, 0.0]
            for b in range(int((end - start) // 10) + 1)
        ],
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


# -- the sidecar alternative ------------------------------------------------------------------


def sidecars(bench: Bench, n: int, *, seconds: float, ttl: int) -> dict[str, Any]:
    """N token-refresher processes with client secrets, refreshing `ttl`-second tokens."""
    binary, how = token_refresher()
    if binary is None:
        log(f"sidecar: not run: {how}")
        return {"n": n, "available": False, "reason": how}
    margin = f"{round(ttl * 0.33)}s"  # the operator's default: renew with a third of the life left
    directory = bench.workdir / f"sidecars-{n}"
    directory.mkdir(parents=True, exist_ok=True)
    bench.auth.register_clients(
        [
            {
                "client_id": f"sidecar-{j}",
                "client_secret": f"sidecar-secret-{j}-0123456789abcdef",
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["client_credentials"],
                "response_types": [],
                "scope": SCOPE,
                "token_ttl": ttl,
            }
            for j in range(n)
        ]
    )
    processes = []
    log_file = (directory / "sidecars.log").open("ab")
    try:
        for j in range(n):
            command = sidecar_command(
                binary,
                issuer=bench.auth.issuer,
                client_id=f"sidecar-{j}",
                file=directory / f"token-{j}",
                margin=margin,
            )
            environment = {
                **os.environ,
                "OIDC_CLIENT_SECRET": f"sidecar-secret-{j}-0123456789abcdef",
                "SSL_CERT_FILE": str(bench.auth.ca_path),
            }
            processes.append(
                subprocess.Popen(
                    command,
                    env=environment,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all((directory / f"token-{j}").exists() for j in range(n)):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"sidecars: not every token file was written; see {log_file.name}")
        pids = [p.pid for p in processes]
        bench.auth.reset_stats()
        cpu_before = procstat.total(pids).cpu
        window_start = time.time()
        rss, pss = [], []
        while time.time() < window_start + seconds:
            rss.append(procstat.total(pids).rss / MIB)
            pss.append(sum(procstat.pss(pid) for pid in pids) / MIB)
            time.sleep(5.0)
        cpu = procstat.total(pids).cpu - cpu_before
        stats = bench.auth.stats()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        log_file.close()
    refreshes = stats["issued_total"]
    result = {
        "n": n,
        "available": True,
        "how": how,
        "ttl": ttl,
        "window_seconds": seconds,
        "token_requests": stats["token_requests_total"],
        "refreshes": refreshes,
        "rss_mib_total": statistics.median(rss),
        "pss_mib_total": statistics.median(pss),
        "rss_mib_per_process": statistics.median(rss) / n,
        "pss_mib_per_process": statistics.median(pss) / n,
        "cpu_seconds": cpu,
        "cpu_seconds_per_refresh": cpu / refreshes if refreshes else None,
        "cpu_seconds_per_client_hour": cpu / n / (seconds / 3600),
    }
    log(
        f"sidecar {n}: RSS {result['rss_mib_total']:.0f} MiB total (PSS "
        f"{result['pss_mib_total']:.0f}), CPU {cpu:.1f} s for {refreshes} refreshes"
    )
    return result
