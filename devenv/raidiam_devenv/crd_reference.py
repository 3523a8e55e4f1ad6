"""docs/reference.md and docs/clusterraidiamissuer-reference.md, generated from the CRDs'
OpenAPI schemas.

    PYTHONPATH=devenv .venv/bin/python -m raidiam_devenv.crd_reference > docs/reference.md
    PYTHONPATH=devenv .venv/bin/python -m raidiam_devenv.crd_reference --write

The CRD is the one source of truth for fields, types, defaults and validation: the API server
enforces it and `kubectl explain` prints it. This renders the same schema for readers who are not
at a terminal: one section per object, a table of its fields, and the CEL rules in full.
`tests/unit/test_docs_reference.py` fails when docs/reference.md differs from this output.
The output depends on nothing but the CRD file, so it is the same on every machine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = REPO_ROOT / "crds" / "raidiam.io_raidiamclients.yaml"
REFERENCE_FILE = REPO_ROOT / "docs" / "reference.md"
ISSUER_CRD_FILE = REPO_ROOT / "crds" / "raidiam.io_clusterraidiamissuers.yaml"
#: each CRD and the page generated from it
REFERENCES = {
    CRD_FILE: REFERENCE_FILE,
    ISSUER_CRD_FILE: REPO_ROOT / "docs" / "clusterraidiamissuer-reference.md",
    REPO_ROOT / "crds" / "raidiam.io_raidiamregistrations.yaml": REPO_ROOT
    / "docs"
    / "raidiamregistration-reference.md",
}
REGENERATE = "PYTHONPATH=devenv .venv/bin/python -m raidiam_devenv.crd_reference --write"

Schema = Mapping[str, Any]

# The Kubernetes object-name pattern (RFC 1123 subdomain), said in words instead of as a regex.
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@dataclass(frozen=True)
class Section:
    """One object in the schema: its path (`spec.refresh`) and its own schema."""

    path: str
    schema: Schema

    @property
    def title(self) -> str:
        return f"`{self.path}`" if self.path else "Top level"

    @property
    def depth(self) -> int:
        return self.path.count(".") if self.path else 0


def load_crd(path: Path = CRD_FILE) -> Schema:
    crd = yaml.safe_load(path.read_text())
    if not isinstance(crd, Mapping) or crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path} is not a CustomResourceDefinition")
    return crd


def single_version(crd: Schema) -> Schema:
    versions = crd["spec"]["versions"]
    if len(versions) != 1:
        raise ValueError(
            f"the CRD has {len(versions)} versions; the reference generator documents exactly one. "
            "Extend raidiam_devenv.crd_reference to give each version its own part."
        )
    return versions[0]  # type: ignore[no-any-return]


def sections(schema: Schema, path: str = "") -> Iterator[Section]:
    """Every object with properties, depth first, in the schema's own field order."""
    yield Section(path, schema)
    for name, child in (schema.get("properties") or {}).items():
        child_path = f"{path}.{name}" if path else name
        if child.get("properties"):
            yield from sections(child, child_path)
        items = child.get("items") or {}
        if child.get("type") == "array" and items.get("properties"):
            yield from sections(items, child_path + "[]")


def field_paths(schema: Schema, path: str = "") -> Iterator[str]:
    """The path of every field in the schema, e.g. `spec.signingKey.keyId`."""
    for name, child in (schema.get("properties") or {}).items():
        child_path = f"{path}.{name}" if path else name
        yield child_path
        yield from field_paths(child, child_path)
        items = child.get("items") or {}
        if child.get("type") == "array":
            yield from field_paths(items, child_path + "[]")


