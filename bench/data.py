"""The benchmark's input: real Parquet files in Haltian's legacy key layout, generated once.

Everything generated is kept below ``bench/out/data/`` (ignored by git) and reused by later
runs of the benchmark, so only the first run pays for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.demo.bucket import (
    LEGACY_MEASUREMENTS,
    TS_MS,
    legacy_key,
    legacy_schema,
    make_table,
    parquet_bytes,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
OUT = BENCH_DIR / "out"
DATA = OUT / "data"

ORG = "6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11"
KB = 1000
MiB = 1024 * 1024

#: Datasets of the small-file workload (legacy measurements, each with a shipped contract).
SMALL_DATASETS = LEGACY_MEASUREMENTS[:8]
#: Datasets of the no-op workload's history.
NOOP_DATASETS = LEGACY_MEASUREMENTS[:6]
LARGE_DATASET = "measurementAmbientTemperature"


@dataclass(frozen=True)
class SourceFile:
    key: str
    size: int
    path: Path


def report(text: str, write: bool) -> None:
    """Prints a benchmark's section and, with ``write``, appends it to ``bench/RESULTS.md``."""
    print(text)
    if write:
        with RESULTS.open("a") as results:
            results.write(text)


def _hour(now: datetime) -> datetime:
    return now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


# --- small files -------------------------------------------------------------------------


def small_files(
    count: int, seed: int = 11, min_bytes: int = 2 * KB, max_bytes: int = 200 * KB, days: int = 90
) -> list[SourceFile]:
    """``count`` Parquet files whose sizes are log-uniform between ``min_bytes`` and ``max_bytes``.

    Spread evenly over ``SMALL_DATASETS`` and over the ``days`` before a fixed end hour, so
    they fall into several month folders. Generated once; later calls read the cache.
    """
    folder = DATA / f"small-{count}-s{seed}"
    index = folder / "index.json"
    if index.exists():
        entries = json.loads(index.read_text())
        return [SourceFile(e["key"], e["size"], folder / e["file"]) for e in entries]
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    end = datetime(2026, 10, 1, tzinfo=timezone.utc)
    per_row = {}
    overhead = {}
    for dataset in SMALL_DATASETS:
        schema = legacy_schema(dataset)
        one = len(parquet_bytes(make_table(schema, 1, end, random.Random(0))))
        many = len(parquet_bytes(make_table(schema, 1001, end, random.Random(0))))
        overhead[dataset], per_row[dataset] = one, (many - one) / 1000
    per_dataset = math.ceil(count / len(SMALL_DATASETS))
    step_hours = max(1, days * 24 // per_dataset)
    entries = []
    for i in range(count):
        dataset = SMALL_DATASETS[i % len(SMALL_DATASETS)]
        at = end - timedelta(hours=1 + (i // len(SMALL_DATASETS)) * step_hours)
        target = math.exp(rng.uniform(math.log(min_bytes), math.log(max_bytes)))
        rows = max(1, round((target - overhead[dataset]) / per_row[dataset]))
        data = parquet_bytes(make_table(legacy_schema(dataset), rows, at, rng))
        name = f"{i:06d}.parquet"
        (folder / name).write_bytes(data)
        entries.append({"key": legacy_key(ORG, dataset, at), "size": len(data), "file": name, "rows": rows})
    index.write_text(json.dumps(entries))
    return [SourceFile(e["key"], e["size"], folder / e["file"]) for e in entries]


# --- large files -------------------------------------------------------------------------


def _large_table(rows: int, seed: int, start_ms: int) -> pa.Table:
    """Random device ids (997 devices), a timestamp every 7 ms, random temperatures (15-27 C)."""
    devices = pa.array([f"dev-{i:04d}" for i in range(997)], pa.string())
    picks = pc.floor(pc.multiply(pc.random(rows, initializer=seed), len(devices))).cast(pa.int32())
    temperatures = pc.add(pc.multiply(pc.random(rows, initializer=seed + 1000), 12.0), 15.0)
    return pa.table(
        {
            "deviceId": pc.take(devices, picks),
            "ts": pa.array(range(start_ms, start_ms + rows * 7, 7), pa.int64()).cast(TS_MS),
            "organizationId": pa.nulls(rows, pa.string()),
            "ambientTemperature": temperatures.cast(pa.float32()),
        },
        schema=legacy_schema(LARGE_DATASET),
    )


def _write_large(path: Path, rows: int, seed: int, start_ms: int) -> int:
    table = _large_table(rows, seed, start_ms)
    pq.write_table(table, path, compression="none", row_group_size=1024 * 1024)
    return path.stat().st_size


def large_files(count: int, target_bytes: int) -> list[SourceFile]:
    """``count`` uncompressed Parquet files of about ``target_bytes`` each (within 1 %).

    The schema is the legacy ``measurementAmbientTemperature`` contract, so the bridge
    publishes them (not quarantine). Generated once and reused.
    """
    folder = DATA / f"large-{target_bytes}"
    folder.mkdir(parents=True, exist_ok=True)
    end = datetime(2026, 9, 1, tzinfo=timezone.utc)
    files = []
    bytes_per_row = None
    for i in range(count):
        at = end - timedelta(hours=1 + i)
        path = folder / f"{i:02d}.parquet"
        marker = folder / f"{i:02d}.done"
        if not (marker.exists() and path.exists()):
            start_ms = int(at.timestamp() * 1000)
            if bytes_per_row is None:
                sample = folder / "sample.parquet"
                bytes_per_row = _write_large(sample, 1_000_000, 99, start_ms) / 1_000_000
                sample.unlink()
            rows = int(target_bytes / bytes_per_row)
            size = _write_large(path, rows, i, start_ms)
            if abs(size - target_bytes) > target_bytes / 100:  # one correction is enough
                rows = int(rows * target_bytes / size)
                _write_large(path, rows, i, start_ms)
            marker.write_text("ok")
        files.append(SourceFile(legacy_key(ORG, LARGE_DATASET, at), path.stat().st_size, path))
    return files


# --- the no-op workload's history --------------------------------------------------------


@dataclass(frozen=True)
class History:
    """``count`` hourly keys over ``NOOP_DATASETS``, newest first, ending at ``end``."""

    count: int
    end: datetime
    keys: list[tuple[str, str]]  # (key, dataset)
    bodies: dict[str, bytes]  # dataset -> the one tiny Parquet file all its keys hold

    @property
    def months(self) -> list[str]:
        return sorted({k.split("/")[3] + "-" + k.split("/")[4] for k, _ in self.keys})

    def etag(self, dataset: str) -> str:
        return hashlib.md5(self.bodies[dataset]).hexdigest()


def history(count: int, now: datetime) -> History:
    """Keys going back hour by hour from ``now`` across the datasets, newest first.

    Every key of a dataset holds the same tiny but real Parquet file (one row, ~1.5 kB): the
    ledger compares ETag and size, and the Delta tables need a readable footer.
    """
    end = _hour(now)
    rng = random.Random(5)
    bodies = {d: parquet_bytes(make_table(legacy_schema(d), 1, end, rng)) for d in NOOP_DATASETS}
    keys = []
    for i in range(count):
        dataset = NOOP_DATASETS[i % len(NOOP_DATASETS)]
        at = end - timedelta(hours=i // len(NOOP_DATASETS))
        keys.append((legacy_key(ORG, dataset, at), dataset))
    return History(count, end, keys, bodies)
