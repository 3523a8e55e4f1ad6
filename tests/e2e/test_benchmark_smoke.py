"""The benchmark script in smoke mode: N=20 clients end to end, in about a minute.

It brings up its own control plane and authorization server, like `make bench`, so this proves
the script still runs; the figures it checks are the ones that must hold at any scale.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def test_the_benchmark_smoke_run_refreshes_every_token_once_and_lets_none_expire(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results.json"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "devenv")]),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(results),
        ],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    run = json.loads(results.read_text())
    (burst,) = run["burst"]
    assert burst["token_requests"] == burst["n"] == 20
    (restart,) = run["restart"]
    assert restart["token_requests"] == 0, "a restart with valid tokens asked for new ones"
    (steady,) = run["steady"]
    assert steady["refreshes"] >= steady["n"], "not every client refreshed in the window"
    assert steady["expired"] == 0, "a token expired before it was refreshed"
    assert steady["server_gaps_over_ttl"] == 0
    assert f"{steady['requests_per_refresh']:.2f}" == "1.00"
