"""`check -f` of a RaidiamRegistration: what the operator would find before it registers.

It registers nothing and sends nothing secret: the spec, the issuer policy, the Secrets and
ConfigMap it names (read with the user's rights, their values kept in memory), the directory
RaidiamClient, the credentials Secret's owner, and the bank's discovery document (a GET). The
software statement, the directory token and any registration access token stay where they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from raidiam_operator.cli.tables import condition, human
from raidiam_operator.core.errors import (
    ConfigurationError,
    DirectoryTokenMissing,
    RaidiamOperatorError,
    TransientError,
)
from raidiam_operator.core.issuers import IssuerPolicy
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.registration_spec import (
    REGISTRATION_KIND,
    FromDirectory,
    RegistrationSpec,
    SecretKeyRef,
    check_directory_url,
    parse_registration_spec,
)
from raidiam_operator.core.spec import parse_spec
from raidiam_operator.core.times import rfc3339
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.keychecks import KeyChecker
from raidiam_operator.protocol.registrar import Registrar, RegistrationServer
from raidiam_operator.refresh.inputs import (
    expiring_certificates,
    read_inputs,
    resolve_issuer,
    secret_value,
)
from raidiam_operator.refresh.registration_status import RETAINED_ANNOTATION
from raidiam_operator.refresh.registrations import DIRECTORY_SCOPE

if TYPE_CHECKING:
    from raidiam_operator.kube.gateway import KubeGateway


class Report(Protocol):
    def ok(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def info(self, message: str) -> None: ...
    def fail(self, error: RaidiamOperatorError | str, *, transient: bool = False) -> None: ...


async def check_registration(
    document: Mapping[str, Any],
    namespace: str,
    gateway: KubeGateway,
    tokens: TokenClient,
    keys: KeyChecker,
    report: Report,
    *,
    policy: IssuerPolicy,
    operator_namespace: str,
    expiry_warning: timedelta,
    now: datetime,
) -> None:
    """Each step reports a line; the first failure ends the checks of this registration."""
    name = str((document.get("metadata") or {}).get("name") or "<unnamed>")
    print(f"{REGISTRATION_KIND} {namespace}/{name}")
    try:
        spec = parse_registration_spec(document.get("spec") or {}, name=name)
        server_spec = await resolve_issuer(
            spec.server,
            namespace=namespace,
            reader=gateway,
            policy=policy,
            cluster_resource_namespace=operator_namespace,
        )
        if spec.server.issuer_ref is not None:
            report.ok(f"ClusterRaidiamIssuer {spec.server.issuer_ref} serves namespace {namespace}")
        if isinstance(spec.software_statement, FromDirectory):
            check_directory_url(policy, spec.software_statement)
        report.ok(
            f"spec: {spec.metadata.token_endpoint_auth_method} registration at "
            f"{server_spec.issuer}, credentials in Secret {spec.credentials_secret}"
        )
        inputs = await read_inputs(
            server_spec, namespace=namespace, reader=gateway, keys=keys, now=now
        )
        for certificate in inputs.certificates:
            report.ok(
                f"{certificate.role} in Secret {certificate.secret_name} valid until "
                f"{rfc3339(certificate.not_after)} (in {human(certificate.not_after - now)})"
            )
        for certificate in expiring_certificates(inputs, now=now, warning=expiry_warning):
            report.warn(f"the {certificate.role} in Secret {certificate.secret_name} expires soon")
        await _referenced_secrets(spec, namespace, gateway, report)
        await _directory_client(spec, namespace, gateway, report)
        await _credentials_secret(spec, name, namespace, gateway, report)
        server = RegistrationServer(
            server_spec.issuer, inputs.request.transport, inputs.request.ca_bundle
        )
        endpoint = await Registrar(tokens).registration_endpoint(server)
    except ConfigurationError as problem:
        report.fail(problem)
        return
    except RaidiamOperatorError as problem:  # the API server or the bank refused or was not there
        report.fail(problem, transient=isinstance(problem, TransientError))
        return
    report.ok(f"discovery: issuer {server.issuer} matches; registration endpoint {endpoint}")


async def _referenced_secrets(
    spec: RegistrationSpec, namespace: str, gateway: KubeGateway, report: Report
) -> None:
    """The software statement and initial access token Secrets hold their keys (values unread
    beyond that)."""
    for ref, field_path in (
        (spec.software_statement, "spec.softwareStatement.secretRef"),
        (spec.initial_access_token, "spec.initialAccessToken"),
    ):
        if isinstance(ref, SecretKeyRef):
            secret_value(
                await gateway.read_secret(namespace, ref.name),
                namespace=namespace,
                secret_name=ref.name,
                key=ref.key,
                field_path=field_path,
            )
            report.ok(f"{field_path}: Secret {ref.name} has key {ref.key}")


async def _directory_client(
    spec: RegistrationSpec, namespace: str, gateway: KubeGateway, report: Report
) -> None:
    """The RaidiamClient whose token fetches the software statement exists (and is Ready)."""
    source = spec.software_statement
    if not isinstance(source, FromDirectory):
        return
    field_path = "spec.softwareStatement.fromDirectory.clientRef"
    client = await gateway.read_client(namespace, source.client_name)
    if client is None:
        raise DirectoryTokenMissing(
            f"RaidiamClient {namespace}/{source.client_name} (from {field_path}) does not "
            f"exist; create it with scope {DIRECTORY_SCOPE}"
        )
    scope = parse_spec(client.get("spec") or {}, name=source.client_name).scope or ""
    if DIRECTORY_SCOPE not in scope.split():
        raise DirectoryTokenMissing(
            f"RaidiamClient {namespace}/{source.client_name} (from {field_path}) does not ask "
            f"for the scope {DIRECTORY_SCOPE}; set spec.scope: {DIRECTORY_SCOPE} on it"
        )
    ready = condition(client.get("status") or {}, "Ready")
    if ready.get("status") == "True":
        report.ok(f"directory RaidiamClient {source.client_name} is Ready")
    else:
        report.warn(
            f"directory RaidiamClient {source.client_name} is not Ready "
            f"({ready.get('reason', 'Pending')}): the operator cannot fetch a software statement "
            "until it has a token"
        )


async def _credentials_secret(
    spec: RegistrationSpec, name: str, namespace: str, gateway: KubeGateway, report: Report
) -> None:
    """A Secret of the credentials' name that is another's is left untouched: the operator would
    refuse with SecretConflict."""
    secret = await gateway.read_secret(namespace, spec.credentials_secret)
    if secret is None:
        return
    metadata = secret.get("metadata") or {}
    owners = {(ref.get("kind"), ref.get("name")) for ref in metadata.get("ownerReferences") or []}
    retained_from = (metadata.get("annotations") or {}).get(RETAINED_ANNOTATION)
    if (REGISTRATION_KIND, name) in owners or (not owners and retained_from == name):
        report.info(
            f"Secret {spec.credentials_secret} already records this registration; the operator "
            "manages that client rather than registering a new one"
        )
        return
    raise ConfigurationError(
        f"Secret {namespace}/{spec.credentials_secret} already exists and is not this "
        "RaidiamRegistration's; the operator leaves it untouched. Delete it, or set "
        "spec.credentialsSecret.name to another name",
        reason=Reason.SECRET_CONFLICT,
    )
