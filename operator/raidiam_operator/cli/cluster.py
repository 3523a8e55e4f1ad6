"""`status` and `describe`: what the operator did with RaidiamClients, RaidiamRegistrations
and ClusterRaidiamIssuers.

They take kubectl's flags (`-n`, `-A`, `-l`, `-o`, `--kubeconfig`, `--context`) with kubectl's
meanings; a NAME is a RaidiamClient, `raidiamregistration/NAME` a registration. Exit codes
(docs/cli.md): 0 done; 2 something to fix (no kubeconfig, RBAC, a name that does not exist, a
bad selector); 4 the API server could not be reached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raidiam_operator.cli.describe import client_detail, format_detail
from raidiam_operator.cli.output import (
    OUTPUT_FORMATS,
    registration_table,
    serialize,
    status_output,
)
from raidiam_operator.cli.registration_views import (
    credentials_secret_name,
    format_registration_detail,
    registration_detail,
)
from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    EXIT_TRANSIENT,
    Commands,
    add_cluster_flags,
    chosen_namespace,
    current_namespace,
    error,
    exit_code_for,
    named,
    namespace_flags,
    selector_flag,
    with_api,
)
from raidiam_operator.cli.tables import ISSUER_HEADERS, format_table, issuer_rows
from raidiam_operator.core.errors import ConfigurationError, RaidiamOperatorError
from raidiam_operator.core.registration_spec import REGISTRATION_KIND
from raidiam_operator.core.spec import KIND, parse_spec
from raidiam_operator.core.times import utc_now

if TYPE_CHECKING:  # imported late by shared.gateway: `token` and `run --help` need no client
    from raidiam_operator.kube.gateway import KubeGateway

JSON = dict[str, Any]


def add_parsers(commands: Commands[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show RaidiamClients' token health, RaidiamRegistrations and ClusterRaidiamIssuers",
        description="A table of RaidiamClients: ready, reason, refresh trouble, when the token "
        "expires, the next refresh, and when the certificate expires; then a table of "
        "RaidiamRegistrations: server, client id, ready, reason, last check at the server, age; "
        "then (unless names or -l narrow it, or -o asks for data) a table of the "
        "ClusterRaidiamIssuers: issuer URL, ready, reason and how long ago the operator last "
        "checked it.",
    )
    status.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="only these: a RaidiamClient's name, or raidiamregistration/NAME",
    )
    namespace_flags(status)
    selector_flag(status)
    status.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        help="wide: also failures, token or credentials Secret and message; json, yaml: the "
        "objects, in one List; name",
    )
    add_cluster_flags(status)
    status.set_defaults(handler=status_command)

    describe = commands.add_parser(
        "describe",
        help="show one RaidiamClient (or RaidiamRegistration) in detail",
        description="One RaidiamClient: its conditions, the claims of the token in its Secret "
        "(never the token itself), its transport certificate, and whether the token is bound to "
        "that certificate. One RaidiamRegistration (raidiamregistration/NAME): its server, "
        "client id, conditions, last check and digest, and its credentials Secret's keys (never "
        "their values). Reading the Secrets needs `get` on them; without it, the rest is shown.",
    )
    describe.add_argument(
        "name", metavar="NAME", help="a RaidiamClient's name, or raidiamregistration/NAME"
    )
    describe.add_argument("-n", "--namespace", help="namespace (default: the current context's)")
    describe.add_argument("-o", "--output", choices=("json", "yaml"), help="as data")
    add_cluster_flags(describe)
    describe.set_defaults(handler=describe_command)


def status_command(args: argparse.Namespace) -> int:
    namespace = chosen_namespace(args)
    try:
        wanted = [named(argument) for argument in args.names]
    except ConfigurationError as problem:
        error(args, problem.message)
        return EXIT_CONFIGURATION
    if wanted and namespace is None:
        error(args, "name RaidiamClients in one namespace, not with -A")
        return EXIT_CONFIGURATION
    names = {kind: [n for k, n in wanted if k == kind] for kind in (KIND, REGISTRATION_KIND)}
    # Named objects show only their kinds; the issuers belong to the overview, and a narrowed
    # listing or data output shows the namespaced objects only.
    with_clients = not wanted or bool(names[KIND])
    with_registrations = not wanted or bool(names[REGISTRATION_KIND])
    with_issuers = args.output in (None, "wide") and not wanted and not args.selector
    unreadable: list[str] = []

    async def listing(api: KubeGateway) -> tuple[list[JSON], list[JSON], list[JSON]]:
        clients = await api.list_clients(namespace, selector=args.selector) if with_clients else []
        registrations: list[JSON] = []
        if with_registrations:
            try:
                registrations = await api.list_registrations(namespace, selector=args.selector)
            except RaidiamOperatorError as problem:
                if names[REGISTRATION_KIND]:
                    raise
                # A user may read clients without reading registrations (or an older CRD set).
                unreadable.append(problem.message)
        issuers: list[JSON] = []
        if with_issuers:
            try:
                issuers = await api.list_issuers()
            except RaidiamOperatorError as problem:
                # A user may read clients in a namespace without reading cluster-scoped objects.
                unreadable.append(problem.message)
        return clients, registrations, issuers

    listed = with_api(args, "list RaidiamClients", listing)
    if isinstance(listed, int):
        return listed
    clients, registrations, issuers = listed
    for note in unreadable:
        print(f"{args.prog}: {note}", file=sys.stderr)
    chosen = {KIND: clients, REGISTRATION_KIND: registrations}
    for kind, objects in chosen.items():
        if names[kind]:
            found = {o["metadata"]["name"] for o in objects}
            missing = [name for name in names[kind] if name not in found]
            if missing:
                error(args, f"{kind} {', '.join(missing)} not found in namespace {namespace}")
                return EXIT_CONFIGURATION
            chosen[kind] = [o for o in objects if o["metadata"]["name"] in names[kind]]
    clients, registrations = chosen[KIND], chosen[REGISTRATION_KIND]
    now = utc_now()
    every_namespace = namespace is None
    data = args.output in ("json", "yaml", "name")
    as_list = args.output in ("json", "yaml")
    if clients or as_list or (data and registrations):
        print(
            status_output(
                clients,
                registrations=registrations,
                output=args.output,
                now=now,
                with_namespace=every_namespace,
            )
        )
    if with_clients and not clients and not as_list:
        where = "any namespace" if every_namespace else f"namespace {namespace}"
        matching = f" matching {args.selector}" if args.selector else ""
        print(f"No RaidiamClients{matching} in {where}.", file=sys.stderr)
    if registrations and not data:
        if clients:
            print()
        print(
            registration_table(
                registrations, output=args.output, now=now, with_namespace=every_namespace
            )
        )
    if issuers:
        if clients or registrations:
            print()
        print(format_table(ISSUER_HEADERS, issuer_rows(issuers, now=now)))
    return EXIT_OK


def describe_command(args: argparse.Namespace) -> int:
    try:
        kind, name = named(args.name)
    except ConfigurationError as problem:
        error(args, problem.message)
        return EXIT_CONFIGURATION
    if kind == REGISTRATION_KIND:
        return _describe_registration(args, name)
    args.name = name
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

    detail = with_api(args, f"describe RaidiamClient {namespace}/{args.name}", read)
    return _shown(
        args, detail, unreadable, f'RaidiamClient "{args.name}"', namespace, format_detail
    )


def _describe_registration(args: argparse.Namespace, name: str) -> int:
    namespace = args.namespace or current_namespace(args)
    unreadable: list[str] = []

    async def read(api: KubeGateway) -> JSON | None:
        registration = await api.read_registration(namespace, name)
        if registration is None:
            return None
        secret_name = credentials_secret_name(registration)
        credentials = await _optional_secret(api, namespace, secret_name, unreadable)
        return registration_detail(registration, credentials=credentials, readable=not unreadable)

    detail = with_api(args, f"describe RaidiamRegistration {namespace}/{name}", read)
    what = f'RaidiamRegistration "{name}"'
    return _shown(args, detail, unreadable, what, namespace, format_registration_detail)


def _shown(
    args: argparse.Namespace,
    detail: JSON | int | None,
    unreadable: list[str],
    what: str,
    namespace: str,
    text: Callable[..., str],
) -> int:
    """Print what `describe` found, as data or as `text` renders it; the exit code."""
    if isinstance(detail, int):
        return detail
    if detail is None:
        error(args, f"{what} not found in namespace {namespace}")
        return EXIT_CONFIGURATION
    for note in unreadable:
        error(args, f"{note} (shown without it)")
    print(serialize(detail, args.output) if args.output else text(detail, now=utc_now()))
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
