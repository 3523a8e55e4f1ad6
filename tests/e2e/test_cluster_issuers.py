"""ClusterRaidiamIssuer and the issuer policy, end to end: the platform team's issuer objects on
the real API server, the real test authorization server behind them, and the operator in its
own process with the flags a platform team would give it.

Every test has a tenant namespace (`world.namespace`, where RaidiamClients live) and an operator
namespace (the cluster resource namespace, where the issuers' CA bundle ConfigMaps live).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.operator_process import OperatorProcess
from raidiam_devenv.pki import TestPKI

from .conftest import GROUP, JWT, VERSION, World, wait_for
from .fault_helpers import drop_namespace, new_namespace

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

ISSUERS = "clusterraidiamissuers"
CA_CONFIG_MAP = "directory-ca"


@dataclass
class Platform:
    """The platform team's side: the operator's namespace, its flags, and the issuers."""

    world: World
    operator_namespace: str
    issuers: list[str]
    start_operator: Callable[..., OperatorProcess]

    def issuer(self, stem: str, **spec: Any) -> str:
        """Create a ClusterRaidiamIssuer for the test server (CA bundle in the operator's
        namespace); returns its name, unique across the shared control plane."""
        name = f"{stem}-{uuid.uuid4().hex[:6]}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterRaidiamIssuer",
            "metadata": {"name": name},
            "spec": {
                "issuer": self.world.auth.issuer,
                "caBundle": {"configMapName": CA_CONFIG_MAP},
                **spec,
            },
        }
        self.world.custom.create_cluster_custom_object(GROUP, VERSION, ISSUERS, body)
        self.issuers.append(name)
        return name

    def patch_issuer(self, name: str, spec: dict[str, Any]) -> None:
        self.world.custom.patch_cluster_custom_object(GROUP, VERSION, ISSUERS, name, {"spec": spec})

    def delete_issuer(self, name: str) -> None:
        self.world.custom.delete_cluster_custom_object(GROUP, VERSION, ISSUERS, name)

    def get_issuer(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.world.custom.get_cluster_custom_object(
            GROUP, VERSION, ISSUERS, name
        )
        return result

    def issuer_ready(self, name: str) -> dict[str, Any]:
        conditions = self.get_issuer(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def wait_issuer(self, name: str, reason: str, *, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (
                self.issuer_ready(name) if self.issuer_ready(name).get("reason") == reason else None
            ),
            timeout=timeout,
            what=f"ClusterRaidiamIssuer {name} reason {reason}",
        )

    def ca_config_map(self) -> None:
        body = {
            "metadata": {"name": CA_CONFIG_MAP},
            "data": {"ca.crt": self.world.auth.ca_path.read_text()},
        }
        self.world.core.create_namespaced_config_map(self.operator_namespace, body)


@pytest.fixture
def platform(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_namespace: str,
    kube_api: Any,
    tmp_path: Path,
) -> Iterator[Platform]:
    """A tenant namespace, an operator namespace, and an operator started on demand with the
    flags a test gives (`start_operator("--issuer-policy", "references-only")`)."""
    operator_namespace = new_namespace(control_plane, "operator")
    operators: list[OperatorProcess] = []

    def start_operator(*flags: str) -> OperatorProcess:
        for running in operators:
            running.stop()
        operator = OperatorProcess(
            control_plane.kubeconfig,
            tmp_path / f"operator-{len(operators)}.log",
            namespaces=[kube_namespace],
            extra_args=[
                f"--cluster-resource-namespace={operator_namespace}",
                "--issuer-check-interval=2s",
                *flags,
            ],
        )
        operators.append(operator)
        world.operator = operator.start()
        return operator

    auth_server.clear_faults()
    world = World(
        control_plane=control_plane,
        auth=auth_server,
        pki=test_pki,
        namespace=kube_namespace,
        core=kubernetes.client.CoreV1Api(kube_api),
        custom=kubernetes.client.CustomObjectsApi(kube_api),
        operator=OperatorProcess(control_plane.kubeconfig, tmp_path / "unused.log"),
    )
    platform = Platform(world, operator_namespace, [], start_operator)
    platform.ca_config_map()
    try:
        yield platform
    finally:
        for operator in operators:
            operator.stop()
        for name in platform.issuers:
            try:
                platform.delete_issuer(name)
            except ApiException as error:
                if error.status != 404:
                    raise
        drop_namespace(control_plane, operator_namespace)
        auth_server.clear_faults()
    for operator in operators:
        assert not JWT.search(operator.log_text()), "a JWT appeared in the operator's log"


# -- the issuer's own status -------------------------------------------------------------------


def test_a_cluster_issuer_becomes_ready_from_a_real_discovery_fetch(platform: Platform) -> None:
    platform.start_operator()

    name = platform.issuer("directory")

    ready = platform.wait_issuer(name, "Discovered")
    status = platform.get_issuer(name)["status"]
    assert ready["status"] == "True"
    assert status["tokenEndpoint"] == platform.world.auth.token_endpoint
    assert status["mtlsTokenEndpoint"] == platform.world.auth.mtls_token_endpoint
    assert status["lastCheckTime"]
    assert status["observedGeneration"] == 1
    table = platform.world.control_plane.kubectl("get", "clusterraidiamissuers", name).stdout
    assert table.split()[:6] == ["NAME", "ISSUER", "READY", "REASON", "LAST", "CHECK"]
    assert "Discovered" in table


def test_a_missing_ca_bundle_is_reported_then_found_by_the_periodic_check(
    platform: Platform,
) -> None:
    platform.start_operator()
    name = platform.issuer("late-ca", caBundle={"configMapName": "not-yet"})

    ready = platform.wait_issuer(name, "ConfigMapNotFound")
    assert ready["status"] == "False"
    assert f"ConfigMap {platform.operator_namespace}/not-yet" in ready["message"]

    platform.world.core.create_namespaced_config_map(
        platform.operator_namespace,
        {
            "metadata": {"name": "not-yet"},
            "data": {"ca.crt": platform.world.auth.ca_path.read_text()},
        },
    )

    platform.wait_issuer(name, "Discovered", timeout=30)


def test_a_changed_issuer_is_checked_again_at_once(platform: Platform) -> None:
    platform.start_operator("--issuer-check-interval=1h")
    name = platform.issuer("changing")
    platform.wait_issuer(name, "Discovered")

    platform.patch_issuer(name, {"issuer": platform.world.auth.issuer + "/elsewhere"})

    ready = platform.wait_issuer(name, "DiscoveryNotFound", timeout=15)
    assert ready["observedGeneration"] == 2
    assert "/elsewhere/.well-known/openid-configuration (HTTP 404)" in ready["message"]
