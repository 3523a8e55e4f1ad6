"""`raidiam-operator register`: one client registration at a data provider (RFC 7591), or one
RFC 7592 operation on it (`--read`, `--update`, `--delete`), printed as JSON. No cluster needed.

The software statement comes from a file or, fresh, from the directory (with a directory token
from a file, or one this command gets by the token flow). The registration access token is a
credential: it is printed only with `--show-registration-token`, and written only to the file
`--save-registration-token` names (or, when the server rotates it on `--update`, back to the
`--registration-token` file it was read from, so that it is never lost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from raidiam_operator.cli.shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    EXIT_REJECTED,
    Commands,
    fail,
    read_flag_file,
    request_exit_code,
    with_one_quick_retry,
)
from raidiam_operator.core import rules
from raidiam_operator.core.errors import ConfigurationError, RaidiamOperatorError, RegistrationGone
from raidiam_operator.core.registration import (
    METADATA_FLAGS,
    ClientMetadata,
    Json,
    Registration,
    RegistrationHandle,
    SoftwareStatement,
    check_metadata,
)
from raidiam_operator.core.rules import AUTH_METHODS, FLAG_FIELDS
from raidiam_operator.core.times import utc_now
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.credentials import TransportCertificate, load_transport_certificate
from raidiam_operator.protocol.registrar import (
    Registrar,
    RegistrationServer,
    SoftwareStatementSource,
)
from raidiam_operator.protocol.registration import read_software_statement
from raidiam_operator.protocol.request import TokenRequest

DIRECTORY_SCOPE = "directory:software"


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    register = commands.add_parser(
        "register",
        help="register a client at a data provider (RFC 7591), or read, update or delete one",
        description=(
            "Register a client at a data provider's authorization server with a software "
            "statement from a file or fresh from the directory, and print the registration as "
            "JSON on stdout (without the registration access token unless asked). With --read, "
            "--update or --delete, the RFC 7592 operation on an existing registration. Exit "
            "codes: 0 success, 2 usage or configuration error, 3 refused by the server or the "
            "directory (or the registration is gone), 4 transient failure."
        ),
    )
    server = register.add_argument_group("the data provider")
    server.add_argument("--issuer", required=True, help="its issuer URL; discovery is read from it")
    server.add_argument("--cert", type=Path, help="transport certificate (PEM, leaf first)")
    server.add_argument("--key", type=Path, help="transport certificate's private key (PEM)")
    server.add_argument(
        "--ca-file", type=Path, help="CA certificates (PEM) that sign the servers' certificates"
    )
    server.add_argument(
        "--initial-access-token",
        type=Path,
        metavar="FILE",
        help="RFC 7591 initial access token, for servers that want one (sent as a Bearer token)",
    )

    ssa = register.add_argument_group("the software statement (SSA)")
    ssa.add_argument("--software-statement", type=Path, metavar="FILE", help="an SSA from a file")
    ssa.add_argument("--directory-api", metavar="URL", help="the directory's mTLS API base URL")
    ssa.add_argument("--organisation-id", metavar="ID")
    ssa.add_argument("--software-statement-id", metavar="ID")
    ssa.add_argument(
        "--directory-token",
        type=Path,
        metavar="FILE",
        help="a directory:software access token, bound to --cert",
    )
    ssa.add_argument(
        "--directory-issuer",
        metavar="URL",
        help="get the directory token from this authorization server (tls_client_auth with --cert)",
    )
    ssa.add_argument("--directory-client-id", metavar="ID", help="the client id at it")
    ssa.add_argument(
        "--directory-ca-file",
        type=Path,
        metavar="FILE",
        help="CA certificates for the directory and its authorization server (default --ca-file)",
    )

    metadata = register.add_argument_group("the client metadata")
    metadata.add_argument("--auth-method", choices=AUTH_METHODS, default="tls_client_auth")
    metadata.add_argument(
        "--redirect-uri", action="append", default=[], metavar="URL", help="repeatable"
    )
    metadata.add_argument("--scope", help='space-separated scopes, e.g. "accounts payments"')
    metadata.add_argument(
        "--grant-type",
        action="append",
        metavar="TYPE",
        help="repeatable (default: client_credentials)",
    )
    metadata.add_argument(
        "--response-type", action="append", default=[], metavar="TYPE", help="repeatable"
    )
    metadata.add_argument(
        "--jwks-uri", metavar="URL", help="default: the software statement's software_jwks_uri"
    )
    metadata.add_argument(
        "--subject-dn",
        help="tls_client_auth_subject_dn (default: --cert's subject, in the Open Finance Brasil "
        "profile's format)",
    )
    metadata.add_argument(
        "--signing-alg", metavar="ALG", help="token_endpoint_auth_signing_alg (private_key_jwt)"
    )
    metadata.add_argument("--id-token-alg", metavar="ALG", help="id_token_signed_response_alg")
    metadata.add_argument(
        "--no-certificate-bound-tokens",
        dest="bound_tokens",
        action="store_false",
        help="register tls_client_certificate_bound_access_tokens false (default true, as FAPI asks)",
    )
    metadata.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="K=V",
        help="another metadata field (V as JSON when it parses, else a string; repeatable)",
    )

    operation = register.add_argument_group("RFC 7592: an existing registration")
    chosen = operation.add_mutually_exclusive_group()
    chosen.add_argument("--read", action="store_true", help="GET the registration")
    chosen.add_argument("--update", action="store_true", help="PUT the metadata (with a fresh SSA)")
    chosen.add_argument("--delete", action="store_true", help="DELETE the registration")
    operation.add_argument("--registration-client-uri", metavar="URL")
    operation.add_argument(
        "--registration-token", type=Path, metavar="FILE", help="the registration access token"
    )
    operation.add_argument("--client-id", help="the registered client id (--update)")

    output = register.add_argument_group("output")
    output.add_argument(
        "--show-registration-token",
        action="store_true",
        help="include registration_access_token in the JSON printed",
    )
    output.add_argument(
        "--save-registration-token",
        type=Path,
        metavar="FILE",
        help="write the registration access token to FILE (mode 0600)",
    )
    register.set_defaults(handler=register_command)


@dataclass(frozen=True)
class DirectoryAccess:
    """How to get a fresh SSA: where, and the directory token (from a file, or a request)."""

    source: SoftwareStatementSource
    token: str | None = field(default=None, repr=False)
    token_request: TokenRequest | None = None


@dataclass(frozen=True)
class Plan:
    """The flags, read and checked: everything the command sends, before anything is sent."""

    server: RegistrationServer
    metadata: ClientMetadata
    software_statement: SoftwareStatement | None = None
    directory: DirectoryAccess | None = None
    initial_access_token: str | None = field(default=None, repr=False)
    handle: RegistrationHandle | None = None
    client_id: str | None = None
    operation: str = "register"


def register_command(args: argparse.Namespace) -> int:
    try:
        plan = plan_from_flags(args)
    except ConfigurationError as problem:
        return fail(args, EXIT_CONFIGURATION, problem)
    try:
        registration = asyncio.run(_carry_out(plan))
        if registration is not None:
            _keep_registration_token(args, plan, registration)
    except RegistrationGone as problem:
        if plan.operation != "delete":
            return fail(args, EXIT_REJECTED, problem)
        _note(args, "the registration was already gone at the server")
        registration = None
    except RaidiamOperatorError as problem:
        return fail(args, request_exit_code(problem), problem)
    if registration is None:
        assert plan.handle is not None
        document: dict[str, object] = {
            "registration_client_uri": plan.handle.registration_client_uri,
            "deleted": True,
        }
    else:
        document = registration_document(registration, args.show_registration_token)
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def registration_document(registration: Registration, with_token: bool) -> dict[str, object]:
    """The server's registration, without its credentials unless asked."""
    document = dict(registration.document)
    if with_token and registration.registration_access_token is not None:
        document["registration_access_token"] = registration.registration_access_token
    return document


