"""The operator as its own process, started as a Deployment would start it.

Unlike raidiam_devenv.operator_process (which the e2e tests use, always with --verbose), the
benchmark runs the operator with the production defaults: warnings only, JSON logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from raidiam_devenv.operator_process import free_port

NEXT_REFRESH_METRIC = "raidiam_token_next_refresh_timestamp_seconds"


class Operator:
    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        namespaces: Sequence[str],
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = list(namespaces)
        self.extra_args = list(extra_args)
        self.liveness_port = 0
        self.metrics_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def spawn(self) -> Operator:
        """Start the process without waiting for it."""
        self.liveness_port, self.metrics_port = free_port(), free_port()
        command = [
            sys.executable,
            "-m",
            "raidiam_operator",
            "run",
            *[arg for ns in self.namespaces for arg in ("--namespace", ns)],
            "--liveness",
            f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--log-format",
            "json",
            *self.extra_args,
        ]
        environment = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,
            )
        self.spawned_at = time.time()
        return self

    def start(self, timeout: float = 60.0) -> Operator:
        self.spawn()
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.liveness_port}/healthz"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"the operator exited during start-up:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=2.0, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the operator was not alive after {timeout:.0f} s:\n{self.log_tail()}")

    def scheduled(self) -> int:
        """How many clients have a next refresh planned (one series each), 0 before it serves."""
        try:
            text = httpx.get(
                f"http://127.0.0.1:{self.metrics_port}/metrics",
                params={"name[]": NEXT_REFRESH_METRIC},
                timeout=5.0,
                trust_env=False,
            ).text
        except httpx.HTTPError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith(NEXT_REFRESH_METRIC + "{"))

    def stop(self, *, kill: bool = False) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
