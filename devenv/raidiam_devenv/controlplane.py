"""A real Kubernetes control plane on loopback, in the spirit of envtest.

etcd, kube-apiserver and kube-controller-manager run as local processes on
random free 127.0.0.1 ports; there are no nodes, so pods never run, but the
API behaves exactly as in a cluster: RBAC, admission, the TokenRequest API,
ownerReference garbage collection and namespace deletion all work.

Typical use::

    with ControlPlane(tmp_path) as cp:
        cp.kubectl("create", "namespace", "demo")

Every process writes to ``<workdir>/<name>.log``; :mod:`raidiam_devenv.process`
runs them, and stops every control plane still running when the interpreter
exits, so a crashed or interrupted test run leaves no orphans behind.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raidiam_devenv.binaries import Binaries, ensure_binaries
from raidiam_devenv.kubectl import helm, kubectl
from raidiam_devenv.pki import TestPKI
from raidiam_devenv.process import (
    Managed,
    Process,
    ProcessError,
    free_port,
    running_no_more,
    stop_at_exit,
)

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# First address of the service range: the apiserver puts it in its own
# "kubernetes" Service, so the serving certificate must name it too.
KUBERNETES_SERVICE_IP = "10.0.0.1"
# Current names (the pre-1.28 short names are only aliases).
CONTROLLERS = ",".join(
    [
        "garbage-collector-controller",  # ownerReference cascading deletion
        "namespace-controller",  # finalizes deleted namespaces
        "serviceaccount-controller",  # the "default" SA in each namespace
        "serviceaccount-token-controller",  # fills service-account-token Secrets
    ]
)
# What pods on a node need on top (see raidiam_devenv.node).
NODE_CONTROLLERS = ",".join(
    [
        CONTROLLERS,
        "deployment-controller",
        "replicaset-controller",
        "endpointslice-controller",  # Services -> kube-proxy
        "endpointslice-mirroring-controller",
        "root-ca-certificate-publisher-controller",  # kube-root-ca.crt in pods' SA volume
        "pod-garbage-collector-controller",
        "disruption-controller",  # the chart's PodDisruptionBudget
        # Lifts the node.kubernetes.io/not-ready taint that kubelet registers the node with.
        "node-lifecycle-controller",
    ]
)


class ControlPlaneError(ProcessError):
    """A component failed to start or to become ready."""


# --------------------------------------------------------------------------- #
# PKI
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path
    kubelet_client_cert: Path
    kubelet_client_key: Path
    authority: TestPKI


def _generate_pki(directory: Path, extra_server_ips: Sequence[str] = ()) -> _Pki:
    """The control plane's CA, serving and admin certificates and service-account key, from the
    same `TestPKI` the tests use (ECDSA P-256: supported by Go's TLS, and instant to generate)."""
    pki = TestPKI(directory, common_name="raidiam-devenv-ca", key_type="ec")
    serving = pki.server_certificate(
        (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "127.0.0.1",
            KUBERNETES_SERVICE_IP,
            *extra_server_ips,
        )
    )
    # O=system:masters is bound to cluster-admin by the bootstrap RBAC
    # policy, and the apiserver never lets RBAC restrict it.
    admin = pki.client_certificate(
        "raidiam-devenv-admin", key_type="ec", organization="system:masters"
    )
    # How the apiserver authenticates to kubelets (logs, exec, port-forward).
    kubelet_client = pki.client_certificate("kube-apiserver-kubelet-client", key_type="ec")
    service_accounts = pki.signing_key("ec")
    paths = _Pki(
        ca_cert=pki.ca_path,
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
        kubelet_client_cert=directory / "apiserver-kubelet-client.crt",
        kubelet_client_key=directory / "apiserver-kubelet-client.key",
        authority=pki,
    )
    serving.write(directory, "apiserver")
    admin.write(directory, "admin")
    kubelet_client.write(directory, "apiserver-kubelet-client")
    paths.sa_key.touch(mode=0o600)
    paths.sa_key.write_bytes(service_accounts.private_pem)
    paths.sa_pub.write_bytes(service_accounts.public_pem)
    return paths


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_yaml(path: Path, data: dict[str, Any], mode: int = 0o600) -> None:
    # Write then rename so a reader never sees a half-written kubeconfig.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.chmod(mode)
    tmp.replace(path)


_AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    # One event per request (at ResponseComplete, plus ResponseStarted for
    # watches) instead of two.
    "omitStages": ["RequestReceived"],
    "rules": [
        # Metadata only: who did what to which Secret/ConfigMap, never the
        # bodies, so token values can never end up in the audit log.
        {
            "level": "Metadata",
            "resources": [{"group": "", "resources": ["secrets", "configmaps"]}],
        },
        # How often the operator patches a client's status (the write budget's tests).
        {
            "level": "Metadata",
            "verbs": ["patch", "update"],
            "resources": [{"group": "raidiam.io", "resources": ["raidiamclients/status"]}],
        },
        {"level": "None"},
    ],
}


