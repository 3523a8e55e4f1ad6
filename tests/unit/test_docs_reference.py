"""The reference pages are the CRD schemas, rendered: they may not drift from the CRDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from raidiam_devenv.crd_reference import (
    REFERENCES,
    REGENERATE,
    field_paths,
    load_crd,
    render_reference,
    single_version,
    source_of,
)

CRDS = pytest.mark.parametrize("crd_file", list(REFERENCES), ids=lambda p: p.name)


@CRDS
def test_docs_reference_is_the_generator_output_for_the_current_crd(crd_file: Path) -> None:
    reference_file = REFERENCES[crd_file]
    expected = render_reference(load_crd(crd_file), source=source_of(crd_file))
    actual = reference_file.read_text() if reference_file.exists() else ""

    assert actual == expected, (
        f"{reference_file.name} differs from what {crd_file.name} generates; regenerate it with "
        f"`{REGENERATE}` and commit the result"
    )


@CRDS
def test_every_schema_field_has_a_row_and_every_object_a_section(crd_file: Path) -> None:
    crd = load_crd(crd_file)
    root = single_version(crd)["schema"]["openAPIV3Schema"]
    reference = render_reference(crd)

    for path in field_paths(root):
        parent, _, name = path.rpartition(".")
        heading = f"## `{parent}`" if parent else "## Top level"
        section = reference.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        assert f"| `{name}`" in section, f"{path} has no row under {heading}"


def test_the_reference_is_the_same_on_every_run() -> None:
    assert render_reference(load_crd()) == render_reference(load_crd())
