"""kubectl and helm against a cluster, with the binaries of :mod:`raidiam_devenv.binaries`.

The one place the devenv runs them: the control plane's and the node's ``kubectl``/``helm``
and ``make demo`` all come here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from raidiam_devenv.binaries import ensure_binaries

__all__ = ["KubectlError", "helm", "kubectl"]


class KubectlError(subprocess.CalledProcessError):
    """``kubectl`` or ``helm`` exited non-zero; unlike the base class, ``str()`` shows stderr."""

    def __str__(self) -> str:
        stderr = self.stderr.strip() if isinstance(self.stderr, str) else ""
        return f"{super().__str__()}\n{stderr}"


def kubectl(
    kubeconfig: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120.0,
    binary: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``kubectl --kubeconfig KUBECONFIG ARGS``; with ``check``, a failure raises
    :class:`KubectlError`."""
    return _run("kubectl", binary, kubeconfig, args, input=input, check=check, timeout=timeout)


def helm(
    kubeconfig: Path,
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 300.0,
    binary: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``helm --kubeconfig KUBECONFIG ARGS``, like :func:`kubectl`."""
    return _run("helm", binary, kubeconfig, args, input=input, check=check, timeout=timeout)


def _run(
    tool: Literal["kubectl", "helm"],
    binary: Path | None,
    kubeconfig: Path,
    args: Sequence[str],
    *,
    input: str | None,
    check: bool,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    if binary is None:
        binary = Path(getattr(ensure_binaries(), tool))
    command = [str(binary), "--kubeconfig", str(kubeconfig), *args]
    result = subprocess.run(
        command,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        # Without input, the tool gets an empty stdin instead of ours, so that it never blocks
        # waiting on a terminal.
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, command, result.stdout, result.stderr)
    return result
