"""`raidiam-operator`: the command line over the same core the operator uses."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from raidiam_operator import __version__
from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    RaidiamOperatorError,
    TransientError,
)
from raidiam_operator.core.options import OperatorOptions
from raidiam_operator.core.spec import AUTH_METHODS, REFRESH_REQUESTED_AT, parse_duration
from raidiam_operator.core.times import rfc3339, utc_now
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.credentials import load_signing_key, load_transport_certificate
from raidiam_operator.protocol.request import TokenRequest
from raidiam_operator.protocol.tokens import IssuedToken

if TYPE_CHECKING:
    from raidiam_operator.kube.gateway import KubernetesGateway

EXIT_OK = 0
EXIT_CONFIGURATION = 2
EXIT_REJECTED = 3
EXIT_TRANSIENT = 4
# One quick retry for a blip; anything that asks us to wait longer is reported instead.
QUICK_RETRY_LIMIT_SECONDS = 5.0


def main(argv: Sequence[str] | None = None, *, prog: str = "raidiam-operator") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


def kubectl_plugin() -> None:
    """`kubectl raidiam ...`: kubectl finds `kubectl-raidiam` on PATH and passes the rest."""
    sys.exit(main(sys.argv[1:], prog="kubectl raidiam"))


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Keep OAuth 2.0 client-credentials tokens from Raidiam Connect fresh.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_token_command(commands)
    _add_run_command(commands)
    _add_cluster_commands(commands)
    return parser


def _add_cluster_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show every RaidiamClient's token health",
        description="A table of RaidiamClients: ready, reason, when the token expires, the next "
        "refresh, and when the certificate expires.",
    )
    _namespace_flags(status)
    status.set_defaults(handler=_status_command)

    refresh = commands.add_parser(
        "refresh",
        help="ask the operator for a new token now",
        description="Sets the raidiam.io/refresh-requested-at annotation; the operator requests a new token.",
    )
    refresh.add_argument("names", nargs="*", metavar="NAME")
    refresh.add_argument(
        "--all", action="store_true", help="every RaidiamClient in the namespace (or all, with -A)"
    )
    _namespace_flags(refresh)
    refresh.set_defaults(handler=_refresh_command)

    check = commands.add_parser(
        "check",
        help="validate RaidiamClient manifests against the live authorization server",
        description="Checks a RaidiamClient manifest without writing anything and without requesting "
        "a token: the spec, the referenced Secrets and certificates (read from the cluster), the "
        "discovery document, the auth method and algorithm, and that the token endpoint answers. "
        "Exit codes: 0 all good, 2 something to fix, 4 the server could not be reached.",
    )
    check.add_argument(
        "-f",
        "--filename",
        required=True,
        type=Path,
        help="manifest file (YAML, one or more documents)",
    )
    check.add_argument("-n", "--namespace", help="namespace for manifests that name none")
    check.set_defaults(handler=_check_command)


def _namespace_flags(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the current context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def _gateway() -> KubernetesGateway:
    from raidiam_operator.kube.gateway import KubernetesGateway

    return KubernetesGateway.from_environment(threads=4)


def _status_command(args: argparse.Namespace) -> int:
    from raidiam_operator.cli.tables import HEADERS, format_table, status_rows
    from raidiam_operator.kube.gateway import KubernetesGateway

    namespace = (
        None if args.all_namespaces else (args.namespace or KubernetesGateway.current_namespace())
    )
    gateway = _gateway()
    try:
        clients = asyncio.run(gateway.list_clients(namespace))
    except Exception as error:
        print(
            f"raidiam-operator: error: cannot list RaidiamClients: {_api_error(error)}",
            file=sys.stderr,
        )
        return EXIT_CONFIGURATION
    finally:
        gateway.close()
    if not clients:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No RaidiamClients in {where}.", file=sys.stderr)
        return EXIT_OK
    headers = ["NAMESPACE", *HEADERS] if namespace is None else list(HEADERS)
    print(
        format_table(headers, status_rows(clients, now=utc_now(), with_namespace=namespace is None))
    )
    return EXIT_OK


def _refresh_command(args: argparse.Namespace) -> int:
    from raidiam_operator.kube.gateway import KubernetesGateway

    if bool(args.names) == args.all:
        print(
            "raidiam-operator: error: name one or more RaidiamClients, or pass --all",
            file=sys.stderr,
        )
        return EXIT_CONFIGURATION
    namespace = (
        None if args.all_namespaces else (args.namespace or KubernetesGateway.current_namespace())
    )
    if namespace is None and not args.all:
        print("raidiam-operator: error: -A goes with --all", file=sys.stderr)
        return EXIT_CONFIGURATION
    gateway = _gateway()

    async def request() -> list[tuple[str, str]]:
        if args.all:
            targets = [
                (c["metadata"]["namespace"], c["metadata"]["name"])
                for c in await gateway.list_clients(namespace)
            ]
        else:
            assert namespace is not None
            targets = [(namespace, name) for name in args.names]
        # A new value each time: the operator acts on a change of the annotation.
        stamp = utc_now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        for target_namespace, name in targets:
            await gateway.annotate_client(target_namespace, name, {REFRESH_REQUESTED_AT: stamp})
        return targets

    try:
        targets = asyncio.run(request())
    except Exception as error:
        print(
            f"raidiam-operator: error: cannot request a refresh: {_api_error(error)}",
            file=sys.stderr,
        )
        return EXIT_CONFIGURATION
    finally:
        gateway.close()
    for target_namespace, name in targets:
        print(f"raidiamclient {target_namespace}/{name}: refresh requested")
    return EXIT_OK


def _check_command(args: argparse.Namespace) -> int:
    from raidiam_operator.cli.check import check_manifests

    try:
        manifest = args.filename.read_text()
    except OSError as error:
        print(
            f"raidiam-operator: error: cannot read {args.filename}: {error.strerror}",
            file=sys.stderr,
        )
        return EXIT_CONFIGURATION
    return asyncio.run(
        check_manifests(
            manifest, source=args.filename, namespace=args.namespace, gateway_factory=_gateway
        )
    )


def _api_error(error: Exception) -> str:
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None)
    if status:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(error).__name__}: {error}"


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        default="http://0.0.0.0:8081/healthz",
        metavar="URL",
        help="liveness endpoint to serve (default %(default)s); 'off' to disable",
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
        default="0.0.0.0",  # noqa: S104 - Prometheus scrapes the pod IP
        metavar="ADDRESS",
        help="address for the metrics endpoint",
    )
    run.add_argument(
        "--certificate-expiry-warning",
        default="336h",
        metavar="DURATION",
        help="warn when a transport or signing certificate expires within this (default %(default)s = 14 days)",
    )
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
    run.add_argument("--verbose", action="store_true", help="log at INFO with details")
    run.add_argument(
        "--debug", action="store_true", help="log at DEBUG (never logs secret material)"
    )
    run.set_defaults(handler=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    import kopf

    import raidiam_operator.handlers  # noqa: F401 - registers the handlers with kopf

    try:
        warning = parse_duration(
            args.certificate_expiry_warning, field="--certificate-expiry-warning"
        )
    except ConfigurationError as error:
        return _fail(EXIT_CONFIGURATION, error)
    leader_election = None
    if args.leader_election:
        from raidiam_operator.kube.gateway import KubernetesGateway

        namespace = (
            args.leader_election_namespace
            or os.environ.get("POD_NAMESPACE")
            or KubernetesGateway.current_namespace()
        )
        leader_election = (namespace, args.leader_election_name)
    options = OperatorOptions(
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        certificate_expiry_warning=warning,
        leader_election=leader_election,
        identity=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
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
    )
    return EXIT_OK


def _add_token_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="request one access token from files and print it as JSON",
        description=(
            "Run the client credentials grant once and print the token as JSON on stdout. "
            "Exit codes: 0 success, 2 usage or configuration error, 3 rejected by the "
            "authorization server, 4 transient failure."
        ),
    )
    token.add_argument("--issuer", required=True, help="issuer URL; discovery is read from it")
    token.add_argument(
        "--client-id", required=True, help="the client id registered in the directory"
    )
    token.add_argument("--auth-method", required=True, choices=AUTH_METHODS)
    token.add_argument("--cert", type=Path, help="transport certificate (PEM, leaf first)")
    token.add_argument("--key", type=Path, help="transport certificate's private key (PEM)")
    token.add_argument("--signing-key", type=Path, help="private_key_jwt signing key (PEM)")
    token.add_argument("--kid", help="key id of the signing key, as registered")
    token.add_argument(
        "--alg",
        help="assertion algorithm: PS256 (RSA default), ES256 (P-256 default), EdDSA, RS256",
    )
    token.add_argument("--scope", help='space-separated scopes, e.g. "directory:software"')
    token.add_argument(
        "--audience",
        choices=("issuer", "token_endpoint"),
        default="issuer",
        help="client assertion aud: the issuer (default, FAPI 2.0) or the token endpoint",
    )
    token.add_argument("--token-endpoint", help="use this token endpoint and skip discovery")
    token.add_argument(
        "--ca-file", type=Path, help="CA certificates (PEM) that sign the server's certificate"
    )
    token.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="extra form parameter, e.g. resource=https://api.example (repeatable)",
    )
    token.set_defaults(handler=_token_command)


def _token_command(args: argparse.Namespace) -> int:
    try:
        request = _token_request_from_args(args)
    except ConfigurationError as error:
        return _fail(EXIT_CONFIGURATION, error)
    try:
        token = asyncio.run(_fetch_with_one_retry(request))
    except ConfigurationError as error:
        return _fail(EXIT_CONFIGURATION, error)
    except AuthorizationServerRejection as error:
        return _fail(EXIT_REJECTED, error)
    except TransientError as error:
        return _fail(EXIT_TRANSIENT, error)
    json.dump(token_document(token), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def token_document(token: IssuedToken) -> dict[str, object]:
    document: dict[str, object] = {
        "access_token": token.access_token,
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "expires_at": rfc3339(token.expires_at),
        "scope": token.scope,
        "token_endpoint": token.token_endpoint,
    }
    if token.certificate_thumbprint:
        document["certificate_thumbprint"] = token.certificate_thumbprint
    return document


async def _fetch_with_one_retry(request: TokenRequest) -> IssuedToken:
    async with TokenClient() as client:
        try:
            return await client.fetch_token(request)
        except TransientError as error:
            wait = 1.0 if error.retry_after is None else error.retry_after
            if wait > QUICK_RETRY_LIMIT_SECONDS:
                raise
            await asyncio.sleep(wait)
            return await client.fetch_token(request)


def _token_request_from_args(args: argparse.Namespace) -> TokenRequest:
    now = utc_now()
    transport = None
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise ConfigurationError("--cert and --key go together")
        transport = load_transport_certificate(
            _read(args.cert, "--cert"), _read(args.key, "--key"), now=now
        )
    elif args.auth_method == "tls_client_auth":
        raise ConfigurationError("tls_client_auth needs --cert and --key")
    signing_key = None
    if args.auth_method == "private_key_jwt":
        if not args.signing_key or not args.kid:
            raise ConfigurationError("private_key_jwt needs --signing-key and --kid")
        signing_key = load_signing_key(
            _read(args.signing_key, "--signing-key"), key_id=args.kid, algorithm=args.alg
        )
    elif args.signing_key or args.alg:
        raise ConfigurationError("--signing-key and --alg only apply to private_key_jwt")
    return TokenRequest(
        issuer=args.issuer,
        client_id=args.client_id,
        auth_method=args.auth_method,
        transport=transport,
        signing_key=signing_key,
        scope=args.scope,
        assertion_audience="issuer" if args.audience == "issuer" else "tokenEndpoint",
        token_endpoint=args.token_endpoint,
        ca_bundle=_read(args.ca_file, "--ca-file") if args.ca_file else None,
        parameters=_parameters(args.param),
    )


def _parameters(pairs: Sequence[str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise ConfigurationError(f"--param {pair!r} is not of the form name=value")
        parameters[name] = value
    return parameters


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{flag} {path}: {error.strerror}") from None


def _fail(code: int, error: RaidiamOperatorError) -> int:
    print(f"raidiam-operator: error: {error.reason}: {error.message}", file=sys.stderr)
    return code
