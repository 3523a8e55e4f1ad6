"""Least privilege, proven: the operator runs on the real API server as the chart's
ServiceAccount, with the chart's (Cluster)Role and nothing else.

Each mode runs a client's whole life (create, token, refresh, certificate rotation, delete) with
those permissions, and the operator's log must show no forbidden request. A last test lists what
the account may do and compares it with the expected set, so a widened role fails CI.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.chart import render
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.dataprovider import DataProvider
from raidiam_devenv.directory import Directory
from raidiam_devenv.operator_process import OperatorProcess
from raidiam_devenv.pki import TestPKI

from .chart_helpers import documents
from .conftest import JWT, World, wait_for
from .test_registration import participant_in

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

# What the operator may do in a namespace it serves, as (resource, resource name, verb).
OPERATOR_PERMISSIONS = {
    ("raidiamclients.raidiam.io", "", "get"),
    ("raidiamclients.raidiam.io", "", "list"),
    ("raidiamclients.raidiam.io", "", "watch"),
    ("raidiamclients.raidiam.io/status", "", "patch"),
    # RaidiamRegistrations: the finalizer is the only write to the object itself; no create,
    # update or delete, and no /finalizers (no blockOwnerDeletion on the credentials Secret).
    ("raidiamregistrations.raidiam.io", "", "list"),
    ("raidiamregistrations.raidiam.io", "", "watch"),
    ("raidiamregistrations.raidiam.io", "", "patch"),
    ("raidiamregistrations.raidiam.io/status", "", "patch"),
    ("secrets", "", "get"),
    ("secrets", "", "list"),
    ("secrets", "", "watch"),
    ("secrets", "", "create"),
    ("secrets", "", "update"),
    ("configmaps", "", "get"),
    ("events", "", "create"),
}
# Cluster-scoped, listed in every namespace: ClusterRaidiamIssuers, whatever the mode.
ISSUER_PERMISSIONS = {
    ("clusterraidiamissuers.raidiam.io", "", "list"),
    ("clusterraidiamissuers.raidiam.io", "", "watch"),
    ("clusterraidiamissuers.raidiam.io/status", "", "patch"),
}
# Serving a list of namespaces: the issuers' CA bundles in the release namespace.
CA_BUNDLE_PERMISSIONS = {("configmaps", "", "get")}
# With replicas > 1, in the release namespace only: the leader-election Lease.
LEASE_PERMISSIONS = {
    ("leases.coordination.k8s.io", "", "create"),
    ("leases.coordination.k8s.io", "raidiam-token-operator", "get"),
    ("leases.coordination.k8s.io", "raidiam-token-operator", "update"),
}
# OperatorProcess chooses these itself (free local ports, plain logs to parse).
SET_BY_THE_TEST = ("--liveness=", "--metrics-port=", "--log-format=")

KOPF_FORBIDDEN = re.compile(
    r'cannot (?P<verb>\w+) resource "(?P<resource>[\w./-]+)" in API group "(?P<group>[\w.]*)"'
)


@dataclass
class Installed:
    """The chart's ServiceAccount and RBAC, applied, and a kubeconfig that uses the account."""

    operator_namespace: str
    service_account: str
    kubeconfig: Path
    #: the operator's command line as the chart's Deployment gives it
    args: list[str]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.operator_namespace}:{self.service_account}"


NamespaceFactory = Callable[[str], str]
Installer = Callable[..., Installed]


