"""`python -m benchmarks`: run the scenarios; `python -m benchmarks report`: tables and plots.

python -m benchmarks                      # the full run (about an hour on 2 cores)
python -m benchmarks --smoke              # N=20, about a minute; exits 1 if a check fails
python -m benchmarks --sizes 100,1000 --repeats 3 --steady-sizes 1000 --steady-seconds 600
python -m benchmarks report results.json [more.json ...] --plots docs
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.summary import smoke_failures, summarise

SMOKE_N = 20
SMOKE_TTL = 20
SMOKE_STEADY_SECONDS = 30.0


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="N=20, short steady state, checks")
    parser.add_argument("--sizes", type=_sizes, default=[100, 1000, 5000], help="burst/restart N")
    parser.add_argument("--repeats", type=int, default=3, help="runs of burst/floor/restart per N")
    parser.add_argument("--steady-sizes", type=_sizes, default=[100, 1000, 5000])
    parser.add_argument("--steady-seconds", type=float, default=600.0)
    parser.add_argument("--token-ttl", type=int, default=120, help="steady-state token lifetime")
    parser.add_argument("--certificates", type=int, default=10, help="transport certificates")
    parser.add_argument(
        "--unrelated-secrets",
        type=int,
        default=0,
        help="Secrets no client names, added to each burst namespace (memory must not grow)",
    )
    parser.add_argument("--unrelated-kib", type=int, default=100, help="size of each of them")
    parser.add_argument("--sidecars", type=int, default=100, help="token-refresher processes")
    parser.add_argument("--sidecar-seconds", type=float, default=300.0)
    parser.add_argument(
        "--scenarios",
        default="burst,steady,sidecar",
        help="comma-separated: burst (with the floor and the restart), steady, sidecar",
    )
    parser.add_argument(
        "--no-live", action="store_true", help="skip the live burst (created while it runs)"
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor (for memory-only runs)"
    )
    parser.add_argument("--out", type=Path, help="results JSON (default: under the work dir)")
    parser.add_argument("--workdir", type=Path, help="logs and cluster data (default: a temp dir)")
    parser.add_argument("--label", default="", help="a name for this run in the results")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from benchmarks.report import main as report_main

        return report_main(argv[1:])
    args = _parser().parse_args(argv)
    from benchmarks import scenarios  # needs raidiam_devenv (PYTHONPATH=devenv)
    from benchmarks.scenarios import Bench, log

    # Stopped from outside (a CI timeout, kill, or Ctrl-C in a background job, which starts with
    # SIGINT ignored): unwind, so the operator, the servers and the control plane are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.smoke:
        args.sizes, args.repeats, args.steady_sizes = [SMOKE_N], 1, [SMOKE_N]
        args.steady_seconds, args.token_ttl, args.scenarios = (
            SMOKE_STEADY_SECONDS,
            SMOKE_TTL,
            "burst,steady",
        )
    wanted = set(args.scenarios.split(","))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raidiam-bench-"))
    out = args.out or workdir / "results.json"
    results: dict[str, Any] = {
        "label": args.label or ("smoke" if args.smoke else "full"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": _machine(),
        "options": {k: str(v) for k, v in vars(args).items()},
        "floor": [],
        "burst": [],
        "live": [],
        "restart": [],
        "steady": [],
        "sidecar": [],
    }

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))

    bench = Bench(
        workdir,
        certificates=args.certificates,
        unrelated_secrets=args.unrelated_secrets,
        unrelated_kib=args.unrelated_kib,
    ).start()
    try:
        if "burst" in wanted:
            for n in args.sizes:
                for repeat in range(args.repeats):
                    if not args.no_floor:
                        results["floor"].append(scenarios.floor(bench, n, repeat))
                        log(f"floor {n} #{repeat}: {results['floor'][-1]['seconds']:.1f} s")
                    burst, restart = scenarios.burst_and_restart(bench, n, repeat)
                    results["burst"].append(burst)
                    results["restart"].append(restart)
                    save()
                if not (args.smoke or args.no_live):
                    results["live"].append(scenarios.live_burst(bench, n))
                    save()
        if "steady" in wanted:
            for n in args.steady_sizes:
                results["steady"].append(
                    scenarios.steady(bench, n, seconds=args.steady_seconds, ttl=args.token_ttl)
                )
                save()
        if "sidecar" in wanted:
            results["sidecar"].append(
                scenarios.sidecars(
                    bench, args.sidecars, seconds=args.sidecar_seconds, ttl=args.token_ttl
                )
            )
            save()
    finally:
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        save()
        bench.stop()
    log(f"results in {out}")
    summary = summarise(results)
    print(json.dumps(summary, indent=1))
    if args.smoke:
        failures = smoke_failures(summary)
        for failure in failures:
            print(f"SMOKE CHECK FAILED: {failure}", file=sys.stderr)
        return 1 if failures else 0
    return 0


def _machine() -> dict[str, Any]:
    import os

    with open("/proc/meminfo") as file:
        total_kib = int(file.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "node": shutil.which("node") is not None,
    }


if __name__ == "__main__":
    sys.exit(main())
