"""The node suite: the operator's image installed by its Helm chart on a real one-node cluster,
and workload pods that read the token from their mounted files.

The cluster, the image and an authorization server that pods can reach are session fixtures
(raidiam_devenv.fixtures_node). :class:`NodeWorld` is the per-test view with the helpers a
user's steps need (namespaces, helm, clients, caller pods); later node tests reuse it.

Figures measured by the tests (seconds) are collected with :func:`record_figure` and printed
at the end of the run; docs/node.md quotes them.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.image import BuiltImage
from raidiam_devenv.node import NodeCluster
from raidiam_devenv.pki import IssuedCertificate, TestPKI
from raidiam_devenv.workload import CallerLog, caller_manifests, parse_log
from tests.e2e.conftest import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "raidiam-token-operator"
RELEASE = "raidiam-token-operator"  # as README installs it
API = "raidiam.io/v1alpha1"

_FIGURES: dict[str, list[float]] = {}


def record_figure(name: str, seconds: float) -> None:
    """Keep a measured figure for the summary at the end of the run."""
    _FIGURES.setdefault(name, []).append(round(seconds, 1))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("node figures (seconds)")
        for name, values in _FIGURES.items():
            terminalreporter.write_line(f"{name}: {', '.join(f'{v:g}' for v in values)}")


@dataclass
class NodeWorld:
    """One test's view of the node, the authorization server and the operator image."""

    cluster: NodeCluster
    auth: AuthServer
    pki: TestPKI
    image: BuiltImage
    namespaces: list[str] = field(default_factory=list)
    releases: list[tuple[str, str]] = field(default_factory=list)

    # -- cluster objects ---------------------------------------------------------------------

    def namespace(self, prefix: str) -> str:
        """A new namespace that enforces the ``restricted`` Pod Security Standard."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            }
        )
        self.namespaces.append(name)
        return name

    def apply(self, *objects: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl(
            "get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found", check=False
        )
        return json.loads(result.stdout) if result.stdout.strip() else None

    def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.get("secret", name, namespace) or {}
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    # -- helm --------------------------------------------------------------------------------

    def helm_install(self, namespace: str, *settings: str, timeout: float = 180) -> float:
        """``helm install`` as README says (``--wait``: until the pod is Ready); seconds taken."""
        started = time.monotonic()
        self.releases.append((RELEASE, namespace))
        self.cluster.helm(
            "install",
            RELEASE,
            str(CHART),
            "-n",
            namespace,
            "--wait",
            f"--timeout={int(timeout)}s",
            *(arg for setting in settings for arg in ("--set", setting)),
            timeout=timeout + 30,
        )
        return time.monotonic() - started

    def install_operator(self, *settings: str) -> tuple[str, str]:
        """``helm install`` in a new namespace; returns it and a new namespace for workloads."""
        operator_namespace = self.namespace("operator")
        self.helm_install(operator_namespace, *settings)
        return operator_namespace, self.namespace("payments")

    def helm_uninstall(self, namespace: str) -> None:
        self.cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout=120s")
        self.releases.remove((RELEASE, namespace))

    def operator_pods(self, namespace: str) -> list[dict[str, Any]]:
        pods = json.loads(
            self.cluster.kubectl(
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                "app.kubernetes.io/name=raidiam-token-operator",
                "-o",
                "json",
            ).stdout
        )["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    # -- clients -----------------------------------------------------------------------------

    def server_ca_config_map(self, namespace: str) -> str:
        name = "authserver-ca"
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace},
                "data": {"ca.crt": self.auth.ca_path.read_text()},
            }
        )
        return name

    def transport_secret(self, namespace: str, name: str, issued: IssuedCertificate) -> None:
        """A kubernetes.io/tls Secret, as cert-manager writes one (applied: create or rotate)."""
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/tls",
                "metadata": {"name": name, "namespace": namespace},
                "data": {
                    "tls.crt": base64.b64encode(issued.cert_pem).decode(),
                    "tls.key": base64.b64encode(issued.key_pem).decode(),
                },
            }
        )

    def tls_client(
        self,
        namespace: str,
        name: str,
        *,
        token_ttl: int | None = None,
        include_certificate: bool = False,
    ) -> tuple[str, IssuedCertificate]:
        """Register a tls_client_auth client and apply its Secret and RaidiamClient
        (`include_certificate`: its token Secret also carries the certificate)."""
        client_id = f"{name}-{uuid.uuid4().hex[:8]}"
        issued = self.pki.client_certificate(client_id)
        self.auth.register_tls_client(client_id, issued, token_ttl=token_ttl)
        self.transport_secret(namespace, f"{name}-transport", issued)
        self.apply(
            {
                "apiVersion": API,
                "kind": "RaidiamClient",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "issuer": self.auth.issuer,
                    "clientId": client_id,
                    "scope": "directory:software",
                    "authMethod": "tls_client_auth",
                    "transportCertificate": {"secretName": f"{name}-transport"},
                    "caBundle": {"configMapName": self.server_ca_config_map(namespace)},
                    "tokenSecret": {"includeCertificate": include_certificate},
                },
            }
        )
        return client_id, issued

    def client_ready(self, namespace: str, name: str) -> dict[str, Any] | None:
        client = self.get("raidiamclient", name, namespace) or {}
        conditions = (client.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), None)
        return ready if ready and ready["status"] == "True" else None

    # -- workloads ---------------------------------------------------------------------------

    def caller(
        self,
        namespace: str,
        name: str,
        client: str,
        *,
        interval: float = 1.0,
        bundle: bool = False,
        **options: Any,
    ) -> None:
        """A pod that mounts ``<client>-token`` and ``<client>-transport`` (with ``bundle``, only
        ``<client>-token``, which then holds the certificate too) and calls the protected
        resource with them (raidiam_devenv.workload)."""
        self.apply(
            *caller_manifests(
                name,
                namespace,
                image=self.image.reference,
                token_secret=f"{client}-token",
                transport_secret=None if bundle else f"{client}-transport",
                bundle=bundle,
                server_ca_config_map=self.server_ca_config_map(namespace),
                resource_url=self.auth.protected_resource_url,
                interval=interval,
                **options,
            )
        )

    def caller_log(self, namespace: str, pod: str) -> CallerLog:
        result = self.cluster.kubectl("logs", pod, "-n", namespace, check=False)
        return parse_log(result.stdout)

    def wait_accepted_calls(
        self, namespace: str, pod: str, count: int = 1, *, timeout: float = 120
    ) -> CallerLog:
        return wait_for(
            lambda: (
                log if len((log := self.caller_log(namespace, pod)).accepted()) >= count else None
            ),
            timeout=timeout,
            what=f"{count} call(s) of pod {namespace}/{pod} accepted by the resource server",
            interval=0.5,
        )

    # -- clean-up ----------------------------------------------------------------------------

    def close(self) -> None:
        for release, namespace in list(self.releases):
            self.cluster.helm("uninstall", release, "-n", namespace, check=False)
        for namespace in self.namespaces:
            self.cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def node_world(
    node_cluster: NodeCluster,
    node_auth_server: AuthServer,
    test_pki: TestPKI,
    operator_image: BuiltImage,
) -> Iterator[NodeWorld]:
    world = NodeWorld(node_cluster, node_auth_server, test_pki, operator_image)
    try:
        yield world
    finally:
        world.close()
