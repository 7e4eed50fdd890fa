"""The tables row of ``make bench``: what writing rows into a table and compacting a month cost.

* **Delivering rows**: N hourly files of a measurement dataset are mirrored into Azurite, then one
  table sync writes their rows into an empty table: CPU ms per file and per MB of source Parquet.
  The peer measured in the same run is reading the same mirrored files back (one GET each, which
  the sync does too) and decoding them with pyarrow: the ratio says what the table write adds.
* **Compacting a month**: a month of hourly files of the largest demo dataset, each its own
  commit (as hourly runs leave the open month), compacted by the bridge's own compaction in a
  child process: seconds and that process's peak RSS (the bound: a 2 GB Functions instance).
* **A backfill in one sync**: months of hourly files delivered into an empty table by one sync
  (what a full reconcile does: every month written already compacted), in a child process:
  seconds and peak RSS.

    .venv/bin/python -m bench.tables [--files 240] [--month-files 720] [--rows 3600]
                                     [--backfill-months 3] [--backfill-rows 1200] [--no-write]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
from azure.storage.blob import BlobServiceClient

from shared.demo import servers
from bench.data import report
from shared.demo.bucket import legacy_key, legacy_schema, make_table, parquet_bytes

ORG = "6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11"
ROOT = "bench"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _mirror(container, dataset: str, count: int, rows: int, start: datetime) -> tuple[list, int]:
    from shared.haltian.keys import parse_key
    from shared.model import TableFile

    rng = random.Random(5)
    files, size = [], 0
    for hour in range(count):
        at = start + timedelta(hours=hour)
        key = legacy_key(ORG, dataset, at)
        data = parquet_bytes(make_table(legacy_schema(dataset), rows, at, rng))
        etag = hashlib.md5(data).hexdigest()
        container.upload_blob(
            f"{ROOT}/{key}",
            data,
            overwrite=True,
            metadata={"haltian_source_etag": etag, "haltian_source_size": str(len(data))},
        )
        files.append(TableFile(parse_key(key), len(data), etag))
        size += len(data)
    return files, size


def _publisher(connection: str, container_name: str, now: datetime):
    from shared.settings import Settings
    from shared.sink.connect import delta_storage_options
    from shared.sink.lake import Lake
    from shared.tables.delta import DeltaPublisher

    settings = Settings.from_mapping(
        {
            "HALTIAN_S3_BUCKET": "unused",
            "ADLS_CONNECTION_STRING": connection,
            "ADLS_CONTAINER": container_name,
            "ADLS_ROOT": ROOT,
        }
    )
    container = BlobServiceClient.from_connection_string(connection).get_container_client(container_name)
    return DeltaPublisher(
        Lake(container, ROOT), container_name, delta_storage_options(settings, None), "bench", now=lambda: now
    )


def deliver_rows(connection: str, files_count: int, rows: int) -> dict:
    service = BlobServiceClient.from_connection_string(connection)
    container = service.create_container(f"rows{int(time.time())}")
    files, size = _mirror(
        container, "measurementCO2", files_count, rows, datetime(2026, 11, 1, tzinfo=timezone.utc)
    )
    cpu, wall = _cpu(), time.monotonic()
    for f in files:  # the peer: the same GETs, decoded by pyarrow
        pq.read_table(io.BytesIO(container.get_blob_client(f"{ROOT}/{f.key.key}").download_blob().readall()))
    peer_cpu, peer_wall = _cpu() - cpu, time.monotonic() - wall
    publisher = _publisher(connection, container.container_name, datetime(2026, 11, 30, tzinfo=timezone.utc))
    cpu, wall = _cpu(), time.monotonic()
    change = publisher.sync(files)
    sync_cpu, sync_wall = _cpu() - cpu, time.monotonic() - wall
    assert change.error is None and len(change.added) == files_count, change
    return {
        "files": files_count,
        "mb": size / 1e6,
        "sync_cpu_ms_per_file": sync_cpu * 1000 / files_count,
        "sync_cpu_ms_per_mb": sync_cpu * 1000 / (size / 1e6),
        "sync_wall_s": sync_wall,
        "read_cpu_ms_per_file": peer_cpu * 1000 / files_count,
        "read_wall_s": peer_wall,
        "ratio_cpu": sync_cpu / peer_cpu,
    }


def compact_child(connection: str, container_name: str) -> None:
    """In its own process: the month's compaction, then its peak RSS and time as JSON on stdout."""
    from shared.model import TableChange
    from shared.paths import table_folder

    publisher = _publisher(connection, container_name, datetime(2027, 1, 15, tzinfo=timezone.utc))
    folder = table_folder("legacy", "measurementCO2")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall = time.monotonic()
    change = TableChange("legacy", ORG, "measurementCO2", "bench")
    publisher.compact(folder, change)
    seconds = time.monotonic() - wall
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mb": before / 1024,
                "compacted": change.compacted,
            }
        )
    )


