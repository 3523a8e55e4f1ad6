"""kubeconform, and Kubernetes JSON schemas for it made from a live API server's OpenAPI.

kubeconform downloads its schemas from GitHub by default, which neither the developers' machines
nor CI can reach. Instead, :func:`write_json_schemas` turns the ``/openapi/v2`` document of the
local test API server (which knows every built-in kind of its version and every CRD applied to
it) into one standalone JSON schema per kind, named the way kubeconform's
``-schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'`` template looks them up.
The schemas are strict: objects reject properties the API does not define, like kubeconform's
own ``-strict`` schemas.

kubeconform itself is built with ``go install`` from the Go module proxy and cached next to the
control plane's binaries, under ``~/.cache/raidiam-token-operator/bin/kubeconform-<version>/``.
Run ``python -m raidiam_devenv.kubeconform`` to build it and print its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from raidiam_devenv.binaries import BuildError, ensure_cached, go_binary

KUBECONFORM_VERSION = "v0.8.0"
KUBECONFORM_PACKAGE = "github.com/yannh/kubeconform/cmd/kubeconform"

_DEFINITION_REF = "#/definitions/"
# Kubernetes marks these two string-typed in OpenAPI v2, but manifests also write numbers.
_INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
_QUANTITY = {"oneOf": [{"type": "string"}, {"type": "number"}]}


def ensure_kubeconform() -> Path:
    """The cached kubeconform binary, built from the Go module proxy on first use."""
    directory = ensure_cached(
        f"kubeconform-{KUBECONFORM_VERSION}", ["kubeconform"], _build_kubeconform, lock=".lock"
    )
    return directory / "kubeconform"


def _build_kubeconform(staging: Path) -> None:
    result = subprocess.run(
        [go_binary(), "install", f"{KUBECONFORM_PACKAGE}@{KUBECONFORM_VERSION}"],
        env=_go_install_env(staging),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not (staging / "kubeconform").is_file():
        raise BuildError(
            f"go install {KUBECONFORM_PACKAGE}@{KUBECONFORM_VERSION} failed "
            f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


def _go_install_env(gobin: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["GOBIN"] = str(gobin)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOTOOLCHAIN", "auto")
    # `go install pkg@version` builds outside any module; a -mod flag would be rejected.
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    env["GOFLAGS"] = " ".join([*flags, "-buildvcs=false", "-trimpath"])
    return env


# --------------------------------------------------------------------------- #
# OpenAPI v2 -> standalone JSON schemas
# --------------------------------------------------------------------------- #


def schema_file_name(group: str, version: str, kind: str) -> str:
    """The file kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` names."""
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def write_json_schemas(openapi_v2: Mapping[str, Any], directory: Path) -> list[Path]:
    """One strict, self-contained JSON schema per group/version/kind; returns the files."""
    definitions: Mapping[str, Any] = openapi_v2["definitions"]
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            if kind.endswith("List") or kind in ("WatchEvent", "DeleteOptions"):
                continue
            needed = _referenced(name, definitions)
            schema: dict[str, Any] = {
                "$schema": "http://json-schema.org/draft-04/schema#",
                **_convert(definition, name),
                "definitions": {n: _convert(definitions[n], n) for n in sorted(needed)},
            }
            _pin_type_meta(schema, group, version, kind)
            path = directory / schema_file_name(group, version, kind)
            path.write_text(json.dumps(schema, sort_keys=True))
            written.append(path)
    return written


def _referenced(root: str, definitions: Mapping[str, Any]) -> set[str]:
    seen: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        for ref in _refs(definitions[name]):
            if ref not in seen:
                seen.add(ref)
                pending.append(ref)
    return seen


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFINITION_REF):
            yield ref.removeprefix(_DEFINITION_REF)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _convert(node: Any, name: str = "") -> Any:
    """OpenAPI v2 schema -> JSON schema: int-or-string and quantities, strict objects."""
    if name.endswith("intstr.IntOrString"):
        return dict(_INT_OR_STRING)
    if name.endswith("api.resource.Quantity"):
        return dict(_QUANTITY)
    if isinstance(node, list):
        return [_convert(value) for value in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string":
        return {"description": node.get("description", ""), **_INT_OR_STRING}
    converted = {
        key: _convert(value) if key not in ("properties", "definitions") else value
        for key, value in node.items()
        if not key.startswith("x-") or key == "x-kubernetes-preserve-unknown-fields"
    }
    if "properties" in node:
        converted["properties"] = {k: _convert(v) for k, v in node["properties"].items()}
        # Strict: a property the API does not define is an error, as with kubeconform -strict.
        if "additionalProperties" not in node and not node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            converted["additionalProperties"] = False
    converted.pop("x-kubernetes-preserve-unknown-fields", None)
    return converted


def _pin_type_meta(schema: dict[str, Any], group: str, version: str, kind: str) -> None:
    properties = schema.setdefault("properties", {})
    api_version = f"{group}/{version}" if group else version
    properties["apiVersion"] = {"type": "string", "enum": [api_version]}
    properties["kind"] = {"type": "string", "enum": [kind]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})


def validate(
    kubeconform: Path, schema_dir: Path, manifests: Iterable[Path], *, skip: Iterable[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run kubeconform strictly and offline: every kind must have a schema in ``schema_dir``."""
    args = [
        str(kubeconform),
        "-strict",
        "-summary",
        "-output",
        "text",
        "-schema-location",
        f"{schema_dir}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
    ]
    skipped = list(skip)
    if skipped:
        args += ["-skip", ",".join(skipped)]
    return subprocess.run(
        [*args, *(str(m) for m in manifests)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def main() -> int:
    print(ensure_kubeconform())
    return 0


if __name__ == "__main__":
    sys.exit(main())
