"""The Helm chart as the tests read it: the objects `helm template` renders, picked by kind.

Rendering, deploy/ and packaging are build tooling in :mod:`raidiam_devenv.chart`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from raidiam_devenv.chart import DEFAULT_NAMESPACE, render


def documents(manifests: str) -> list[dict[str, Any]]:
    """The objects in a multi-document YAML stream, without the empty ones."""
    return [doc for doc in yaml.safe_load_all(manifests) if doc]


def objects(
    *, values: Mapping[str, Any] | None = None, namespace: str = DEFAULT_NAMESPACE
) -> list[dict[str, Any]]:
    return documents(render(values=values, namespace=namespace).stdout)


def only(docs: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    found = only(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def kinds(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted(doc["kind"] for doc in docs)


def operator_container(docs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Mapping[str, Any] = containers[0]
    return container
