"""The operator as its own process, started as a Deployment would start it.

devenv's OperatorProcess with the production defaults (no --verbose, JSON logs), plus the one
figure the restart scenario reads from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from raidiam_devenv.operator_process import OperatorProcess

NEXT_REFRESH_METRIC = "raidiam_token_next_refresh_timestamp_seconds"


class Operator(OperatorProcess):
    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        namespaces: Sequence[str],
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            kubeconfig,
            log_path,
            namespaces=namespaces,
            extra_args=extra_args,
            verbose=False,
            log_format="json",
        )

    def scheduled(self) -> int:
        """How many clients have a next refresh planned (one series each), 0 before it serves."""
        try:
            text = httpx.get(
                self.metrics_url,
                params={"name[]": NEXT_REFRESH_METRIC},
                timeout=5.0,
                trust_env=False,
            ).text
        except httpx.HTTPError:
            return 0
        return sum(1 for line in text.splitlines() if line.startswith(NEXT_REFRESH_METRIC + "{"))
