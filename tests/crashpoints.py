"""Crash points: every lake write a run makes, killed before and after (as ALICE, SQLite's crash
tests and FoundationDB's simulation do it).

The bridge runs in a process of its own (``python -m shared run --all``, the timer's code path,
or an operator's command: :data:`OPERATIONS`)
and talks to Azurite through a proxy that sees every request. A first run records the sequence
of writes. Then, for each write k, a fresh bucket and lake get the same history, and the run
is killed with SIGKILL, as the host stops a process, the moment its k-th write reaches the
proxy (the write never reaches the lake) or the moment Azurite has done it (the run never hears
so). Then what follows goes on as it would: once the killed process's lease has expired, an
operator's command is run again (the operator saw it fail), the timer's next run, and the daily
full reconcile; :mod:`tests.crashcheck` checks the lake right after the kill and after each.

A write is any request that changes the lake, less lease renewals (the lock's heartbeat, not
the run's work) and staged blocks (invisible until their block list is committed).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from shared.demo.bucket import legacy_key, legacy_schema, make_table, parquet_bytes, v1_key, v1_schema
from shared.admin import accept_schema
from shared.run import run_once
from shared.sink.connect import delta_storage_options
from tests import crashcheck
from tests.faultproxy import CRASH_AFTER, CRASH_BEFORE, PASS, FaultProxy

PROJECT = Path(__file__).resolve().parents[1]
ORG = "6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11"
ROOT = "haltian/raw"
LEASE_SECONDS = 15
WRITES = ("PUT", "POST", "DELETE", "PATCH")
SNAPSHOT_TABLES = {"legacy_device"}


def write_kind(method: str, path: str) -> str | None:
    """What a request writes, by the lake folder it writes to; None for a read, a lease renewal
    or a staged block."""
    if method not in WRITES:
        return None
    parts = urlsplit(path)
    comp = parse_qs(parts.query).get("comp", [""])[0]
    if comp in ("lease", "block"):
        return None
    name = parts.path.split(f"/{ROOT}/", 1)[-1]
    if name.startswith("_tables/"):
        what = "table log" if "/_delta_log/" in name else "table data"
    elif name.startswith("_manifests/index/"):
        what = "index entry"
    elif name.startswith("_manifests/latest"):
        what = "latest.json"
    elif name.startswith("_manifests/"):
        what = "manifest"
    elif name.startswith("_state/"):
        what = name.removeprefix("_state/")
    elif name.startswith("parquet/"):
        what = "mirror"
    else:
        what = name.split("/", 1)[0].removeprefix("_")
    return f"{what} ({method} {comp})" if comp else f"{what} ({method})"


@dataclass
class Scenario:
    """A small but complete history: a first run's lake, then a delivery with something of each
    kind for the run under test.

    The run under test (a full reconcile) copies measurements of the open and the closed month
    (the closed month then holds two table files, so it is compacted), a new entity snapshot, a
    file of a dataset never seen (its first-seen schema is recorded), a file with an added
    column (additive drift: published, the table's schema grows), a file with a new column that
    is not nullable (breaking drift: quarantined, until an operator accepts its schema and
    releases it) and a file that is not Parquet (quarantined for good); then tables, manifest,
    index entry, ``latest.json``, reconcile state.
    """

    now: datetime = field(
        default_factory=lambda: datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    )

    def first(self) -> dict[str, bytes]:
        rng = random.Random(1)
        closed = self.now.replace(day=1) - timedelta(days=3)
        return {
            legacy_key(ORG, "measurementCO2", closed): self._co2(closed, rng),
            legacy_key(ORG, "measurementCO2", self.now - timedelta(hours=3)): self._co2(
                self.now - timedelta(hours=3), rng
            ),
            legacy_key(ORG, "device", self.now - timedelta(hours=3)): parquet_bytes(
                make_table(legacy_schema("device"), 4, self.now - timedelta(hours=3), rng)
            ),
        }

    def second(self) -> dict[str, bytes]:
        rng = random.Random(2)
        closed = self.now.replace(day=1) - timedelta(days=2)
        drifted = make_table(legacy_schema("measurementCO2"), 5, self.now - timedelta(hours=1), rng)
        drifted = drifted.append_column("firmware", pa.array(["1.2.3"] * drifted.num_rows))
        v1_start = self.now - timedelta(hours=1)
        breaking = legacy_schema("measurementCO2").append(pa.field("sensorConfidence", pa.int32(), False))
        return {
            self.breaking(): parquet_bytes(make_table(breaking, 4, self.now - timedelta(hours=5), rng)),
            legacy_key(ORG, "measurementCO2", closed): self._co2(closed, rng),  # late: the closed month
            legacy_key(ORG, "measurementCO2", self.now - timedelta(hours=2)): self._co2(
                self.now - timedelta(hours=2), rng
            ),
            legacy_key(ORG, "measurementCO2", self.now - timedelta(hours=1)): parquet_bytes(drifted),
            legacy_key(ORG, "device", self.now - timedelta(hours=1)): parquet_bytes(
                make_table(legacy_schema("device"), 5, self.now - timedelta(hours=1), rng)
            ),
            v1_key(ORG, "measurementCO2", v1_start, v1_start + timedelta(hours=1)): parquet_bytes(
                make_table(v1_schema("measurementCO2"), 6, v1_start, rng)
            ),
            self.broken(): b"not a parquet file, cut off by the exporter",
        }

    def broken(self) -> str:
        return legacy_key(ORG, "measurementTVOC", self.now)

    def breaking(self) -> str:
        return legacy_key(ORG, "measurementCO2", self.now - timedelta(hours=5))

    @staticmethod
    def _co2(at: datetime, rng: random.Random) -> bytes:
        return parquet_bytes(make_table(legacy_schema("measurementCO2"), rng.randint(3, 9), at, rng))


@dataclass
class Point:
    """Write ``index`` (1-based) of the recorded sequence, killed ``when`` ("before"/"after") it."""

    index: int
    kind: str
    when: str

    def __str__(self) -> str:
        return f"{self.when} write {self.index} ({self.kind})"


@dataclass
class Killed:
    """A lake whose run under test was killed, waiting for the timer's next runs."""

    point: Point
    stack: object
    killed_at: float
    forward: crashcheck.Forward
    fired: bool


@dataclass(frozen=True)
class Operation:
    """What is killed: a command line, on a lake prepared for it."""

    command: tuple[str, ...]
    copied_first: bool = False  # a run copies the second delivery before it
    accepted_first: bool = False  # an operator accepts the breaking file's schema before it
    released: bool = False  # the breaking file ends published, not quarantined


OPERATIONS = {
    "run": Operation(("run", "--all")),
    "tables rebuild": Operation(("tables", "rebuild", "legacy/measurementCO2"), copied_first=True),
    "quarantine release": Operation(
        ("quarantine", "release", "legacy/measurementCO2"),
        copied_first=True,
        accepted_first=True,
        released=True,
    ),
}


class Harness:
    """Runs the scenario once per crash point, each on a bucket and a lake of its own."""

    def __init__(self, make_stack, moto, azurite, operation: str = "run") -> None:
        self.make_stack = make_stack
        self.moto = moto
        self.azurite = azurite
        self.scenario = Scenario()
        self.operation = OPERATIONS[operation]

    def quarantined(self) -> set[str]:
        """What must be in quarantine once the operation is done."""
        kept = {self.scenario.broken()}
        return kept if self.operation.released else kept | {self.scenario.breaking()}

    def record(self) -> list[str]:
        """The run under test's writes, in order, on a lake of its own (nothing killed)."""
        stack = self._prepared()
        kinds: list[str] = []
        lock = threading.Lock()

        def rule(method: str, path: str) -> str:
            if (kind := write_kind(method, path)) is not None:
                with lock:
                    kinds.append(kind)
            return PASS

        code = self._run_under_test(stack, rule, lambda: None)
        assert code == 0, f"the run under test failed without a crash (exit {code})"
        return kinds

    def kill(self, point: Point) -> Killed:
        stack = self._prepared()
        forward = crashcheck.Forward()
        lake = self.lake(stack)
        forward.check(lake)
        seen = {"writes": 0, "fired": False}
        lock = threading.Lock()
        process: dict[str, subprocess.Popen] = {}

        def crash() -> None:
            os.kill(process["run"].pid, signal.SIGKILL)
            process["run"].wait()

        def rule(method: str, path: str) -> str:
            if write_kind(method, path) is None:
                return PASS
            with lock:
                seen["writes"] += 1
                if seen["writes"] != point.index or seen["fired"]:
                    return PASS
                seen["fired"] = True
            return CRASH_BEFORE if point.when == "before" else CRASH_AFTER

        self._run_under_test(stack, rule, crash, process)
        killed_at = time.monotonic()
        crashcheck.check_any_moment(lake, stack.s3, stack.bucket)
        forward.check(lake)
        return Killed(point, stack, killed_at, forward, seen["fired"])

    def finish(self, killed: Killed) -> None:
        """What follows once the killed process's lease has expired: an operator's command is run
        again (it failed before the operator's eyes), then the timer's next run and the daily
        full reconcile; then the whole check."""
        time.sleep(max(0.0, killed.killed_at + LEASE_SECONDS + 1 - time.monotonic()))
        stack = killed.stack
        lake = self.lake(stack)
        if self.operation.command[0] != "run":
            env = {**os.environ, **stack.env(BRIDGE_LOCK_SECONDS=str(LEASE_SECONDS))}
            again = subprocess.run(
                [sys.executable, "-m", "shared", *self.operation.command],
                cwd=PROJECT,
                env=env,
                capture_output=True,
                timeout=180,
            )
            assert again.returncode == 0, (
                f"{' '.join(self.operation.command)} run again failed: "
                f"{again.stderr.decode(errors='replace').strip()[-500:]}"
            )
            crashcheck.check_any_moment(lake, stack.s3, stack.bucket)
        for full in (False, True):
            run_once(stack.bridge(BRIDGE_LOCK_SECONDS=str(LEASE_SECONDS)), full=full)
            crashcheck.check_any_moment(lake, stack.s3, stack.bucket)
            killed.forward.check(lake)
        crashcheck.check_finished(lake, stack.s3, stack.bucket, self.quarantined(), SNAPSHOT_TABLES)

    def lake(self, stack) -> crashcheck.Lake:
        options = delta_storage_options(stack.settings(), None)
        return crashcheck.Lake(stack.container, ROOT, options, stack.container_name)

    def _prepared(self):
        """A bucket and a lake holding the first run's history, and the second delivery."""
        stack = self.make_stack(self.moto, self.azurite)
        for key, data in self.scenario.first().items():
            stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
        run_once(stack.bridge(BRIDGE_LOCK_SECONDS=str(LEASE_SECONDS)), full=True)
        for key, data in self.scenario.second().items():
            stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
        if self.operation.copied_first:
            run_once(stack.bridge(BRIDGE_LOCK_SECONDS=str(LEASE_SECONDS)), full=True)
        if self.operation.accepted_first:
            accept_schema(stack.bridge(BRIDGE_LOCK_SECONDS=str(LEASE_SECONDS)), "legacy/measurementCO2")
        return stack

    def _run_under_test(self, stack, rule, crash, process: dict | None = None) -> int:
        proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule, crash=crash)
        env = {**os.environ, **stack.env(BRIDGE_LOCK_SECONDS=str(LEASE_SECONDS), BRIDGE_MAX_CONCURRENCY="1")}
        env["ADLS_CONNECTION_STRING"] = env["ADLS_CONNECTION_STRING"].replace(stack.azurite.url, proxy.url)
        try:
            run = subprocess.Popen(
                [sys.executable, "-m", "shared", *self.operation.command],
                cwd=PROJECT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if process is not None:
                process["run"] = run
            _, stderr = run.communicate(timeout=180)
        finally:
            proxy.close()
        if process is None and run.returncode != 0:
            sys.stderr.write(stderr.decode(errors="replace")[-3000:])
        return run.returncode


def sample(kinds: list[str]) -> list[Point]:
    """The first write of each kind, before and after it (``make test``)."""
    first = {kind: index for index, kind in reversed(list(enumerate(kinds, start=1)))}
    return [
        Point(index, kind, when)
        for kind, index in sorted(first.items(), key=lambda item: item[1])
        for when in ("before", "after")
    ]


def every(kinds: list[str]) -> list[Point]:
    """Every write, before and after (``make soak``)."""
    return [
        Point(index, kind, when) for index, kind in enumerate(kinds, start=1) for when in ("before", "after")
    ]
