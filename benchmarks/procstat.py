"""Memory and CPU of processes, read from /proc: what `top` would show, without asking them."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


@dataclass(frozen=True)
class ProcSample:
    rss: int  # bytes
    peak_rss: int  # bytes (VmHWM: the high-water mark since the process started)
    cpu: float  # user + system seconds since the process started


def sample(pid: int) -> ProcSample | None:
    """One reading, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as file:
            status = file.read()
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    # Fields after the command name (which may hold spaces) start at field 3; utime and stime
    # are fields 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    return ProcSample(rss=values.get("VmRSS", 0), peak_rss=values.get("VmHWM", 0), cpu=cpu)


def pss(pid: int) -> int:
    """Proportional set size in bytes: shared pages (a binary's text) split between processes."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def total(pids: list[int]) -> ProcSample:
    """The sum over several processes (sidecars)."""
    samples = [s for s in (sample(pid) for pid in pids) if s is not None]
    return ProcSample(
        rss=sum(s.rss for s in samples),
        peak_rss=sum(s.peak_rss for s in samples),
        cpu=sum(s.cpu for s in samples),
    )


@dataclass
class Sampler:
    """Samples a set of processes every `interval` seconds in a thread: (t, rss MiB, cpu s)."""

    pids: dict[str, list[int]]
    interval: float = 1.0
    series: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for name, pids in self.pids.items():
                reading = total(pids)
                self.series.setdefault(name, []).append(
                    (round(now - self.started, 2), round(reading.rss / MIB, 1), reading.cpu)
                )
            self._stop.wait(self.interval)

    def peak_rss_mib(self, name: str) -> float:
        return max((rss for _, rss, _ in self.series.get(name, [])), default=0.0)