async def _carry_out(plan: Plan) -> Registration | None:
    async with TokenClient() as client:
        registrar = Registrar(client)
        handle = plan.handle
        if plan.operation == "read":
            assert handle is not None
            return await with_one_quick_retry(lambda: registrar.read(plan.server, handle))
        if plan.operation == "delete":
            assert handle is not None
            await registrar.delete(plan.server, handle)
            return None
        # Fetched last, just before it is sent: the bank takes an SSA at most 5 minutes old.
        statement = plan.software_statement or await _fresh_software_statement(
            client, registrar, plan.directory
        )
        existing = None
        if plan.operation == "update":
            assert handle is not None
            assert plan.client_id is not None
            existing = (handle, plan.client_id)
        submitted = await registrar.submit(
            plan.server,
            plan.metadata,
            software_statement=statement,
            existing=existing,
            initial_access_token=plan.initial_access_token,
        )
        return submitted.registration


async def _fresh_software_statement(
    client: TokenClient, registrar: Registrar, directory: DirectoryAccess | None
) -> SoftwareStatement | None:
    if directory is None:
        return None
    token = directory.token
    if token is None:
        assert directory.token_request is not None
        request = directory.token_request
        token = (await with_one_quick_retry(lambda: client.fetch_token(request))).access_token
    return await with_one_quick_retry(
        lambda: registrar.software_statement(directory.source, directory_token=token or "")
    )


