"""`describe NAME`: one RaidiamClient in detail, with its token's claims and the binding check.

Pure: the caller reads the client, its token Secret and its transport certificate Secret, and
passes `now`. The token itself never leaves this module: only the claims it carries (which every
resource server it is sent to can read), and whether its `cnf.x5t#S256` names the certificate
now in the transport Secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from raidiam_operator.cli.tables import moment_text
from raidiam_operator.core.errors import ConfigurationError, CredentialError
from raidiam_operator.core.spec import parse_spec
from raidiam_operator.core.times import rfc3339
from raidiam_operator.protocol.credentials import CertificateFacts, certificate_facts
from raidiam_operator.protocol.tokens import unverified_claims

JSON = dict[str, Any]
#: Claims that hold times, shown with a readable date beside the number.
TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")


def client_detail(
    client: Mapping[str, Any],
    *,
    token_secret: Mapping[str, Any] | None,
    transport_secret: Mapping[str, Any] | None,
    now: datetime,
) -> JSON:
    """Everything `describe` shows, as data (also what `-o json|yaml` prints)."""
    metadata = client.get("metadata", {})
    spec = client.get("spec", {})
    status = client.get("status") or {}
    try:
        parsed = parse_spec(spec, name=metadata.get("name", ""))
    except ConfigurationError:
        parsed = None
    token_secret_name = parsed.token_secret.name if parsed else None
    transport_ref = parsed.transport_certificate if parsed else None

    access_token = _secret_value(token_secret, "access_token")
    claims = unverified_claims(access_token) if access_token else None
    certificate = (
        _certificate(_secret_bytes(transport_secret, transport_ref.certificate_key))
        if transport_ref
        else None
    )
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "issuer": spec.get("issuer"),
        "clientId": spec.get("clientId"),
        # spec.clientIdFrom: the RaidiamRegistration whose registered client id is used
        "clientIdFrom": parsed.client_id_from.name if parsed and parsed.client_id_from else None,
        "authMethod": spec.get("authMethod", "tls_client_auth"),
        "scope": spec.get("scope"),
        "suspended": bool(spec.get("suspend", False)),
        "conditions": [
            {key: condition.get(key) for key in ("type", "status", "reason", "message")}
            for condition in status.get("conditions", [])
        ],
        "token": {
            "secret": token_secret_name,
            "present": access_token is not None,
            "format": "none" if access_token is None else ("JWT" if claims else "opaque"),
            "expiresAt": status.get("expiresAt"),
            "lastRefreshTime": status.get("lastRefreshTime"),
            "nextRefreshTime": status.get("nextRefreshTime"),
            "failedAttempts": status.get("failedAttempts", 0),
            "claims": claims,
        },
        "transportCertificate": None
        if transport_ref is None
        else {
            "secret": transport_ref.secret_name,
            "subject": certificate.subject if certificate else None,
            "notAfter": rfc3339(certificate.not_after) if certificate else None,
            "thumbprint": certificate.thumbprint if certificate else None,
        },
        "binding": {
            **binding_check(
                claims,
                certificate,
                transport_ref is not None,
                now=now,
                advertised_thumbprint=status.get("certificateThumbprint")
                if status.get("binding") == "advertised"
                else None,
            ),
            # How the operator judged the token when it was issued (protocol.tokens.Binding).
            "whenIssued": status.get("binding"),
        },
    }


def binding_check(
    claims: Mapping[str, Any] | None,
    certificate: CertificateFacts | None,
    uses_certificate: bool,
    *,
    now: datetime,
    advertised_thumbprint: str | None = None,
) -> JSON:
    """Does the token's `cnf.x5t#S256` name the certificate now in the transport Secret?

    `result` is one of: bound (it does), mismatch (it names another one: calls with the current
    certificate will be refused until the operator has a new token), unbound (the token carries
    no binding), unknown (an opaque token, or no certificate to compare with). An opaque token
    whose binding the server advertised (status.binding) is bound to `advertised_thumbprint`.
    """
    confirmation = claims.get("cnf") if claims else None
    bound_to = confirmation.get("x5t#S256") if isinstance(confirmation, Mapping) else None
    current = certificate.thumbprint if certificate else None
    if claims is None and advertised_thumbprint is not None:
        claims, bound_to = {}, advertised_thumbprint
    if claims is None:
        return _binding("unknown", bound_to, current, "the token is not a JWT (or there is none)")
    if not isinstance(bound_to, str):
        return _binding(
            "unbound", None, current, "the token carries no cnf.x5t#S256: it is not bound"
        )
    if current is None:
        why = "no transport certificate" if not uses_certificate else "cannot read the certificate"
        return _binding("unknown", bound_to, None, f"bound to x5t#S256 {bound_to}, but {why}")
    if bound_to == current:
        return _binding(
            "bound", bound_to, current, "bound to the certificate now in the transport Secret"
        )
    expired = certificate is not None and certificate.not_after <= now.astimezone(UTC)
    return _binding(
        "mismatch",
        bound_to,
        current,
        "bound to another certificate than the one now in the transport Secret: resource "
        "servers refuse it with that certificate until the operator has a new token"
        + (" (and that certificate has expired)" if expired else ""),
    )


def _binding(result: str, token: object, certificate: str | None, message: str) -> JSON:
    return {
        "result": result,
        "tokenThumbprint": token,
        "certificateThumbprint": certificate,
        "message": message,
    }


def format_detail(detail: Mapping[str, Any], *, now: datetime) -> str:
    """`kubectl describe`-style text."""
    token = detail["token"]
    lines = [
        f"Name:          {detail['name']}",
        f"Namespace:     {detail['namespace']}",
        f"Issuer:        {detail['issuer']}",
        f"Client ID:     {_client_id(detail)}",
        f"Auth method:   {detail['authMethod']}",
        f"Scope:         {detail['scope'] or '-'}",
    ]
    if detail["suspended"]:
        lines.append("Suspended:     true")
    lines.append("Conditions:")
    if detail["conditions"]:
        width = max(len(str(c["type"])) for c in detail["conditions"])
        for condition in detail["conditions"]:
            lines.append(
                f"  {condition['type']!s:<{width}}  {condition['status']!s:<7} "
                f"{condition['reason']}: {condition['message']}"
            )
    else:
        lines.append("  none yet (the operator has not written a status)")
    lines += [
        "Token:",
        f"  Secret:           {token['secret'] or '-'}",
        f"  Expires:          {moment_text(token['expiresAt'], now)}",
        f"  Issued:           {moment_text(token['lastRefreshTime'], now)}",
        f"  Next refresh:     {moment_text(token['nextRefreshTime'], now)}",
        f"  Failed in a row:  {token['failedAttempts']}",
    ]
    if token["claims"]:
        lines.append("  Claims (read from the Secret's token, which is not shown):")
        width = max(len(name) for name in token["claims"])
        for name, value in sorted(token["claims"].items()):
            lines.append(f"    {name + ':':<{width + 1}}  {_claim(name, value)}")
    elif token["present"]:
        lines.append("  Claims:           none to show: the token is opaque (not a JWT)")
    else:
        lines.append("  Claims:           none: the Secret holds no token (yet)")
    certificate = detail["transportCertificate"]
    if certificate:
        lines += [
            "Transport certificate:",
            f"  Secret:      {certificate['secret']}",
            f"  Subject:     {certificate['subject'] or '-'}",
            f"  Expires:     {moment_text(certificate['notAfter'], now)}",
            f"  x5t#S256:    {certificate['thumbprint'] or '-'}",
        ]
    binding = detail["binding"]
    lines += ["Binding:", f"  {binding['result']}: {binding['message']}"]
    if binding.get("whenIssued"):
        lines.append(f"  when issued: {binding['whenIssued']} (status.binding)")
    return "\n".join(lines)


def _client_id(detail: Mapping[str, Any]) -> str:
    source = detail.get("clientIdFrom")
    return f"from RaidiamRegistration {source}" if source else str(detail["clientId"])


def _claim(name: str, value: object) -> str:
    if name in TIME_CLAIMS and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value} ({rfc3339(datetime.fromtimestamp(value, UTC))})"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _secret_bytes(secret: Mapping[str, Any] | None, key: str) -> bytes | None:
    encoded = ((secret or {}).get("data") or {}).get(key)
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _secret_value(secret: Mapping[str, Any] | None, key: str) -> str | None:
    value = _secret_bytes(secret, key)
    return value.decode(errors="replace") if value else None


def _certificate(pem: bytes | None) -> CertificateFacts | None:
    if not pem:
        return None
    try:
        return certificate_facts(pem)
    except CredentialError:
        return None