# --------------------------------------------------------------------------- #
# ControlPlane
# --------------------------------------------------------------------------- #


class ControlPlane(Managed):
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1.

    ``workdir`` receives the PKI, etcd data, kubeconfigs and process logs.
    With ``audit_policy=True`` the apiserver writes a JSON audit log of every
    Secret/ConfigMap request and RaidiamClient status write (Metadata level) to
    :attr:`audit_log_path`.

    With ``node_ip`` the control plane is ready for a node
    (:class:`raidiam_devenv.node.NodeCluster`): the apiserver listens on that
    address instead of 127.0.0.1 (pods reach it through the ``kubernetes``
    Service), authorizes kubelets with the Node authorizer, reaches them by
    their InternalIP, and the controller manager also runs the controllers
    that pods need (Deployments, EndpointSlices, kube-root-ca.crt).

    ``apiserver_args`` are added to kube-apiserver's flags, e.g.
    ``["--feature-gates=WatchList=false"]`` for an API server that does not
    stream lists.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        audit_policy: bool = False,
        binaries: Binaries | None = None,
        startup_timeout: float = 60.0,
        node_ip: str | None = None,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self._apiserver_args = list(apiserver_args)
        self.node_ip = node_ip
        self._address = node_ip or "127.0.0.1"
        self.startup_timeout = startup_timeout
        self._binaries = binaries
        self._audit = audit_policy
        self.audit_log_path: Path | None = self.workdir / "audit.log" if audit_policy else None
        self.kubeconfig = self.workdir / "admin.kubeconfig"

        self.etcd_client_port = 0
        self.etcd_peer_port = 0
        self.apiserver_port = 0
        self.controller_manager_port = 0

        self._pki: _Pki | None = None
        self._etcd: Process | None = None
        self._apiserver: Process | None = None
        self._controller_manager: Process | None = None
        self._started = False

    # ----------------------------------------------------------------- API

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = ensure_binaries()
        return self._binaries

    @property
    def server(self) -> str:
        """The apiserver URL, e.g. ``https://127.0.0.1:40123``."""
        if not self.apiserver_port:
            raise ControlPlaneError("control plane not started")
        return f"https://{self._address}:{self.apiserver_port}"

    @property
    def ca_cert_path(self) -> Path:
        """PEM of the CA that signed the apiserver serving certificate."""
        return self._require_pki().ca_cert

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_client_port}"

    def start(self) -> None:
        """Start all three components and wait until they serve."""
        if self._started:
            return
        binaries = self.binaries  # may build; do it before any timer starts
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._started = True
        stop_at_exit(self)
        try:
            # start() always makes a fresh cluster (new PKI and ports); old
            # etcd data would carry the previous peer URL and objects.  Use
            # stop_*/start_* to restart components with their state.
            shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)
            self._pki = _generate_pki(self.workdir / "pki", [self.node_ip] if self.node_ip else [])
            self.etcd_client_port = free_port()
            self.etcd_peer_port = free_port()
            self.apiserver_port = free_port()
            self.controller_manager_port = free_port()
            self._etcd = self._etcd_process(binaries)
            self._apiserver = self._apiserver_process(binaries)
            self._controller_manager = self._controller_manager_process(binaries)

            self.start_etcd()
            self.start_apiserver()
            self._write_admin_kubeconfig()
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every component (idempotent); the workdir is left for inspection."""
        # Clients first: the apiserver's graceful shutdown waits for open
        # watches and etcd's for open gRPC streams, so stopping in this order
        # lets each exit within a second instead of running into the grace.
        for process in (self._controller_manager, self._apiserver, self._etcd):
            if process is not None:
                process.stop()
        self._started = False
        running_no_more(self)

    # ---------------------------------------------------- fault injection

    def stop_apiserver(self, *, graceful: bool = False) -> None:
        """Take the apiserver down; the other components keep running.

        By default it is SIGKILLed, like a crash: every client connection and
        watch breaks at once, deterministically.  ``graceful=True`` sends
        SIGTERM: the listener closes at once but, while the controller
        manager's watches are open, the process lingers until killed after
        10 s.
        """
        self._require(self._apiserver).stop(grace=10.0 if graceful else 0)

    def start_apiserver(self) -> None:
        """(Re)start the apiserver with the same port and flags; wait for /readyz."""
        process = self._require(self._apiserver)
        process.start()
        self._wait_until(process, self._apiserver_ready, "did not become ready (/readyz)")

    def stop_etcd(self, *, graceful: bool = False) -> None:
        """Take etcd down (SIGKILL unless ``graceful``); the apiserver keeps running.

        While etcd is down, apiserver requests that need storage hang until
        the apiserver's own timeout (about 60 s): give kubectl a
        ``--request-timeout`` in tests.
        """
        self._require(self._etcd).stop(grace=10.0 if graceful else 0)

    def start_etcd(self) -> None:
        """(Re)start etcd on the same ports and data dir; wait for /health."""
        process = self._require(self._etcd)
        process.start()
        self._wait_until(process, self._etcd_healthy, "did not become healthy (/health)")

    # ----------------------------------------------------------- kubectl

    def env(self) -> dict[str, str]:
        """``os.environ`` plus KUBECONFIG, for subprocesses (operator, helm)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane (admin unless ``kubeconfig``)."""
        return kubectl(
            kubeconfig or self.kubeconfig,
            *args,
            input=input,
            check=check,
            timeout=timeout,
            binary=self.binaries.kubectl,
        )

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane with the admin kubeconfig."""
        return helm(
            self.kubeconfig,
            *args,
            input=input,
            check=check,
            timeout=timeout,
            binary=self.binaries.helm,
        )

    def apply_crds(self, path: Path, *, timeout: float = 60.0) -> list[str]:
        """Apply a CRD file or directory and wait until every CRD is Established.

        Returns the applied object names (``customresourcedefinition.../x``).
        """
        # Server-side apply: large CRDs overflow the 256 KiB
        # last-applied-configuration annotation of client-side apply.
        applied = self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(path), "-o", "name"
        )
        names = [line.strip() for line in applied.stdout.splitlines() if line.strip()]
        crds = [n for n in names if n.startswith("customresourcedefinition.")]
        if crds:
            self.kubectl(
                "wait",
                "--for",
                "condition=established",
                f"--timeout={int(timeout)}s",
                *crds,
                timeout=timeout + 30,
            )
        return names

    def create_token(
        self, namespace: str, name: str, *, duration: str = "24h", audience: str | None = None
    ) -> str:
        """A bound service-account token from the TokenRequest API."""
        args = ["create", "token", name, "--namespace", namespace, "--duration", duration]
        if audience:
            args += ["--audience", audience]
        return self.kubectl(*args).stdout.strip()

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, duration: str = "24h"
    ) -> Path:
        """Write a kubeconfig that authenticates as ``system:serviceaccount:ns:name``.

        The service account must exist.  The token is a TokenRequest token,
        exactly what a pod would be given, so RBAC tests see real
        least-privilege behaviour.
        """
        token = self.create_token(namespace, name, duration=duration)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_yaml(path, self._kubeconfig(f"{namespace}-{name}", {"token": token}, namespace))
        return path

    def issue_client_certificate(
        self, directory: Path, name: str, common_name: str, organization: str | None = None
    ) -> tuple[Path, Path]:
        """A client certificate from the cluster CA (user ``common_name``, group ``organization``)."""
        issued = self._require_pki().authority.client_certificate(
            common_name, key_type="ec", organization=organization
        )
        directory.mkdir(parents=True, exist_ok=True)
        return issued.write(directory, name)

    def write_kubeconfig(self, path: Path, cert: Path, key: Path, *, user: str = "user") -> Path:
        """A kubeconfig for this cluster that authenticates with a client certificate."""
        credentials = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
        _write_yaml(path, self._kubeconfig(user, credentials, "default", context="devenv"))
        return path

    def _kubeconfig(
        self,
        user: str,
        credentials: dict[str, str],
        namespace: str,
        *,
        context: str | None = None,
    ) -> dict[str, Any]:
        context = context or user
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "devenv",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self._require_pki().ca_cert),
                    },
                }
            ],
            "users": [{"name": user, "user": credentials}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": "devenv", "user": user, "namespace": namespace},
                }
            ],
            "current-context": context,
        }

    def logs(self) -> dict[str, Path]:
        """Log file of each component, for attaching to failure reports."""
        return {
            p.name: p.log_path
            for p in (self._etcd, self._apiserver, self._controller_manager)
            if p is not None
        }

    # --------------------------------------------------------- internals

    def _require_pki(self) -> _Pki:
        if self._pki is None:
            raise ControlPlaneError("control plane not started")
        return self._pki

    @staticmethod
    def _require(process: Process | None) -> Process:
        if process is None:
            raise ControlPlaneError("control plane not started")
        return process

    def _wait_until(self, process: Process, probe: Callable[[], bool], what: str) -> None:
        process.wait_until(probe, what, timeout=self.startup_timeout)

    def _etcd_process(self, binaries: Binaries) -> Process:
        client = f"http://127.0.0.1:{self.etcd_client_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        args = [
            str(binaries.etcd),
            "--name=devenv",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=devenv={peer}",
            "--initial-cluster-state=new",
            # Throwaway data: skipping fsync makes every write much faster,
            # which is what envtest does as well.
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            # Keep the data dir small over long benchmark runs.
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=5m",
            "--quota-backend-bytes=2147483648",
        ]
        return Process("etcd", args, self.workdir / "etcd.log", mark_starts=True)

    def _apiserver_process(self, binaries: Binaries) -> Process:
        pki = self._require_pki()
        args = [
            str(binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_client_port}",
            f"--bind-address={self._address}",
            f"--advertise-address={self._address}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--profiling=false",
        ]
        if self.node_ip is None:
            args += [
                # No other apiserver will ever join, and the default reconciler
                # would try to publish endpoints for 127.0.0.1 (rejected).
                "--endpoint-reconciler-type=none",
                "--authorization-mode=RBAC",
            ]
        else:
            args += [
                # The `kubernetes` Service's endpoint is the node address, which
                # pods reach through kube-proxy's rules.
                "--endpoint-reconciler-type=lease",
                # Kubelets may read only what their own pods use.
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                # The node's address is a /32 on lo; it has no resolvable hostname.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki.kubelet_client_cert}",
                f"--kubelet-client-key={pki.kubelet_client_key}",
            ]
        if self._audit and self.audit_log_path is not None:
            policy = self.workdir / "audit-policy.yaml"
            _write_yaml(policy, _AUDIT_POLICY, mode=0o644)
            args += [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                # Blocking mode (the default for the log backend, made
                # explicit): an event is on disk before the response is
                # sent, so tests can read the log right after a request.
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
            ]
        args += self._apiserver_args
        return Process(
            "kube-apiserver", args, self.workdir / "kube-apiserver.log", mark_starts=True
        )

    def _controller_manager_process(self, binaries: Binaries) -> Process:
        pki = self._require_pki()
        args = [
            str(binaries.kube_controller_manager),
            f"--kubeconfig={self.kubeconfig}",
            # Delegated authn/authz for its own /healthz and /metrics; with
            # no kubeconfig here it would look for in-cluster config and warn.
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            # The apiserver has no front-proxy (requestheader) CA, so looking
            # it up in kube-system/extension-apiserver-authentication only
            # logs an error every few seconds; client certs are not needed.
            "--authentication-skip-lookup=true",
            f"--controllers={NODE_CONTROLLERS if self.node_ip else CONTROLLERS}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.controller_manager_port}",
            f"--cert-dir={self.workdir / 'controller-manager-certs'}",
            "--profiling=false",
        ]
        log_path = self.workdir / "kube-controller-manager.log"
        return Process("kube-controller-manager", args, log_path, mark_starts=True)

    def _start_controller_manager(self) -> None:
        process = self._require(self._controller_manager)
        process.start()
        self._wait_until(
            process, self._controller_manager_healthy, "did not become healthy (/healthz)"
        )

    def _write_admin_kubeconfig(self) -> None:
        pki = self._require_pki()
        self.write_kubeconfig(self.kubeconfig, pki.admin_cert, pki.admin_key, user="admin")

    # -- probes: each returns False on any error, the caller owns the deadline

    def _admin_tls_context(self) -> ssl.SSLContext:
        pki = self._require_pki()
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        return context

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
                body = json.loads(response.read())
        except (OSError, ValueError):
            return False
        return bool(body.get("health") == "true")

    def _apiserver_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.server}/readyz", timeout=5, context=self._admin_tls_context()
            ) as response:
                return bool(response.status == 200)
        except (OSError, ssl.SSLError):
            # URLError/HTTPError (503 while post-start hooks run) are OSErrors.
            return False

    def _controller_manager_healthy(self) -> bool:
        # It serves a self-signed certificate from --cert-dir; this is a
        # liveness probe on loopback, not a trust decision.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        url = f"https://127.0.0.1:{self.controller_manager_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return bool(response.status == 200)
        except (OSError, ssl.SSLError):
            return False

    def readyz(self, verbose: bool = False) -> str:
        """Body of the apiserver's /readyz (raises if not ready)."""
        url = f"{self.server}/readyz" + ("?verbose" if verbose else "")
        try:
            with urllib.request.urlopen(
                url, timeout=10, context=self._admin_tls_context()
            ) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as error:
            raise ControlPlaneError(
                f"/readyz returned {error.code}: {error.read().decode(errors='replace')}"
            ) from error
