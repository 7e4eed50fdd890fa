"""The report of ``bench.latency``: the rounds' figures and its two targets, as a section of
bench/RESULTS.md."""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import datetime, timezone
from typing import Any


def _median(rows: list[dict[str, Any]], tool: str, value: Any) -> float:
    return statistics.median(value(r) for r in rows if r["tool"] == tool)


def _requests(counts: dict[str, int]) -> str:
    kinds = {k: v for k, v in counts.items() if k != "connections"}
    total = sum(kinds.values())
    return f"{total} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))})"


def _verdict(measured: float, goal: float, higher_is_better: bool) -> str:
    ok = measured >= goal if higher_is_better else measured <= goal
    return "**PASS**" if ok else "**MISS**"


def render(
    rows: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    datasets: int,
    history: int,
    load_before: tuple[float, float, float],
    code: str,
) -> str:
    first, hour = rows["first"], rows["hour"]
    rate = lambda tool: _median(first, tool, lambda r: r["files"] / r["wall_s"])  # noqa: E731
    first_ratio = rate("bridge") / rate("rclone")
    hour_ratio = _median(hour, "bridge", lambda r: r["wall_s"]) / _median(hour, "loop", lambda r: r["wall_s"])
    load = os.getloadavg()
    lines = [
        "",
        "## At cloud latency (`python -m bench.latency`)",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} ({code}); {args.rounds} alternating rounds, "
        f"medians; a proxy adds {args.s3_ms:g} ms to every round trip to S3 (moto) and {args.lake_ms:g} ms to the "
        f"lake (Azurite), and one round trip to each new connection; BRIDGE_MAX_CONCURRENCY = {args.concurrency}; "
        f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        "",
        f"Bucket: every dataset of Haltian's schema reference ({datasets}: legacy and v1), one real Parquet file "
        f"of {args.rows} rows every {args.every_hours} h for {args.days} days = {history:,} keys. The window "
        "(this month and the one before) is one listing page per dataset and month at this cadence, as it is "
        "with hourly files (up to 744 keys a month, 1,000 a page).",
        "",
        "| workload | tool | round | wall s | CPU s | peak RSS MB | files | S3 requests | lake requests |",
        "|---|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for label, group in (("first run", first), ("normal hour", hour)):
        for r in group:
            lines.append(
                f"| {label} | {r['tool']} | {r['round']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                f"{r['rss_mb'] or 0:.0f} | {r['files']:,} | {_requests(r['s3'])} | {_requests(r['lake'])} |"
            )
    lines += [
        "",
        "| target | measured | goal | result |",
        "|---|--:|--:|---|",
        f"| first run into an empty lake: bridge files/s vs rclone | {first_ratio:.2f}x | ≥ 1.50x | "
        f"{_verdict(first_ratio, 1.5, True)} |",
        f"| normal hour: bridge wall time vs the least such a run must do | {hour_ratio:.2f}x | ≤ 1.50x | "
        f"{_verdict(hour_ratio, 1.5, False)} |",
        "",
        "Both tools' wall and CPU are whole processes (interpreter start-up and imports included). The requests are "
        "counted by the proxies, so delta-rs's requests are in the bridge's figures.",
        "",
    ]
    return "\n".join(lines)
