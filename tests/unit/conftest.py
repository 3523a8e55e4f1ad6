from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from raidiam_devenv.pki import TestPKI
from tests.unit.engine_fakes import Clock, FakeKube, Server


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(Path(tmp_path_factory.mktemp("unit-pki")))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kube(pki: TestPKI, clock: Clock) -> FakeKube:
    kube = FakeKube()
    issued = pki.client_certificate(
        "engine", not_before=clock.now - timedelta(days=1), not_after=clock.now + timedelta(days=30)
    )
    kube.put_tls_secret("transport", issued.cert_pem, issued.key_pem)
    return kube


@pytest.fixture
def server() -> Server:
    return Server()
