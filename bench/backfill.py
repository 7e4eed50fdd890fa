"""The backfill row of ``make bench``: a history copied by 1, 2 and 4 queue workers.

Each worker is a thread that plays the Functions host for the queue trigger
(``shared.backfill.local.serve``) and calls the app's own queue function. Workers share one
process here, so on this 2-core machine they share its cores and its interpreter; in Azure each
worker is an instance of its own. Rounds alternate (1, 2, 4, 1, 2, 4, ...), medians reported,
and the scaling ratio is against the 1-worker time of the same run.

    .venv/bin/python -m bench.backfill [--months 6] [--per-month 60] [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import boto3
import botocore.config
from azure.storage.blob import BlobServiceClient

from bench.data import report
from shared.demo import servers
from shared.demo.bucket import legacy_key, legacy_schema, make_table, parquet_bytes

DATASETS = ("measurementCO2", "measurementTVOC", "measurementAmbientTemperature", "measurementBatteryVoltage")
ORG = "6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11"
WORKER_COUNTS = (1, 2, 4)


def seed(s3, bucket: str, months: int, per_month: int) -> tuple[int, int]:
    rng = random.Random(3)
    start = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    files = size = 0
    for back in range(months):
        first = (start - timedelta(days=31 * back)).replace(day=1)
        for i in range(per_month):
            at = first + timedelta(hours=i * 12)
            for dataset in DATASETS:
                body = parquet_bytes(make_table(legacy_schema(dataset), rng.randint(10, 400), at, rng))
                s3.put_object(Bucket=bucket, Key=legacy_key(ORG, dataset, at), Body=body)
                files += 1
                size += len(body)
    return files, size


def one_round(
    workers: int, moto: servers.Server, queue: servers.Server, azurite: servers.Server, bucket: str, tag: str
) -> float:
    from azure.functions import QueueMessage

    import function_app
    from shared.backfill.local import drain, serve
    from shared.backfill.queue import enqueue_backfill
    from shared.run import build_bridge
    from shared.settings import Settings

    container = f"backfill-{tag}"
    BlobServiceClient.from_connection_string(servers.azurite_connection_string(azurite)).create_container(
        container
    )
    env = {
        "HALTIAN_S3_BUCKET": bucket,
        "HALTIAN_S3_ENDPOINT_URL": moto.url,
        "ADLS_CONNECTION_STRING": servers.azurite_connection_string(azurite),
        "ADLS_CONTAINER": container,
        "BridgeQueue": servers.azurite_queue_connection_string(queue),
        "BRIDGE_BACKFILL_QUEUE": f"q-{tag}",
    }
    os.environ.update(env)
    bridge = build_bridge(Settings.from_mapping(env))
    handler = _functions(function_app)["backfill_partition"].get_user_function()
    started = time.monotonic()
    enqueue_backfill(bridge)
    stop, handled = threading.Event(), Counter()
    threads = [
        threading.Thread(
            target=serve, args=(bridge.settings, lambda c: handler(QueueMessage(body=c)), stop, handled)
        )
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    finished = drain(bridge.settings, bridge.lake, stop, settle_seconds=0.5, timeout=1800)
    elapsed = time.monotonic() - started
    for thread in threads:
        thread.join()
    if not finished or handled["retried"] or handled["poisoned"]:
        print(f"  note: {workers} workers: finished={finished}, {dict(handled)}", file=sys.stderr)
    return elapsed


_FUNCTIONS: dict = {}


def _functions(function_app):  # noqa: ANN001, ANN202 - get_functions() may be called once per app
    if not _FUNCTIONS:
        _FUNCTIONS.update({f.get_function_name(): f for f in function_app.app.get_functions()})
    return _FUNCTIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--per-month", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", servers.FAKE_AWS_KEY_ID)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", servers.FAKE_AWS_SECRET)
    import logging

    logging.basicConfig(level=logging.WARNING)
    files, size, partitions, times = _measure(args)
    report(_table(args, files, size, partitions, times), write=not args.no_write)
    return 0


def _measure(args: argparse.Namespace) -> tuple[int, int, int, dict[int, list[float]]]:
    """Seeds the history, then the alternating rounds: files, bytes, partitions and each worker
    count's times."""
    moto, azurite, queue = (
        servers.moto_server().start(),
        servers.azurite().start(),
        servers.azurite_queue().start(),
    )
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name="eu-west-1",
            config=botocore.config.Config(max_pool_connections=32),
        )
        s3.create_bucket(Bucket="backfill", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        files, size = seed(s3, "backfill", args.months, args.per_month)
        partitions = args.months * len(DATASETS)
        times: dict[int, list[float]] = {n: [] for n in WORKER_COUNTS}
        for round_ in range(args.rounds):
            for workers in WORKER_COUNTS:
                elapsed = one_round(workers, moto, queue, azurite, "backfill", f"r{round_}w{workers}")
                times[workers].append(elapsed)
                print(
                    f"round {round_ + 1}: {workers} workers {elapsed:6.2f} s  {files / elapsed:6.1f} files/s"
                )
    finally:
        for server in (queue, azurite, moto):
            server.stop()
    return files, size, partitions, times


def _table(
    args: argparse.Namespace, files: int, size: int, partitions: int, times: dict[int, list[float]]
) -> str:
    """The section of RESULTS.md: the medians by worker count and the speed-up against one worker."""
    base = statistics.median(times[1])
    lines = [
        "",
        "## Backfill: one history, 1, 2 and 4 queue workers",
        "",
        f"{files:,} files ({size / 1e6:,.1f} MB) in {partitions} (dataset, month) partitions; "
        f"median of {args.rounds} alternating rounds; each worker copies with BRIDGE_MAX_CONCURRENCY=8.",
        "",
        "| workers | seconds | files/s | MB/s | speed-up vs 1 worker |",
        "|---:|---:|---:|---:|---:|",
    ]
    for workers in WORKER_COUNTS:
        median = statistics.median(times[workers])
        lines.append(
            f"| {workers} | {median:.2f} | {files / median:.1f} | {size / 1e6 / median:.2f} | "
            f"{base / median:.2f}x |"
        )
    lines += [
        "",
        "Workers here are threads of one process on a 2-core machine: they share two cores and one",
        "interpreter, so the speed-up shows how the partitioning and the queue add up, not what more",
        "machines give. In Azure each worker is a Functions instance with cores of its own, and the",
        "queue trigger's batchSize (4) and newBatchThreshold (2) put up to 6 partitions on each.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
