"""`raidiam-operator run`: the operator itself, as a Deployment starts it."""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
from datetime import timedelta

from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    Commands,
    add_expiry_warning_flag,
    current_namespace,
    expiry_warning,
    fail,
)
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.issuers import ISSUER_POLICY_MODES, issuer_policy
from raidiam_operator.core.options import OperatorOptions
from raidiam_operator.core.spec import parse_duration


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the operator",
        description="Run the operator against the cluster in KUBECONFIG or the pod's service account.",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch only this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (default)"
    )
    run.add_argument(
        "--liveness",
        default=f"http://{_listen_address()}:8081/healthz",
        metavar="URL",
        help="liveness endpoint to serve (default %(default)s: every interface in a pod, "
        "loopback elsewhere); 'off' to disable",
    )
    run.add_argument("--log-format", choices=("plain", "json"), default="plain")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="serve Prometheus metrics on this port at /metrics (default %(default)s; 0 disables)",
    )
    run.add_argument(
        "--metrics-address",
        default=_listen_address(),
        metavar="ADDRESS",
        help="address for the metrics endpoint (default %(default)s: every interface in a pod, "
        "loopback elsewhere)",
    )
    add_expiry_warning_flag(run)
    run.add_argument(
        "--leader-election",
        action="store_true",
        help="with several replicas: refresh only while holding a coordination.k8s.io Lease",
    )
    run.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else the current context's)",
    )
    run.add_argument(
        "--leader-election-name",
        default="raidiam-token-operator",
        metavar="NAME",
        help="name of the Lease",
    )
    run.add_argument(
        "--issuer-policy",
        choices=ISSUER_POLICY_MODES,
        default="any",
        help="which issuer URLs a RaidiamClient may name in spec.issuer: any (default), allowlist "
        "(only under an --allowed-issuer prefix) or references-only (none: spec.issuerRef to a "
        "ClusterRaidiamIssuer only). A client that breaks it makes no request and reports "
        "IssuerNotAllowed",
    )
    run.add_argument(
        "--allowed-issuer",
        action="append",
        default=[],
        metavar="PREFIX",
        help="with --issuer-policy allowlist: an https URL that inline issuers, their token "
        "endpoints and the endpoints their discovery documents name must be at or below, by "
        "host, port and whole path segments (repeatable); an inline spec.caBundle is refused",
    )
    run.add_argument(
        "--cluster-resource-namespace",
        metavar="NS",
        help="namespace of the CA bundle ConfigMaps that ClusterRaidiamIssuers name "
        "(default: $POD_NAMESPACE, else the current context's)",
    )
    run.add_argument(
        "--issuer-check-interval",
        default="5m",
        metavar="DURATION",
        help="how often to check each ClusterRaidiamIssuer's authorization server (default "
        "%(default)s; at once when one is created or changed, sooner after a failure)",
    )
    run.add_argument(
        "--verbose",
        action="store_true",
        help="log at DEBUG: also each event, HTTP request and health probe (default: INFO)",
    )
    run.add_argument(
        "--debug", action="store_true", help="as --verbose, plus asyncio's debug logging"
    )
    run.set_defaults(handler=run_command)


def _listen_address() -> str:
    """In a pod, the kubelet probes and Prometheus scrapes the pod's IP, so listen on every
    interface; on a workstation or a shared host, loopback only."""
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    return "0.0.0.0" if in_pod else "127.0.0.1"  # noqa: S104 - a pod's own network namespace


#: glibc's mallopt parameter for the number of malloc arenas (malloc.h)
_M_ARENA_MAX = -8
#: arenas the operator's threads share: the event loop, and a few threads that wait on sockets
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc keep at most `arenas` arenas, as MALLOC_ARENA_MAX does.

    glibc gives each thread that allocates its own arena (up to eight per core) and keeps what
    each has freed. The operator's threads (the Kubernetes calls, the Secret watch, TLS set-up)
    each pass response bodies and certificates through, so every arena grows to its own peak: the
    process's memory ends up far above what Python holds. Call it before any thread starts.
    False where there is no glibc (musl, macOS): nothing to limit there."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def run_command(args: argparse.Namespace) -> int:
    limit_malloc_arenas()
    import kopf
    from kopf._core.engines.peering import Identity

    import raidiam_operator.handlers  # noqa: F401 - registers the handlers with kopf

    try:
        warning = expiry_warning(args)
        policy = issuer_policy(args.issuer_policy, args.allowed_issuer)
        check_interval = parse_duration(args.issuer_check_interval, field="--issuer-check-interval")
    except ConfigurationError as error:
        return fail(args, EXIT_CONFIGURATION, error)
    own_namespace = os.environ.get("POD_NAMESPACE") or current_namespace()
    leader_election = None
    if args.leader_election:
        leader_election = (
            args.leader_election_namespace or own_namespace,
            args.leader_election_name,
        )
    options = OperatorOptions(
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        certificate_expiry_warning=warning,
        leader_election=leader_election,
        identity=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        issuer_policy=policy,
        cluster_resource_namespace=args.cluster_resource_namespace or own_namespace,
        issuer_check_interval=max(check_interval, timedelta(seconds=1)),
        namespaces=tuple(args.namespaces),
    )
    kopf.configure(
        verbose=args.verbose,
        debug=args.debug,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    kopf.run(
        # One refreshing replica is ensured by our Lease (see leader.py), not by kopf's peering.
        standalone=True,
        clusterwide=not args.namespaces,
        namespaces=args.namespaces,
        liveness_endpoint=None if args.liveness == "off" else args.liveness,
        memo=kopf.Memo(options=options),
        # Without an identity kopf derives one from getpass.getuser(), which raises KeyError
        # under an arbitrary UID without a passwd entry (OpenShift's restricted SCC).
        identity=Identity(options.identity),
    )
    return EXIT_OK
