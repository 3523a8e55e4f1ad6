from __future__ import annotations

from pathlib import Path

import pytest

from raidiam_devenv.pki import TestPKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(Path(tmp_path_factory.mktemp("unit-pki")))
