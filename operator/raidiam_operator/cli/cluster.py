"""`raidiam-operator status` and `refresh`: what the operator did, and asking it for more."""

from __future__ import annotations

import argparse
import asyncio
import sys

from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    Commands,
    current_namespace,
    error,
    gateway,
)
from raidiam_operator.cli.tables import (
    HEADERS,
    ISSUER_HEADERS,
    format_table,
    issuer_rows,
    status_rows,
)
from raidiam_operator.core.errors import RaidiamOperatorError
from raidiam_operator.core.spec import REFRESH_REQUESTED_AT
from raidiam_operator.core.times import utc_now


def add_parsers(commands: Commands[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show every RaidiamClient's token health, and the ClusterRaidiamIssuers",
        description="A table of RaidiamClients: ready, reason, when the token expires, the next "
        "refresh, and when the certificate expires; then a table of the ClusterRaidiamIssuers: "
        "issuer URL, ready, reason and how long ago the operator last checked it.",
    )
    _namespace_flags(status)
    status.set_defaults(handler=status_command)

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
    refresh.set_defaults(handler=refresh_command)


def _namespace_flags(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the current context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def _namespace(args: argparse.Namespace) -> str | None:
    return None if args.all_namespaces else (args.namespace or current_namespace())


def status_command(args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    api = gateway()
    issuers: list[dict[str, object]] = []
    try:
        clients = asyncio.run(api.list_clients(namespace))
        try:
            issuers = asyncio.run(api.list_issuers())
        except RaidiamOperatorError as problem:
            # A user may read clients in a namespace without reading cluster-scoped objects.
            print(f"raidiam-operator: {problem.message}", file=sys.stderr)
    except RaidiamOperatorError as problem:
        error(f"cannot list RaidiamClients: {problem.message}")
        return EXIT_CONFIGURATION
    finally:
        api.close()
    now = utc_now()
    if clients:
        headers = ["NAMESPACE", *HEADERS] if namespace is None else list(HEADERS)
        print(
            format_table(headers, status_rows(clients, now=now, with_namespace=namespace is None))
        )
    else:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No RaidiamClients in {where}.", file=sys.stderr)
    if issuers:
        if clients:
            print()
        print(format_table(ISSUER_HEADERS, issuer_rows(issuers, now=now)))
    return EXIT_OK


def refresh_command(args: argparse.Namespace) -> int:
    if bool(args.names) == args.all:
        error("name one or more RaidiamClients, or pass --all")
        return EXIT_CONFIGURATION
    namespace = _namespace(args)
    if namespace is None and not args.all:
        error("-A goes with --all")
        return EXIT_CONFIGURATION
    api = gateway()

    async def request() -> list[tuple[str, str]]:
        if args.all:
            targets = [
                (c["metadata"]["namespace"], c["metadata"]["name"])
                for c in await api.list_clients(namespace)
            ]
        else:
            assert namespace is not None
            targets = [(namespace, name) for name in args.names]
        # A new value each time: the operator acts on a change of the annotation.
        stamp = utc_now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        for target_namespace, name in targets:
            await api.annotate_client(target_namespace, name, {REFRESH_REQUESTED_AT: stamp})
        return targets

    try:
        targets = asyncio.run(request())
    except RaidiamOperatorError as problem:
        error(f"cannot request a refresh: {problem.message}")
        return EXIT_CONFIGURATION
    finally:
        api.close()
    for target_namespace, name in targets:
        print(f"raidiamclient {target_namespace}/{name}: refresh requested")
    return EXIT_OK
