"""Release hygiene: one version everywhere, a licence that matches its SPDX id, a CHANGELOG entry,
and an image lock that pins every dependency, with hashes, inside pyproject.toml's ranges."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from raidiam_operator import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements" / "image.lock.txt"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from the pip-compile lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=\S)", LOCK.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", entry)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
            pins[canonicalize_name(match[1])] = (match[2], hashes)
    return pins


def test_package_chart_and_image_share_one_version() -> None:
    chart = yaml.safe_load(
        (REPO_ROOT / "charts" / "raidiam-token-operator" / "Chart.yaml").read_text()
    )
    assert PYPROJECT["project"]["version"] == __version__
    assert chart["version"] == __version__
    assert chart["appVersion"] == __version__  # the chart's default image tag
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__), "MAJOR.MINOR.PATCH, no prefix"


def test_license_file_is_the_text_its_spdx_id_names() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_changelog_has_a_section_for_the_current_version() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.MULTILINE), (
        f"CHANGELOG.md has no '## [{__version__}]' section"
    )


def test_image_lock_pins_every_dependency_with_hashes_inside_pyprojects_ranges() -> None:
    locked = _locked()
    for dependency in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in {LOCK.name}: run `make lock`"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, outside pyproject.toml's {requirement.specifier}: "
            "run `make lock`"
        )
    unhashed = sorted(name for name, (_, hashes) in locked.items() if not hashes)
    assert not unhashed, f"pinned without hashes: {unhashed}"
    assert "--find-links" not in LOCK.read_text(), "the lock must not name this machine's paths"


def test_dockerfile_installs_the_lock_with_hash_checking() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "COPY requirements/image.lock.txt" in dockerfile
    assert re.search(
        r"pip (wheel|install) --require-hashes .*-r requirements/image\.lock\.txt", dockerfile
    )
    assert "!requirements/image.lock.txt" in (REPO_ROOT / ".dockerignore").read_text()


def test_sbom_lists_every_locked_package_with_its_hashes(tmp_path: Path) -> None:
    cyclonedx = Path(sys.executable).parent / "cyclonedx-py"
    if not cyclonedx.exists():
        pytest.fail("cyclonedx-py is missing: pip install -e '.[dev]'")
    output = tmp_path / "sbom.cdx.json"
    subprocess.run(
        [
            str(cyclonedx),
            "requirements",
            "--pyproject",
            str(REPO_ROOT / "pyproject.toml"),
            "--output-reproducible",
            "--output-file",
            str(output),
            str(LOCK),
        ],
        check=True,
        capture_output=True,
        cwd=REPO_ROOT,
    )
    sbom = json.loads(output.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("raidiam-token-operator", __version__)
    components = {
        canonicalize_name(c["name"]): c for c in sbom["components"] if c["type"] == "library"
    }
    locked = _locked()
    assert set(components) == set(locked)
    for name, (version, hashes) in locked.items():
        component = components[name]
        assert component["version"] == version
        assert component["purl"] == f"pkg:pypi/{name}@{version}"
        listed = {h["content"] for ref in component["externalReferences"] for h in ref["hashes"]}
        assert listed == set(hashes), name