def anchor(title: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", title.lower())
    return text.replace(" ", "-")


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped (GitHub honours `\\|` in code spans too)."""
    return " ".join(text.split()).replace("|", "\\|")


def _prose(text: str) -> str:
    """A description as Markdown prose: `<name>` would otherwise read as an HTML tag."""
    return " ".join(text.split()).replace("<", "\\<")


def _code(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f"`{text}`"


def _type(schema: Schema, link: str | None) -> str:
    kind = schema.get("type", "")
    if kind == "array":
        items = schema.get("items") or {}
        text = f"array of {items.get('type', 'any')}"
    elif kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        value = schema["additionalProperties"]
        text = f"map of {value.get('type', 'any')}"
    else:
        text = kind or "any"
    if schema.get("format"):
        text += f" ({schema['format']})"
    return f"[{text}](#{link})" if link else text


def _length(schema: Schema, noun: str) -> list[str]:
    low, high = schema.get(f"min{noun}"), schema.get(f"max{noun}")
    unit = {"Length": "characters", "Properties": "entries", "Items": "items"}[noun]
    if low is not None and high is not None:
        return [f"{low} to {high} {unit}"]
    if high is not None:
        return [f"at most {high} {unit}"]
    if low is not None:
        return [f"at least {low} {unit}"]
    return []


def constraints(schema: Schema, *, rules: bool = True) -> list[str]:
    """What the API server checks on one field, in words; CEL rules by their messages."""
    notes: list[str] = []
    if "enum" in schema:
        notes.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
    pattern = schema.get("pattern")
    if pattern == _DNS_SUBDOMAIN:
        notes.append("a Kubernetes object name (lowercase letters, digits, `-` and `.`)")
    elif pattern:
        notes.append(f"matches {_code(pattern)}")
    notes += _length(schema, "Length")
    notes += _length(schema, "Properties")
    notes += _length(schema, "Items")
    if schema.get("minimum") is not None:
        notes.append(f"at least {schema['minimum']}")
    if schema.get("maximum") is not None:
        notes.append(f"at most {schema['maximum']}")
    values = schema.get("additionalProperties")
    if isinstance(values, Mapping):
        for note in constraints(values):
            notes.append(f"each value: {note}")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(_code(k) for k in schema.get("x-kubernetes-list-map-keys") or [])
        notes.append(f"a list keyed by {keys}: one entry per key")
    if rules:
        notes += [f"“{rule['message']}”" for rule in schema.get("x-kubernetes-validations") or []]
    return notes


def _rules(section: Section, linked: set[str]) -> list[str]:
    """The CEL rules of an object and of its plain fields, with their expressions. A field that
    is an object of its own lists its rules in its own section."""
    lines = []
    owners: list[tuple[str, Schema]] = [(section.path, section.schema)]
    for name, child in (section.schema.get("properties") or {}).items():
        path = f"{section.path}.{name}" if section.path else name
        if path not in linked:
            owners.append((path, child))
    for path, schema in owners:
        for rule in schema.get("x-kubernetes-validations") or []:
            where = f"`{path}`" if path else "the object"
            if rule.get("fieldPath"):
                where += f" (reported at `{path}{rule['fieldPath']}`)"
            reason = f" Reason `{rule['reason']}`." if rule.get("reason") else ""
            lines.append(f"- {where}: “{rule['message']}”{reason}")
            lines += ["  ```", f"  {rule['rule']}", "  ```"]
    return lines


def _field_rows(section: Section, linked: set[str]) -> list[str]:
    required = set(section.schema.get("required") or [])
    rows = [
        "| Field | Type | Default | Validation | Description |",
        "|---|---|---|---|---|",
    ]
    for name, child in (section.schema.get("properties") or {}).items():
        child_path = f"{section.path}.{name}" if section.path else name
        target = child_path if child_path in linked else f"{child_path}[]"
        link = anchor(f"`{target}`") if target in linked else None
        field = f"`{name}`" + (" (required)" if name in required else "")
        default = _code(child["default"]) if "default" in child else ""
        # An object with a section of its own shows its rules there, not twice.
        validation = "; ".join(constraints(child, rules=link is None))
        description = child.get("description", "")
        if not child.get("properties") and child.get("type") == "object" and not description:
            description = "Standard Kubernetes object metadata."
        rows.append(
            f"| {field} | {_type(child, link)} | {_cell(default)} | {_cell(validation)} "
            f"| {_cell(_prose(description))} |"
        )
    return rows


def render_reference(crd: Schema, *, source: str = "crds/raidiam.io_raidiamclients.yaml") -> str:
    spec = crd["spec"]
    names = spec["names"]
    version = single_version(crd)
    root = version["schema"]["openAPIV3Schema"]
    all_sections = list(sections(root))
    linked = {s.path for s in all_sections if s.path}
    kind = names["kind"]

    out: list[str] = [
        f"<!-- Generated from {source} by raidiam_devenv.crd_reference; do not edit by hand.",
        f"     Regenerate with: {REGENERATE} -->",
        "",
        f"# {kind} reference",
        "",
        _prose(root.get("description", "")),
        "",
        "| | |",
        "|---|---|",
        f"| API version | `{spec['group']}/{version['name']}` |",
        f"| Kind | `{kind}` (list: `{names.get('listKind', kind + 'List')}`) |",
        f"| Scope | {spec['scope']} |",
        f"| Resource | `{names['plural']}` (singular `{names['singular']}`"
        + "".join(f", short name `{s}`" for s in names.get("shortNames") or [])
        + "".join(f", category `{c}`" for c in names.get("categories") or [])
        + ") |",
        "| Subresources | "
        + (", ".join(f"`{s}`" for s in sorted(version.get("subresources") or {})) or "none")
        + " |",
        "",
        "This page is generated from the CRD's OpenAPI schema, which the API server enforces: "
        "defaults are filled in when an object is stored, and an object that breaks a validation "
        "is refused with the message quoted here. `kubectl explain "
        f"{names['singular']}.spec` prints the same descriptions. What the status conditions' "
        "reasons mean, and what to do about each, is in [troubleshooting](troubleshooting.md).",
        "",
        "## Contents",
        "",
    ]
    columns = version.get("additionalPrinterColumns") or []
    if columns:
        out.append("- [`kubectl get` columns](#kubectl-get-columns)")
    for section in all_sections:
        indent = "  " * section.depth
        out.append(f"{indent}- [{section.title}](#{anchor(section.title)})")
    out.append("")

    if columns:
        out += [
            "## `kubectl get` columns",
            "",
            "| Column | Type | JSONPath |",
            "|---|---|---|",
        ]
        for column in columns:
            out.append(
                f"| {column['name']} | {column['type']} | {_cell(_code(column['jsonPath']))} |"
            )
        out.append("")

    for section in all_sections:
        out += [f"## {section.title}", ""]
        # The root's description opens the page already.
        description = section.schema.get("description") if section.path else None
        if description:
            out += [_prose(description), ""]
        out += _field_rows(section, linked)
        out.append("")
        rules = _rules(section, linked)
        if rules:
            out += ["CEL rules, checked by the API server on create and update:", "", *rules, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raidiam_devenv.crd_reference",
        description="Render the RaidiamClient and ClusterRaidiamIssuer references (Markdown) "
        "from the CRD schemas.",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="write the docs/ pages instead of printing the RaidiamClient one to stdout",
    )
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(render_reference(load_crd()))
        return 0
    for crd_file, reference_file in REFERENCES.items():
        text = render_reference(load_crd(crd_file), source=source_of(crd_file))
        reference_file.parent.mkdir(parents=True, exist_ok=True)
        reference_file.write_text(text)
        print(f"wrote {reference_file.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


def source_of(crd_file: Path) -> str:
    return str(crd_file.relative_to(REPO_ROOT))


if __name__ == "__main__":
    sys.exit(main())