# -- the flags ------------------------------------------------------------------------------


def plan_from_flags(args: argparse.Namespace) -> Plan:
    """Every flag read and checked, every file loaded: what to fix is said before anything is
    sent."""
    rules.check_https(args.issuer, field="--issuer")
    operation = (
        "read"
        if args.read
        else "update"
        if args.update
        else "delete"
        if args.delete
        else "register"
    )
    transport = _transport(args)
    ca_bundle = read_flag_file(args.ca_file, "--ca-file") if args.ca_file else None
    server = RegistrationServer(args.issuer, transport, ca_bundle)
    handle = _handle(args, operation)
    metadata = check_metadata(_metadata(args), METADATA_FLAGS)
    if metadata.token_endpoint_auth_method in rules.MUTUAL_TLS_METHODS:
        rules.check_credentials(
            metadata.token_endpoint_auth_method,
            transport=transport is not None,
            signing_key=True,
            names=FLAG_FIELDS,
        )
    plan = Plan(server, metadata, handle=handle, operation=operation)
    if operation in ("read", "delete"):
        return plan
    if operation == "update" and not args.client_id:
        raise ConfigurationError("--update needs --client-id: RFC 7592 PUT names the client")
    plan = replace(plan, client_id=args.client_id if operation == "update" else None)
    if args.initial_access_token:
        plan = replace(
            plan,
            initial_access_token=_text(args.initial_access_token, "--initial-access-token"),
        )
    return _with_software_statement(args, plan, transport, ca_bundle)