@pytest.fixture
def namespaces(control_plane: ControlPlane) -> Iterator[NamespaceFactory]:
    """Makes extra namespaces for one test, deleted afterwards."""
    made: list[str] = []

    def make(purpose: str) -> str:
        name = f"rbac-{purpose}-{uuid.uuid4().hex[:6]}"
        control_plane.kubectl("create", "namespace", name)
        made.append(name)
        return name

    yield make
    for name in made:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def install_rbac(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> Iterator[Installer]:
    """Applies only the chart's ServiceAccount and RBAC objects, as `helm install` would."""
    cluster_scoped: list[str] = []

    def install(**values: Any) -> Installed:
        release = f"rbac-{uuid.uuid4().hex[:6]}"
        rendered = documents(
            render(release=release, namespace=kube_namespace, values=values).stdout
        )
        docs = [doc for doc in rendered if doc["kind"] in RBAC_KINDS]
        deployment = next(d for d in rendered if d["kind"] == "Deployment")
        manifest = yaml.safe_dump_all(docs)
        control_plane.kubectl("apply", "-f", "-", input=manifest)
        cluster_scoped.extend(
            f"{d['kind'].lower()}/{d['metadata']['name']}"
            for d in docs
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding")
        )
        account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
        kubeconfig = control_plane.service_account_kubeconfig(
            kube_namespace, account, tmp_path / f"{release}.kubeconfig"
        )
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        return Installed(kube_namespace, account, kubeconfig, args)

    yield install
    if cluster_scoped:
        control_plane.kubectl("delete", *cluster_scoped, "--ignore-not-found", check=False)


def _operator_as_the_chart_runs_it(installed: Installed, log_path: Path) -> OperatorProcess:
    """The operator with the chart's account and the chart's own flags, so a flag the CLI does
    not know fails here too."""
    namespaces = [
        a.removeprefix("--namespace=") for a in installed.args if a.startswith("--namespace=")
    ]
    extra = [
        arg
        for arg in installed.args
        if not arg.startswith(("--namespace=", "--all-namespaces", *SET_BY_THE_TEST))
    ]
    return OperatorProcess(
        installed.kubeconfig,
        log_path,
        namespaces=namespaces,
        extra_args=extra,
        # As the Deployment sets it: the cluster resource namespace is the release namespace.
        env={"POD_NAMESPACE": installed.operator_namespace},
    )


def _token_lifecycle(world: World) -> None:
    """Create, token, refresh, rotate, delete: every call the operator makes, once."""
    world.tls_client("lifecycle", token_ttl=20)
    world.wait_ready("lifecycle")
    client_id = world.client("lifecycle")["spec"]["clientId"]
    first = world.token("lifecycle")
    assert first is not None
    # The Event follows the status write: wait for it rather than race it.
    wait_for(
        lambda: any(e.reason == "TokenIssued" for e in world.events("lifecycle")),
        timeout=10,
        what="the TokenIssued Event",
    )

    # Renewal replaces the Secret (update) before the 20 s token expires.
    wait_for(
        lambda: world.token("lifecycle") not in (None, first),
        timeout=25,
        what="the token to be renewed",
    )

    # A renewed transport certificate (a watched Secret change) gets a token bound to it.
    renewed = world.pki.client_certificate(client_id)
    world.tls_secret("lifecycle-transport", renewed, replace=True)
    wait_for(
        lambda: world.claims("lifecycle")["cnf"]["x5t#S256"] == renewed.x5t_s256,
        timeout=15,
        what="a token bound to the renewed certificate",
    )

    # private_key_jwt reads a second Secret, the signing key.
    world.jwt_client("signed")
    world.wait_ready("signed")

    # A missing input gives a Warning Event, not a forbidden request.
    world.tls_client("late", create_secret=False)
    world.wait_reason("late", "SecretNotFound")

    world.custom.delete_namespaced_custom_object(
        "raidiam.io", "v1alpha1", world.namespace, "raidiamclients", "lifecycle"
    )
    wait_for(
        lambda: world.secret("lifecycle-token") is None,
        timeout=30,
        what="the token Secret to be garbage-collected with its RaidiamClient",
    )


def _issuer_lifecycle(world: World, operator_namespace: str) -> None:
    """A ClusterRaidiamIssuer with its CA bundle in the operator's namespace, selecting the
    client's namespace by label: checked (status patch), then used by a client."""
    world.core.create_namespaced_config_map(
        operator_namespace,
        {"metadata": {"name": "directory-ca"}, "data": {"ca.crt": world.auth.ca_path.read_text()}},
    )
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    world.custom.create_cluster_custom_object(
        "raidiam.io",
        "v1alpha1",
        "clusterraidiamissuers",
        {
            "apiVersion": "raidiam.io/v1alpha1",
            "kind": "ClusterRaidiamIssuer",
            "metadata": {"name": name},
            "spec": {
                "issuer": world.auth.issuer,
                "caBundle": {"configMapName": "directory-ca"},
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": world.namespace}
                },
            },
        },
    )
    try:

        def ready() -> str:
            issuer = world.custom.get_cluster_custom_object(
                "raidiam.io", "v1alpha1", "clusterraidiamissuers", name
            )
            conditions = issuer.get("status", {}).get("conditions", [])
            return next((c["reason"] for c in conditions if c["type"] == "Ready"), "")

        wait_for(lambda: ready() == "Discovered", timeout=30, what="the issuer to be checked")
        # A client through it: the namespace's labels are read for the selector.
        client_id = f"through-{uuid.uuid4().hex[:8]}"
        issued = world.pki.client_certificate(client_id)
        world.auth.register_tls_client(client_id, issued)
        world.tls_secret("through-transport", issued)
        world.create_client(
            "through",
            {
                "issuerRef": {"name": name},
                "clientId": client_id,
                "scope": "directory:software",
                "transportCertificate": {"secretName": "through-transport"},
            },
        )
        world.wait_ready("through")
    finally:
        world.custom.delete_cluster_custom_object(
            "raidiam.io", "v1alpha1", "clusterraidiamissuers", name
        )


