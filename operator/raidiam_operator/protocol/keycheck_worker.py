"""The worker process that checks RSA keys for `keychecks.WorkerPool`.

`python -m raidiam_operator.protocol.keycheck_worker` says `ready` on stdout, then reads DER
keys on stdin (a 4-byte big-endian length, then the bytes) and answers each with one line:
`consistent <cpu seconds>` or `inconsistent <cpu seconds>`. It ends when its input does.

It runs at a lower priority, so that when it and the operator's event loop compete for the CPU
the event loop comes first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from raidiam_operator.protocol.credentials import rsa_key_is_consistent

#: larger than any key the operator reads (a PEM is at most 64 KiB)
MAX_KEY_BYTES = 1024 * 1024


def main() -> int:
    # The operator stops the worker by closing its input; a Ctrl-C meant for the operator
    # should not print a traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # a sandbox may refuse even a lower priority
        os.nice(10)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sink.write(b"ready\n")
    sink.flush()
    while len(header := source.read(4)) == 4:
        size = int.from_bytes(header, "big")
        if size > MAX_KEY_BYTES:
            return 2
        der = source.read(size)
        started = time.process_time()
        verdict = "consistent" if rsa_key_is_consistent(der) else "inconsistent"
        sink.write(f"{verdict} {time.process_time() - started:.6f}\n".encode())
        sink.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
