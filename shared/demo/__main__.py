"""``make demo``: the bridge end to end against local stand-ins.

Starts moto's S3 server and Azurite on free loopback ports, fills a Haltian-shaped bucket,
runs the bridge through the timer function's own entry, prints what landed per dataset, runs
it again to show nothing is copied twice, and stops the servers.

With ``--entra`` the lake authenticates as in Azure: Azurite over HTTPS on a private CA the demo
makes, in its Entra mode, and a local managed-identity endpoint; the bridge gets only
``ADLS_ACCOUNT_URL``, ``AZURE_CLIENT_ID``, the identity variables and ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import boto3
import botocore.config
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

from shared import logs
from shared.demo import servers
from shared.demo.bucket import BucketSpec
from shared.demo.export import generate
from shared.demo.identity import IdentityEndpoint
from shared.report import format_manifest
from shared.sink.connect import delta_storage_options

BUCKET = "haltian-export"
CONTAINER = "haltian"
ROOT = "raw"


@cache
def app_functions() -> dict:
    """The app's functions by name (get_functions() may be called once per app)."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def timer_function():  # noqa: ANN201 - the Functions SDK's own type
    """The Python function behind the app's timer trigger, as the host would call it."""
    return app_functions()["haltian_bridge"].get_user_function()


def tables_summary(only: str | None = None) -> str:
    """Each Delta table (or those whose folder ends with ``only``) with its version, row count, files and
    months, read back with delta-rs."""
    from deltalake import DeltaTable

    from shared.run import Bridge
    from shared.settings import Settings
    from shared.tables.sql import find_tables

    settings = Settings.from_mapping(os.environ)
    bridge = Bridge.from_settings(settings)
    options = delta_storage_options(settings, bridge.credential)
    lines = []
    for folder in find_tables(bridge.lake):
        if only is not None and not folder.endswith(only):
            continue
        table = DeltaTable(
            f"az://{CONTAINER}/{bridge.lake.path(folder).rstrip('/')}", storage_options=options
        )
        rows = table.to_pyarrow_dataset().count_rows()
        months = table.partitions() if table.metadata().partition_columns else []
        lines.append(
            f"  {bridge.lake.path(folder):50} version {table.version():>3}  {rows:>9,} rows  "
            f"{len(table.file_uris()):>5} files" + (f"  {len(months)} months" if months else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.demo", description=__doc__)
    parser.add_argument("--days", type=int, default=14, help="days of hourly legacy files (v1: a quarter)")
    parser.add_argument(
        "--backfill",
        type=int,
        metavar="WORKERS",
        default=0,
        help="instead of one timer run, backfill the history through a queue with this many workers",
    )
    parser.add_argument(
        "--entra",
        action="store_true",
        help="the lake over HTTPS with Entra tokens from a local managed identity, as in Azure",
    )
    args = parser.parse_args(argv)
    logs.configure(logging.INFO, logging.StreamHandler(sys.stderr))  # as the CLI logs on a terminal

    certificates = (
        servers.make_certificates(Path(tempfile.mkdtemp(prefix="bridge-demo-tls-"))) if args.entra else None
    )
    moto, azurite = servers.moto_server(), servers.azurite(certificates=certificates)
    queue = servers.azurite_queue(certificates=certificates) if args.backfill else None
    identity = IdentityEndpoint() if args.entra else None
    print(f"starting moto S3 on {moto.url} and Azurite on {azurite.url} ...")
    moto.start()
    try:
        azurite.start()
        if identity is not None:
            identity.start()
            os.environ.update({**identity.environ(), "REQUESTS_CA_BUNDLE": str(certificates.ca)})
            print(f"managed-identity endpoint on {identity.url}, client id {identity.client_id}")
        if queue is not None:
            queue.start()
            if identity is not None:
                os.environ["BridgeQueue__queueServiceUri"] = f"{queue.url}/{servers.AZURITE_ACCOUNT}"
            else:
                os.environ["BridgeQueue"] = servers.azurite_queue_connection_string(queue)
        return _demo(moto, azurite, args.days, args.backfill, certificates)
    finally:
        for server in (queue, azurite, moto):
            if server is not None:
                server.stop()
        if identity is not None:
            identity.stop()
        print("servers stopped")


def _backfill(workers: int) -> None:
    """Queues the whole history by partition and lets several workers copy it, as Functions instances would."""
    import threading
    from collections import Counter

    from azure.functions import QueueMessage

    from shared.backfill.local import drain, serve
    from shared.backfill.queue import enqueue_backfill
    from shared.run import Bridge
    from shared.settings import Settings

    bridge = Bridge.from_settings(Settings.from_mapping(os.environ))
    enqueued = enqueue_backfill(bridge)
    print(f"queued {len(enqueued.partitions)} (dataset, month) partitions; {workers} workers take them")
    handler = app_functions()["backfill_partition"].get_user_function()
    stop, handled = threading.Event(), Counter()
    threads = [
        threading.Thread(
            target=serve, args=(bridge.settings, lambda c: handler(QueueMessage(body=c)), stop, handled)
        )
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    total = len(enqueued.partitions)
    drain(
        bridge.settings,
        bridge.lake,
        stop,
        settle_seconds=1,
        on_tick=lambda queued, running: print(
            f"\r  partitions: {total - queued - running}/{total} done, {running} running, {queued} queued   ",
            end="",
            flush=True,
        ),
    )
    for thread in threads:
        thread.join()
    print(
        f"\n  {handled['done']} partitions copied, {handled['retried']} retried, {handled['poisoned']} poisoned"
    )


def _configure(
    moto: servers.Server, azurite: servers.Server, certificates: servers.Certificates | None
) -> BlobServiceClient:
    """The bridge's settings for the stand-ins (in ``os.environ``), and the demo's own client of the lake."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": servers.FAKE_AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": servers.FAKE_AWS_SECRET,
            "HALTIAN_S3_BUCKET": BUCKET,
            "HALTIAN_S3_ENDPOINT_URL": moto.url,
            "ADLS_CONTAINER": CONTAINER,
            "ADLS_ROOT": ROOT,
            "BRIDGE_SCHEDULE": "0 0 * * * *",
        }
    )
    account_url = f"{azurite.url}/{servers.AZURITE_ACCOUNT}"
    if (
        certificates is not None
    ):  # the bridge signs in with the managed identity; the demo's own reads use the key
        os.environ["ADLS_ACCOUNT_URL"] = account_url
        lake = BlobServiceClient(
            account_url,
            credential={"account_name": servers.AZURITE_ACCOUNT, "account_key": servers.AZURITE_KEY},
            connection_verify=str(certificates.ca),
        )
    else:
        os.environ["ADLS_CONNECTION_STRING"] = servers.azurite_connection_string(azurite)
        lake = BlobServiceClient.from_connection_string(os.environ["ADLS_CONNECTION_STRING"])
    return lake


def _demo(
    moto: servers.Server,
    azurite: servers.Server,
    days: int,
    backfill_workers: int = 0,
    certificates: servers.Certificates | None = None,
) -> int:
    lake = _configure(moto, azurite, certificates)
    started = time.monotonic()
    s3 = boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name="eu-west-1",
        config=botocore.config.Config(max_pool_connections=32),
    )
    spec = BucketSpec(legacy_hours=days * 24, v1_hours=days * 6, large_file_bytes=24 * 1024 * 1024)
    written = generate(s3, BUCKET, spec)
    print(
        f"generated {len(written):,} objects ({sum(w.size for w in written) / 1e6:,.1f} MB) "
        f"in s3://{BUCKET}/ in {time.monotonic() - started:.1f} s"
    )
    container = lake.create_container(CONTAINER)

    if backfill_workers:
        print("\n== backfill through the queue ==")
        _backfill(backfill_workers)
    bridge_timer = timer_function()
    first = (
        "first run (empty lake: a full reconcile)" if not backfill_workers else "timer run after the backfill"
    )
    for attempt in (first, "second run (nothing new)"):
        print(f"\n== {attempt}, through the timer trigger ==")
        bridge_timer(TimerRequest(past_due=False))
        manifest = json.loads(
            container.get_blob_client(f"{ROOT}/_manifests/latest.json").download_blob().readall()
        )
        print(format_manifest(manifest))
    copied_twice = manifest["totals"]["published"]  # of the second run
    print(
        f"\nthe lake: {sum(1 for _ in container.list_blobs(name_starts_with=ROOT + '/parquet/')):,} files in "
        f"{CONTAINER}/{ROOT}/parquet/; manifests in {CONTAINER}/{ROOT}/_manifests/"
    )
    print(
        "\nDelta tables in _tables/ (one per layout and dataset, apart from the mirror; a measurement table "
        "holds one file per month):"
    )
    print(tables_summary())
    if copied_twice:
        print("the second run copied files again: that is a bug", file=sys.stderr)
        return 1
    return _schema_change(container)


def _schema_change(container) -> int:  # noqa: ANN001 - the SDK's ContainerClient
    """The operator's workflow when Haltian changes a schema: show, accept, release (README)."""
    from shared import cli

    dataset = "legacy/measurementOccupantsCount"
    print(f"\n== When Haltian changes a schema: {dataset} gained a NOT NULL column ==")

    def table_line() -> str:
        lines = tables_summary("/legacy_measurementOccupantsCount/").splitlines()
        return "\n".join(line for line in lines if "/v1/" not in line)

    print(f"its table before:\n{table_line()}")
    steps = [
        ["quarantine", "list", dataset],
        ["schema", "show", dataset],
        ["schema", "accept", dataset],
        ["quarantine", "release", dataset],
    ]
    for step in steps:
        print(f"\n$ python -m shared {' '.join(step)}")
        code = cli.main(step)
        if code:
            print(f"exit code {code}: the schema-change workflow did not complete", file=sys.stderr)
            return 1
    print(f"\nits table now (the released rows and the new column included):\n{table_line()}")
    left = [
        b.name
        for b in container.list_blobs(name_starts_with=f"{ROOT}/_quarantine/")
        if "measurementOccupantsCount" in b.name
    ]
    if left:
        print(f"still in quarantine after the release: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
