"""`raidiam-operator check -f`: RaidiamClient and RaidiamRegistration manifests against the
cluster and the live authorization server.

Reads the referenced Secrets from the cluster and talks to the authorization server, but writes
nothing, requests no token and registers nothing, unless asked to try both client-assertion
audiences: then it requests one token per audience and throws it away. Registrations are checked
in `registration_checks`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from raidiam_operator.cli.registration_checks import check_registration
from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    EXIT_TRANSIENT,
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
from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    RaidiamOperatorError,
    TransientError,
)
from raidiam_operator.core.issuers import ISSUER_POLICY_MODES, IssuerPolicy, issuer_policy
from raidiam_operator.core.options import CERTIFICATE_EXPIRY_WARNING
from raidiam_operator.core.registration_spec import REGISTRATION_KIND
from raidiam_operator.core.rules import AssertionAudience
from raidiam_operator.core.spec import KIND, parse_spec
from raidiam_operator.core.times import rfc3339, utc_now
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.keychecks import InProcessChecks, KeyChecker
from raidiam_operator.protocol.request import TokenRequest, assertion_audience
from raidiam_operator.refresh.client_ids import resolve_client_id
from raidiam_operator.refresh.inputs import expiring_certificates, read_inputs, resolve_issuer

if TYPE_CHECKING:
    from raidiam_operator.kube.gateway import KubeGateway


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="validate RaidiamClient and RaidiamRegistration manifests against the live servers",
        description="Checks RaidiamClient manifests without writing anything and without "
        "requesting a token: the spec, the referenced Secrets and certificates (read from the "
        "cluster), the discovery document, the auth method and algorithm, and that the token "
        "endpoint answers. With --try-audiences, a private_key_jwt client also gets one token "
        "request per client-assertion audience (the tokens are discarded). RaidiamRegistration "
        "manifests are checked without registering or sending anything secret: the spec, the "
        "issuer policy, the Secrets, ConfigMap and directory RaidiamClient they name, and the "
        "bank's registration endpoint. "
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
    check.add_argument(
        "--operator-namespace",
        default="raidiam-token-operator",
        metavar="NS",
        help="the operator's namespace, where ClusterRaidiamIssuers' CA bundles live "
        "(default %(default)s)",
    )
    # The operator's flags, so `check` warns about and refuses what the operator will.
    add_expiry_warning_flag(check)
    check.add_argument(
        "--issuer-policy",
        choices=ISSUER_POLICY_MODES,
        default="any",
        help="the operator's --issuer-policy, to check inline issuers against (default %(default)s)",
    )
    check.add_argument(
        "--allowed-issuer",
        action="append",
        default=[],
        metavar="PREFIX",
        help="the operator's --allowed-issuer prefixes, with --issuer-policy allowlist",
    )
    add_cluster_flags(check)
    check.add_argument(
        "--try-audiences",
        action="store_true",
        help="for private_key_jwt clients: request one token with each client-assertion audience "
        "(issuer, tokenEndpoint) and say which one the server accepts; the tokens are discarded",
    )
    check.set_defaults(handler=check_command)


def check_command(args: argparse.Namespace) -> int:
    try:
        warning = expiry_warning(args)
        policy = issuer_policy(args.issuer_policy, args.allowed_issuer)
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
                try_audiences=args.try_audiences,
                operator_namespace=args.operator_namespace,
                policy=policy,
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

    def info(self, message: str) -> None:
        print(f"  info  {message}")

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
    gateway_factory: Callable[[], KubeGateway],
    expiry_warning: timedelta = CERTIFICATE_EXPIRY_WARNING,
    prog: str = "raidiam-operator",
    try_audiences: bool = False,
    operator_namespace: str = "raidiam-token-operator",
    policy: IssuerPolicy = IssuerPolicy(),  # noqa: B008 (frozen)
) -> int:
    path = source
    try:
        documents = [d for d in yaml.safe_load_all(manifest) if d]
    except yaml.YAMLError as error:
        print(f"{prog}: error: cannot read {path}: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    kinds = (KIND, REGISTRATION_KIND)
    checked = [d for d in documents if isinstance(d, dict) and d.get("kind") in kinds]
    if not checked:
        print(f"{prog}: error: {path} holds no {KIND} or {REGISTRATION_KIND}", file=sys.stderr)
        return EXIT_CONFIGURATION
    report = _Report()
    gateway = gateway_factory()
    # One tenant's keys, checked here and now: nobody else's renewals wait on this process.
    keys = KeyChecker(InProcessChecks())
    try:
        async with TokenClient() as tokens:
            for document in checked:
                if document.get("kind") == REGISTRATION_KIND:
                    metadata = document.get("metadata") or {}
                    await check_registration(
                        document,
                        metadata.get("namespace") or namespace or current_namespace(),
                        gateway,
                        tokens,
                        keys,
                        report,
                        policy=policy,
                        operator_namespace=operator_namespace,
                        expiry_warning=expiry_warning,
                        now=utc_now(),
                    )
                    continue
                await _check_one(
                    document,
                    namespace,
                    gateway,
                    tokens,
                    keys,
                    report,
                    expiry_warning,
                    try_audiences=try_audiences,
                    operator_namespace=operator_namespace,
                    policy=policy,
                )
    finally:
        gateway.close()
    if report.configuration_problems or report.unreachable:
        print(
            f"raidiam-operator: error: {report.configuration_problems} problem(s) to fix, "
            f"{report.unreachable} server(s) unreachable",
            file=sys.stderr,
        )
        return EXIT_CONFIGURATION if report.configuration_problems else EXIT_TRANSIENT
    return EXIT_OK


async def _check_one(
    client: dict[str, Any],
    namespace: str | None,
    gateway: KubeGateway,
    tokens: TokenClient,
    keys: KeyChecker,
    report: _Report,
    expiry_warning: timedelta,
    try_audiences: bool = False,
    operator_namespace: str = "raidiam-token-operator",
    policy: IssuerPolicy = IssuerPolicy(),  # noqa: B008 (frozen)
) -> None:
    metadata = client.get("metadata") or {}
    name = metadata.get("name", "<unnamed>")
    ns = metadata.get("namespace") or namespace or current_namespace()
    print(f"{KIND} {ns}/{name}")
    now = utc_now()
    try:
        spec = parse_spec(client.get("spec") or {}, name=name)
    except ConfigurationError as error:
        report.fail(error)
        return
    if spec.client_id_from is not None:
        registration = spec.client_id_from.name
        try:
            spec = await resolve_client_id(
                spec,
                namespace=ns,
                registrations=gateway,
                issuers=gateway,
                cluster_resource_namespace=operator_namespace,
            )
        except ConfigurationError as problem:
            report.fail(problem)
            return
        except RaidiamOperatorError as problem:  # the API server refused or was not there
            report.fail(f"cannot read RaidiamRegistration {registration}: {problem.message}")
            return
        report.ok(f"client id {spec.client_id} from RaidiamRegistration {ns}/{registration}")
    try:
        # --issuer-policy says what the operator runs with (a reference passes every policy).
        resolved = await resolve_issuer(
            spec,
            namespace=ns,
            reader=gateway,
            policy=policy,
            cluster_resource_namespace=operator_namespace,
        )
    except ConfigurationError as problem:
        report.fail(problem)
        return
    except RaidiamOperatorError as problem:  # the API server refused or was not there
        report.fail(f"cannot read ClusterRaidiamIssuer {spec.issuer_ref}: {problem.message}")
        return
    if spec.issuer_ref is not None:
        report.ok(f"ClusterRaidiamIssuer {spec.issuer_ref} serves namespace {ns}")
    spec = resolved
    report.ok(f"spec: {spec.auth_method} for client {spec.client_id} at {spec.issuer}")
    try:
        inputs = await read_inputs(spec, namespace=ns, reader=gateway, keys=keys, now=now)
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
            if inputs.request.transport is not None:
                _report_binding(report, metadata_document.certificate_bound_access_tokens)
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
    if try_audiences and inputs.request.auth_method == "private_key_jwt":
        await _try_audiences(inputs.request, endpoint, tokens, report)


def _period(period: timedelta) -> str:
    """14 days, or 36h: the --certificate-expiry-warning as a person reads it."""
    return f"{period.days} days" if period == timedelta(days=period.days) else human(period)


def _report_binding(report: _Report, server_binds: bool) -> None:
    if server_binds:
        report.ok(
            "the server binds tokens to the transport certificate "
            "(tls_client_certificate_bound_access_tokens)"
        )
    else:
        report.warn(
            "the server does not say it binds tokens to certificates "
            "(no tls_client_certificate_bound_access_tokens): status.binding will be none unless "
            "its tokens are JWTs carrying cnf.x5t#S256"
        )


_AUDIENCES: tuple[AssertionAudience, ...] = ("issuer", "tokenEndpoint")


async def _try_audiences(
    request: TokenRequest, endpoint: str, tokens: TokenClient, report: _Report
) -> None:
    """One token request per client-assertion audience, to say which one the server accepts.
    The tokens are thrown away."""
    refused: dict[AssertionAudience, AuthorizationServerRejection] = {}
    for audience in _AUDIENCES:
        attempt = dataclasses.replace(request, assertion_audience=audience)
        aud = assertion_audience(attempt, token_endpoint=endpoint)
        try:
            await tokens.fetch_token(attempt)
        except AuthorizationServerRejection as error:
            refused[audience] = error
            report.info(f"assertionAudience: {audience} (aud {aud}): refused with {error.error}")
        except RaidiamOperatorError as error:
            report.fail(error)
            return
        else:
            report.info(f"assertionAudience: {audience} (aud {aud}): a token was issued")
    accepted = [audience for audience in _AUDIENCES if audience not in refused]
    configured = request.assertion_audience
    if configured in accepted:
        report.ok(f"the server accepts the configured assertionAudience: {configured}")
    elif accepted:
        report.fail(
            f"the server refuses assertionAudience: {configured} but accepts {accepted[0]}; "
            f"set assertionAudience: {accepted[0]} in the RaidiamClient"
        )
    else:
        report.fail(
            "the server refuses both audiences, so the audience is not the cause; "
            f"{refused[configured].reason}: {refused[configured].message}"
        )
