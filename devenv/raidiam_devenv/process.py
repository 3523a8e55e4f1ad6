"""The processes the devenv starts: the control plane's and the node's components, the node
test servers and the operator.

A :class:`Process` runs one command line in its own process group (session), with its output
appended to a log file. :meth:`Process.wait_until` polls a readiness probe and fails with the
log's tail when the process exits or the probe never holds; :meth:`Process.stop` sends SIGTERM,
then SIGKILL after a grace period, and kills whatever is left in the group.

What owns processes (a control plane, a node, a server) is a :class:`Managed`: a ``with`` block
starts and stops it, and :func:`stop_at_exit` has it stopped when the interpreter exits, so an
interrupted test run leaves nothing behind. On the main thread a child is also killed by the
kernel when the test runner itself dies without running ``atexit`` (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

__all__ = [
    "LOG_TAIL_LINES",
    "Managed",
    "Process",
    "ProcessError",
    "Stoppable",
    "free_port",
    "log_tail",
    "running_no_more",
    "stop_at_exit",
]

LOG_TAIL_LINES = 60
_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A process did not start or did not become ready; the message ends with its log's tail."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for servers that cannot bind port 0 and say which they got
    (the window between closing this socket and the server binding it is fine on a test
    machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, for failure messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- #
# Stopped at interpreter exit
# --------------------------------------------------------------------------- #


class Stoppable(Protocol):
    def stop(self) -> None: ...


# What is still running, oldest first. Strong references: something dropped without stop()
# must still be stopped.
_LIVE: dict[int, Stoppable] = {}


def stop_at_exit(thing: Stoppable) -> None:
    """Have ``thing.stop()`` called when the interpreter exits, unless :func:`running_no_more`."""
    _LIVE[id(thing)] = thing


def running_no_more(thing: Stoppable) -> None:
    _LIVE.pop(id(thing), None)


@atexit.register
def _stop_all_live() -> None:
    # Newest first: an operator before the control plane it talks to.
    for thing in reversed(list(_LIVE.values())):
        with contextlib.suppress(Exception):
            thing.stop()


class Managed:
    """Something the devenv starts and stops: ``with`` starts it and stops it again."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- #
# One process
# --------------------------------------------------------------------------- #


def _set_parent_death_signal() -> None:
    # Runs in the child between fork and exec: if the test runner itself is SIGKILLed (no
    # atexit), the kernel kills the child too (SIGKILL: a SIGTERMed apiserver can linger for a
    # long time on open connections).
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Process:
    """One command line with its log file; ``name`` is what it is, in messages.

    ``mark_starts`` writes a line into the log at each start, where a process restarted on the
    same log (an apiserver after a fault) is read. ``stops_own_children``: SIGTERM goes to the
    process alone, which stops its children itself (the operator its key-check workers); else
    to the whole group.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        mark_starts: bool = False,
        stops_own_children: bool = False,
    ) -> None:
        self.name = name
        self.args = [str(arg) for arg in args]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.mark_starts = mark_starts
        self.stops_own_children = stops_own_children
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name} is not started")
        return self._popen.pid

    def start(self) -> None:
        if self.running:
            return
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only safe on the
        # main thread, which lives as long as the interpreter does.
        preexec: Callable[[], None] | None = None
        if threading.current_thread() is threading.main_thread():
            preexec = _set_parent_death_signal
        with self.log_path.open("ab") as log:
            if self.mark_starts:
                log.write(f"\n===== {time.strftime('%H:%M:%S')} start {self.name}\n".encode())
                log.flush()
            self._popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                # Own process group: stop() reaches whatever it spawned without touching the
                # test runner, and a Ctrl-C in the terminal is not delivered to it before its
                # owner stops it in order.
                start_new_session=True,
                preexec_fn=preexec,
            )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (at once if ``grace`` is 0); then
        SIGKILL to anything still in its group."""
        popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.poll() is None:
            if grace > 0:
                self._signal_first(popen, signal.SIGTERM)
                try:
                    popen.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(popen.pid, signal.SIGKILL)
                    popen.wait()
            else:
                self._signal_first(popen, signal.SIGKILL)
                popen.wait()
        _signal_group(popen.pid, signal.SIGKILL)

    def _signal_first(self, popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if self.stops_own_children:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(sig)
        else:
            _signal_group(popen.pid, sig)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)

    def failure(self, reason: str, error: type[ProcessError] = ProcessError) -> ProcessError:
        """``error`` saying ``name reason``, with where the log is and its tail."""
        return error(
            f"{self.name} {reason}:\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def wait_until(
        self,
        probe: Callable[[], bool],
        what: str,
        *,
        timeout: float,
        error: type[ProcessError] = ProcessError,
        interval: float = 0.2,
    ) -> None:
        """Poll ``probe`` until it holds; raise ``error`` with the log's tail if the process
        exits first, or (after stopping it) if ``timeout`` seconds pass. ``what`` says what did
        not happen: "did not become ready (/readyz)"."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise self.failure(f"exited with {self.returncode}", error)
            if probe():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise self.failure(f"{what} within {timeout:.0f}s", error)
            time.sleep(interval)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
