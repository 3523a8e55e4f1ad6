"""pytest fixtures for the one-node cluster (:mod:`raidiam_devenv.node`).

Loaded from ``tests/conftest.py`` through ``pytest_plugins``.  The node, the
operator image and an authorization server that pods can reach are started
once per test session, on first use.  A node that cannot start raises, so the
node suite *fails* with the reason: it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.image import BuiltImage, build_image
from raidiam_devenv.node import NODE_IP, NodeCluster
from raidiam_devenv.pki import TestPKI

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"

__all__ = ["node_auth_server", "node_cluster", "operator_image"]


@pytest.fixture(scope="session")
def operator_image() -> BuiltImage:
    """The operator image built from the Dockerfile (``make image``), as an OCI archive."""
    return build_image()


@pytest.fixture(scope="session")
def node_cluster(
    tmp_path_factory: pytest.TempPathFactory, operator_image: BuiltImage
) -> Iterator[NodeCluster]:
    """A started one-node cluster with the repo's CRDs and the operator image imported."""
    cluster = NodeCluster(tmp_path_factory.mktemp("node"))
    cluster.start()
    try:
        for crd_file in sorted(CRD_DIR.glob("*.yaml")):
            cluster.control_plane.apply_crds(crd_file)
        cluster.import_image(operator_image.archive)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def node_auth_server(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI, node_cluster: NodeCluster
) -> Iterator[AuthServer]:
    """The test authorization server on the node address, where pods can reach it."""
    with AuthServer(tmp_path_factory.mktemp("node-authserver"), test_pki, host=NODE_IP) as server:
        yield server
