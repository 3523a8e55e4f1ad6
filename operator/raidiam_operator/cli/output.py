"""How `status` and `describe` print, as kubectl users expect: `-o wide|json|yaml|name`.

Pure: the objects and `now` come from the caller. `json` and `yaml` print the RaidiamClients,
then the RaidiamRegistrations, as the API server returns them, in one `List` (as `kubectl get
raidiamclients,raidiamregistrations -o json` does: each item names its `kind`), so what works on
kubectl's output works on ours; the table formats are for people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml

from raidiam_operator.cli.registration_views import (
    ordered,
    registration_headers,
    registration_rows,
)
from raidiam_operator.cli.tables import HEADERS, condition, format_table, status_rows
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.spec import parse_spec

OUTPUT_FORMATS = ("wide", "json", "yaml", "name")
WIDE_HEADERS = ("FAILURES", "TOKEN SECRET", "MESSAGE")


def client_list(*objects: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What `kubectl get raidiamclients[,raidiamregistrations] -o json` prints."""
    items = [item for listing in objects for item in listing]
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}


def serialize(document: Any, output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=4, sort_keys=False)
    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False)).rstrip("\n")


def status_output(
    clients: Sequence[Mapping[str, Any]],
    *,
    output: str | None,
    now: datetime,
    with_namespace: bool,
    registrations: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The `status` listing in the requested format (None: the default table). The table formats
    hold the clients only: `registration_table` is the next table."""
    clients = ordered(clients)
    if output in ("json", "yaml"):
        return serialize(client_list(clients, ordered(registrations)), output)
    if output == "name":
        return "\n".join(
            [f"raidiamclient.raidiam.io/{c['metadata']['name']}" for c in clients]
            + [
                f"raidiamregistration.raidiam.io/{r['metadata']['name']}"
                for r in ordered(registrations)
            ]
        )
    headers = ["NAMESPACE", *HEADERS] if with_namespace else list(HEADERS)
    rows = status_rows(clients, now=now, with_namespace=with_namespace)
    if output == "wide":
        headers += WIDE_HEADERS
        rows = [[*row, *_wide_cells(client)] for row, client in zip(rows, clients, strict=True)]
    return format_table(headers, rows)


def registration_table(
    registrations: Sequence[Mapping[str, Any]],
    *,
    output: str | None,
    now: datetime,
    with_namespace: bool,
) -> str:
    """The RaidiamRegistrations' table (`output` None or wide)."""
    wide = output == "wide"
    return format_table(
        registration_headers(with_namespace=with_namespace, wide=wide),
        registration_rows(registrations, now=now, with_namespace=with_namespace, wide=wide),
    )


def _wide_cells(client: Mapping[str, Any]) -> list[str]:
    status = client.get("status") or {}
    spec = client.get("spec") or {}
    degraded = condition(status, "Degraded")
    try:
        token_secret = parse_spec(spec, name=client["metadata"]["name"]).token_secret.name
    except ConfigurationError:
        token_secret = "-"
    return [str(status.get("failedAttempts", 0)), token_secret, str(degraded.get("message", "-"))]
