"""`raidiam-operator check -f`: a RaidiamClient manifest against the live authorization server.

Reads the referenced Secrets from the cluster and talks to the authorization server, but writes
nothing and requests no token.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from raidiam_operator.cli.tables import human
from raidiam_operator.core.errors import ConfigurationError, RaidiamOperatorError, TransientError
from raidiam_operator.core.spec import KIND, parse_spec
from raidiam_operator.core.times import rfc3339, utc_now
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.inputs import build_inputs, expiring_certificates

if TYPE_CHECKING:
    from raidiam_operator.kube.gateway import KubernetesGateway

EXPIRY_WARNING = timedelta(days=14)


class _Report:
    def __init__(self) -> None:
        self.configuration_problems = 0
        self.unreachable = 0

    def ok(self, message: str) -> None:
        print(f"  ok    {message}")

    def warn(self, message: str) -> None:
        print(f"  warn  {message}")

    def fail(self, error: RaidiamOperatorError | str) -> None:
        if isinstance(error, TransientError):
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
) -> int:
    path = source
    try:
        documents = [d for d in yaml.safe_load_all(manifest) if d]
    except yaml.YAMLError as error:
        print(f"raidiam-operator: error: cannot read {path}: {error}", file=sys.stderr)
        return 2
    clients = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if not clients:
        print(f"raidiam-operator: error: {path} holds no {KIND}", file=sys.stderr)
        return 2
    report = _Report()
    gateway = gateway_factory()
    try:
        async with TokenClient() as tokens:
            for client in clients:
                await _check_one(client, namespace, gateway, tokens, report)
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
        secrets = {
            secret: await gateway.read_secret(ns, secret) for secret in spec.referenced_secrets()
        }
        config_map = (
            await gateway.read_config_map(ns, spec.ca_bundle.config_map_name)
            if spec.ca_bundle
            else None
        )
    except Exception as error:
        report.fail(
            f"cannot read the referenced Secrets in namespace {ns}: {type(error).__name__} {getattr(error, 'status', '')}"
        )
        return
    try:
        inputs = build_inputs(
            spec, namespace=ns, secrets=secrets, ca_config_map=config_map, now=now
        )
    except ConfigurationError as error:
        report.fail(error)
        return
    for certificate in inputs.certificates:
        report.ok(
            f"{certificate.role} in Secret {certificate.secret_name} valid until "
            f"{rfc3339(certificate.not_after)} (in {human(certificate.not_after - now)})"
        )
    for certificate in expiring_certificates(inputs, now=now, warning=EXPIRY_WARNING):
        report.warn(
            f"the {certificate.role} in Secret {certificate.secret_name} expires within 14 days; renew it"
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
