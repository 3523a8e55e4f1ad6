"""The Helm chart built: `helm template`, the generated deploy/ manifests and `helm package`.

`deploy/` is `helm template` of the chart with its default values, split into files for
`kubectl apply -k deploy/`. Regenerate it after changing the chart (`make manifests` does,
after copying the CRDs into the chart):

    PYTHONPATH=devenv .venv/bin/python -m raidiam_devenv.chart

tests/e2e/test_chart.py fails when deploy/ differs from what this renders. `make chart` packages
the chart through `python -m raidiam_devenv.chart package dist`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "raidiam-token-operator"
DEPLOY_DIR = REPO_ROOT / "deploy"
DEFAULT_RELEASE = "raidiam-token-operator"
DEFAULT_NAMESPACE = "raidiam-token-operator"
REGENERATE = "PYTHONPATH=devenv .venv/bin/python -m raidiam_devenv.chart"

_GENERATED = (
    "# Generated from charts/raidiam-token-operator with its default values; do not edit.\n"
    f"# Regenerate: {REGENERATE}\n"
)

__all__ = [
    "CHART_DIR",
    "DEFAULT_NAMESPACE",
    "DEFAULT_RELEASE",
    "DEPLOY_DIR",
    "REGENERATE",
    "REPO_ROOT",
    "HelmFailed",
    "deploy_files",
    "helm_binary",
    "package",
    "render",
    "write_deploy",
]


class HelmFailed(Exception):
    """helm refused the chart; the message is its stderr."""


def helm_binary() -> Path:
    from raidiam_devenv.binaries import ensure_binaries

    return ensure_binaries().helm


def render(
    *,
    release: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    values: Mapping[str, Any] | None = None,
    include_crds: bool = False,
    helm: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart; `values` go in as a values file on stdin. With `check`, a
    refusal raises :class:`HelmFailed`; without, the caller reads the result."""
    args = [str(helm or helm_binary()), "template", release, str(CHART_DIR), "-n", namespace]
    if include_crds:
        args.append("--include-crds")
    args += ["-f", "-"]
    result = subprocess.run(
        args,
        input=yaml.safe_dump(dict(values or {})),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise HelmFailed(f"helm template failed:\n{result.stderr}")
    return result


def deploy_files(helm: Path | None = None) -> dict[str, str]:
    """File name -> content of deploy/, rendered from the chart's defaults."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": DEFAULT_NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "raidiam-token-operator",
                # The operator pod meets the restricted Pod Security Standard; enforce it.
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    crds = "".join(
        f"---\n# Source: raidiam-token-operator/crds/{path.name}\n{path.read_text()}"
        for path in sorted((CHART_DIR / "crds").glob("*.yaml"))
    )
    operator = render(helm=helm).stdout
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["namespace.yaml", "crds.yaml", "operator.yaml"],
    }
    return {
        "kustomization.yaml": _GENERATED + yaml.safe_dump(kustomization, sort_keys=False),
        "namespace.yaml": _GENERATED + yaml.safe_dump(namespace, sort_keys=False),
        "crds.yaml": _GENERATED + crds,
        "operator.yaml": _GENERATED + operator.lstrip(),
    }


def write_deploy(directory: Path = DEPLOY_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in deploy_files().items():
        path = directory / name
        path.write_text(content)
        written.append(path)
    return written


def package(directory: Path, helm: Path | None = None) -> Path:
    """`helm package` of the chart into `directory`: <chart>-<version>.tgz, what `make chart`
    publishes (version and appVersion are the project's version; docs/releasing.md)."""
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(helm or helm_binary()), "package", str(CHART_DIR), "--destination", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HelmFailed(f"helm package failed:\n{result.stderr}")
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    archive = directory / f"{chart['name']}-{chart['version']}.tgz"
    if not archive.is_file():
        raise HelmFailed(f"helm package wrote no {archive.name}:\n{result.stdout}")
    return archive


def main(argv: Sequence[str] = ()) -> int:
    """No arguments: regenerate deploy/. `package DIR`: write the chart archive into DIR."""
    if list(argv[:1]) == ["package"] and len(argv) == 2:
        print(os.path.relpath(package(Path(argv[1]))))
        return 0
    if argv:
        print("usage: python -m raidiam_devenv.chart [package DIR]", file=sys.stderr)
        return 2
    for path in write_deploy():
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