def _with_software_statement(
    args: argparse.Namespace,
    plan: Plan,
    transport: TransportCertificate | None,
    ca_bundle: bytes | None,
) -> Plan:
    from_directory = args.directory_api or args.organisation_id or args.software_statement_id
    if args.software_statement and from_directory:
        raise ConfigurationError(
            "give the software statement either as --software-statement FILE or from the "
            "directory (--directory-api ...), not both"
        )
    if args.software_statement:
        statement = read_software_statement(
            read_flag_file(args.software_statement, "--software-statement"),
            source=f"--software-statement {args.software_statement}",
        )
        return replace(plan, software_statement=statement)
    if not from_directory:
        return plan  # a server that takes no SSA
    missing = [
        flag
        for flag, value in (
            ("--directory-api", args.directory_api),
            ("--organisation-id", args.organisation_id),
            ("--software-statement-id", args.software_statement_id),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(
            f"the software statement from the directory needs {', '.join(missing)}"
        )
    if transport is None:
        raise ConfigurationError(
            "the software statement from the directory needs --cert and --key: the directory "
            "is reached over mutual TLS"
        )
    rules.check_https(args.directory_api, field="--directory-api")
    directory_ca = (
        read_flag_file(args.directory_ca_file, "--directory-ca-file")
        if args.directory_ca_file
        else ca_bundle
    )
    source = SoftwareStatementSource(
        args.directory_api,
        args.organisation_id,
        args.software_statement_id,
        transport,
        directory_ca,
    )
    return replace(plan, directory=_directory_access(args, source, transport, directory_ca))


def _directory_access(
    args: argparse.Namespace,
    source: SoftwareStatementSource,
    transport: TransportCertificate,
    ca_bundle: bytes | None,
) -> DirectoryAccess:
    if args.directory_token and (args.directory_issuer or args.directory_client_id):
        raise ConfigurationError(
            "give the directory token either as --directory-token FILE or through "
            "--directory-issuer and --directory-client-id, not both"
        )
    if args.directory_token:
        return DirectoryAccess(source, token=_text(args.directory_token, "--directory-token"))
    if not (args.directory_issuer and args.directory_client_id):
        raise ConfigurationError(
            "the software statement from the directory needs a directory token: "
            "--directory-token FILE, or --directory-issuer URL and --directory-client-id ID to "
            "get one with the transport certificate"
        )
    rules.check_https(args.directory_issuer, field="--directory-issuer")
    request = TokenRequest(
        issuer=args.directory_issuer,
        client_id=args.directory_client_id,
        auth_method="tls_client_auth",
        transport=transport,
        scope=DIRECTORY_SCOPE,
        ca_bundle=ca_bundle,
    )
    return DirectoryAccess(source, token_request=request)


def _transport(args: argparse.Namespace) -> TransportCertificate | None:
    if bool(args.cert) != bool(args.key):
        raise ConfigurationError("--cert and --key go together")
    if not args.cert:
        return None
    return load_transport_certificate(
        read_flag_file(args.cert, "--cert"), read_flag_file(args.key, "--key"), now=utc_now()
    )


def _handle(args: argparse.Namespace, operation: str) -> RegistrationHandle | None:
    if operation == "register":
        if args.registration_client_uri or args.registration_token or args.client_id:
            raise ConfigurationError(
                "--registration-client-uri, --registration-token and --client-id are for "
                "--read, --update and --delete"
            )
        return None
    if not (args.registration_client_uri and args.registration_token):
        raise ConfigurationError(
            f"--{operation} needs --registration-client-uri and --registration-token: the "
            "registration's URL and token, as the registration answered"
        )
    rules.check_https(args.registration_client_uri, field="--registration-client-uri")
    return RegistrationHandle(
        args.registration_client_uri, _text(args.registration_token, "--registration-token")
    )


def _metadata(args: argparse.Namespace) -> ClientMetadata:
    return ClientMetadata(
        token_endpoint_auth_method=args.auth_method,
        grant_types=tuple(args.grant_type or ("client_credentials",)),
        response_types=tuple(args.response_type),
        redirect_uris=tuple(args.redirect_uri),
        scope=args.scope,
        jwks_uri=args.jwks_uri,
        id_token_signed_response_alg=args.id_token_alg,
        token_endpoint_auth_signing_alg=args.signing_alg,
        tls_client_auth_subject_dn=args.subject_dn,
        tls_client_certificate_bound_access_tokens=args.bound_tokens,
        extra=_extra(args.metadata),
    )


def _extra(pairs: Sequence[str]) -> dict[str, Json]:
    extra: dict[str, Json] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise ConfigurationError(f"--metadata {pair[:70]!r} is not of the form name=value")
        if name in extra:
            raise ConfigurationError(f"--metadata {name} given more than once")
        try:
            extra[name] = json.loads(value)
        except ValueError:
            extra[name] = value
    return extra


def _text(path: Path, flag: str) -> str:
    """A token from a file: one line of ASCII, the newline an editor adds dropped."""
    try:
        text = read_flag_file(path, flag).decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{flag} {path} is not ASCII text; it must hold a token") from None
    if not text or any(ch.isspace() for ch in text):
        raise ConfigurationError(f"{flag} {path} must hold one token on one line")
    return text


def _keep_registration_token(
    args: argparse.Namespace, plan: Plan, registration: Registration
) -> None:
    """Write the registration access token where asked; a token the server rotated on
    `--update` goes back to the `--registration-token` file, since the old one is now void."""
    token = registration.registration_access_token
    if token is None:
        return
    target: Path | None = args.save_registration_token
    rotated = plan.handle is not None and token != plan.handle.registration_access_token
    if target is None and rotated and args.registration_token:
        target = args.registration_token
        _note(
            args,
            f"the server rotated the registration access token; the new one is written to {target}",
        )
    if target is not None:
        _write_private(target, token, "--save-registration-token")


def _note(args: argparse.Namespace, message: str) -> None:
    """Something the user should know, on stderr as `status` prints its notes."""
    print(f"{getattr(args, 'prog', 'raidiam-operator')}: {message}", file=sys.stderr)


def _write_private(path: Path, text: str, flag: str) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(text + "\n")
    except OSError as problem:
        raise ConfigurationError(f"{flag} {path}: {problem.strerror}") from None
