"""A one-node Kubernetes cluster on this machine: pods really run.

:class:`NodeCluster` starts the control plane of :mod:`raidiam_devenv.controlplane`
on a node address plus, all as local processes with binaries from
:mod:`raidiam_devenv.binaries`:

* containerd 2.x (CRI) with runc and the bridge CNI plugin from Debian;
* kubelet, kube-scheduler and kube-proxy (iptables mode, so pods reach the API
  server through the ``kubernetes`` Service with in-cluster config; no DNS).

Typical use (as root)::

    with NodeCluster(tmp_path) as cluster:
        cluster.import_image(build_image().archive)
        cluster.kubectl("apply", "-f", "pod.yaml")

**It changes the host**, which is fine on a throwaway development or CI machine
and is why only one node runs per machine at a time (a lock file):

* the node address :data:`NODE_IP` is added to ``lo`` as a /32 (kubelet
  refuses a loopback node IP, and this kernel has no ``dummy`` links);
* ``net.ipv4.ip_forward`` and ``net.bridge.bridge-nf-call-iptables`` are set
  to 1, and kube-proxy and kubelet add iptables chains (``KUBE-*``);
* the CNI plugin creates the bridge ``cni0``; pods get cgroups under
  ``kubepods`` in every cgroup hierarchy;
* kubelet adds symlinks to ``/var/log/containers``.

Everything else (containerd's root and state, kubelet's root dir, pod logs,
CNI configuration and IP allocations) lives under ``workdir``.  :meth:`stop`
undoes the list above: it kills every container, unmounts what was mounted
under ``workdir``, removes the iptables rules (``kube-proxy --cleanup``), the
bridge, the cgroups and the address.  Host quirks handled here, each where it
is configured: cgroup v1 only (``failCgroupV1: false``, the cgroupfs driver),
no ``CAP_SYS_RESOURCE`` (containerd's ``restrict_oom_score_adj``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from raidiam_devenv.binaries import NodeBinaries, ensure_node_binaries
from raidiam_devenv.controlplane import ControlPlane, ControlPlaneError
from raidiam_devenv.image import write_single_binary_image
from raidiam_devenv.process import Managed, Process, free_port, running_no_more, stop_at_exit
from raidiam_devenv.system_packages import NODE_PACKAGES, ensure_debian_packages

NODE_IP = "10.99.0.1"
NODE_NAME = "raidiam-dev-node"
POD_SUBNET = "10.244.0.0/24"
CNI_BRIDGE = "cni0"
# The name containerd looks for; the image itself is devenv/pause built from source.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOGS_DIR = Path("/var/log/containers")  # fixed in kubelet
MACHINE_LOCK = Path("/run/raidiam-devenv-node.lock")
# A Secret update reaches a pod's files within the kubelet's sync period plus its cache delay;
# 10 s (default 60 s) keeps the node suite's waits short.
KUBELET_SYNC_FREQUENCY = "10s"


class NodeError(ControlPlaneError):
    """The node could not start; the message says why and where the logs are."""


def _progress(message: str) -> None:
    print(f"[raidiam-devenv] {message}", file=sys.stderr, flush=True)


def _run(args: Sequence[str | os.PathLike[str]], *, check: bool = True) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise NodeError(
            f"`{' '.join(str(a) for a in args)}` failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


# --------------------------------------------------------------------------- #
# Host changes, each undone by stop()
# --------------------------------------------------------------------------- #


def _sysctl(name: str, value: str) -> None:
    path = Path("/proc/sys") / name.replace(".", "/")
    if not path.exists():
        raise NodeError(f"sysctl {name} is missing (is the br_netfilter module loaded?)")
    if path.read_text().strip() != value:
        path.write_text(value)


def _has_address(ip: str) -> bool:
    return f" {ip}/" in _run(["ip", "-o", "-4", "addr", "show", "dev", "lo"])


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    # Deepest first.
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _remove_kube_iptables() -> None:
    """Remove the KUBE-* chains (kube-proxy's and kubelet's) and the rules that jump to them."""
    for table in ("filter", "nat", "mangle"):
        rules = _run(["iptables", "-t", table, "-S"], check=False).splitlines()
        for rule in rules:
            parts = shlex.split(rule)  # comments are quoted
            jumps_to_kube = "-j" in parts and parts[parts.index("-j") + 1].startswith("KUBE-")
            if parts[:1] == ["-A"] and jumps_to_kube and not parts[1].startswith("KUBE-"):
                _run(["iptables", "-t", table, "-D", *parts[1:]], check=False)
        chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
        for chain in chains:
            _run(["iptables", "-t", table, "-F", chain], check=False)
        for chain in chains:
            _run(["iptables", "-t", table, "-X", chain], check=False)


def _cgroup_dirs(name: str) -> list[Path]:
    return [d / name for d in CGROUP_ROOT.iterdir() if (d / name).is_dir()]


def _kill_cgroup_tree(root: Path) -> None:
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)


def _remove_cgroup_tree(root: Path) -> None:
    directories = sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    )
    for directory in [*directories, root]:
        with contextlib.suppress(OSError):
            directory.rmdir()


class NodeCluster(Managed):
    """A control plane plus one node (containerd, kubelet, kube-proxy, kube-scheduler).

    Needs root and Linux.  :meth:`start` raises :class:`NodeError` with the
    reason when the node cannot come up; it never silently degrades.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        startup_timeout: float = 120.0,
        lock_timeout: float = 1200.0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.startup_timeout = startup_timeout
        self.lock_timeout = lock_timeout
        self.control_plane = ControlPlane(self.workdir / "controlplane", node_ip=NODE_IP)
        self._binaries: NodeBinaries | None = None
        self._processes: list[Process] = []
        self._containerd: Process | None = None
        self._lock: TextIO | None = None
        self._added_address = False
        self._started = False
        self.started_seconds = 0.0  # how long start() took once the binaries were ready
        self.kubelet_port = 0
        self.kubelet_healthz_port = 0

    # ----------------------------------------------------------------- paths

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    @property
    def binaries(self) -> NodeBinaries:
        if self._binaries is None:
            self._binaries = ensure_node_binaries()
        return self._binaries

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._started:
            return
        if sys.platform != "linux" or os.geteuid() != 0:
            raise NodeError("the dev node needs root on Linux (it runs containerd and kubelet)")
        ensure_debian_packages(NODE_PACKAGES)
        binaries = self.binaries  # may build: before any timer starts
        self._acquire_machine_lock()
        started = time.monotonic()
        _progress(
            f"starting a one-node cluster in {self.workdir}. It changes this host until it "
            f"stops: address {NODE_IP}/32 on lo, ip_forward and bridge-nf-call-iptables "
            f"sysctls, iptables KUBE-* chains, bridge {CNI_BRIDGE}, kubepods cgroups "
            f"(all removed on stop)"
        )
        self._started = True
        stop_at_exit(self)
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._prepare_host()
            self.control_plane.start()
            self._start_containerd(binaries)
            self._import_pause_image(binaries)
            self._start_scheduler(binaries)
            self._start_kube_proxy(binaries)
            self._start_kubelet(binaries)
            self._wait_node_ready()
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - started
        _progress(f"node {NODE_NAME} Ready in {self.started_seconds:.1f}s")

    def stop(self) -> None:
        """Stop everything and undo the host changes (idempotent)."""
        if not self._started:
            return
        self._started = False
        running_no_more(self)
        kubelet_first = sorted(self._processes, key=lambda p: p.name != "kubelet")
        for process in kubelet_first:
            if process.name == "kubelet":
                process.stop(grace=5)
        # Every container process lives in a kubepods cgroup: kill them there (the shims
        # outlive containerd by design, and a killed kubelet stops nothing).
        for root in _cgroup_dirs("kubepods"):
            _kill_cgroup_tree(root)
        self._kill_shims()
        for process in self._processes:
            process.stop(grace=5)
        if self._binaries is not None:
            # kube-proxy's own clean-up of its iptables rules.
            with contextlib.suppress(Exception):
                _run([self._binaries.kube_proxy, "--cleanup"], check=False)
        self._processes.clear()
        self.control_plane.stop()
        self._undo_host_changes()
        self._release_machine_lock()

    # ---------------------------------------------------------------- tools

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.control_plane.kubectl(*args, **kwargs)

    def helm(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.control_plane.helm(*args, **kwargs)

    def ctr(self, *args: str) -> str:
        """``ctr`` in containerd's Kubernetes namespace."""
        return _run(
            [self.binaries.ctr, "--address", self.containerd_socket, "--namespace", "k8s.io", *args]
        )

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive so pods can use it with ``imagePullPolicy: IfNotPresent``/``Never``."""
        self.ctr("images", "import", str(archive))

    def logs(self) -> dict[str, Path]:
        return {
            **self.control_plane.logs(),
            **{p.name: p.log_path for p in self._processes},
        }

    def log_tails(self, lines: int = 30) -> str:
        """The end of every component's log, for failure messages."""
        return "\n".join(
            f"--- {p.name} ({p.log_path}) ---\n{p.log_tail(lines)}" for p in self._processes
        )

    # ------------------------------------------------------------ internals

    def _acquire_machine_lock(self) -> None:
        MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        handle = MACHINE_LOCK.open("a+")
        deadline = time.monotonic() + self.lock_timeout
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    handle.close()
                    raise NodeError(
                        f"another dev node holds {MACHINE_LOCK} (one node per machine: it "
                        f"owns {NODE_IP}, {CNI_BRIDGE} and the KUBE-* iptables chains); waited "
                        f"{self.lock_timeout:.0f}s"
                    ) from None
                if not announced:
                    _progress(f"waiting for another dev node on this machine ({MACHINE_LOCK})")
                    announced = True
                time.sleep(1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {self.workdir}\n")
        handle.flush()
        self._lock = handle

    def _release_machine_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _prepare_host(self) -> None:
        if not _has_address(NODE_IP):
            _run(["ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo"])
            self._added_address = True
        _sysctl("net.ipv4.ip_forward", "1")
        if not Path("/proc/sys/net/bridge").exists():
            _run(["modprobe", "br_netfilter"], check=False)
        # Pod-to-Service traffic within the bridge must pass kube-proxy's iptables rules.
        _sysctl("net.bridge.bridge-nf-call-iptables", "1")

    def _undo_host_changes(self) -> None:
        for point in _mounts_under(self.workdir):
            _run(["umount", "--lazy", point], check=False)
        for root in _cgroup_dirs("kubepods"):
            _remove_cgroup_tree(root)
        _remove_kube_iptables()
        _run(["ip", "link", "delete", CNI_BRIDGE], check=False)
        if self._added_address:
            _run(["ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo"], check=False)
            self._added_address = False
        if CONTAINER_LOGS_DIR.is_dir():
            for link in CONTAINER_LOGS_DIR.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and str(os.readlink(link)).startswith(str(self.workdir)):
                        link.unlink()

    def _kill_shims(self) -> None:
        # The runc shims re-parent themselves to init; ours name our socket on their command line.
        needle = str(self.containerd_socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline and needle in cmdline:
                    os.kill(int(proc.name), signal.SIGKILL)

    def _process(self, name: str, args: Sequence[str | os.PathLike[str]]) -> Process:
        process = Process(name, args, self.workdir / f"{name}.log", mark_starts=True)
        self._processes.append(process)
        process.start()
        return process

    def _wait(self, process: Process, probe: Callable[[], object], what: str) -> None:
        # These probes (ctr, kubectl, urlopen) raise until the component answers.
        def answers() -> bool:
            with contextlib.suppress(Exception):
                return bool(probe())
            return False

        process.wait_until(answers, what, timeout=self.startup_timeout, error=NodeError)

    def _start_containerd(self, binaries: NodeBinaries) -> None:
        base = self.workdir / "containerd"
        cni_conf_dir = self.workdir / "cni" / "net.d"
        cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (cni_conf_dir / "10-raidiam-devenv.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "raidiam-devenv",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": CNI_BRIDGE,
                            "isGateway": True,
                            # Pods only talk to the node address and to Services (which
                            # kube-proxy masquerades itself): no per-pod NAT chains to leak.
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.workdir / "cni" / "ipam"),
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        config = f"""\
version = 3
root = "{base / "root"}"
state = "{base / "state"}"

[grpc]
  address = "{self.containerd_socket}"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # The host lacks CAP_SYS_RESOURCE: a negative oom_score_adj (the pause container's -998)
  # fails with "can't get final child's PID from pipe" unless it is clamped.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state dir, not /run/netns, so stop() finds them.
  netns_mounts_under_state_dir = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "{cni_conf_dir}"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  # cgroup v1 hierarchies only on this host, and no systemd: cgroupfs, like kubelet.
  SystemdCgroup = false
"""
        config_path = base / "config.toml"
        base.mkdir(parents=True, exist_ok=True)
        config_path.write_text(config)
        env_path = f"{binaries.containerd_shim_runc_v2.parent}:{os.environ.get('PATH', '')}"
        # containerd finds its shim on PATH.
        process = Process(
            "containerd",
            ["env", f"PATH={env_path}", binaries.containerd, "--config", config_path],
            self.workdir / "containerd.log",
            mark_starts=True,
        )
        self._processes.append(process)
        process.start()
        self._containerd = process
        self._wait(
            process,
            lambda: self.containerd_socket.exists() and self.ctr("version") is not None,
            "did not serve",
        )

    def _import_pause_image(self, binaries: NodeBinaries) -> None:
        archive = write_single_binary_image(
            binaries.pause, PAUSE_IMAGE, self.workdir / "pause-image.oci.tar"
        )
        self.import_image(archive)

    def _start_scheduler(self, binaries: NodeBinaries) -> None:
        port = free_port()
        kubeconfig = self.control_plane.kubeconfig
        process = self._process(
            "kube-scheduler",
            [
                binaries.kube_scheduler,
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--authentication-skip-lookup=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
            ],
        )
        self._wait(process, lambda: _https_ok(port, "/healthz"), "did not become healthy")

    def _start_kube_proxy(self, binaries: NodeBinaries) -> None:
        healthz = free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.control_plane.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the host's conntrack sysctls alone (read-only in many VMs and containers).
            "conntrack": {"maxPerCore": 0, "min": 0},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self._process("kube-proxy", [binaries.kube_proxy, f"--config={path}"])
        # Its healthz only turns 200 once a node exists; readiness is checked with the node.
        self._kube_proxy_healthz = healthz

    def _start_kubelet(self, binaries: NodeBinaries) -> None:
        cluster = self.control_plane
        cert, key = cluster.issue_client_certificate(
            # Not in kubelet's --cert-dir, where kubelet.crt is its self-signed serving certificate.
            self.workdir / "kubelet-client",
            "kubelet-client",
            f"system:node:{NODE_NAME}",
            "system:nodes",
        )
        kubeconfig = cluster.write_kubeconfig(
            self.workdir / "kubelet.kubeconfig", cert, key, user=f"system:node:{NODE_NAME}"
        )
        self.kubelet_port = free_port()
        self.kubelet_healthz_port = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.kubelet_healthz_port,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(cluster.ca_cert_path)},
            },
            # Only the apiserver (client certificate from the cluster CA) talks to it.
            "authorization": {"mode": "AlwaysAllow"},
            # This host has cgroup v1 only and no systemd.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": str(self.workdir / "pod-logs"),
            "syncFrequency": KUBELET_SYNC_FREQUENCY,
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            # A shared development disk may be fuller than a node's: never evict the tests' pods
            # nor garbage-collect the imported images (no registry to pull them back from).
            "evictionHard": {
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "0%",
            },
            "imageGCHighThresholdPercent": 100,
        }
        config_path = self.workdir / "kubelet.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self._process(
            "kubelet",
            [
                binaries.kubelet,
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
            ],
        )

    def _wait_node_ready(self) -> None:
        kubelet = next(p for p in self._processes if p.name == "kubelet")

        def ready() -> bool:
            node = json.loads(self.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
            # Schedulable too: the node lifecycle controller lifts the not-ready taint.
            return conditions.get("Ready") == "True" and not node["spec"].get("taints")

        self._wait(kubelet, ready, "did not report the node Ready")
        proxy = next(p for p in self._processes if p.name == "kube-proxy")
        self._wait(
            proxy,
            lambda: _http_ok(self._kube_proxy_healthz, "/healthz"),
            "did not become healthy",
        )


def _https_ok(port: int, path: str) -> bool:
    import ssl
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(
        f"https://127.0.0.1:{port}{path}", timeout=3, context=context
    ) as response:
        return bool(response.status == 200)


def _http_ok(port: int, path: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
        return bool(response.status == 200)


@contextlib.contextmanager
def node_cluster(workdir: Path) -> Iterator[NodeCluster]:
    cluster = NodeCluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m raidiam_devenv.node [--workdir DIR] [--check]``: start a node and keep it
    running until Ctrl-C (``--check``: start, report, stop)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m raidiam_devenv.node", description=main.__doc__)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--check", action="store_true", help="start, report and stop")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raidiam-node-"))
    cluster = NodeCluster(workdir)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        cluster.start()
        print(f"KUBECONFIG={cluster.kubeconfig}", flush=True)
        print(cluster.kubectl("get", "nodes", "-o", "wide").stdout, flush=True)
        while not (stop or args.check):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
