"""Cross-namespace isolation, proven with the API server's audit log.

The operator runs as a ServiceAccount that may read and write Secrets in every namespace (the
chart's cluster-wide mode), so RBAC would not stop a leak: only the operator's own rule that a
RaidiamClient names things in its own namespace does. Namespace B holds Secrets and ConfigMaps
with exactly the names that RaidiamClients in namespace A point at, with usable credentials in
them. The audit log must show no request of the operator's account for anything in B.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import TestPKI

from .conftest import GROUP, PLURAL, VERSION, World
from .fault_helpers import (
    audit_events,
    drop_namespace,
    new_namespace,
    ready_and_degraded,
    running_world,
    wait_all,
)

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

ACCOUNT = "raidiam-token-operator"
# The chart's rules (templates/_helpers.tpl), bound cluster-wide.
RULES = [
    {"apiGroups": ["raidiam.io"], "resources": ["raidiamclients"], "verbs": ["list", "watch"]},
    {"apiGroups": ["raidiam.io"], "resources": ["raidiamclients/status"], "verbs": ["patch"]},
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "list", "watch", "create", "update"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]

# RaidiamClient in A -> what it names, all of which exist only in B; the reason it must get.
HOSTILE: dict[str, tuple[dict[str, Any], str, str]] = {
    "reads-b-transport": (
        {"transportCertificate": {"secretName": "victim-transport"}},
        "SecretNotFound",
        "Secret {a}/victim-transport (from spec.transportCertificate) does not exist",
    ),
    "reads-b-dotted": (
        {"transportCertificate": {"secretName": "{b}.victim-transport"}},
        "SecretNotFound",
        "Secret {a}/{b}.victim-transport (from spec.transportCertificate) does not exist",
    ),
    "reads-b-signing": (
        {
            "authMethod": "private_key_jwt",
            "transportCertificate": {"secretName": "own-transport"},
            "signingKey": {"secretName": "victim-signing", "keyId": "sig-1"},
        },
        "SecretNotFound",
        "Secret {a}/victim-signing (from spec.signingKey) does not exist",
    ),
    "reads-b-ca": (
        {
            "transportCertificate": {"secretName": "own-transport"},
            "caBundle": {"configMapName": "victim-ca"},
        },
        "ConfigMapNotFound",
        "ConfigMap {a}/victim-ca (from spec.caBundle) does not exist",
    ),
}


@dataclass
class Isolation:
    world: World
    a: str
    b: str
    user: str
    started: float
    b_versions: dict[str, str]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def isolation(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Isolation]:
    a, b = new_namespace(control_plane, "iso-a"), new_namespace(control_plane, "iso-b")
    role = f"isolation-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("isolation")
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": ACCOUNT, "namespace": a},
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": role},
                    "rules": RULES,
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": role},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": role,
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": a}],
                },
            ]
        ),
    )
    kubeconfig = control_plane.service_account_kubeconfig(a, ACCOUNT, tmp / "operator.kubeconfig")
    try:
        with running_world(
            control_plane,
            auth_server,
            test_pki,
            kube_api,
            a,
            tmp / "operator.log",
            kubeconfig=kubeconfig,
            all_namespaces=True,
        ) as world:
            started = time.time()
            # B: usable credentials under every name the clients in A use.
            client_id = f"victim-{uuid.uuid4().hex[:8]}"
            victim = test_pki.client_certificate(client_id)
            signing = test_pki.signing_key("rsa")
            auth_server.register_tls_client(client_id, victim)
            world.secrets_seen += [victim.key_pem, signing.private_pem]
            tls = {"tls.crt": _b64(victim.cert_pem), "tls.key": _b64(victim.key_pem)}
            b_objects = {
                "victim-transport": tls,
                f"{b}.victim-transport": tls,
                "victim-signing": {"tls.key": _b64(signing.private_pem)},
                "victim-token": {"mine": _b64(b"do not touch")},
            }
            b_versions = {}
            for name, data in b_objects.items():
                created = world.core.create_namespaced_secret(
                    b, {"metadata": {"name": name}, "data": data}
                )
                b_versions[f"secret/{name}"] = created.metadata.resource_version
            for name in ("victim-ca", "authserver-ca"):
                created = world.core.create_namespaced_config_map(
                    b,
                    {
                        "metadata": {"name": name},
                        "data": {"ca.crt": auth_server.ca_path.read_text()},
                    },
                )
                b_versions[f"configmap/{name}"] = created.metadata.resource_version

            own = test_pki.client_certificate(f"own-{uuid.uuid4().hex[:8]}")
            world.tls_secret("own-transport", own)
            for name, (fields, _, _) in HOSTILE.items():
                spec = world.spec(client_id, authMethod="tls_client_auth")
                spec.update(json.loads(json.dumps(fields).replace("{b}", b)))
                world.create_client(name, spec)
            # A legitimate client whose token Secret has B's Secret's name: it goes to A.
            world.tls_client("writes-token", tokenSecret={"name": "victim-token"})
            wait_all(
                world,
                [*HOSTILE, "writes-token"],
                lambda w, n: (
                    ready_and_degraded(w, n)[0].get("reason")
                    in (HOSTILE[n][1] if n in HOSTILE else "TokenValid",)
                ),
                timeout=30,
                what="every client's reason",
            )
            # The engine retries missing inputs by itself: give it a round of that too.
            time.sleep(2)
            yield Isolation(
                world, a, b, f"system:serviceaccount:{a}:{ACCOUNT}", started, b_versions
            )
    finally:
        control_plane.kubectl(
            "delete",
            f"clusterrolebinding/{role}",
            f"clusterrole/{role}",
            "--ignore-not-found",
            check=False,
        )
        drop_namespace(control_plane, a)
        drop_namespace(control_plane, b)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_name_from_another_namespace_is_looked_up_in_the_clients_own_namespace(
    isolation: Isolation, name: str
) -> None:
    _, reason, message = HOSTILE[name]
    ready, degraded = ready_and_degraded(isolation.world, name)

    assert (ready["reason"], degraded["reason"]) == (reason, reason)
    assert message.format(a=isolation.a, b=isolation.b) in ready["message"]
    assert isolation.b not in ready["message"].replace(f"{isolation.b}.victim", "")


def test_a_token_secret_named_like_one_in_another_namespace_is_written_in_the_own_one(
    isolation: Isolation,
) -> None:
    world = isolation.world
    mine = world.core.read_namespaced_secret("victim-token", isolation.a)
    theirs = world.core.read_namespaced_secret("victim-token", isolation.b)

    assert "access_token" in mine.data
    assert mine.metadata.owner_references[0].name == "writes-token"
    assert base64.b64decode(theirs.data["mine"]) == b"do not touch"
    assert not theirs.metadata.owner_references


def test_nothing_in_the_other_namespace_changed(isolation: Isolation) -> None:
    world = isolation.world
    for key, version in isolation.b_versions.items():
        kind, name = key.split("/", 1)
        read = (
            world.core.read_namespaced_secret
            if kind == "secret"
            else world.core.read_namespaced_config_map
        )
        assert read(name, isolation.b).metadata.resource_version == version, key


def test_the_audit_log_shows_no_request_of_the_operator_for_the_other_namespace(
    isolation: Isolation,
) -> None:
    events = audit_events(isolation.world.control_plane, since=isolation.started - 1)
    by_operator = [e for e in events if e.get("user", {}).get("username") == isolation.user]
    touching_b = [
        (e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("name"))
        for e in by_operator
        if e.get("objectRef", {}).get("namespace") == isolation.b
    ]
    in_a = {
        (e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("name"))
        for e in by_operator
        if e.get("objectRef", {}).get("namespace") == isolation.a
    }

    assert touching_b == []
    # The positive controls: the log does record requests in B (the test's own), and it does
    # see the operator's reads, which went to A.
    assert any(
        e["verb"] == "create" and e.get("objectRef", {}).get("namespace") == isolation.b
        for e in events
    )
    assert ("get", "secrets", "victim-transport") in in_a
    assert ("get", "secrets", f"{isolation.b}.victim-transport") in in_a
    assert ("get", "secrets", "victim-signing") in in_a
    assert ("get", "configmaps", "victim-ca") in in_a
    assert ("create", "secrets", "victim-token") in in_a


@pytest.mark.parametrize(
    "field",
    [
        ("transportCertificate", "secretName"),
        ("signingKey", "secretName"),
        ("caBundle", "configMapName"),
        ("tokenSecret", "name"),
    ],
)
@pytest.mark.parametrize("value", ["../{b}/victim", "{b}/victim-transport", "/victim", ".."])
def test_a_name_that_tries_to_leave_the_namespace_is_refused_at_admission(
    isolation: Isolation, field: tuple[str, str], value: str
) -> None:
    world = isolation.world
    section, key = field
    spec = world.spec("whoever", authMethod="private_key_jwt")
    spec["signingKey"] = {"secretName": "own", "keyId": "k"}
    spec.setdefault(section, {})[key] = value.format(b=isolation.b)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaidiamClient",
        "metadata": {"name": "escape"},
        "spec": spec,
    }

    with pytest.raises(ApiException) as raised:
        world.custom.create_namespaced_custom_object(
            GROUP, VERSION, isolation.a, PLURAL, body, dry_run="All"
        )

    status = json.loads(raised.value.body)
    assert status["reason"] == "Invalid"
    assert any(c["field"] == f"spec.{section}.{key}" for c in status["details"]["causes"])


def test_a_raidiam_client_cannot_be_created_into_another_namespace_through_its_body(
    isolation: Isolation,
) -> None:
    world = isolation.world
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RaidiamClient",
        "metadata": {"name": "smuggled", "namespace": isolation.b},
        "spec": world.spec("whoever", transportCertificate={"secretName": "victim-transport"}),
    }

    with pytest.raises(ApiException) as raised:
        world.custom.create_namespaced_custom_object(GROUP, VERSION, isolation.a, PLURAL, body)

    assert raised.value.status == 400
    assert "does not match the namespace" in json.loads(raised.value.body)["message"]
