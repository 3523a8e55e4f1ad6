"""Tables (Markdown) and plots (PNG) from one or more results files.

    python -m benchmarks report before.json after.json --plots docs

Each file is one run of `python -m benchmarks`; its label (`--label`) names it in the tables and
legends. Tables go to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.summary import summarise


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def merge(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per label: the scenarios of files that share a label are put together."""
    merged: dict[str, dict[str, Any]] = {}
    for run in runs:
        into = merged.setdefault(run["label"], {"label": run["label"]})
        for key in ("floor", "burst", "live", "restart", "steady", "sidecar"):
            into.setdefault(key, []).extend(run.get(key, []))
    return list(merged.values())


def tables(runs: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    lines += [
        "### Burst create",
        "",
        "| run | N | all Ready (s) | floor (s) | operator / floor | tokens/s | requests/client "
        "| API writes/client | operator CPU (s) | peak RSS (MiB) | runs |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in runs:
        for n, row in sorted(summarise(run)["burst"].items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {run['label']} | {int(n):,} | {_fmt(row['seconds'], 1)} | "
                f"{_fmt(row['floor_seconds'], 1)} | {_fmt(row['ratio_to_floor'])}x | "
                f"{_fmt(row['tokens_per_second'], 0)} | {_fmt(row['token_requests_per_client'])} | "
                f"{_fmt(row['api_writes_per_client'])} | {_fmt(row['cpu_seconds'], 1)} | "
                f"{_fmt(row['peak_rss_mib'], 0)} | {row['runs']} |"
            )
    lines += [
        "",
        "### Live burst (created while the operator runs)",
        "",
        "| run | N | creating them took (s) | all Ready (s) | Ready after the last create (s) |",
        "|---|--:|--:|--:|--:|",
    ]
    for run in runs:
        for n, row in sorted(summarise(run).get("live", {}).items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {run['label']} | {int(n):,} | {_fmt(row['create_seconds'], 1)} | "
                f"{_fmt(row['seconds'], 1)} | {_fmt(row['ready_after_last_create'], 1)} |"
            )
    lines += [
        "",
        "### Restart with every token valid",
        "",
        "| run | N | all scheduled after the kill (s) | token requests | API writes | API reads "
        "| CPU (s) | peak RSS (MiB) | runs |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in runs:
        for n, row in sorted(summarise(run)["restart"].items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {run['label']} | {int(n):,} | {_fmt(row['seconds'], 1)} | "
                f"{row['token_requests']} | {_fmt(row['api_writes'], 0)} | "
                f"{_fmt(row['api_reads'], 0)} | {_fmt(row['cpu_seconds'], 1)} | "
                f"{_fmt(row['peak_rss_mib'], 0)} | {row['runs']} |"
            )
    lines += [
        "",
        "### Steady state",
        "",
        "| run | N | window (s) | token TTL (s) | refreshes | lateness p50 / p99 / max (s) "
        "| expired | requests/refresh | API writes/refresh | API reads/refresh "
        "| CPU ms/refresh | RSS max (MiB) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in runs:
        for n, row in sorted(summarise(run)["steady"].items(), key=lambda kv: int(kv[0])):
            cpu = row["cpu_seconds_per_refresh"]
            lines.append(
                f"| {run['label']} | {int(n):,} | {_fmt(row['window_seconds'], 0)} | {row['ttl']} | "
                f"{row['refreshes']:,} | {_fmt(row['lateness_p50'])} / "
                f"{_fmt(row['lateness_p99'])} / {_fmt(row['lateness_max'])} | {row['expired']} | "
                f"{_fmt(row['requests_per_refresh'])} | {_fmt(row['api_writes_per_refresh'])} | "
                f"{_fmt(row['api_reads_per_refresh'])} | "
                f"{_fmt(cpu * 1000 if cpu is not None else None, 1)} | "
                f"{_fmt(row['rss_mib_max'], 0)} |"
            )
    sidecars = [(run["label"], row) for run in runs for row in run.get("sidecar", [])]
    if sidecars:
        lines += ["", "### Sidecar (token-refresher)", ""]
        for label, row in sidecars:
            if not row.get("available"):
                lines.append(f"- {label}: not run: {row.get('reason')}")
                continue
            lines.append(
                f"- {label}: {row['n']} processes, RSS {row['rss_mib_total']:.0f} MiB total "
                f"({row['rss_mib_per_process']:.1f} per process; PSS {row['pss_mib_total']:.0f} "
                f"MiB), CPU {row['cpu_seconds']:.1f} s over {row['window_seconds']:.0f} s for "
                f"{row['refreshes']} refreshes ({_fmt(row['cpu_seconds_per_refresh'], 4)} s each, "
                f"{row['cpu_seconds_per_client_hour']:.2f} s per client-hour)"
            )
    return "\n".join(lines)


def plots(runs: list[dict[str, Any]], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []

    # Burst: time to all Ready against N: the operator meeting N clients at start, the floor,
    # and N clients created while the operator runs.
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for index, run in enumerate(runs):
        summary = summarise(run)
        burst, live = summary["burst"], summary.get("live", {})
        if burst:
            ns = sorted(int(n) for n in burst)
            axes.plot(
                ns,
                [burst[n]["seconds"] for n in ns],
                marker="o",
                color=f"C{index}",
                label=f"{run['label']}: N waiting when it starts",
            )
            axes.plot(
                ns,
                [burst[n]["floor_seconds"] for n in ns],
                marker="s",
                linestyle="--",
                color=f"C{index}",
                alpha=0.5,
                label=f"{run['label']}: floor (plain script, same work)",
            )
        if live:
            ns = sorted(int(n) for n in live)
            axes.plot(
                ns,
                [live[n]["seconds"] for n in ns],
                marker="^",
                linestyle=":",
                color=f"C{index}",
                label=f"{run['label']}: N created while it runs",
            )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("RaidiamClients (N)")
    axes.set_ylabel("seconds until all Ready (median)")
    axes.set_title("Burst: the operator against the floor")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    path = directory / "benchmark-burst.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    written.append(path)

    steady_runs = [(run["label"], row) for run in runs for row in run["steady"]]
    if steady_runs:
        largest = max(row["n"] for _, row in steady_runs)
        figure, (memory, late, rate) = plt.subplots(3, 1, figsize=(8, 10))
        for label, row in steady_runs:
            if row["n"] != largest:
                continue
            times = [t / 60 for t, _ in row["rss_series"]]
            memory.plot(times, [rss for _, rss in row["rss_series"]], label=label)
            late.plot(
                row["lateness_quantiles"], list(range(101)), label=label, drawstyle="steps-post"
            )
            rate.plot(
                [s / 60 for s in range(len(row["requests_per_second"]))],
                _smooth(row["requests_per_second"], 5),
                label=label,
                linewidth=0.8,
            )
        memory.set_title(f"Steady state, N={largest:,}: operator RSS")
        memory.set_xlabel("minutes into the window")
        memory.set_ylabel("MiB")
        late.set_title("Refresh lateness (request arrival minus the status's nextRefreshTime)")
        late.set_xlabel("seconds late")
        late.set_ylabel("percentile")
        rate.set_title("Token requests per second (5 s average): refresh waves")
        rate.set_xlabel("minutes into the window")
        rate.set_ylabel("requests/s")
        for axes in (memory, late, rate):
            axes.grid(True, alpha=0.3)
            axes.legend()
        path = directory / "benchmark-steady.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)

    sidecar = [row for run in runs for row in run.get("sidecar", []) if row.get("available")]
    if sidecar:
        row = sidecar[-1]
        operator = next(
            (found for run in reversed(runs) if (found := _steady_at(run, row["n"]))), None
        )
        if operator is not None:
            figure, (memory, cpu) = plt.subplots(1, 2, figsize=(9, 4))
            names = [f"{row['n']} sidecars", "operator"]
            memory.bar(names, [row["pss_mib_total"], operator["rss_mib_max"]], color=["C1", "C0"])
            memory.set_ylabel("MiB (sidecars: PSS total; operator: RSS)")
            memory.set_title(f"Memory for {row['n']} clients")
            cpu.bar(
                names,
                [row["cpu_seconds_per_client_hour"], operator["cpu_seconds_per_client_hour"]],
                color=["C1", "C0"],
            )
            cpu.set_ylabel("CPU seconds per client-hour")
            cpu.set_title(f"CPU, {row['ttl']} s tokens")
            figure.tight_layout()
            path = directory / "benchmark-sidecar.png"
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
    return written


def _steady_at(run: dict[str, Any], n: int) -> dict[str, Any] | None:
    return next((row for row in run["steady"] if row["n"] == n), None)


def _smooth(values: list[int], width: int) -> list[float]:
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks report")
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--plots", type=Path, help="write PNG plots into this directory")
    args = parser.parse_args(argv)
    runs = merge([json.loads(path.read_text()) for path in args.results])
    print(tables(runs))
    if args.plots:
        for path in plots(runs, args.plots):
            print(f"wrote {path}")
    return 0
