"""`raidiam-operator run` limits glibc's malloc arenas before any thread starts."""

from __future__ import annotations

import sys

import pytest

from raidiam_operator.cli.run import limit_malloc_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_the_malloc_arena_limit_is_taken_by_glibc() -> None:
    assert limit_malloc_arenas() is True
