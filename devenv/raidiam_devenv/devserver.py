"""What the devenv's node servers share on the Python side.

``DevServer`` runs one script of ``devenv/authserver/`` (``server.mjs``, ``directory.mjs``) with
node: it writes the server's JSON config, starts node on loopback (a
:class:`raidiam_devenv.process.Process`), waits for the ready file and a healthy admin API, wraps
that API, and stops node again. Subclasses add their config keys (``_server_config``) and their
admin calls.

``ensure_node_modules`` installs the npm packages of ``devenv/authserver/package-lock.json``
(``npm ci``) once per lock file: every server shares that one ``node_modules``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx

from raidiam_devenv.pki import TestPKI
from raidiam_devenv.process import (
    LOG_TAIL_LINES,
    Managed,
    Process,
    log_tail,
    running_no_more,
    stop_at_exit,
)

__all__ = ["NODE_SERVERS_DIR", "DevServer", "ensure_node_modules"]

NODE_SERVERS_DIR = Path(__file__).resolve().parent.parent / "authserver"
_STAMP_NAME = ".raidiam-lock-sha256"
_START_TIMEOUT = 30.0
_LOG_TAIL_BYTES = 4000


def _lock_hash(directory: Path) -> str:
    return hashlib.sha256((directory / "package-lock.json").read_bytes()).hexdigest()


def ensure_node_modules(directory: Path = NODE_SERVERS_DIR) -> Path:
    """Run ``npm ci`` unless node_modules matches package-lock.json.

    A stamp file holding the lock file's hash marks a completed install, so
    an interrupted or outdated install is redone. A file lock serialises
    concurrent callers (parallel pytest workers). Returns node_modules.
    """
    modules = directory / "node_modules"
    stamp = modules / _STAMP_NAME
    wanted = _lock_hash(directory)
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed; it is needed for the devenv's test servers")
    # The lock lives outside the work tree: nothing to ignore in git, and it
    # is not removed by `npm ci` wiping node_modules.
    lock_name = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"raidiam-authserver-npm-{lock_name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return modules
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"npm ci failed in {directory} (exit {proc.returncode}):\n"
                f"{proc.stdout[-_LOG_TAIL_BYTES:]}\n{proc.stderr[-_LOG_TAIL_BYTES:]}"
            )
        stamp.write_text(wanted + "\n")
    return modules


class DevServer(Managed):
    """A devenv node server, as a context manager; see the subclasses."""

    _script: ClassVar[str]
    """The script in ``devenv/authserver/`` that node runs."""
    _stem: ClassVar[str]
    """Prefix of the files in ``workdir``: ``<stem>.log``, ``<stem>-config.json``, ..."""
    _label: ClassVar[str]
    """What the server is, in error messages."""

    def __init__(
        self,
        workdir: Path,
        pki: TestPKI,
        *,
        client_cas: Sequence[Path] = (),
        log_requests: bool = True,
        start_timeout: float = _START_TIMEOUT,
        host: str | None = None,
    ) -> None:
        self.workdir = workdir
        self._host = host
        self.pki = pki
        # Client certificates must chain to one of these; the test PKI's CA by
        # default. Extra CAs let a test trust a second PKI.
        self._client_cas = [pki.ca_path, *client_cas]
        self._log_requests = log_requests
        self._start_timeout = start_timeout
        self._process: Process | None = None
        self._info: dict[str, Any] = {}
        self._admin: httpx.Client | None = None
        self.log_path = workdir / f"{self._stem}.log"
        self.config_path = workdir / f"{self._stem}-config.json"
        self._ready_path = workdir / f"{self._stem}-ready.json"

    def _server_config(self) -> dict[str, Any]:
        """The config keys of this kind of server, beside the listeners' and the ready file's."""
        return {}

    # -- lifecycle -------------------------------------------------------

    def start(self) -> Self:
        if self._process is not None:
            return self
        ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError(f"node is not installed; it is needed for the {self._label}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        names = ("localhost", "127.0.0.1", *([self._host] if self._host else []))
        server_cert = self.pki.server_certificate(names)
        cert_path, key_path = server_cert.write(self.workdir, f"{self._stem}-tls")
        self._ready_path.unlink(missing_ok=True)
        config: dict[str, Any] = {
            # Port 0: the server binds ephemeral ports itself and reports them
            # in the ready file, which avoids pick-then-bind races between
            # parallel test sessions.
            "tls_port": 0,
            "mtls_port": 0,
            "admin_port": 0,
            "server_cert": str(cert_path),
            "server_key": str(key_path),
            "client_ca": [str(p) for p in self._client_cas],
            "ready_file": str(self._ready_path),
            "log_requests": self._log_requests,
            **({"host": self._host, "public_host": self._host} if self._host else {}),
            **self._server_config(),
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self._process = Process(
            self._label,
            [
                node,
                *os.environ.get("AUTHSERVER_NODE_ARGS", "").split(),
                NODE_SERVERS_DIR / self._script,
                "--config",
                self.config_path,
            ],
            self.log_path,
            cwd=NODE_SERVERS_DIR,
        )
        self._process.start()
        stop_at_exit(self)
        try:
            self._process.wait_until(
                self._healthy, "did not become healthy", timeout=self._start_timeout, interval=0.05
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        """Whether the admin API answers /admin/health, once the ready file has named it."""
        if self._admin is None and self._ready_path.is_file():
            self._info = json.loads(self._ready_path.read_text())
            self._admin = httpx.Client(
                # trust_env=False: an HTTP(S)_PROXY in the environment
                # must not capture loopback admin calls.
                base_url=self._info["admin_url"],
                timeout=30.0,
                trust_env=False,
            )
        if self._admin is None:
            return False
        with contextlib.suppress(httpx.TransportError):
            return self._admin.get("/admin/health").status_code == 200
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        running_no_more(self)
        if process is not None:
            process.stop(grace=5)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    # -- what the ready file says ------------------------------------------

    def _value(self, key: str) -> Any:
        if not self._info:
            raise RuntimeError(f"{self._label} is not started")
        return self._info[key]

    @property
    def admin_url(self) -> str:
        return str(self._value("admin_url"))

    @property
    def ca_path(self) -> Path:
        """Trust anchor for the server's TLS certificate (the test PKI CA)."""
        return self.pki.ca_path

    @property
    def pid(self) -> int:
        return int(self._value("pid"))

    # -- admin API -------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._admin is None:
            raise RuntimeError(f"{self._label} is not started")
        response = self._admin.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(
                f"admin {method} {path} failed: {response.status_code} {response.text}"
            )
        return response.json()

    def set_fault(self, **fault: Any) -> dict[str, Any]:
        """Inject a fault; see the admin API in the server's module docs. Returns it
        (with its ``id``)."""
        result: dict[str, Any] = self._call("POST", "/admin/fault", fault)
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/admin/fault")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/admin/fault")

    def reset_stats(self) -> None:
        self._call("POST", "/admin/stats/reset")

    def cleared(self) -> Self:
        """The server with no faults and zeroed counters: how each test finds a session's."""
        self.clear_faults()
        self.reset_stats()
        return self
