"""`raidiam-operator check -f`: a RaidiamClient manifest against the live authorization server.

Reads the referenced Secrets from the cluster and talks to the authorization server, but writes
nothing and requests no token.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    Commands,
    add_cluster_flags,
    add_expiry_warning_flag,
    current_namespace,
    error,
    expiry_warning,
    fail,
    gateway,
)
from raidiam_operator.cli.tables import human
from raidiam_operator.core.errors import ConfigurationError, RaidiamOperatorError, TransientError
from raidiam_operator.core.options import CERTIFICATE_EXPIRY_WARNING
from raidiam_operator.core.spec import KIND, parse_spec
from raidiam_operator.core.times import rfc3339, utc_now
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.inputs import expiring_certificates, read_inputs

if TYPE_CHECKING:
    from raidiam_operator.kube.gateway import KubernetesGateway


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
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
    # The operator's flag, so `check` warns about exactly what the operator will warn about.
    add_expiry_warning_flag(check)
    add_cluster_flags(check)
    check.set_defaults(handler=check_command)


def check_command(args: argparse.Namespace) -> int:
    try:
        warning = expiry_warning(args)
    except ConfigurationError as problem:
        return fail(args, EXIT_CONFIGURATION, problem)
    try:
        manifest = args.filename.read_text()
    except OSError as problem:
        error(args, f"cannot read {args.filename}: {problem.strerror}")
        return EXIT_CONFIGURATION
    try:
        return asyncio.run(
            check_manifests(
                manifest,
                source=args.filename,
                namespace=args.namespace or current_namespace(args),
                gateway_factory=lambda: gateway(args),
                expiry_warning=warning,
                prog=args.prog,
            )
        )
    except ConfigurationError as problem:  # no kubeconfig to read the Secrets with
        return fail(args, EXIT_CONFIGURATION, problem)


class _Report:
    def __init__(self) -> None:
        self.configuration_problems = 0
        self.unreachable = 0

    def ok(self, message: str) -> None:
        print(f"  ok    {message}")

    def warn(self, message: str) -> None:
        print(f"  warn  {message}")

    def fail(self, error: RaidiamOperatorError | str, *, transient: bool = False) -> None:
        if transient or isinstance(error, TransientError):
            self.unreachable += 1
        else:
            self.configuration_problems += 1
        text = error if isinstance(error, str) else f"{error.reason}: {error.message}"
        print(f"  FAIL  {text}")


async def check_manifests(
    manifest: str,
    *,
    source: Path,
    namespace: str | None,
    gateway_factory: Callable[[], KubernetesGateway],
    expiry_warning: timedelta = CERTIFICATE_EXPIRY_WARNING,
    prog: str = "raidiam-operator",
) -> int:
    path = source
    try:
        documents = [d for d in yaml.safe_load_all(manifest) if d]
    except yaml.YAMLError as error:
        print(f"{prog}: error: cannot read {path}: {error}", file=sys.stderr)
        return 2
    clients = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if not clients:
        print(f"{prog}: error: {path} holds no {KIND}", file=sys.stderr)
        return 2
    report = _Report()
    gateway = gateway_factory()
    try:
        async with TokenClient() as tokens:
            for client in clients:
                await _check_one(client, namespace, gateway, tokens, report, expiry_warning)
    finally:
        gateway.close()
    if report.configuration_problems or report.unreachable:
        print(
            f"raidiam-operator: error: {report.configuration_problems} problem(s) to fix, "
            f"{report.unreachable} server(s) unreachable",
            file=sys.stderr,
        )
        return 2 if report.configuration_problems else 4
    return 0


async def _check_one(
    client: dict[str, Any],
    namespace: str | None,
    gateway: KubernetesGateway,
    tokens: TokenClient,
    report: _Report,
    expiry_warning: timedelta,
) -> None:
    metadata = client.get("metadata") or {}
    name = metadata.get("name", "<unnamed>")
    ns = metadata.get("namespace") or namespace or gateway.current_namespace()
    print(f"{KIND} {ns}/{name}")
    now = utc_now()
    try:
        spec = parse_spec(client.get("spec") or {}, name=name)
    except ConfigurationError as error:
        report.fail(error)
        return
    report.ok(f"spec: {spec.auth_method} for client {spec.client_id} at {spec.issuer}")
    try:
        inputs = await read_inputs(spec, namespace=ns, reader=gateway, now=now)
    except ConfigurationError as problem:
        report.fail(problem)
        return
    except RaidiamOperatorError as problem:  # the API server refused or could not be reached
        report.fail(
            f"cannot read the referenced Secrets in namespace {ns}: {problem.message}",
            transient=isinstance(problem, TransientError),
        )
        return
    for certificate in inputs.certificates:
        report.ok(
            f"{certificate.role} in Secret {certificate.secret_name} valid until "
            f"{rfc3339(certificate.not_after)} (in {human(certificate.not_after - now)})"
        )
    for certificate in expiring_certificates(inputs, now=now, warning=expiry_warning):
        report.warn(
            f"the {certificate.role} in Secret {certificate.secret_name} expires within "
            f"{_period(expiry_warning)}; renew it"
        )
    if inputs.request.signing_key is not None:
        report.ok(
            f"signing key {inputs.request.signing_key.key_id} ({inputs.request.signing_key.algorithm})"
        )
    try:
        if not spec.token_endpoint:
            metadata_document = await tokens.discover(
                spec.issuer, ca_bundle=inputs.request.ca_bundle
            )
            report.ok(f"discovery: issuer {metadata_document.issuer} matches")
        endpoint, status = await tokens.probe(inputs.request)
    except RaidiamOperatorError as error:
        report.fail(error)
        return
    if not spec.token_endpoint:
        report.ok(
            f"the server supports {spec.auth_method}"
            + (
                f" with {inputs.request.signing_algorithm}"
                if inputs.request.signing_algorithm
                else ""
            )
        )
    report.ok(f"token endpoint {endpoint} answers (HTTP {status} to a GET)")


def _period(period: timedelta) -> str:
    """14 days, or 36h: the --certificate-expiry-warning as a person reads it."""
    return f"{period.days} days" if period == timedelta(days=period.days) else human(period)
