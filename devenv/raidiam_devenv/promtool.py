"""promtool, Prometheus' own checker, for the chart's alert rules.

The tests run `promtool check rules` on the PrometheusRule the chart renders and `promtool test
rules` on series scraped from a running operator, so a rule that does not parse, or that
selects labels the operator does not serve, fails here rather than in a user's Prometheus.

It comes from Debian's `prometheus` package, which the machines and CI can reach: `apt-get
download` fetches the .deb (no installation, no daemon started) and only `usr/bin/promtool` is
kept, under ``~/.cache/raidiam-token-operator/bin/promtool-<Debian version>/``. The Debian
version is whatever the configured mirror offers; an empty package list is refreshed once with
`apt-get update`. Run ``python -m raidiam_devenv.promtool`` to fetch it and print its path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from raidiam_devenv.binaries import BuildError, cache_root, ensure_cached

PACKAGE = "prometheus"


def ensure_promtool() -> Path:
    """The cached promtool of the Debian version on offer, fetched on first use."""
    version = _candidate_version() or _newest_cached_version()
    if version is None:
        _apt("update")
        version = _candidate_version()
    if version is None:
        raise BuildError(
            f"apt offers no {PACKAGE!r} package, so promtool cannot be fetched: is this Debian "
            "(bookworm or newer) with the main component enabled?"
        )
    directory = ensure_cached(
        f"promtool-{version}",
        ["promtool"],
        lambda staging: _fetch_promtool(version, staging),
        # A lock of its own: the control plane's Go builds hold the shared one for minutes.
        lock=".promtool.lock",
    )
    return directory / "promtool"


def _fetch_promtool(version: str, staging: Path) -> None:
    _apt("download", f"{PACKAGE}={version}", cwd=staging)
    (deb,) = staging.glob("*.deb")
    unpacked = staging / "unpacked"
    _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    shutil.move(str(unpacked / "usr" / "bin" / "promtool"), staging / "promtool")
    shutil.rmtree(unpacked)
    deb.unlink()


def _candidate_version() -> str | None:
    result = subprocess.run(
        ["apt-cache", "policy", PACKAGE],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    match = re.search(r"Candidate:\s*(\S+)", result.stdout)
    return match[1] if match and match[1] != "(none)" else None


def _newest_cached_version() -> str | None:
    cached = sorted(cache_root().glob("promtool-*/promtool"))
    return cached[-1].parent.name.removeprefix("promtool-") if cached else None


def _apt(*args: str, cwd: Path | None = None) -> None:
    _run(["apt-get", "-q", *args], cwd=cwd)


def _run(command: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise BuildError(
            f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )


def main() -> int:
    print(ensure_promtool())
    return 0


if __name__ == "__main__":
    sys.exit(main())
