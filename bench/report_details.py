"""The report's Details section, per workload: the input, the ceiling trials, every round's
figures, the CPU of the tool and the emulators, the request mix and the bridge's stage times."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench.data import NOOP_DATASETS
from bench.measure import MB, TOOLS, median
from bench.summary import Row, figure, noop_histories, rate, workload_label

if TYPE_CHECKING:
    from bench.run import Bench


def details(bench: Bench, rows: dict[str, dict[str, Row]]) -> list[str]:
    out = ["## Details", ""]
    noops = noop_histories(rows)
    for workload, tools in rows.items():
        out += [f"### {workload_label(workload)}", ""]
        facts = bench.facts.get(workload) or {}
        if facts:
            out += _input(facts)
        if workload.startswith("noop"):
            out += _history(bench, int(workload.removeprefix("noop")), noops)
        for note in bench.notes.get(workload, []):
            out.append(f"- note: {note}")
        out += _rounds(workload, tools)
        b = tools.get("bridge")
        if b:
            out += ["", _stages(b)]
        out.append("")
    return out


def _input(facts: dict[str, Any]) -> list[str]:
    """A copy workload's input, its ceiling trials and the what-if run."""
    out = []
    out.append(
        f"- input: {facts['files']:,} files, {facts['bytes'] / MB:,.1f} MB "
        f"({facts['min_size']:,} to {facts['max_size']:,} bytes), {facts['datasets']} datasets, "
        f"{facts['months']} month folders, legacy key layout; seeded into moto in "
        f"{facts['seed_s']:.1f} s"
    )
    if "ceiling_trials" in facts:
        out.append(
            f"- ceiling trials in round 1 (wall s; cN = N threads; sdk = boto3 and azure-storage-blob, raw = the bridge's own lean GET and Blob requests; Content-MD5 on every PUT): "
            f"{facts['ceiling_trials']}; the fastest is kept for the later rounds"
        )
    if "bridge_what_if" in facts:
        w = facts["bridge_what_if"]
        out.append(
            f"- what-if, one run, not in the table: the bridge at BRIDGE_MAX_CONCURRENCY = "
            f"{w['concurrency']} (the ceiling's thread count): {w['wall_s']:.2f} s, "
            f"{w['files_per_s']:.0f} files/s, {w['mb_per_s']:.1f} MB/s, peak RSS {w['rss_mb']:.0f} MB"
        )
    return out


def _history(bench: Bench, count: int, noops: list[tuple[int, dict[str, Row]]]) -> list[str]:
    """A no-op workload's history, its seeding, the first run after it and the list probe."""
    out = []
    nf = bench.facts["noop"]
    h = nf["histories"][count]
    out.append(
        f"- history: {count:,} keys, {len(NOOP_DATASETS)} datasets, hourly, {h['months']} month "
        f"folders ({h['first_month']} to {h['last_month']}); look-back window "
        f"{', '.join(nf['window_months'])} holds {h['in_window']:,} of them"
    )
    out.append(
        f"- seeding: moto through its in-process backend {h['s3_seed_s']:.1f} s; the lake by Put Blob "
        f"with the bridge's metadata {h['lake_seed_s']:.1f} s ({h['lake_seed_per_s']:.0f} blobs/s); "
        "`_state/reconcile.json` written with the current time, so runs are hourly (window) runs"
    )
    w = h["warmup"]
    out.append(
        f"- first run after seeding ({w['mode']} mode, not in the table): {w['wall_s']:.2f} s, "
        f"registered the window's files in {w['tables_changed']} Delta tables"
    )
    probe = h["list_probe_s"]
    out.append(
        f"- the emulators' own time to list one dataset's window month folder, alone: moto "
        f"ListObjectsV2 {probe['s3'] * 1000:.0f} ms, Azurite List Blobs with metadata "
        f"{probe['lake'] * 1000:.0f} ms (in S3 and Azure this does not depend on the history size)"
    )
    if "ceiling_trials" in nf and count == noops[0][0]:
        out.append(
            f"- ceiling (list the window on both sides and compare) concurrency trials in round 1 "
            f"(wall s): {nf['ceiling_trials']}"
        )
    return out


def _rounds(workload: str, tools: dict[str, Row]) -> list[str]:
    """Every round's figures, tool by tool."""
    out = [
        "",
        "| tool | round | wall s | files/s | MB/s | peak RSS MB | CPU s: tool / moto / Azurite "
        "| S3 requests | Azure requests |",
        "|---|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for tool in TOOLS:
        for x in tools.get(tool, Row(tool, 0, 0, 0, 0, None, None, None, None, None, None, 0, {}, [])).rounds:
            cpu = f"{x.cpu.get('tool', 0):.1f} / {x.cpu.get('moto', 0):.1f} / {x.cpu.get('azurite', 0):.1f}"
            out.append(
                f"| {tool} | {x.round} | {x.wall_s:.2f} | {rate(x.files_per_s)} | "
                f"{'–' if workload.startswith('noop') else f'{x.mb_per_s:.1f}'} | "
                f"{figure(x.rss_mb, '.0f')} | {cpu} | {_counts(x.s3_requests)} | {_counts(x.azure_requests)} |"
            )
    return out


def _stages(b: Row) -> str:
    """The bridge's mean time per stage (the run's own ``stage_seconds``), verification and copying."""
    stages = Counter()
    for x in b.rounds:
        for k, v in x.extra["stages_s"].items():
            stages[k] += v / len(b.rounds)
    accounted = sum(stages.values())
    wall = statistics.mean(x.wall_s for x in b.rounds)
    return (
        "Bridge run, mean seconds per stage: "
        + ", ".join(f"{_stage(k)} {v:.2f}" for k, v in stages.items())
        + f", lock and the rest {max(0.0, wall - accounted):.2f} (of {wall:.2f}). "
        f"Verification: {median([x.extra['verify_cpu_s'] for x in b.rounds]):.2f} CPU s summed over "
        f"files ({median([x.extra['verify_s'] for x in b.rounds]):.2f} s of wall time, GIL waits "
        f"included, = {median([x.extra['verify_s'] / (x.wall_s * x.concurrency) for x in b.rounds]):.1%}"
        f" of the copy threads' time); "
        f"copying: {median([x.extra['file_s'] for x in b.rounds]):.1f} s summed over files "
        f"(= {median([x.extra['file_s'] / x.wall_s for x in b.rounds]):.1f} files in flight on average); "
        f"process start-up and imports before the run: "
        f"{median([x.extra['startup_s'] for x in b.rounds]):.1f} s (not in the wall time)."
    )


def _stage(name: str) -> str:
    return {
        "plan": "plan (list S3 and lake)",
        "copy": "copy + verify",
        "tables": "Delta tables after the last copy",
        "recovery": "accounting for stopped runs",
        "manifest": "manifest",
    }.get(name, name)


def _counts(counts: dict[str, int]) -> str:
    if not counts:
        return "–"
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
