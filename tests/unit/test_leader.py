from __future__ import annotations

from datetime import UTC, datetime, timedelta

from raidiam_operator.kube.leader import lease_action

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def _lease(holder: str, renewed: datetime, duration: int = 15) -> dict[str, object]:
    return {
        "metadata": {"resourceVersion": "1"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def test_no_lease_is_created() -> None:
    assert lease_action(None, identity="a", now=NOW) == "create"


def test_our_own_lease_is_renewed() -> None:
    assert lease_action(_lease("a", NOW - timedelta(seconds=5)), identity="a", now=NOW) == "renew"


def test_a_live_holder_is_left_alone() -> None:
    assert lease_action(_lease("b", NOW - timedelta(seconds=10)), identity="a", now=NOW) == "wait"


def test_a_holder_that_stopped_renewing_is_taken_over() -> None:
    assert lease_action(_lease("b", NOW - timedelta(seconds=16)), identity="a", now=NOW) == "take"


def test_a_released_lease_is_taken_at_once() -> None:
    assert lease_action(_lease("", NOW), identity="a", now=NOW) == "take"
