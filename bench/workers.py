"""What the benchmark runs in child processes, so each one's peak RSS and CPU can be read alone.

    python -m bench.workers bridge  '<json>'   one run_once() of the bridge, with request counters
    python -m bench.workers ceiling '<json>'   the plain copy loop (or the plain no-op listing)

Each prints one JSON line on stdout; logs go to stderr. The bridge's child is
:mod:`bench.bridge_worker`, the ceiling's :mod:`bench.ceiling_worker`; what they share (request
counters, the process's usage) is in :mod:`bench.counting`.
"""

from __future__ import annotations

import json
import sys

from bench.bridge_worker import bridge
from bench.ceiling_worker import ceiling


def main() -> None:
    role, config = sys.argv[1], json.loads(sys.argv[2])
    result = {"bridge": bridge, "ceiling": ceiling}[role](config)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
