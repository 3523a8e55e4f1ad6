"""The `status` table: refresh trouble shows even while the token in the Secret is still valid."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from raidiam_operator.cli.tables import HEADERS, status_rows

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def _client(name: str, *conditions: tuple[str, str, str], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "payments", "name": name},
        "status": {
            "conditions": [
                {"type": kind, "status": value, "reason": reason}
                for kind, value, reason in conditions
            ],
            **status,
        },
    }


def test_a_valid_token_whose_renewals_fail_shows_the_failure_beside_ready() -> None:
    failing = _client(
        "directory",
        ("Ready", "True", "TokenValid"),
        ("Degraded", "True", "invalid_client"),
        expiresAt="2026-01-10T12:04:10Z",
    )

    (row,) = status_rows([failing], now=NOW, with_namespace=False)

    assert dict(zip(HEADERS, row, strict=True)) == {
        "NAME": "directory",
        "READY": "True",
        "REASON": "TokenValid",
        "REFRESH": "invalid_client",
        "EXPIRES IN": "4m10s",
        "NEXT REFRESH": "-",
        "CERTIFICATE EXPIRES IN": "-",
    }


def test_a_healthy_client_refreshes_as_expected_and_a_new_one_is_pending() -> None:
    healthy = _client(
        "healthy", ("Ready", "True", "TokenValid"), ("Degraded", "False", "AsExpected")
    )
    new = {"metadata": {"namespace": "payments", "name": "new"}}

    rows = status_rows([new, healthy], now=NOW, with_namespace=True)

    assert [row[:5] for row in rows] == [
        ["payments", "healthy", "True", "TokenValid", "AsExpected"],
        ["payments", "new", "Unknown", "Pending", "-"],
    ]
