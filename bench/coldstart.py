"""What a cold start costs: ``python -m bench.coldstart [--rounds 5] [--no-write]``.

The Functions host imports ``function_app`` on every cold start; on Flex Consumption an hourly
timer mostly meets an instance that has scaled to zero. Each measurement is a fresh interpreter
that imports one thing and reports the CPU seconds of
that import and the process's peak RSS. Rounds alternate between:

* ``azure.functions`` alone: what the worker has loaded before it imports the app (the peer);
* ``function_app``: the host's import of this app;
* ``function_app`` then ``shared.run``: what the first timer invocation adds (the run's clients,
  pyarrow, delta-rs).

Appends its section to bench/RESULTS.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone

from bench.data import BENCH_DIR, report

PROJECT_ROOT = BENCH_DIR.parent
PROBES = {
    "azure.functions (the worker's own)": "import azure.functions",
    "function_app (the host's import)": "import function_app",
    "function_app, then shared.run (the first run's)": "import function_app\nimport shared.run",
}
# Peak RSS from VmHWM (this process image's own high-water mark): ru_maxrss survives exec on
# Linux and would report the parent's size.
PROBE = """
import time
begun = time.process_time()
{imports}
cpu = time.process_time() - begun
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1]
print(cpu, int(hwm) / 1024)
"""
CPU_GOAL_S = 0.25
RSS_GOAL_MB = 80


def measure(imports: str) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    before = os.getloadavg()
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in PROBES}
    for _ in range(args.rounds):
        for name, imports in PROBES.items():
            results[name].append(measure(imports))
    after = os.getloadavg()
    med = {
        name: (statistics.median(c for c, _ in runs), statistics.median(r for _, r in runs))
        for name, runs in results.items()
    }
    app_cpu, app_rss = med["function_app (the host's import)"]
    peer_cpu, _ = med["azure.functions (the worker's own)"]
    lines = [
        "",
        "## Cold start (`python -m bench.coldstart`)",
        "",
        f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}; {args.rounds} alternating rounds, "
        f"medians; a fresh interpreter per measurement; load average before / after: "
        f"{' '.join(f'{x:.2f}' for x in before)} / {' '.join(f'{x:.2f}' for x in after)}.",
        "",
        "| import | CPU s | peak RSS MB | rounds (CPU s) |",
        "|---|--:|--:|---|",
    ]
    for name, (cpu, rss) in med.items():
        lines.append(
            f"| {name} | {cpu:.3f} | {rss:.0f} | {', '.join(f'{c:.3f}' for c, _ in results[name])} |"
        )
    lines += [
        "",
        "| target | measured | goal | result |",
        "|---|--:|--:|---|",
        f"| `import function_app`: CPU | {app_cpu:.3f} s ({app_cpu / peer_cpu:.2f}x azure.functions alone) | "
        f"< {CPU_GOAL_S} s | {'**PASS**' if app_cpu < CPU_GOAL_S else '**MISS**'} |",
        f"| `import function_app`: peak RSS | {app_rss:.0f} MB | < {RSS_GOAL_MB} MB | "
        f"{'**PASS**' if app_rss < RSS_GOAL_MB else '**MISS**'} |",
        "",
    ]
    report("\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
