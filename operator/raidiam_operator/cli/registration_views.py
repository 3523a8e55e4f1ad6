"""RaidiamRegistrations in `status` and `describe`. Pure: the caller reads the objects and
passes `now`.

The credentials Secret holds the registration access token, which lets whoever has it change or
delete the client at the bank: of that Secret only its name, its key names and its annotations
reach this module's output, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from raidiam_operator.cli.tables import condition, human, moment_text, until
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.registration_spec import parse_registration_spec
from raidiam_operator.core.times import parse_rfc3339
from raidiam_operator.refresh.registration_status import DIGEST_ANNOTATION, RETAINED_ANNOTATION

JSON = dict[str, Any]
REGISTRATION_HEADERS = (
    "RAIDIAMREGISTRATION",
    "SERVER",
    "CLIENT ID",
    "READY",
    "REASON",
    "LAST CHECK",
    "AGE",
)
REGISTRATION_WIDE_HEADERS = ("CREDENTIALS SECRET", "MESSAGE")


def server_of(registration: Mapping[str, Any]) -> str:
    """Where it is registered: the issuer URL, or the ClusterRaidiamIssuer that names it."""
    spec = registration.get("spec") or {}
    reference = spec.get("issuerRef")
    if isinstance(reference, Mapping) and reference.get("name"):
        return f"ClusterRaidiamIssuer/{reference['name']}"
    return str(spec.get("issuer") or "-")


def credentials_secret_name(registration: Mapping[str, Any]) -> str:
    """The Secret the operator writes (status), else the one the spec names or defaults to."""
    recorded = (registration.get("status") or {}).get("credentialsSecretName")
    if recorded:
        return str(recorded)
    name = str((registration.get("metadata") or {}).get("name", ""))
    try:
        return parse_registration_spec(registration.get("spec") or {}, name=name).credentials_secret
    except ConfigurationError:
        return "-"


def registration_rows(
    registrations: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    with_namespace: bool,
    wide: bool = False,
) -> list[list[str]]:
    rows = []
    for registration in ordered(registrations):
        metadata = registration["metadata"]
        status = registration.get("status") or {}
        ready = condition(status, "Ready")
        row = [
            metadata["name"],
            server_of(registration),
            str(status.get("clientId") or "-"),
            ready.get("status", "Unknown"),
            ready.get("reason", "Pending"),
            until(status.get("lastCheckTime"), now),
            _age(metadata.get("creationTimestamp"), now),
        ]
        if wide:
            row += [
                credentials_secret_name(registration),
                str(condition(status, "Degraded").get("message") or "-"),
            ]
        rows.append([metadata["namespace"], *row] if with_namespace else row)
    return rows


def registration_headers(*, with_namespace: bool, wide: bool) -> list[str]:
    headers = ["NAMESPACE"] if with_namespace else []
    return [*headers, *REGISTRATION_HEADERS, *(REGISTRATION_WIDE_HEADERS if wide else ())]


def ordered(objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """By namespace, then name, as kubectl lists."""
    return sorted(objects, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))


def registration_detail(
    registration: Mapping[str, Any], *, credentials: Mapping[str, Any] | None, readable: bool
) -> JSON:
    """Everything `describe raidiamregistration/NAME` shows, as data (`-o json|yaml`).

    `credentials` is the credentials Secret as read (None: not there, or `readable` False: it
    could not be read); only its key names and the operator's annotations are taken."""
    metadata = registration.get("metadata") or {}
    spec = registration.get("spec") or {}
    status = registration.get("status") or {}
    secret_meta = (credentials or {}).get("metadata") or {}
    annotations = secret_meta.get("annotations") or {}
    recorded_digest = annotations.get(DIGEST_ANNOTATION)
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "server": server_of(registration),
        "clientId": status.get("clientId"),
        "clientIdIssuedAt": status.get("clientIdIssuedAt"),
        "registrationClientUri": status.get("registrationClientUri"),
        "authMethod": (spec.get("metadata") or {}).get("tokenEndpointAuthMethod")
        or "tls_client_auth",
        "softwareStatement": _statement_source(spec.get("softwareStatement")),
        "deletionPolicy": spec.get("deletionPolicy") or "Retain",
        "conditions": [
            {key: item.get(key) for key in ("type", "status", "reason", "message")}
            for item in status.get("conditions") or []
        ],
        "lastCheckTime": status.get("lastCheckTime"),
        "registeredDigest": status.get("registeredDigest"),
        "credentialsSecret": {
            "name": credentials_secret_name(registration),
            "present": None if not readable else credentials is not None,
            # Key names only: registration_access_token is a credential.
            "keys": sorted(((credentials or {}).get("data") or {}).keys()) if credentials else [],
            "digest": recorded_digest,
            "digestMatchesStatus": None
            if recorded_digest is None or status.get("registeredDigest") is None
            else recorded_digest == status.get("registeredDigest"),
            "retainedFrom": annotations.get(RETAINED_ANNOTATION),
        },
    }


def format_registration_detail(detail: Mapping[str, Any], *, now: datetime) -> str:
    """`kubectl describe`-style text."""
    lines = [
        f"Name:               {detail['name']}",
        f"Namespace:          {detail['namespace']}",
        f"Server:             {detail['server']}",
        f"Client ID:          {detail['clientId'] or '- (not registered yet)'}",
        f"Client ID issued:   {moment_text(detail['clientIdIssuedAt'], now)}",
        f"Registration URI:   {detail['registrationClientUri'] or '-'}",
        f"Auth method:        {detail['authMethod']}",
        f"Software statement: {detail['softwareStatement']}",
        f"Deletion policy:    {detail['deletionPolicy']}",
        f"Last check:         {moment_text(detail['lastCheckTime'], now)}",
        f"Digest:             {detail['registeredDigest'] or '-'}",
        "Conditions:",
    ]
    if detail["conditions"]:
        width = max(len(str(c["type"])) for c in detail["conditions"])
        lines += [
            f"  {c['type']!s:<{width}}  {c['status']!s:<7} {c['reason']}: {c['message']}"
            for c in detail["conditions"]
        ]
    else:
        lines.append("  none yet (the operator has not written a status)")
    secret = detail["credentialsSecret"]
    lines += ["Credentials Secret:", f"  Name:     {secret['name']}"]
    if secret["present"] is None:
        lines.append("  State:    not read (see the note on stderr)")
    elif not secret["present"]:
        lines.append("  State:    not there")
    else:
        lines.append(f"  Keys:     {', '.join(secret['keys']) or '-'} (values not shown)")
        agrees = {True: " (as the status says)", False: " (differs from the status)", None: ""}
        lines.append(
            f"  Digest:   {secret['digest'] or '-'}{agrees[secret['digestMatchesStatus']]}"
        )
        if secret["retainedFrom"]:
            lines.append(f"  Retained: left behind by a deleted {secret['retainedFrom']}")
    return "\n".join(lines)


def _statement_source(statement: Mapping[str, Any] | None) -> str:
    directory = (statement or {}).get("fromDirectory")
    if isinstance(directory, Mapping):
        client = (directory.get("clientRef") or {}).get("name")
        return f"fresh from the directory, with RaidiamClient {client}'s token"
    secret = (statement or {}).get("secretRef")
    if isinstance(secret, Mapping):
        return f"Secret {secret.get('name')}"
    return "none"


def _age(value: object, now: datetime) -> str:
    moment = parse_rfc3339(value) if isinstance(value, str) else None
    return human(now - moment) if moment else "-"
