"""The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, for the chart's tests.

The chart renders a ServiceMonitor and a PrometheusRule for kube-prometheus-stack. To check them
against the real schemas, the tests install these CRDs on the local API server and create the
objects with a strict server-side dry run. The CRDs come from the Prometheus Operator's own Go
module (`example/prometheus-operator-crd/`), fetched from the Go module proxy with `go mod
download` into a throwaway module cache; only the two files are kept, under
``~/.cache/raidiam-token-operator/bin/prometheus-operator-crds-<version>/``. Run
``python -m raidiam_devenv.prometheus_operator`` to fetch them and print their paths.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from raidiam_devenv.binaries import BuildError, ensure_cached, go_binary

VERSION = "v0.85.0"
MODULE = "github.com/prometheus-operator/prometheus-operator"
CRDS = ("monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")


def ensure_prometheus_operator_crds() -> list[Path]:
    """Paths of the cached ServiceMonitor and PrometheusRule CRDs, fetched on first use."""
    directory = ensure_cached(
        f"prometheus-operator-crds-{VERSION}",
        CRDS,
        _download_crds,
        lock=".prometheus-operator.lock",
    )
    return [directory / name for name in CRDS]


def _download_crds(staging: Path) -> None:
    module_cache = staging / "gomodcache"
    result = subprocess.run(
        [go_binary(), "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        env={**os.environ, "GOMODCACHE": str(module_cache), "GOFLAGS": "-modcacherw"},
        cwd=staging,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"go mod download {MODULE}@{VERSION} failed (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    source = Path(json.loads(result.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    for name in CRDS:
        shutil.copyfile(source / name, staging / name)
    shutil.rmtree(module_cache)


def main() -> int:
    for path in ensure_prometheus_operator_crds():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
