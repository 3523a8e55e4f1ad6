"""Where the operator's memory is: put this directory first on PYTHONPATH of a benchmark run.

In the operator process only (`raidiam_operator run`), every MALLOC_STATS_EVERY seconds
(default 5) it appends one line to $MALLOC_STATS_DIR/<pid>.txt (default /tmp/malloc-stats):
the RSS, glibc's mallinfo2 (bytes in its arenas, in use, free) and pymalloc's own summary
(`sys._debugmallocstats`: 1 MiB arenas held, bytes in live objects, bytes free in them).
Live objects against arenas held tells what the process keeps from what it lost to
fragmentation. No tracing: the run's timing holds.

    PYTHONPATH=benchmarks/malloc_stats:devenv .venv/bin/python -m benchmarks --sizes 10000 \
        --repeats 1 --no-live --no-floor --scenarios burst
"""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import threading
import time

_SUMMARY = (
    "# arenas allocated current",
    "# bytes in allocated blocks",
    "# bytes in available blocks",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _pymalloc_summary() -> str:
    """sys._debugmallocstats writes to the C stderr; read it back through a pipe."""
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    lines = b"".join(chunks).decode().splitlines()
    return " | ".join(" ".join(line.split()) for line in lines if line.startswith(_SUMMARY))


def _record(every: float) -> None:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    directory = os.environ.get("MALLOC_STATS_DIR") or os.path.join(
        tempfile.gettempdir(), "malloc-stats"
    )
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{os.getpid()}.txt"), "a") as out:
        while True:
            time.sleep(every)
            info = libc.mallinfo2()
            with open("/proc/self/status") as status:
                rss = next(line.split()[1] for line in status if line.startswith("VmRSS"))
            out.write(
                f"{time.time():.0f} rss={int(rss) // 1024}MiB glibc: arena={info.arena >> 20}"
                f" inuse={info.uordblks >> 20} free={info.fordblks >> 20} MiB | "
                f"{_pymalloc_summary()}\n"
            )
            out.flush()


with open("/proc/self/cmdline", "rb") as _cmdline:
    _arguments = _cmdline.read().split(b"\0")
if b"raidiam_operator" in _arguments and b"run" in _arguments:
    threading.Thread(
        target=_record,
        args=(float(os.environ.get("MALLOC_STATS_EVERY", "5")),),
        name="malloc-stats",
        daemon=True,
    ).start()
