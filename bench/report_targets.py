"""The report's Targets section: each goal, the measured value, PASS or MISS and by how much."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.measure import median
from bench.summary import WORKLOAD_NAMES, Row, noop_histories

if TYPE_CHECKING:
    from bench.run import Bench


def targets(bench: Bench, rows: dict[str, dict[str, Row]]) -> list[str]:
    """The Targets table, then the ceilings' own throughput against rclone, for scale."""
    out = ["## Targets", "", "| target | measured | goal | result |", "|---|--:|--:|---|"]
    small, large = rows.get("small"), rows.get("large")
    if small and "rclone" in small and "ceiling" in small:
        out += _small_files(small)
    if large and "rclone" in large and "ceiling" in large:
        out += _large_files(large)
    for workload in ("small", "large"):
        if rows.get(workload):
            b = rows[workload]["bridge"]
            out.append(
                f"| {WORKLOAD_NAMES[workload]}: verification share of run time | {b.verify_share * 100:.1f} % | ≤ 10 % "
                f"| {_check(b.verify_share, 0.10, False)} |"
            )
    context = []
    for workload, tools in rows.items():
        if workload in WORKLOAD_NAMES and "rclone" in tools and "ceiling" in tools:
            context.append(
                f"{WORKLOAD_NAMES[workload]}: the ceiling itself reaches "
                f"{tools['ceiling'].files_per_s / tools['rclone'].files_per_s:.2f}x rclone's throughput"
            )
    noops = noop_histories(rows)
    if len(noops) == 2:
        out += _noop(bench, noops)
    out.append("")
    if context:
        out += ["For scale, measured in the same rounds: " + "; ".join(context) + ".", ""]
    return out


def _small_files(small: dict[str, Row]) -> list[str]:
    out = []
    b, r = small["bridge"], small["rclone"]
    # Whole processes on both sides: the bridge's start-up and imports count, as rclone's do.
    cpu_ratio = (b.cpu["tool"] / b.rounds[0].files) / (r.cpu["tool"] / r.rounds[0].files)
    whole = median([m.wall_s + m.extra["startup_s"] for m in b.rounds])
    out.append(
        f"| small files: bridge CPU per file (whole process, tables included) vs rclone | "
        f"{cpu_ratio:.2f}x ({b.cpu['tool'] / b.rounds[0].files * 1000:.1f} vs "
        f"{r.cpu['tool'] / r.rounds[0].files * 1000:.1f} ms) | ≤ 1.00x | {_check(cpu_ratio, 1.0, False)} |"
    )
    out.append(
        f"| small files: rclone wall time / bridge wall time (whole process) | {r.wall_s / whole:.2f}x "
        f"({whole:.1f} s vs {r.wall_s:.1f} s) | ≥ 1.00x | {_check(r.wall_s / whole, 1.0, True)} |"
    )
    out.append(
        f"| small files: bridge files/s vs rclone | {b.files_per_s / small['rclone'].files_per_s:.2f}x "
        f"| ≥ 1.50x | {_check(b.files_per_s / small['rclone'].files_per_s, 1.5, True)} |"
    )
    out.append(
        f"| small files: bridge files/s vs ceiling | {b.files_per_s / small['ceiling'].files_per_s * 100:.1f} % "
        f"| ≥ 70 % | {_check(b.files_per_s / small['ceiling'].files_per_s, 0.70, True)} |"
    )
    return out


def _large_files(large: dict[str, Row]) -> list[str]:
    out = []
    b = large["bridge"]
    out.append(
        f"| large files: bridge MB/s vs rclone | {b.mb_per_s / large['rclone'].mb_per_s:.2f}x "
        f"| ≥ 1.00x | {_check(b.mb_per_s / large['rclone'].mb_per_s, 1.0, True)} |"
    )
    # The goal is the copy's: the loop writes no tables (their cost is in the rows above and below).
    # (Results saved before the run recorded its own stage times have no "plan" or "copy": no row.)
    copying = median(
        [m.extra["stages_s"].get("plan", 0) + m.extra["stages_s"].get("copy", 0) for m in b.rounds]
    )
    ceiling_wall = large["ceiling"].wall_s
    if copying:
        out.append(
            f"| large files: the bridge's plan and copy (verification included) vs the ceiling's wall time | "
            f"{ceiling_wall / copying * 100:.1f} % ({copying:.2f} s vs {ceiling_wall:.2f} s) | ≥ 90 % | "
            f"{_check(ceiling_wall / copying, 0.90, True)} |"
        )
    hwm = [m.extra.get("copy_hwm_mb") for m in b.rounds]
    if all(h is not None for h in hwm):
        out.append(
            f"| large files: bridge peak RSS while copying (concurrency {b.concurrency}; before the tables) | "
            f"{median(hwm):.0f} MB | ≤ 256 MB | {_check(median(hwm), 256, False)} |"
        )
    out.append(
        f"| large files: whole run (tables included) MB/s vs ceiling | "
        f"{b.mb_per_s / large['ceiling'].mb_per_s * 100:.1f} % | – | for scale |"
    )
    out.append(f"| large files: whole run (tables included) peak RSS | {b.rss_mb:.0f} MB | – | for scale |")
    return out


def _noop(bench: Bench, noops: list[tuple[int, dict[str, Row]]]) -> list[str]:
    out = []
    (n1, t1), (n2, t2) = noops
    ratio = t2["bridge"].wall_s / t1["bridge"].wall_s
    out.append(
        f"| no-op: {n2:,} / {n1:,} keys wall time | {ratio:.2f}x | ≤ 1.20x | {_check(ratio, 1.2, False)} |"
    )
    facts = bench.facts["noop"]
    bound = facts["datasets"] * len(facts["window_months"])
    for n, t in noops:
        lists = median([r.s3_requests.get("ListObjectsV2", 0) for r in t["bridge"].rounds])
        folder_lists = 2  # parquet/ -> organisation folders, organisation -> dataset folders
        out.append(
            f"| no-op {n:,}: S3 list calls vs datasets x months ({facts['datasets']} x "
            f"{len(facts['window_months'])} = {bound}, + {folder_lists} folder listings) | {lists:.0f} "
            f"| ≤ {bound + folder_lists} | {_check(lists, bound + folder_lists, False)} |"
        )
    return out


def _check(measured: float, goal: float, higher_is_better: bool) -> str:
    """PASS or MISS, and by how much relative to the goal."""
    by = (measured / goal - 1) * 100 if goal else 0.0
    if higher_is_better:
        return f"**PASS** ({by:+.0f} % vs goal)" if measured >= goal else f"**MISS** ({-by:.0f} % short)"
    if measured == goal:
        return "**PASS** (at the limit)"
    return f"**PASS** ({-by:.0f} % under)" if measured <= goal else f"**MISS** ({by:.0f} % over)"
