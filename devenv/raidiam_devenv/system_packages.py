"""Debian packages the node and the image builder need, installed on first use.

``make test`` must set up a fresh machine by itself, and these tools come from
Debian (the only place the machine can get them): ``apt-get install`` runs
once, as root, for whatever command is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

# command -> the Debian package that provides it
IMAGE_BUILD_PACKAGES: Mapping[str, str] = {
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    # buildah only recommends an OCI runtime, and recommends are not installed: without one,
    # every RUN step of the Dockerfile fails with "exec: no command".
    "runc": "runc",
}
NODE_PACKAGES: Mapping[str, str] = {
    "runc": "runc",
    # kube-proxy's iptables mode and kubelet's own rules
    "iptables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    # the bridge, host-local and loopback CNI plugins (/usr/lib/cni)
    "/usr/lib/cni/bridge": "containernetworking-plugins",
}

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class SystemPackageError(RuntimeError):
    """A required Debian package is missing and could not be installed."""


def _have(command: str) -> bool:
    if command.startswith("/"):
        return os.access(command, os.X_OK)
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(command, path=path) is not None


def ensure_debian_packages(required: Mapping[str, str]) -> None:
    """Install the Debian packages of the missing commands (``apt-get``, as root)."""
    missing = sorted({package for command, package in required.items() if not _have(command)})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemPackageError(
            f"missing Debian packages {', '.join(missing)}: install them with "
            f"`apt-get install {' '.join(missing)}` (needs root on Debian or Ubuntu)"
        )
    print(
        f"[raidiam-devenv] apt-get install {' '.join(missing)}",
        file=sys.stderr,
        flush=True,
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(
            args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemPackageError(
                f"`{' '.join(args)}` failed ({result.returncode}):\n{result.stdout[-2000:]}"
                f"{result.stderr[-2000:]}"
            )
