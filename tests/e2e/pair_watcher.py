"""Runs inside a pod: reads the token and the transport certificate over and over, as a workload
would before each call, and counts the reads where the token is bound to another certificate
than the one read with it (its `cnf.x5t#S256` against the certificate's thumbprint).

Standard library only, so any image with python3 runs it. Each directory is read from one
version of its volume (the kubelet's `..data` link, resolved once per read), as
docs/using-the-token.md tells workloads to: with the bundle, token and certificate come from
the same version; with two volumes, each from its own. Prints a JSON line a second:
{"reads": N, "mismatches": M, "windows": [[first, last], ...]}, times in ms since the epoch.

    python3 pair_watcher.py TOKEN_DIR CERTIFICATE_DIR [INTERVAL_SECONDS]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import sys
import time


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def bound_to(token: str) -> str | None:
    """`cnf.x5t#S256` of a JWT access token, read without verifying it."""
    try:
        claims = json.loads(_b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError, binascii.Error):
        return None
    confirmation = claims.get("cnf") if isinstance(claims, dict) else None
    value = confirmation.get("x5t#S256") if isinstance(confirmation, dict) else None
    return value if isinstance(value, str) else None


def thumbprint(chain_pem: str) -> str | None:
    """x5t#S256 of the first certificate in a PEM chain."""
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = chain_pem.find(begin)
    stop = chain_pem.find(end, start)
    if start < 0 or stop < 0:
        return None
    der = base64.b64decode("".join(chain_pem[start + len(begin) : stop].split()))
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def read(directory: str, keys: tuple[str, ...]) -> list[str]:
    """`keys` from one version of the volume, the one that is current now."""
    while True:
        version = os.path.realpath(os.path.join(directory, "..data"))
        try:
            values = []
            for key in keys:
                with open(os.path.join(version, key)) as file:
                    values.append(file.read())
            return values
        except FileNotFoundError:  # that version was just replaced: read the new one
            continue


def read_pair(token_dir: str, certificate_dir: str) -> tuple[str, str]:
    if token_dir == certificate_dir:  # the bundle: both from the same version
        token, certificate = read(token_dir, ("access_token", "tls.crt"))
        return token, certificate
    return read(token_dir, ("access_token",))[0], read(certificate_dir, ("tls.crt",))[0]


def main() -> None:
    token_dir, certificate_dir = sys.argv[1], sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
    reads = mismatches = 0
    windows: list[list[int]] = []
    in_window = False
    last_report = 0.0
    while True:
        token, certificate = read_pair(token_dir, certificate_dir)
        now_ms = int(time.time() * 1000)
        reads += 1
        if bound_to(token) != thumbprint(certificate):
            mismatches += 1
            if in_window:
                windows[-1][1] = now_ms
            else:
                windows.append([now_ms, now_ms])
            in_window = True
        else:
            in_window = False
        if time.monotonic() - last_report >= 1:
            last_report = time.monotonic()
            report = {"reads": reads, "mismatches": mismatches, "windows": windows}
            print(json.dumps(report), flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