def backfill_child(connection: str, container_name: str) -> None:
    """In its own process: one sync of every mirrored file, then its peak RSS and time as JSON."""
    publisher = _publisher(connection, container_name, datetime(2027, 6, 1, tzinfo=timezone.utc))
    files = _listed(publisher.lake)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall = time.monotonic()
    change = publisher.sync(files)
    seconds = time.monotonic() - wall
    assert change.error is None, change.error
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mb": before / 1024,
                "files": len(change.added),
            }
        )
    )


def _listed(lake) -> list:
    from shared.tables.sources import candidate

    return [c for c in map(candidate, lake.list_entries("parquet/")) if c is not None]


def backfill(connection: str, months: int, rows: int) -> dict:
    service = BlobServiceClient.from_connection_string(connection)
    container = service.create_container(f"backfill{int(time.time())}")
    size = 0
    for month in range(months):
        start = datetime(2026, 1 + month, 1, tzinfo=timezone.utc)
        _, month_size = _mirror(container, "measurementCO2", 24 * 28, rows, start)
        size += month_size
    child = subprocess.run(
        [sys.executable, "-m", "bench.tables", "--backfill-child", connection, container.container_name],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(months=months, rows=months * 24 * 28 * rows, mb=size / 1e6)
    return result


def compact_month(connection: str, month_files: int, rows: int) -> dict:
    import pyarrow as pa
    from deltalake import write_deltalake

    from shared.paths import table_folder
    from shared.tables.rows import table_batches

    service = BlobServiceClient.from_connection_string(connection)
    container = service.create_container(f"month{int(time.time())}")
    files, size = _mirror(
        container, "measurementCO2", month_files, rows, datetime(2026, 11, 1, tzinfo=timezone.utc)
    )
    publisher = _publisher(connection, container.container_name, datetime(2026, 11, 1, tzinfo=timezone.utc))
    publisher.sync(files[:1])  # the table, created by the bridge
    uri = publisher.uri(table_folder("legacy", "measurementCO2"))
    dt = publisher.load(uri)  # each further hour its own commit, in the bridge's own rows
    schema = pa.schema(list(pa.schema(dt.schema().to_arrow())))
    for f in files[1:]:
        data = container.get_blob_client(f"{ROOT}/{f.key.key}").download_blob().readall()
        batches = list(table_batches(pq.ParquetFile(io.BytesIO(data)), schema, f.key, f.source_etag))
        write_deltalake(
            uri,
            pa.Table.from_batches(batches, schema),
            mode="append",
            storage_options=publisher.storage_options,
        )
    child = subprocess.run(
        [sys.executable, "-m", "bench.tables", "--compact-child", connection, container.container_name],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(files=month_files, rows=month_files * rows, mb=size / 1e6)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tables", description=__doc__)
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--month-files", type=int, default=720)
    parser.add_argument(
        "--rows", type=int, default=3600, help="rows per file of the month (the notes' 2.6 M)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--backfill-months", type=int, default=3)
    parser.add_argument("--backfill-rows", type=int, default=1200, help="rows per file of the backfill")
    parser.add_argument(
        "--compact-child", nargs=2, metavar=("CONNECTION", "CONTAINER"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--backfill-child", nargs=2, metavar=("CONNECTION", "CONTAINER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.compact_child:
        compact_child(*args.compact_child)
        return 0
    if args.backfill_child:
        backfill_child(*args.backfill_child)
        return 0
    azurite = servers.azurite().start()
    try:
        connection = servers.azurite_connection_string(azurite)
        rows = deliver_rows(connection, args.files, 20)
        month = compact_month(connection, args.month_files, args.rows)
        history = backfill(connection, args.backfill_months, args.backfill_rows)
    finally:
        azurite.stop()
    text = (
        f"\n## Tables ({datetime.now(timezone.utc):%Y-%m-%d}, `python -m bench.tables`, load "
        f"{os.getloadavg()[0]:.2f})\n\n"
        f"- delivering rows of {rows['files']} small files ({rows['mb']:.1f} MB) into an empty table, one sync: "
        f"{rows['sync_cpu_ms_per_file']:.1f} ms CPU per file, {rows['sync_cpu_ms_per_mb']:.0f} ms per MB, "
        f"{rows['sync_wall_s']:.1f} s; the peer (the same GETs decoded by pyarrow) "
        f"{rows['read_cpu_ms_per_file']:.1f} ms per file: {rows['ratio_cpu']:.2f}x the peer's CPU\n"
        f"- compacting a month of {month['files']} hourly commits ({month['rows']:,} rows, {month['mb']:.0f} MB of "
        f"source Parquet) into one file: {month['seconds']:.1f} s, peak RSS of the compacting process "
        f"{month['peak_rss_mb']:.0f} MB ({month['rss_before_mb']:.0f} MB before it started)\n"
        f"- a backfill of {history['months']} months ({history['files']} files, {history['rows']:,} rows, "
        f"{history['mb']:.0f} MB) into an empty table in one sync: {history['seconds']:.1f} s, peak RSS "
        f"{history['peak_rss_mb']:.0f} MB ({history['rss_before_mb']:.0f} MB before it started)\n"
    )
    report(text, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