def _registration_lifecycle(world: World, directory: Directory, bank: DataProvider) -> None:
    """A RaidiamRegistration from the directory: its directory client read (get), the
    finalizer (patch), the credentials Secret, an update, and DELETE at the bank on deletion."""
    participant = participant_in(world, directory, bank, world.pki)
    client_id = participant.registered("bank", deletionPolicy="Delete")
    participant.patch("bank", {"spec": {"metadata": {"scope": "openid accounts"}}})
    participant.wait_reason("bank", "Updated")
    participant.delete("bank")
    wait_for(
        lambda: participant.registration("bank") is None,
        timeout=30,
        what="the RaidiamRegistration to go after its DELETE",
    )
    assert bank.registrations(client_id)["deleted"] == 1


def _assert_nothing_was_forbidden(operator: OperatorProcess) -> None:
    log = operator.log_text()
    # kopf logs each refused call with the permission it lacked; the engine logs "HTTP 403".
    denied = {(m["verb"], m["resource"], m["group"]) for m in KOPF_FORBIDDEN.finditer(log)}
    assert not denied, f"the operator was refused: {sorted(denied)}"
    assert "HTTP 403" not in log, "a request of the refresh engine was forbidden"
    assert not JWT.search(log)


def test_cluster_wide_operator_runs_a_clients_whole_life_with_only_the_charts_cluster_role(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    install_rbac: Installer,
    namespaces: NamespaceFactory,
    tmp_path: Path,
    clean_directory: Directory,
    clean_data_provider: DataProvider,
) -> None:
    installed = install_rbac()
    workload = namespaces("payments")
    operator = _operator_as_the_chart_runs_it(installed, tmp_path / "operator.log").start()
    try:
        world = World.from_kube_api(
            control_plane, auth_server, test_pki, kube_api, workload, operator
        )
        _token_lifecycle(world)
        _issuer_lifecycle(world, installed.operator_namespace)
        _registration_lifecycle(world, clean_directory, clean_data_provider)
    finally:
        operator.stop()
    _assert_nothing_was_forbidden(operator)


def test_namespaced_operator_serves_its_namespace_with_a_role_and_ignores_others(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    install_rbac: Installer,
    namespaces: NamespaceFactory,
    tmp_path: Path,
) -> None:
    watched, elsewhere = namespaces("watched"), namespaces("elsewhere")
    installed = install_rbac(watchNamespaces=[watched])
    operator = _operator_as_the_chart_runs_it(installed, tmp_path / "operator.log").start()
    try:
        outside = World.from_kube_api(
            control_plane, auth_server, test_pki, kube_api, elsewhere, operator
        )
        outside.tls_client("ignored")
        world = World.from_kube_api(
            control_plane, auth_server, test_pki, kube_api, watched, operator
        )
        _token_lifecycle(world)
        _issuer_lifecycle(world, installed.operator_namespace)
        assert "status" not in outside.client("ignored"), "a client outside was reconciled"
        assert outside.secret("ignored-token") is None
    finally:
        operator.stop()
    _assert_nothing_was_forbidden(operator)
    assert elsewhere not in operator.log_text(), "the operator touched an unwatched namespace"


