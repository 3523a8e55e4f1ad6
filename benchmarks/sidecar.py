"""The sidecar alternative: observatorium/token-refresher, one process per client.

token-refresher runs the client credentials grant with a client secret (it has no mutual TLS) and
writes the token to a file, refreshing `--margin` before expiry: what a pod would run beside its
application instead of this operator. The binary is looked up in the cache, else built with
`go install` from the Go module proxy; neither its code nor its binary is part of this repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "raidiam-token-operator"
BINARY = CACHE / "bin" / "token-refresher"
MODULE = "github.com/observatorium/token-refresher@latest"


def token_refresher() -> tuple[Path | None, str]:
    """The binary, or None and why it could not be had."""
    override = os.environ.get("TOKEN_REFRESHER_BIN")
    if override:
        return (
            (Path(override), "from TOKEN_REFRESHER_BIN")
            if Path(override).is_file()
            else (
                None,
                f"TOKEN_REFRESHER_BIN={override} does not exist",
            )
        )
    if BINARY.is_file():
        return BINARY, f"cached at {BINARY}"
    go = shutil.which("go")
    if go is None:
        return None, "go is not installed"
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    build = subprocess.run(
        [go, "install", MODULE],
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOBIN": str(BINARY.parent)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if build.returncode != 0 or not BINARY.is_file():
        reason = (build.stderr or build.stdout).strip().splitlines()
        return None, f"go install {MODULE} failed: {' '.join(reason[-3:])}"
    return BINARY, f"built with go install {MODULE}"


def sidecar_command(
    binary: Path, *, issuer: str, client_id: str, file: Path, margin: str
) -> list[str]:
    """The command line; the client secret goes in OIDC_CLIENT_SECRET, the CA in SSL_CERT_FILE."""
    return [
        str(binary),
        "--oidc.issuer-url",
        issuer,
        "--oidc.client-id",
        client_id,
        "--scope",
        "directory:software",
        "--file",
        str(file),
        "--temp-file",
        str(file) + ".tmp",
        "--margin",
        margin,
        "--web.internal.listen",
        "127.0.0.1:0",
        "--log.level",
        "warn",
    ]
