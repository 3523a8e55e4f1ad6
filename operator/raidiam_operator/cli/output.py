"""How `status` and `describe` print, as kubectl users expect: `-o wide|json|yaml|name`.

Pure: the objects and `now` come from the caller. `json` and `yaml` print the RaidiamClients as
the API server returns them (a `List` for several, as `kubectl get -o json` does), so what works
on kubectl's output works on ours; the table formats are for people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml

from raidiam_operator.cli.tables import HEADERS, condition, format_table, status_rows
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.spec import parse_spec

OUTPUT_FORMATS = ("wide", "json", "yaml", "name")
WIDE_HEADERS = ("FAILURES", "TOKEN SECRET", "MESSAGE")


def client_list(clients: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What `kubectl get raidiamclients -o json` prints."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": list(clients)}


def serialize(document: Any, output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=4, sort_keys=False)
    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False)).rstrip("\n")


def status_output(
    clients: Sequence[Mapping[str, Any]], *, output: str | None, now: datetime, with_namespace: bool
) -> str:
    """The `status` listing in the requested format (None: the default table)."""
    ordered = sorted(clients, key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"]))
    if output in ("json", "yaml"):
        return serialize(client_list(ordered), output)
    if output == "name":
        return "\n".join(f"raidiamclient.raidiam.io/{c['metadata']['name']}" for c in ordered)
    headers = ["NAMESPACE", *HEADERS] if with_namespace else list(HEADERS)
    rows = status_rows(ordered, now=now, with_namespace=with_namespace)
    if output == "wide":
        headers += WIDE_HEADERS
        rows = [[*row, *_wide_cells(client)] for row, client in zip(rows, ordered, strict=True)]
    return format_table(headers, rows)


def _wide_cells(client: Mapping[str, Any]) -> list[str]:
    status = client.get("status") or {}
    spec = client.get("spec") or {}
    degraded = condition(status, "Degraded")
    try:
        token_secret = parse_spec(spec, name=client["metadata"]["name"]).token_secret.name
    except ConfigurationError:
        token_secret = "-"
    return [str(status.get("failedAttempts", 0)), token_secret, str(degraded.get("message", "-"))]
