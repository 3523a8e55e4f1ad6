"""From raw results to what the targets are stated in: medians per N and ratios to the floor.

Shared by the run (`python -m benchmarks`, which also checks the smoke run) and the report.
"""

from __future__ import annotations

import statistics
from typing import Any


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
