"""What the benchmark measures and how: the scales, one tool's measurement, the child processes
it runs (CPU and peak RSS from /proc and rusage), and the machine it ran on."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import BENCH_DIR, OUT

PROJECT_ROOT = BENCH_DIR.parent
LOGS = OUT / "logs"
PROFILE = OUT / "profile.txt"
TOOLS = ("bridge", "rclone", "ceiling")
#: The ceiling's configurations tried in round 1: thread pool width x Content-MD5 on each PUT.
#: (Azurite ingests blocks several times faster when a request carries Content-MD5, so a
#: ceiling without it would be no ceiling; the fastest configuration is kept.)
#: The ceiling's trials: (threads, client). "sdk" is boto3 + azure-storage-blob; "raw" is the bridge's own
#: GET and Blob requests (shared.transport), without anything else.
CEILING_TRIALS = tuple((c, client) for client in ("sdk", "raw") for c in (8, 16, 32))
MB = 1_000_000
CHILD_TIMEOUT_S = 3600


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    small_files: int
    large_files: int
    large_bytes: int
    histories: tuple[int, int]
    rounds: int


FULL = Scale(
    small_files=2000, large_files=4, large_bytes=256 * 1024 * 1024, histories=(10_000, 100_000), rounds=3
)
QUICK = Scale(
    small_files=200, large_files=2, large_bytes=16 * 1024 * 1024, histories=(1_000, 5_000), rounds=1
)


@dataclass
class Measurement:
    """One run of one tool."""

    workload: str
    tool: str
    round: int
    wall_s: float
    files: int
    bytes: int
    rss_mb: float | None
    concurrency: int
    s3_requests: dict[str, int] = field(default_factory=dict)
    azure_requests: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    container: str = ""

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s if self.wall_s else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.wall_s if self.wall_s else 0.0


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    maxrss_kib: int
    cpu_user_s: float
    cpu_sys_s: float

    @property
    def rss_mb(self) -> float | None:
        return self.maxrss_kib * 1024 / MB if self.maxrss_kib else None

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


class Processes:
    """Children and servers this benchmark started; all are stopped on the way out."""

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen] = {}
        self.servers: list[Any] = []
        self._lock = threading.Lock()

    def run(
        self,
        cmd: list[str],
        *,
        name: str,
        capture: bool,
        env: dict[str, str] | None = None,
        timeout: float = CHILD_TIMEOUT_S,
    ) -> tuple[int, str, Usage, float]:
        """Runs a child to its end: (exit code, stdout, its own peak RSS and CPU, wall seconds).

        The child is started through bench/_spawn.py, which reads its rusage with wait4.
        """
        LOGS.mkdir(parents=True, exist_ok=True)
        usage_path = OUT / f"usage-{os.getpid()}-{name}.json"
        usage_path.unlink(missing_ok=True)
        wrapped = [sys.executable, "-S", str(BENCH_DIR / "_spawn.py"), str(usage_path), "--", *cmd]
        with open(LOGS / f"{name}.log", "w") as logfile:
            begun = time.perf_counter()
            process = subprocess.Popen(
                wrapped,
                stdout=subprocess.PIPE if capture else logfile,
                stderr=logfile,
                cwd=PROJECT_ROOT,
                env=env,
                start_new_session=True,
            )
            with self._lock:
                self.children[process.pid] = process
            timer = threading.Timer(timeout, self._kill, (process,))
            timer.start()
            try:
                out = process.stdout.read().decode() if capture else ""
                process.wait()
            finally:
                timer.cancel()
                if process.stdout:
                    process.stdout.close()
                with self._lock:
                    self.children.pop(process.pid, None)
            wall = time.perf_counter() - begun
        try:
            usage = Usage(**json.loads(usage_path.read_text()))
            usage_path.unlink()
        except (OSError, ValueError):
            usage = Usage(0, 0.0, 0.0)
        return process.returncode, out, usage, wall

    @staticmethod
    def _kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def start_server(self, server: Any) -> Any:
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        with self._lock:
            children = list(self.children.values())
        for process in children:
            self._kill(process)
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.kill()  # both hold only this run's in-memory data
        self.servers.clear()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return 0.0


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else 0.0


def machine_details() -> dict[str, str]:
    import azure.storage.blob
    import boto3
    import deltalake
    import moto
    import pyarrow

    from shared.demo.servers import AZURITE_BIN

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"

    def version(cmd: list[str]) -> str:
        try:
            env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env).stdout
            return out.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "not found"

    azurite_bin = (
        str(AZURITE_BIN) if AZURITE_BIN.exists() else (shutil.which("azurite-blob") or "azurite-blob")
    )
    commit = version(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = version(
        ["git", "--no-optional-locks", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--", "shared"]
    )
    return {
        "bridge code": f"git {commit}, shared/ "
        + ("with uncommitted changes" if dirty != "not found" else "clean"),
        "CPU": cpu,
        "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable)",
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "rclone": version(["rclone", "version"]),
        "Azurite": version([azurite_bin, "--version"]) + " (in memory, --skipApiVersionCheck --loose)",
        "Node.js": version(["node", "--version"]),
        "libraries": f"moto {moto.__version__}, boto3 {boto3.__version__}, "
        f"azure-storage-blob {azure.storage.blob.__version__}, pyarrow {pyarrow.__version__}, "
        f"deltalake {deltalake.__version__}",
    }
