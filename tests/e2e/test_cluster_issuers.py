"""ClusterRaidiamIssuer and the issuer policy, end to end: the platform team's issuer objects on
the real API server, the real test authorization server behind them, and the operator in its
own process with the flags a platform team would give it.

Every test has a tenant namespace (`world.namespace`, where RaidiamClients live) and an operator
namespace (the cluster resource namespace, where the issuers' CA bundle ConfigMaps live).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.operator_process import OperatorProcess
from raidiam_devenv.pki import TestPKI

from .conftest import GROUP, JWT, VERSION, World, wait_for
from .fault_helpers import drop_namespace, new_namespace, origin, tls_client_with

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

    def start_operator(*flags: str, env: dict[str, str] | None = None) -> OperatorProcess:
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
            env=env,
        )
        operators.append(operator)
        world.operator = operator.start()
        return operator

    auth_server.clear_faults()
    world = World.from_kube_api(
        control_plane,
        auth_server,
        test_pki,
        kube_api,
        kube_namespace,
        OperatorProcess(control_plane.kubeconfig, tmp_path / "unused.log"),
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


# -- clients through an issuer -------------------------------------------------------------------


def _referring_client(platform: Platform, name: str, issuer: str, **extra: Any) -> str:
    """A registered tls_client_auth client that names `issuer` instead of a URL; its id."""
    world = platform.world
    client_id = f"{name}-{uuid.uuid4().hex[:8]}"
    issued = world.pki.client_certificate(client_id)
    world.auth.register_tls_client(client_id, issued, token_ttl=extra.pop("token_ttl", None))
    world.tls_secret(f"{name}-transport", issued)
    world.create_client(
        name,
        {
            "issuerRef": {"name": issuer},
            "clientId": client_id,
            "scope": "directory:software",
            "authMethod": "tls_client_auth",
            "transportCertificate": {"secretName": f"{name}-transport"},
            **extra,
        },
    )
    return client_id


def _server_requests(platform: Platform) -> tuple[int, int]:
    stats = platform.world.auth.stats()
    return int(stats["token_requests_total"]), int(stats["discovery_requests_total"])


def test_a_client_through_an_issuer_ref_gets_a_token_from_the_issuers_server(
    platform: Platform,
) -> None:
    platform.start_operator("--issuer-policy=references-only")
    issuer = platform.issuer("directory")

    _referring_client(platform, "through-ref", issuer)

    world = platform.world
    assert world.wait_ready("through-ref")["reason"] == "TokenValid"
    status = world.client("through-ref")["status"]
    # The issuer's CA bundle (in the operator's namespace) was used: the tenant named none.
    assert status["tokenEndpoint"] == world.auth.mtls_token_endpoint
    assert world.claims("through-ref")["iss"] == world.auth.issuer


def test_a_namespace_outside_the_selector_is_refused_without_a_request(
    platform: Platform,
) -> None:
    platform.start_operator()
    issuer = platform.issuer(
        "selective", namespaceSelector={"matchLabels": {"raidiam.example/tenant": "gold"}}
    )
    platform.wait_issuer(issuer, "Discovered")
    world = platform.world
    client_id = _referring_client(platform, "outsider", issuer)

    ready = world.wait_reason("outsider", "IssuerNotAllowed")

    assert ready["status"] == "False"
    assert ready["message"] == (
        f"ClusterRaidiamIssuer {issuer} may not be used from namespace {world.namespace}: it "
        "serves namespaces labelled raidiam.example/tenant=gold. Ask the platform team to add "
        "this namespace to its namespaces or namespaceSelector, or use another issuer"
    )
    assert world.requests_for(client_id) == 0
    assert world.secret("outsider-token") is None
    warning = wait_for(
        lambda: [e for e in world.events("outsider") if e.reason == "IssuerNotAllowed"],
        timeout=10,
        what="a Warning event IssuerNotAllowed",
    )
    assert warning[0].type == "Warning"

    # The platform team labels the namespace: the client is let in.
    world.control_plane.kubectl(
        "label", "namespace", world.namespace, "raidiam.example/tenant=gold"
    )
    world.patch_client(
        "outsider", {"metadata": {"annotations": {"raidiam.io/refresh-requested-at": "1"}}}
    )
    world.wait_ready("outsider", timeout=30)


@pytest.mark.parametrize("policy", ["any", "allowlist", "references-only"])
def test_each_issuer_policy_decides_whether_an_inline_issuer_is_contacted(
    platform: Platform, policy: str
) -> None:
    world = platform.world
    flags = {
        "any": ["--issuer-policy=any"],
        # An allowlist that does not cover the test server: the tenant's issuer is refused.
        "allowlist": ["--issuer-policy=allowlist", "--allowed-issuer=https://auth.example"],
        "references-only": ["--issuer-policy=references-only"],
    }[policy]
    # No periodic issuer check during the count below.
    platform.start_operator(*flags, "--issuer-check-interval=1h")
    # A reference works under every policy.
    issuer = platform.issuer("shared")
    _referring_client(platform, "referenced", issuer)
    world.wait_ready("referenced")
    platform.wait_issuer(issuer, "Discovered")
    tokens_before, discoveries_before = _server_requests(platform)

    client_id = tls_client_with(world, "inline")  # spec.issuer: the test server, the tenant's pick

    if policy == "any":
        world.wait_ready("inline")
        assert world.requests_for(client_id) == 1
        return
    ready = world.wait_reason("inline", "IssuerNotAllowed")
    assert ready["status"] == "False"
    if policy == "allowlist":
        assert ready["message"].startswith(
            f"spec.issuer '{world.auth.issuer}' is not an issuer the operator's policy allows "
            "(--issuer-policy allowlist). Ask the platform team"
        )
        assert "https://auth.example" not in ready["message"]  # the allowlist is not shown
    else:
        assert "--issuer-policy references-only" in ready["message"]
        assert "Set spec.issuerRef to a ClusterRaidiamIssuer" in ready["message"]
    time.sleep(2)  # anything sent would have arrived by now
    # The server received nothing at all meanwhile: no token request, no discovery fetch.
    assert _server_requests(platform) == (tokens_before, discoveries_before)
    assert world.requests_for(client_id) == 0
    assert world.secret("inline-token") is None


def test_an_allowlisted_inline_issuer_gets_its_token(platform: Platform) -> None:
    world = platform.world
    # The test server's CA in the operator's own trust store: no inline caBundle under allowlist.
    platform.start_operator(
        "--issuer-policy=allowlist",
        f"--allowed-issuer={world.auth.issuer}",
        f"--allowed-issuer={origin(world.auth.mtls_token_endpoint)}",
        env={"SSL_CERT_FILE": str(world.auth.ca_path)},
    )

    client_id = tls_client_with(world, "allowed", caBundle=None)

    world.wait_ready("allowed")
    assert world.requests_for(client_id) == 1


def test_an_issuer_change_reaches_its_clients_and_only_a_changed_request_asks_for_a_token(
    platform: Platform,
) -> None:
    world = platform.world
    platform.start_operator("--issuer-check-interval=1h")
    issuer = platform.issuer("evolving")
    first_id = _referring_client(platform, "first", issuer)
    second_id = _referring_client(platform, "second", issuer)
    world.wait_ready("first")
    world.wait_ready("second")
    tokens = {name: world.token(name) for name in ("first", "second")}

    # Who may use the issuer is not part of any request: no client asks for a token.
    platform.patch_issuer(issuer, {"namespaces": [world.namespace, "elsewhere"]})
    platform.wait_issuer(issuer, "Discovered")
    wait_for(
        lambda: platform.get_issuer(issuer)["status"]["observedGeneration"] == 2,
        timeout=15,
        what="the issuer's second generation to be checked",
    )
    time.sleep(3)
    assert world.requests_for(first_id) == 1
    assert world.requests_for(second_id) == 1
    assert {name: world.token(name) for name in ("first", "second")} == tokens

    # A fixed token endpoint changes where every client sends its request: each gets a new
    # token from it at once, one request each.
    platform.patch_issuer(
        issuer,
        {"tokenEndpoint": world.auth.mtls_token_endpoint, "assertionAudience": "tokenEndpoint"},
    )
    for name in ("first", "second"):
        wait_for(
            lambda name=name: world.token(name) not in (None, tokens[name]),
            timeout=15,
            what=f"a new token for {name}",
        )
    assert world.requests_for(first_id) == 2
    assert world.requests_for(second_id) == 2
    issued = world.events("first")
    assert any(
        e.reason == "TokenIssued" and "the spec or signing key changed" in e.message for e in issued
    )


def test_deleting_an_issuer_in_use_keeps_the_tokens_and_reports_it_missing(
    platform: Platform,
) -> None:
    world = platform.world
    platform.start_operator()
    issuer = platform.issuer("doomed")
    client_id = _referring_client(platform, "orphan", issuer)
    world.wait_ready("orphan")
    token = world.token("orphan")
    expires_at = world.client("orphan")["status"]["expiresAt"]

    platform.delete_issuer(issuer)

    ready = world.wait_reason("orphan", "IssuerNotFound")
    assert ready["status"] == "False"
    assert ready["message"].startswith(
        f"ClusterRaidiamIssuer {issuer} (from spec.issuerRef) does not exist"
    )
    assert world.token("orphan") == token, "the token still valid stays in the Secret"
    assert world.client("orphan")["status"]["expiresAt"] == expires_at
    assert world.requests_for(client_id) == 1

    # Created again under the same name: the client carries on with the token it has.
    platform.issuers.remove(issuer)
    platform.world.custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        ISSUERS,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ClusterRaidiamIssuer",
            "metadata": {"name": issuer},
            "spec": {"issuer": world.auth.issuer, "caBundle": {"configMapName": CA_CONFIG_MAP}},
        },
    )
    platform.issuers.append(issuer)
    world.wait_ready("orphan", timeout=15)
    assert world.token("orphan") == token
    assert world.requests_for(client_id) == 1


def test_check_resolves_an_issuer_ref_and_says_whether_the_namespace_may_use_it(
    platform: Platform, tmp_path: Path
) -> None:
    world = platform.world
    platform.start_operator()
    allowed = platform.issuer("checked", namespaces=[world.namespace])
    refused = platform.issuer("elsewhere", namespaces=["someone-else"])
    client_id = f"checked-{uuid.uuid4().hex[:8]}"
    issued = world.pki.client_certificate(client_id)
    world.auth.register_tls_client(client_id, issued)
    world.tls_secret("checked-transport", issued)

    def check(issuer: str) -> subprocess.CompletedProcess[str]:
        manifest = tmp_path / f"{issuer}.yaml"
        manifest.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "RaidiamClient",
                    "metadata": {"name": "checked", "namespace": world.namespace},
                    "spec": {
                        "issuerRef": {"name": issuer},
                        "clientId": client_id,
                        "transportCertificate": {"secretName": "checked-transport"},
                    },
                }
            )
        )
        return subprocess.run(
            [
                sys.executable,
                *("-m", "raidiam_operator", "check", "-f", str(manifest)),
                f"--operator-namespace={platform.operator_namespace}",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": str(world.control_plane.kubeconfig)},
            timeout=120,
            check=False,
        )

    good = check(allowed)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"ok    ClusterRaidiamIssuer {allowed} serves namespace {world.namespace}" in good.stdout
    assert f"ok    token endpoint {world.auth.mtls_token_endpoint} answers" in good.stdout

    bad = check(refused)
    assert bad.returncode == 2
    assert f"FAIL  IssuerNotAllowed: ClusterRaidiamIssuer {refused} may not be used" in bad.stdout
    assert world.requests_for(client_id) == 0
