"""The Secret metadata watch comes back quickly after the API server does."""

from __future__ import annotations

from raidiam_operator.kube.secret_watch import relist_pause


def test_the_pause_before_listing_again_doubles_from_half_a_second() -> None:
    assert [relist_pause(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_the_pause_is_capped_so_a_restarted_api_server_is_watched_again_within_seconds() -> None:
    # A 30-second outage means a dozen failures in a row; the watch must not sleep for 30 s more.
    assert max(relist_pause(n) for n in range(1, 40)) == 5.0
