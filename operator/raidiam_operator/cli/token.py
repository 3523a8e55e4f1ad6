"""`raidiam-operator token`: one access token from files, printed as JSON. No cluster needed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from raidiam_operator.cli.shared import (
    EXIT_OK,
    Commands,
    fail,
    read_flag_file,
    request_exit_code,
    with_one_quick_retry,
)
from raidiam_operator.core import rules
from raidiam_operator.core.errors import ConfigurationError, RaidiamOperatorError
from raidiam_operator.core.rules import AUTH_METHODS, FLAG_FIELDS
from raidiam_operator.core.times import rfc3339, utc_now
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.credentials import load_signing_key, load_transport_certificate
from raidiam_operator.protocol.request import TokenRequest
from raidiam_operator.protocol.tokens import IssuedToken


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
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
    token.set_defaults(handler=token_command)


def token_command(args: argparse.Namespace) -> int:
    try:
        request = request_from_flags(args)
        token = asyncio.run(_fetch_with_one_retry(request))
    except RaidiamOperatorError as error:
        return fail(args, request_exit_code(error), error)
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
        "binding": token.binding,
    }
    if token.certificate_thumbprint:
        document["certificate_thumbprint"] = token.certificate_thumbprint
    return document


async def _fetch_with_one_retry(request: TokenRequest) -> IssuedToken:
    async with TokenClient() as client:
        return await with_one_quick_retry(lambda: client.fetch_token(request))


def request_from_flags(args: argparse.Namespace) -> TokenRequest:
    """The flags as a `TokenRequest`; the rules are the spec's, worded for the flags."""
    rules.check_https(args.issuer, field=FLAG_FIELDS.issuer)
    if args.token_endpoint is not None:
        rules.check_https(args.token_endpoint, field=FLAG_FIELDS.token_endpoint)
    parameters = _parameters(args.param)
    rules.check_parameters(parameters, FLAG_FIELDS)
    if bool(args.cert) != bool(args.key):
        raise ConfigurationError("--cert and --key go together")
    rules.check_credentials(
        args.auth_method,
        transport=bool(args.cert),
        signing_key=bool(args.signing_key and args.kid),
        names=FLAG_FIELDS,
    )
    if args.auth_method != "private_key_jwt" and (args.signing_key or args.alg):
        raise ConfigurationError("--signing-key and --alg only apply to private_key_jwt")
    now = utc_now()
    transport = (
        load_transport_certificate(
            read_flag_file(args.cert, "--cert"), read_flag_file(args.key, "--key"), now=now
        )
        if args.cert
        else None
    )
    signing_key = (
        load_signing_key(
            read_flag_file(args.signing_key, "--signing-key"), key_id=args.kid, algorithm=args.alg
        )
        if args.auth_method == "private_key_jwt"
        else None
    )
    return TokenRequest(
        issuer=args.issuer,
        client_id=args.client_id,
        auth_method=args.auth_method,
        transport=transport,
        signing_key=signing_key,
        scope=args.scope,
        assertion_audience="issuer" if args.audience == "issuer" else "tokenEndpoint",
        token_endpoint=args.token_endpoint,
        ca_bundle=read_flag_file(args.ca_file, "--ca-file") if args.ca_file else None,
        parameters=parameters,
    )


def _parameters(pairs: Sequence[str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise ConfigurationError(f"--param {pair!r} is not of the form name=value")
        parameters[name] = value
    return parameters
