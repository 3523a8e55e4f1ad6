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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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

    bench = Bench(workdir, certificates=args.certificates).start()
    try:
        if "burst" in wanted:
            for n in args.sizes:
                for repeat in range(args.repeats):
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


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Medians per N, and the ratios the targets are stated in."""
    from benchmarks.cluster import operator_reads

    # Reads as charged today, also for results written before the garbage collector's and
    # discovery's reads were told apart.
    for row in results["restart"]:
        row["api_reads"] = operator_reads(row["api"])
    for row in results["steady"]:
        row["api_reads_per_refresh"] = (
            operator_reads(row["api"]) / row["refreshes"] if row["refreshes"] else None
        )
    summary: dict[str, Any] = {
        "burst": {},
        "restart": {},
        "steady": {},
        "sidecar": results["sidecar"],
    }
    for row in results["burst"]:
        n = row["n"]
        bursts = [r for r in results["burst"] if r["n"] == n]
        floors = [r for r in results["floor"] if r["n"] == n]
        ratios = [b["seconds"] / f["seconds"] for b, f in zip(bursts, floors, strict=False)]
        summary["burst"][n] = {
            "runs": len(bursts),
            "seconds": _median(bursts, "seconds"),
            "create_seconds": _median(bursts, "create_seconds"),
            "floor_seconds": _median(floors, "seconds"),
            "ratio_to_floor": statistics.median(ratios) if ratios else None,
            "tokens_per_second": _median(bursts, "tokens_per_second"),
            "floor_tokens_per_second": _median(floors, "tokens_per_second"),
            "token_requests_per_client": _median(bursts, "token_requests") / n,
            "api_writes_per_client": _median(bursts, "api_writes") / n,
            "cpu_seconds": _median(bursts, "cpu_seconds"),
            "floor_cpu_seconds": _median(floors, "cpu_seconds"),
            "peak_rss_mib": _median(bursts, "peak_rss_mib"),
            "floor_peak_rss_mib": _median(floors, "peak_rss_mib"),
        }
    summary["live"] = {
        row["n"]: {
            key: row.get(key)
            for key in ("seconds", "create_seconds", "ready_after_last_create", "token_requests")
        }
        for row in results.get("live", [])
    }
    for row in results["restart"]:
        n = row["n"]
        rows = [r for r in results["restart"] if r["n"] == n]
        summary["restart"][n] = {
            "runs": len(rows),
            "seconds": _median(rows, "seconds"),
            "token_requests": max(r["token_requests"] for r in rows),
            "api_writes": _median(rows, "api_writes"),
            "api_reads": _median(rows, "api_reads"),
            "cpu_seconds": _median(rows, "cpu_seconds"),
            "peak_rss_mib": _median(rows, "peak_rss_mib"),
        }
    for row in results["steady"]:
        summary["steady"][row["n"]] = {
            key: row[key]
            for key in (
                "window_seconds",
                "ttl",
                "refreshes",
                "lateness_p50",
                "lateness_p99",
                "lateness_max",
                "expired",
                "server_gaps_over_ttl",
                "requests_per_refresh",
                "api_writes_per_refresh",
                "api_reads_per_refresh",
                "cpu_seconds_per_refresh",
                "cpu_seconds_per_client_hour",
                "rss_mib_max",
                "peak_rss_mib",
            )
        }
    return summary


def smoke_failures(summary: dict[str, Any]) -> list[str]:
    failures = []
    for n, row in summary["burst"].items():
        if row["token_requests_per_client"] != 1:
            failures.append(f"burst {n}: {row['token_requests_per_client']} requests per client")
    for n, row in summary["restart"].items():
        if row["token_requests"] != 0:
            failures.append(f"restart {n}: {row['token_requests']} token requests")
    for n, row in summary["steady"].items():
        if row["expired"] != 0:
            failures.append(f"steady {n}: {row['expired']} tokens expired unrefreshed")
        if not row["refreshes"]:
            failures.append(f"steady {n}: no refresh in the window")
        elif round(row["requests_per_refresh"], 2) != 1.00:
            failures.append(f"steady {n}: {row['requests_per_refresh']:.2f} requests per refresh")
    if not summary["steady"] or not summary["burst"]:
        failures.append("a scenario did not run")
    return failures


if __name__ == "__main__":
    sys.exit(main())
