"""`status`, `describe` and `refresh`: what the operator did, and asking it for more.

They take kubectl's flags (`-n`, `-A`, `-l`, `-o`, `--kubeconfig`, `--context`) with kubectl's
meanings. Exit codes (docs/cli.md): 0 done; 2 something to fix (no kubeconfig, RBAC, a name
that does not exist, a bad selector); 4 the API server could not be reached; `refresh --wait`
also 3 when the authorization server refused the new token, and 2 or 4 for what stopped it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from raidiam_operator.cli.describe import client_detail, format_detail
from raidiam_operator.cli.output import OUTPUT_FORMATS, serialize, status_output
from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    EXIT_TRANSIENT,
    Commands,
    add_cluster_flags,
    current_namespace,
    error,
    exit_code_for,
    gateway,
)
from raidiam_operator.cli.tables import ISSUER_HEADERS, format_table, issuer_rows
from raidiam_operator.cli.waiting import RefreshOutcome, refresh_outcome, timeout_outcome
from raidiam_operator.core.errors import RaidiamOperatorError
from raidiam_operator.core.spec import REFRESH_REQUESTED_AT, parse_duration, parse_spec
from raidiam_operator.core.times import utc_now

if TYPE_CHECKING:  # imported late by shared.gateway: `token` and `run --help` need no client
    from raidiam_operator.kube.gateway import KubeGateway

T = TypeVar("T")
#: How often `refresh --wait` reads the clients' status.
WAIT_POLL_SECONDS = 1.0


def add_parsers(commands: Commands[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show RaidiamClients' token health, and the ClusterRaidiamIssuers",
        description="A table of RaidiamClients: ready, reason, refresh trouble, when the token "
        "expires, the next refresh, and when the certificate expires; then (unless names or -l "
        "narrow it, or -o asks for data) a table of the ClusterRaidiamIssuers: issuer URL, "
        "ready, reason and how long ago the operator last checked it.",
    )
    status.add_argument("names", nargs="*", metavar="NAME", help="only these RaidiamClients")
    _namespace_flags(status)
    _selector_flag(status)
    status.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        help="wide: also failures, token Secret and message; json, yaml: the objects; name",
    )
    add_cluster_flags(status)
    status.set_defaults(handler=status_command)

    describe = commands.add_parser(
        "describe",
        help="show one RaidiamClient in detail: conditions, token claims, certificate binding",
        description="One RaidiamClient: its conditions, the claims of the token in its Secret "
        "(never the token itself), its transport certificate, and whether the token is bound to "
        "that certificate. Reading the Secrets needs `get` on them; without it, the rest is shown.",
    )
    describe.add_argument("name", metavar="NAME")
    describe.add_argument("-n", "--namespace", help="namespace (default: the current context's)")
    describe.add_argument("-o", "--output", choices=("json", "yaml"), help="as data")
    add_cluster_flags(describe)
    describe.set_defaults(handler=describe_command)

    refresh = commands.add_parser(
        "refresh",
        help="ask the operator for a new token now",
        description="Sets the raidiam.io/refresh-requested-at annotation; the operator requests "
        "a new token. With --wait, waits for its answer and exits 0 (new token), 3 (refused by "
        "the authorization server), 2 (something to fix first) or 4 (unreachable, or no answer).",
    )
    refresh.add_argument("names", nargs="*", metavar="NAME")
    refresh.add_argument(
        "--all",
        action="store_true",
        help="every RaidiamClient in the namespace (or all, with -A), or those -l selects",
    )
    _namespace_flags(refresh)
    _selector_flag(refresh)
    refresh.add_argument(
        "--wait", action="store_true", help="wait until the operator has answered each request"
    )
    refresh.add_argument(
        "--timeout",
        default="60s",
        metavar="DURATION",
        help="how long --wait waits (default %(default)s)",
    )
    add_cluster_flags(refresh)
    refresh.set_defaults(handler=refresh_command)


def _namespace_flags(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the current context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def _selector_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-l",
        "--selector",
        metavar="SELECTOR",
        help="label selector, as kubectl's: team=payments, tier in (gold,silver), !legacy",
    )


def _namespace(args: argparse.Namespace) -> str | None:
    return (
        None
        if getattr(args, "all_namespaces", False)
        else (args.namespace or current_namespace(args))
    )


def _with_api(
    args: argparse.Namespace,
    doing: str,
    work: Callable[[KubeGateway], Coroutine[Any, Any, T]],
) -> T | int:
    """Run `work` with an API client; a failure is reported on stderr and becomes the exit code
    (an int), so callers check `isinstance(result, int)`."""
    try:
        api = gateway(args)
    except RaidiamOperatorError as problem:
        error(args, f"cannot {doing}: {problem.message}")
        return exit_code_for(problem)
    try:
        return asyncio.run(work(api))
    except RaidiamOperatorError as problem:
        error(args, f"cannot {doing}: {problem.message}")
        return exit_code_for(problem)
    finally:
        api.close()


def status_command(args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    if args.names and namespace is None:
        error(args, "name RaidiamClients in one namespace, not with -A")
        return EXIT_CONFIGURATION
    # The issuers belong to the overview; a narrowed listing or data output shows clients only.
    with_issuers = args.output in (None, "wide") and not args.names and not args.selector
    unreadable: list[str] = []

    async def listing(
        api: KubeGateway,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        clients = await api.list_clients(namespace, selector=args.selector)
        issuers: list[dict[str, Any]] = []
        if with_issuers:
            try:
                issuers = await api.list_issuers()
            except RaidiamOperatorError as problem:
                # A user may read clients in a namespace without reading cluster-scoped objects.
                unreadable.append(problem.message)
        return clients, issuers

    listed = _with_api(args, "list RaidiamClients", listing)
    if isinstance(listed, int):
        return listed
    clients, issuers = listed
    for note in unreadable:
        print(f"{args.prog}: {note}", file=sys.stderr)
    if args.names:
        found = {c["metadata"]["name"] for c in clients}
        missing = [name for name in args.names if name not in found]
        if missing:
            error(args, f"RaidiamClient {', '.join(missing)} not found in namespace {namespace}")
            return EXIT_CONFIGURATION
        clients = [c for c in clients if c["metadata"]["name"] in args.names]
    now = utc_now()
    if clients or args.output in ("json", "yaml"):
        print(status_output(clients, output=args.output, now=now, with_namespace=namespace is None))
    else:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        matching = f" matching {args.selector}" if args.selector else ""
        print(f"No RaidiamClients{matching} in {where}.", file=sys.stderr)
    if issuers:
        if clients:
            print()
        print(format_table(ISSUER_HEADERS, issuer_rows(issuers, now=now)))
    return EXIT_OK


def describe_command(args: argparse.Namespace) -> int:
    namespace = args.namespace or current_namespace(args)
    unreadable: list[str] = []

    async def read(api: KubeGateway) -> dict[str, Any] | None:
        client = await api.read_client(namespace, args.name)
        if client is None:
            return None
        try:
            spec = parse_spec(client.get("spec") or {}, name=args.name)
        except RaidiamOperatorError:
            return client_detail(client, token_secret=None, transport_secret=None, now=utc_now())
        token_secret = await _optional_secret(api, namespace, spec.token_secret.name, unreadable)
        transport = spec.transport_certificate
        transport_secret = (
            await _optional_secret(api, namespace, transport.secret_name, unreadable)
            if transport
            else None
        )
        return client_detail(
            client, token_secret=token_secret, transport_secret=transport_secret, now=utc_now()
        )

    detail = _with_api(args, f"describe RaidiamClient {namespace}/{args.name}", read)
    if isinstance(detail, int):
        return detail
    if detail is None:
        error(args, f'RaidiamClient "{args.name}" not found in namespace {namespace}')
        return EXIT_CONFIGURATION
    for problem in unreadable:
        error(args, f"{problem} (shown without it)")
    if args.output:
        print(serialize(detail, args.output))
    else:
        print(format_detail(detail, now=utc_now()))
    return EXIT_OK


async def _optional_secret(
    api: KubeGateway, namespace: str, name: str, unreadable: list[str]
) -> dict[str, Any] | None:
    """The Secret, or None if it is missing or may not be read (describe still shows the rest)."""
    try:
        return await api.read_secret(namespace, name)
    except RaidiamOperatorError as problem:
        if exit_code_for(problem) == EXIT_TRANSIENT:
            raise
        unreadable.append(f"cannot read Secret {namespace}/{name}: {problem.message}")
        return None


def refresh_command(args: argparse.Namespace) -> int:
    if bool(args.names) == args.all:
        error(args, "name one or more RaidiamClients, or pass --all (with -l to select)")
        return EXIT_CONFIGURATION
    if args.selector and not args.all:
        error(args, "-l goes with --all")
        return EXIT_CONFIGURATION
    namespace = _namespace(args)
    if namespace is None and not args.all:
        error(args, "-A goes with --all")
        return EXIT_CONFIGURATION
    try:
        timeout = parse_duration(args.timeout, field="--timeout").total_seconds()
    except RaidiamOperatorError as problem:
        error(args, problem.message)
        return EXIT_CONFIGURATION
    requested_at = utc_now()

    async def request(api: KubeGateway) -> tuple[list[tuple[str, str]], int]:
        if args.all:
            targets = [
                (c["metadata"]["namespace"], c["metadata"]["name"])
                for c in await api.list_clients(namespace, selector=args.selector)
            ]
        else:
            assert namespace is not None
            targets = [(namespace, name) for name in args.names]
        # A new value each time: the operator acts on a change of the annotation.
        stamp = requested_at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        for target_namespace, name in targets:
            await api.annotate_client(target_namespace, name, {REFRESH_REQUESTED_AT: stamp})
        if args.wait:
            return targets, await _wait(api, targets, requested_at=requested_at, patience=timeout)
        return targets, EXIT_OK

    result = _with_api(args, "request a refresh", request)
    if isinstance(result, int):
        return result
    targets, code = result
    if not targets:
        print("No RaidiamClients to refresh.", file=sys.stderr)
    if not args.wait:
        for target_namespace, name in targets:
            print(f"raidiamclient {target_namespace}/{name}: refresh requested")
        return EXIT_OK
    return code


async def _wait(
    api: KubeGateway,
    targets: list[tuple[str, str]],
    *,
    requested_at: datetime,
    patience: float,
) -> int:
    """Print each client's answer as it comes; the exit code is the first of 2, 3, 4 seen."""
    deadline = time.monotonic() + patience
    pending = list(targets)
    outcomes: list[RefreshOutcome] = []
    while pending:
        still: list[tuple[str, str]] = []
        for target_namespace, name in pending:
            client = await api.read_client(target_namespace, name)
            if client is None:
                outcome: RefreshOutcome | None = RefreshOutcome(
                    EXIT_CONFIGURATION, "it was deleted while waiting"
                )
            elif time.monotonic() >= deadline:
                outcome = timeout_outcome(client, waited=patience)
            else:
                outcome = refresh_outcome(client, requested_at=requested_at)
            if outcome is None:
                still.append((target_namespace, name))
                continue
            outcomes.append(outcome)
            stream = sys.stdout if outcome.exit_code == EXIT_OK else sys.stderr
            print(f"raidiamclient {target_namespace}/{name}: {outcome.message}", file=stream)
        pending = still
        if pending:
            await asyncio.sleep(WAIT_POLL_SECONDS)
    codes = {outcome.exit_code for outcome in outcomes}
    return next((code for code in (2, 3, 4) if code in codes), EXIT_OK)
