"""Run `raidiam-operator run` as a separate process, as a user or a Deployment would."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from raidiam_devenv.process import (
    LOG_TAIL_LINES,
    Managed,
    Process,
    free_port,
    log_tail,
    running_no_more,
    stop_at_exit,
)

__all__ = ["OperatorProcess"]


class OperatorProcess(Managed):
    """The operator in its own process, logging to a file, with a liveness endpoint to wait on."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        namespaces: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        start_timeout: float = 60.0,
        verbose: bool = True,
        log_format: str = "plain",
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = list(namespaces)
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.start_timeout = start_timeout
        # Tests log everything (their leak canaries read DEBUG lines); benchmarks run with the
        # production defaults.
        self.verbose = verbose
        self.log_format = log_format
        self.spawned_at = 0.0
        self.liveness_port = 0
        self.metrics_port = 0
        self._process: Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def peak_rss_bytes(self) -> int:
        """The most memory the process has held resident so far (VmHWM in /proc/<pid>/status):
        what a container's memory limit is measured against."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmHWM in /proc/{self.pid}/status")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def start(self) -> OperatorProcess:
        self.spawn()
        assert self._process is not None
        self._process.wait_until(self._alive, "was not alive", timeout=self.start_timeout)
        return self

    def spawn(self) -> OperatorProcess:
        """Start the process without waiting for it to be alive."""
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        scope = [arg for ns in self.namespaces for arg in ("--namespace", ns)] or [
            "--all-namespaces"
        ]
        command = [
            sys.executable,
            "-m",
            "raidiam_operator",
            "run",
            *scope,
            "--liveness",
            f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--log-format",
            self.log_format,
            *(["--verbose"] if self.verbose else []),
            *self.extra_args,
        ]
        environment = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env}
        self._process = Process(
            "the operator",
            command,
            self.log_path,
            env=environment,
            # Its own shutdown stops its key-check workers.
            stops_own_children=True,
        )
        self._process.start()
        stop_at_exit(self)
        self.spawned_at = time.time()
        return self

    def _alive(self) -> bool:
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        try:
            return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> str:
        return httpx.get(self.metrics_url, timeout=5.0, trust_env=False).text

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """SIGTERM, and SIGKILL after ``timeout`` seconds; at once with ``kill`` (a crash)."""
        process, self._process = self._process, None
        running_no_more(self)
        if process is not None:
            process.stop(grace=0 if kill else timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)