def test_two_replicas_elect_one_leader_and_hand_over_with_only_the_charts_permissions(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    install_rbac: Installer,
    namespaces: NamespaceFactory,
    tmp_path: Path,
) -> None:
    watched = namespaces("replicated")
    installed = install_rbac(watchNamespaces=[watched], replicas=2)
    replicas = [
        _operator_as_the_chart_runs_it(installed, tmp_path / f"replica-{i}.log").start()
        for i in range(2)
    ]

    def holder() -> str:
        result = control_plane.kubectl(
            "get",
            "lease",
            "raidiam-token-operator",
            "-n",
            installed.operator_namespace,
            "-o",
            "jsonpath={.spec.holderIdentity}",
            check=False,
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    try:
        world = World.from_kube_api(
            control_plane, auth_server, test_pki, kube_api, watched, replicas[0]
        )
        world.tls_client("replicated")
        world.wait_ready("replicated")
        leader_identity = wait_for(holder, timeout=20, what="a Lease holder")
        leader = next(r for r in replicas if leader_identity.endswith(f"-{r.pid}"))
        standby = next(r for r in replicas if r is not leader)
        # A stop hands the Lease over: released at once, or taken when it runs out (15 s).
        leader.stop()
        wait_for(
            lambda: holder().endswith(f"-{standby.pid}"),
            timeout=20,
            what="the standby to take the Lease",
        )
        world.patch_client(
            "replicated",
            {"metadata": {"annotations": {"raidiam.io/refresh-requested-at": "now"}}},
        )
        wait_for(
            lambda: "issued token" in standby.log_text(),
            timeout=20,
            what="the new leader to issue a token",
        )
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        _assert_nothing_was_forbidden(replica)


# --------------------------------------------------------------------------- #
# What the account may do, exactly
# --------------------------------------------------------------------------- #

Permission = tuple[str, str, str]


def _permissions(control_plane: ControlPlane, user: str, namespace: str) -> set[Permission]:
    """`kubectl auth can-i --list` as (resource or URL, resource name, verb) triples."""
    listing = control_plane.kubectl(
        "auth", "can-i", "--list", f"--as={user}", "-n", namespace
    ).stdout.splitlines()
    permissions: set[Permission] = set()
    for line in listing[1:]:
        if not line.strip():
            continue
        columns = re.split(r"\s{2,}", line.strip())
        if line[0].isspace():  # a non-resource URL: no Resources column
            columns = ["", *columns]
        resource, urls, names, verbs = columns
        target = resource or urls.strip("[]")
        for verb in verbs.strip("[]").split():
            for name in names.strip("[]").split() or [""]:
                permissions.add((target, name, verb))
    return permissions


def _baseline(control_plane: ControlPlane, namespace: str) -> set[Permission]:
    """What every service account may do (discovery, self reviews): the default account's."""
    return _permissions(control_plane, f"system:serviceaccount:{namespace}:default", namespace)


@pytest.mark.parametrize("replicas", [1, 2], ids=["one-replica", "leader-election"])
def test_cluster_wide_account_may_do_exactly_what_the_operator_needs_in_every_namespace(
    control_plane: ControlPlane,
    install_rbac: Installer,
    namespaces: NamespaceFactory,
    replicas: int,
) -> None:
    installed = install_rbac(replicas=replicas)
    lease = LEASE_PERMISSIONS if replicas > 1 else set()
    # Any namespace's labels, for ClusterRaidiamIssuers' namespaceSelectors.
    cluster = OPERATOR_PERMISSIONS | ISSUER_PERMISSIONS | {("namespaces", "", "get")}
    expected = {
        installed.operator_namespace: cluster | lease,
        namespaces("any"): cluster,
    }
    for namespace, permissions in expected.items():
        granted = _permissions(control_plane, installed.user, namespace)
        assert granted - _baseline(control_plane, namespace) == permissions, namespace


@pytest.mark.parametrize("replicas", [1, 2], ids=["one-replica", "leader-election"])
def test_namespaced_account_may_do_exactly_what_the_operator_needs_and_only_where_it_serves(
    control_plane: ControlPlane,
    install_rbac: Installer,
    namespaces: NamespaceFactory,
    replicas: int,
) -> None:
    first, second, elsewhere = namespaces("first"), namespaces("second"), namespaces("elsewhere")
    installed = install_rbac(watchNamespaces=[first, second], replicas=replicas)
    # Cluster-wide: the issuers, and the labels of the served namespaces only.
    cluster = ISSUER_PERMISSIONS | {("namespaces", first, "get"), ("namespaces", second, "get")}
    expected = {
        first: OPERATOR_PERMISSIONS | cluster,
        second: OPERATOR_PERMISSIONS | cluster,
        # The release namespace holds the issuers' CA bundles, and the Lease with leader election.
        installed.operator_namespace: cluster
        | CA_BUNDLE_PERMISSIONS
        | (LEASE_PERMISSIONS if replicas > 1 else set()),
        elsewhere: cluster,
    }
    for namespace, permissions in expected.items():
        granted = _permissions(control_plane, installed.user, namespace)
        assert granted - _baseline(control_plane, namespace) == permissions, namespace
        assert _baseline(control_plane, namespace) <= granted
