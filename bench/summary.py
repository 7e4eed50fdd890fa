"""What the report is made of: one row of medians per workload and tool (:class:`Row`, from the
rounds' measurements), the workloads' labels and the number formats the tables share."""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure import Measurement, median

#: The copy workloads' labels; the no-op ones are labelled by their history size.
WORKLOAD_NAMES = {"small": "small files", "large": "large files"}


def setup_label(m: Measurement) -> str:
    if m.tool != "ceiling":
        return f"c{m.concurrency}"
    return f"c{m.concurrency} {m.extra.get('client', 'sdk')}"


def workload_label(workload: str) -> str:
    return WORKLOAD_NAMES.get(workload) or f"no-op, {workload.removeprefix('noop')} keys"


@dataclass
class Row:
    tool: str
    wall_s: float
    files_per_s: float
    mb_per_s: float
    rss_mb: float
    s3_per_file: float | None
    azure_per_file: float | None
    s3_per_run: float | None
    azure_per_run: float | None
    verify_share: float | None
    verify_s: float | None
    concurrency: int
    cpu: dict[str, float]
    rounds: list[Measurement]


def summarize(measurements: list[Measurement]) -> Row:
    ms = measurements
    files = ms[0].files or 1

    def per_file(attr: str) -> float | None:
        counts = [sum(getattr(m, attr).values()) for m in ms]
        return median(counts) / files if any(counts) else None

    def per_run(attr: str) -> float | None:
        counts = [sum(getattr(m, attr).values()) for m in ms]
        return median(counts) if any(counts) else None

    verify = None
    share = None
    if ms[0].tool == "bridge":
        # The CPU the verifying threads spent verifying, over the run's wall time: how much shorter
        # the run could at most be without verification. (Their wall time would also count the
        # time they wait for the GIL while other threads move bytes; the details show it too.)
        verify = median([m.extra["verify_cpu_s"] for m in ms])
        share = median([m.extra["verify_cpu_s"] / m.wall_s for m in ms])
    cpu_keys = {k for m in ms for k in m.cpu}
    return Row(
        ms[0].tool,
        median([m.wall_s for m in ms]),
        median([m.files_per_s for m in ms]),
        median([m.mb_per_s for m in ms]),
        median([m.rss_mb for m in ms]),
        per_file("s3_requests"),
        per_file("azure_requests"),
        per_run("s3_requests"),
        per_run("azure_requests"),
        share,
        verify,
        ms[0].concurrency,
        {k: median([m.cpu.get(k, 0.0) for m in ms]) for k in cpu_keys},
        ms,
    )


def noop_histories(rows: dict[str, dict[str, Row]]) -> list[tuple[int, dict[str, Row]]]:
    """The no-op workloads' rows by history size, smallest first."""
    return sorted((int(w.removeprefix("noop")), t) for w, t in rows.items() if w.startswith("noop"))


def figure(value: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{suffix}"


def rate(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"
