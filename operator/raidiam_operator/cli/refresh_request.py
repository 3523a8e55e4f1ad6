"""`refresh`: ask the operator for a new token, or a read of a registration, now.

It sets the `raidiam.io/refresh-requested-at` annotation, which the operator acts on when its
value changes. Exit codes (docs/cli.md): 0 done; 2 something to fix; 4 the API server could not
be reached; with `--wait`, the operator's answer: 3 refused by the authorization server (or the
bank, or the directory), and 2 or 4 for what stopped it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING

from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TRANSIENT,
    Commands,
    add_cluster_flags,
    chosen_namespace,
    error,
    named,
    namespace_flags,
    selector_flag,
    with_api,
)
from raidiam_operator.cli.waiting import (
    RefreshOutcome,
    refresh_outcome,
    registration_refresh_outcome,
    registration_timeout_outcome,
    timeout_outcome,
)
from raidiam_operator.core.errors import ConfigurationError, RaidiamOperatorError
from raidiam_operator.core.registration_spec import REGISTRATION_KIND
from raidiam_operator.core.spec import KIND, REFRESH_REQUESTED_AT, parse_duration
from raidiam_operator.core.times import utc_now

if TYPE_CHECKING:  # imported late by shared.gateway
    from raidiam_operator.kube.gateway import KubeGateway

#: How often `refresh --wait` reads the status.
WAIT_POLL_SECONDS = 1.0


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    refresh = commands.add_parser(
        "refresh",
        help="ask the operator for a new token now, or to read a registration back",
        description="Sets the raidiam.io/refresh-requested-at annotation; the operator requests "
        "a new token (a RaidiamClient) or reads the registration back from the server (a "
        "RaidiamRegistration). With --wait, waits for its answer and exits 0 (new token, "
        "registration read), 3 (refused by the authorization server, the bank or the directory), "
        "2 (something to fix first) or 4 (unreachable, or no answer).",
    )
    refresh.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="a RaidiamClient, or raidiamregistration/NAME",
    )
    refresh.add_argument(
        "--all",
        action="store_true",
        help="every RaidiamClient and RaidiamRegistration in the namespace (or all, with -A), "
        "or those -l selects",
    )
    namespace_flags(refresh)
    selector_flag(refresh)
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


#: how refresh names each kind in what it prints
_LABELS = {KIND: KIND.lower(), REGISTRATION_KIND: REGISTRATION_KIND.lower()}
#: what a request asks of each kind: a new token; a read of the registration at the server
_REQUESTED = {KIND: "refresh requested", REGISTRATION_KIND: "read requested"}
Target = tuple[str, str, str]  # kind, namespace, name


def refresh_command(args: argparse.Namespace) -> int:
    if bool(args.names) == args.all:
        error(
            args,
            "name one or more RaidiamClients, or pass --all (with -l to select); name a "
            "RaidiamRegistration as raidiamregistration/NAME",
        )
        return EXIT_CONFIGURATION
    if args.selector and not args.all:
        error(args, "-l goes with --all")
        return EXIT_CONFIGURATION
    namespace = chosen_namespace(args)
    if namespace is None and not args.all:
        error(args, "-A goes with --all")
        return EXIT_CONFIGURATION
    try:
        timeout = parse_duration(args.timeout, field="--timeout").total_seconds()
        wanted = [named(argument) for argument in args.names]
    except ConfigurationError as problem:
        error(args, problem.message)
        return EXIT_CONFIGURATION
    requested_at = utc_now()
    # A new value each time: the operator acts on a change of the annotation.
    stamp = requested_at.isoformat(timespec="microseconds").replace("+00:00", "Z")
    unreadable: list[str] = []

    async def request(api: KubeGateway) -> tuple[list[Target], int]:
        if args.all:
            targets = await _every_target(api, namespace, args.selector, unreadable)
        else:
            assert namespace is not None
            targets = [(kind, namespace, name) for kind, name in wanted]
        for kind, target_namespace, name in targets:
            annotate = api.annotate_client if kind == KIND else api.annotate_registration
            await annotate(target_namespace, name, {REFRESH_REQUESTED_AT: stamp})
        if args.wait:
            waited = await _wait(
                api, targets, requested_at=requested_at, stamp=stamp, patience=timeout
            )
            return targets, waited
        return targets, EXIT_OK

    result = with_api(args, "request a refresh", request)
    if isinstance(result, int):
        return result
    targets, code = result
    for note in unreadable:
        print(f"{args.prog}: {note}", file=sys.stderr)
    if not targets:
        print("No RaidiamClients to refresh.", file=sys.stderr)
    if not args.wait:
        for kind, target_namespace, name in targets:
            print(f"{_LABELS[kind]} {target_namespace}/{name}: {_REQUESTED[kind]}")
        return EXIT_OK
    return code


async def _every_target(
    api: KubeGateway, namespace: str | None, selector: str | None, unreadable: list[str]
) -> list[Target]:
    """The clients and registrations `--all` selects; registrations the user may not list are
    left out with a note, as `status` does."""
    targets = [
        (KIND, c["metadata"]["namespace"], c["metadata"]["name"])
        for c in await api.list_clients(namespace, selector=selector)
    ]
    try:
        registrations = await api.list_registrations(namespace, selector=selector)
    except RaidiamOperatorError as problem:
        unreadable.append(f"{problem.message}; RaidiamRegistrations left out")
        return targets
    return targets + [
        (REGISTRATION_KIND, r["metadata"]["namespace"], r["metadata"]["name"])
        for r in registrations
    ]


async def _wait(
    api: KubeGateway,
    targets: list[Target],
    *,
    requested_at: datetime,
    stamp: str,
    patience: float,
) -> int:
    """Print each answer as it comes; the exit code is the first of 2, 3, 4 seen."""
    deadline = time.monotonic() + patience
    pending = list(targets)
    outcomes: list[RefreshOutcome] = []
    while pending:
        still: list[Target] = []
        for target in pending:
            kind, target_namespace, name = target
            outcome = await _answer(
                api,
                target,
                requested_at=requested_at,
                stamp=stamp,
                waited=patience if time.monotonic() >= deadline else None,
            )
            if outcome is None:
                still.append(target)
                continue
            outcomes.append(outcome)
            stream = sys.stdout if outcome.exit_code == EXIT_OK else sys.stderr
            print(f"{_LABELS[kind]} {target_namespace}/{name}: {outcome.message}", file=stream)
        pending = still
        if pending:
            await asyncio.sleep(WAIT_POLL_SECONDS)
    codes = {outcome.exit_code for outcome in outcomes}
    return next(
        (code for code in (EXIT_CONFIGURATION, EXIT_REJECTED, EXIT_TRANSIENT) if code in codes),
        EXIT_OK,
    )


async def _answer(
    api: KubeGateway,
    target: Target,
    *,
    requested_at: datetime,
    stamp: str,
    waited: float | None,
) -> RefreshOutcome | None:
    """The operator's answer so far (None: none yet); `waited` once the time is up."""
    kind, namespace, name = target
    if kind == KIND:
        client = await api.read_client(namespace, name)
        if client is None:
            return RefreshOutcome(EXIT_CONFIGURATION, "it was deleted while waiting")
        if waited is not None:
            return timeout_outcome(client, waited=waited)
        return refresh_outcome(client, requested_at=requested_at)
    registration = await api.read_registration(namespace, name)
    if registration is None:
        return RefreshOutcome(EXIT_CONFIGURATION, "it was deleted while waiting")
    if waited is not None:
        return registration_timeout_outcome(registration, waited=waited)
    return registration_refresh_outcome(registration, requested=stamp, requested_at=requested_at)
