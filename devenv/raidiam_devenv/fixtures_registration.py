"""pytest plugin: the test directory and the test data provider (a bank's authorization server
with client registration), beside the test authorization server of ``fixtures_authserver``.

Loaded through ``pytest_plugins`` in tests/conftest.py. A server that cannot start makes the
tests that use it error out; it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.dataprovider import DataProvider
from raidiam_devenv.directory import Directory
from raidiam_devenv.pki import TestPKI

__all__ = ["clean_data_provider", "clean_directory", "data_provider", "directory"]


@pytest.fixture(scope="session")
def directory(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI, auth_server: AuthServer
) -> Iterator[Directory]:
    """One directory for the session; it takes the session authorization server's
    ``directory:software`` tokens."""
    with Directory(tmp_path_factory.mktemp("directory"), test_pki, auth_server) as server:
        yield server


@pytest.fixture
def clean_directory(directory: Directory) -> Directory:
    """The session directory with no faults and zeroed counters."""
    return directory.cleared()


@pytest.fixture(scope="session")
def data_provider(
    tmp_path_factory: pytest.TempPathFactory, test_pki: TestPKI, directory: Directory
) -> Iterator[DataProvider]:
    """One bank for the session, checking software statements against the session
    directory's keys."""
    with DataProvider(
        tmp_path_factory.mktemp("dataprovider"), test_pki, directory=directory
    ) as server:
        yield server


@pytest.fixture
def clean_data_provider(data_provider: DataProvider) -> DataProvider:
    """The session bank with no faults and zeroed counters."""
    return data_provider.cleared()
