"""What `raidiam-operator run` was asked to do, handed to the kopf handlers through kopf's memo."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from raidiam_operator.core.issuers import IssuerPolicy

#: warn when a certificate expires sooner than this: the operator's default, and `check`'s
CERTIFICATE_EXPIRY_WARNING = timedelta(days=14)


@dataclass(frozen=True)
class OperatorOptions:
    #: port of the Prometheus endpoint; 0 disables it
    metrics_port: int = 8080
    metrics_address: str = "0.0.0.0"  # noqa: S104 - scraped from the pod IP
    #: warn when a transport or signing certificate expires sooner than this
    certificate_expiry_warning: timedelta = CERTIFICATE_EXPIRY_WARNING
    #: run only while holding this coordination.k8s.io Lease (namespace, name); None: always
    leader_election: tuple[str, str] | None = None
    #: this instance's name in the Lease
    identity: str = ""
    #: which inline issuers RaidiamClients may name (--issuer-policy, --allowed-issuer)
    issuer_policy: IssuerPolicy = field(default_factory=IssuerPolicy)
    #: where ClusterRaidiamIssuers' CA bundle ConfigMaps live: the operator's own namespace
    cluster_resource_namespace: str = "default"
    #: how often each ClusterRaidiamIssuer's authorization server is checked
    issuer_check_interval: timedelta = timedelta(minutes=5)
    #: the namespaces served; empty: all of them
    namespaces: tuple[str, ...] = ()
