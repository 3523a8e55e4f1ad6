"""docs/reference.md is the CRD schema, rendered: it may not drift from the CRD."""

from __future__ import annotations

from raidiam_devenv.crd_reference import (
    CRD_FILE,
    REFERENCE_FILE,
    REGENERATE,
    field_paths,
    load_crd,
    render_reference,
    single_version,
)


def test_docs_reference_is_the_generator_output_for_the_current_crd() -> None:
    expected = render_reference(load_crd())
    actual = REFERENCE_FILE.read_text() if REFERENCE_FILE.exists() else ""

    assert actual == expected, (
        f"{REFERENCE_FILE.name} differs from what {CRD_FILE.name} generates; regenerate it with "
        f"`{REGENERATE}` and commit the result"
    )


def test_every_schema_field_has_a_row_and_every_object_a_section() -> None:
    crd = load_crd()
    root = single_version(crd)["schema"]["openAPIV3Schema"]
    reference = render_reference(crd)

    for path in field_paths(root):
        parent, _, name = path.rpartition(".")
        heading = f"## `{parent}`" if parent else "## Top level"
        section = reference.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        assert f"| `{name}`" in section, f"{path} has no row under {heading}"


def test_the_reference_is_the_same_on_every_run() -> None:
    assert render_reference(load_crd()) == render_reference(load_crd())
