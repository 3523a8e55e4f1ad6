"""`raidiam-operator run` limits glibc's malloc arenas before any thread starts."""

from __future__ import annotations

import sys

from raidiam_operator.cli.run import limit_malloc_arenas


def test_the_malloc_arena_limit_is_taken_by_glibc_on_linux_and_skipped_elsewhere() -> None:
    # The image and CI run Debian (glibc); elsewhere there is nothing to limit, and no error.
    assert limit_malloc_arenas() is sys.platform.startswith("linux")
