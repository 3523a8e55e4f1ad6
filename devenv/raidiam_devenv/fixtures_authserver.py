"""pytest plugin: the test PKI and the node-oidc-provider authorization server.

Loaded through ``pytest_plugins`` in tests/conftest.py. A server that cannot
start makes the tests that use it error out; it is never skipped, because a
silently skipped integration suite looks exactly like a passing one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.pki import TestPKI

__all__ = ["auth_server", "clean_auth_server", "test_pki", "unbinding_auth_server"]


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """CA trusted by the auth server for client certificates and used for its
    own TLS certificate."""
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI
) -> Iterator[AuthServer]:
    """One running server for the whole session (startup costs ~1 s)."""
    with AuthServer(tmp_path_factory.mktemp("authserver"), test_pki) as server:
        yield server


@pytest.fixture
def clean_auth_server(auth_server: AuthServer) -> AuthServer:
    """The session server with no faults and zeroed counters."""
    return auth_server.cleared()


@pytest.fixture(scope="session")
def unbinding_auth_server(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI
) -> Iterator[AuthServer]:
    """A second server, like many outside Raidiam Connect: it binds no token to a certificate and
    its discovery document does not say tls_client_certificate_bound_access_tokens."""
    with AuthServer(
        tmp_path_factory.mktemp("unbinding-authserver"),
        test_pki,
        extra_config={"certificate_bound_access_tokens": False},
    ) as server:
        yield server
