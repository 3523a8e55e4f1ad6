"""pytest fixtures for the local Kubernetes control plane.

Loaded from ``tests/conftest.py`` through ``pytest_plugins``.  A control plane
that cannot start raises, so the test *fails*: silently skipping would let a
broken environment look like a green run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidiam_devenv.controlplane import ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A started control plane shared by the whole session, with the repo's CRDs."""
    workdir = tmp_path_factory.mktemp("controlplane")
    control_plane = ControlPlane(workdir, audit_policy=True)
    control_plane.start()
    try:
        for crd_file in sorted(CRD_DIR.glob("*.yaml")):
            control_plane.apply_crds(crd_file)
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture
def kube_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    # Namespace names are DNS labels: lowercase, <= 63 chars.
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())
    name = f"t-{base[:40].strip('-')}-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # --wait=false: the namespace controller finalizes it in the
        # background; blocking here would add seconds to every test.
        control_plane.kubectl(
            "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
        )
