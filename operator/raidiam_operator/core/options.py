"""What `raidiam-operator run` was asked to do, handed to the kopf handlers through kopf's memo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

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
