"""The bridge's compaction against another engine's, with the interleaving forced.

Spark with Delta (the engine of Fabric's and Synapse's Spark, and of Fabric's table maintenance)
compacts or Z-orders a measurement table while the bridge compacts the same closed month. A proxy
in front of Azurite holds the bridge's commit (the Put Blob of the log's next version) until the
other writer has taken that version, so the race happens every time, in the order each test names.

Whatever the order, afterwards every source version's rows are in the table exactly as often as in
its source file (the file Haltian delivered, read with pyarrow) and Spark reads the same rows.
Delta on Spark refuses a commit that removes a file another commit removed
(``ConcurrentDeleteDeleteException``); delta-rs's OPTIMIZE rebases past it, which is the defect
these tests were written to show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import re
import threading
from collections import Counter

import pytest
from azure.core.exceptions import ResourceExistsError

from shared.demo.bucket import BucketSpec
from shared.model import RunResult
from shared.run import Bridge, run_once
from shared.settings import Settings
from shared.tables.sources import candidate
from tests.faultproxy import PASS, FaultProxy
from tests.promise import check_nothing_partial
from tests.spark import download_table, spark_on_lake, spark_rows, upload_changes
from tests.tables import TABLES, file_rows, same_rows, table, table_rows, two_months_on
from tests.test_other_engines import CO2, CO2_FOLDER, SPEC, deliver, deliver_snapshot
from tests.test_reliability import proxied_env

pytestmark = pytest.mark.integration


class HeldCommit:
    """A proxy rule: the bridge's Put Blob of ``table``'s log version ``version`` waits until
    :meth:`release`; every other request passes."""

    def __init__(self, table_name: str, version: int) -> None:
        self.pattern = re.compile(rf"/{re.escape(table_name)}/_delta_log/{version:020d}\.json(\?|$)")
        self.reached = threading.Event()
        self.released = threading.Event()

    def __call__(self, method: str, path: str) -> str:
        if method == "PUT" and self.pattern.search(path):
            self.reached.set()
            assert self.released.wait(120), "the held commit was never released"
        return PASS

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def closed_month(stack):
    """A CO2 table whose month holds several files (a first run, then three hourly deliveries),
    and the source rows of every file, by key."""
    objects = stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    assert run_once(bridge).exit_code == 0
    for hour in range(3):
        deliver(stack, 1, seed=hour * 10)
        assert run_once(bridge).exit_code == 0
    months = Counter(r["_source_month"] for r in table_rows(table(stack, CO2)))
    assert len(table(stack, CO2).file_uris()) > len(months)  # some month holds more than one file
    return objects


def source_counts(stack) -> Counter:
    """Rows per source version as Haltian delivered them: each mirrored CO2 file's rows, read from
    the source bucket with pyarrow."""
    counts: Counter = Counter()
    for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=CO2_FOLDER):
        for obj in page.get("Contents", []):
            data = stack.s3.get_object(Bucket=stack.bucket, Key=obj["Key"])["Body"].read()
            counts[obj["Key"]] += len(file_rows(data, obj["Key"]))
    return counts


def table_counts(rows: list[dict]) -> Counter:
    return Counter(r["_source_key"] for r in rows)


def assert_exact(stack, spark, tmp_path) -> None:
    """Every source version's rows once: as delta-rs reads the table and as Spark does."""
    expected = source_counts(stack)
    assert table_counts(table_rows(table(stack, CO2))) == expected
    assert table_counts(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path)) == expected
    versions = Counter((r["_source_key"], r["_source_version"]) for r in table_rows(table(stack, CO2)))
    assert len(versions) == sum(1 for n in expected.values() if n)  # one version of each key with rows
    mirror_holds_the_source(stack)


def mirror_holds_the_source(stack) -> None:
    """Every object in the bucket (the spec has no bad file) is mirrored, each blob holding its
    source version's bytes, whatever the other engine did to the tables."""
    listed = sum(
        len(page.get("Contents", []))
        for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
    )
    assert check_nothing_partial(stack) == listed


def proxied_bridge(stack, proxy: FaultProxy) -> Bridge:
    return Bridge.from_settings(Settings.from_mapping(proxied_env(stack, None, proxy)))


@contextmanager
def bridge_held_at(
    stack, table_name: str, version: int, run: Callable[[Bridge], RunResult]
) -> Iterator[dict]:
    """Starts ``run`` on a bridge whose lake is behind a proxy, in a thread, and yields once the
    bridge is held at its Put of ``table_name``'s log version ``version``: the other writer acts in
    the ``with`` block. Then the commit is let go and the run finishes; its result is in the
    yielded dict under ``"result"``."""
    held = HeldCommit(table_name, version)
    proxy = FaultProxy(stack.azurite.port, azure=True, rule=held)
    outcome: dict = {}

    def body() -> None:
        try:
            outcome["result"] = run(proxied_bridge(stack, proxy))
        except BaseException as err:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = err

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        assert held.reached.wait(120), f"the bridge never tried to commit version {version} of {table_name}"
        yield outcome
        held.release()
        thread.join(300)
    finally:
        held.release()
        proxy.close()
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")


def full_run(bridge: Bridge) -> RunResult:
    return run_once(bridge, full=True)


@pytest.mark.parametrize("operation", ["OPTIMIZE {table}", "OPTIMIZE {table} ZORDER BY (deviceId)"])
def test_spark_compacts_first_and_the_bridges_compaction_does_not_land_over_it(
    spark, stack, closed_month, tmp_path, monkeypatch, operation
) -> None:
    """The issue's race: both read version v; Spark commits v+1 (it removed the month's files);
    the bridge's compaction of the same files must not land as v+2."""
    two_months_on(monkeypatch)
    with bridge_held_at(stack, CO2, table(stack, CO2).version() + 1, full_run) as outcome:
        done = spark_on_lake(spark, stack.container, f"{TABLES}/{CO2}", operation, tmp_path=tmp_path)
        assert done.results[0][0]["metrics"]["numFilesRemoved"] > 0  # Spark did compact
    result = outcome["result"]
    change = next(t for t in result.tables if t.table.endswith(CO2)) if result.tables else None
    assert change is None or not change.error
    assert_exact(stack, spark, tmp_path)
    assert_verified(stack)


def test_the_bridge_compacts_first_and_sparks_commit_of_that_version_fails(
    spark, stack, closed_month, tmp_path, monkeypatch
) -> None:
    """The other order: Spark read version v and compacted it; the bridge commits v+1 first, so
    Spark's commit of v+1 fails (Delta's log store writes a commit only if absent). Spark's retry
    then finds nothing left to do twice."""
    two_months_on(monkeypatch)
    local = tmp_path / "spark-first-read"
    before = download_table(stack.container, f"{TABLES}/{CO2}", local)
    spark.sql(f"OPTIMIZE delta.`{local.resolve().as_posix()}`").collect()
    result = run_once(stack.bridge(), full=True)
    assert result.exit_code == 0
    assert next(t for t in result.tables if t.table.endswith(CO2)).compacted
    with pytest.raises(ResourceExistsError):
        upload_changes(stack.container, f"{TABLES}/{CO2}", local, before)
    spark_on_lake(spark, stack.container, f"{TABLES}/{CO2}", "OPTIMIZE {table}", tmp_path=tmp_path)
    assert_exact(stack, spark, tmp_path)
    assert_verified(stack)


def test_two_bridge_writers_compacting_the_same_month_commit_it_once(
    spark, stack, closed_month, tmp_path, monkeypatch
) -> None:
    """A timer run and a backfill worker's table sync compact the same closed month: the one
    held at its commit finds the other's compaction and does not add the month again."""
    two_months_on(monkeypatch)
    with bridge_held_at(stack, CO2, table(stack, CO2).version() + 1, full_run):
        other = stack.bridge().delta_publisher("other-writer")
        files = [f for f in map(candidate, other.lake.list_entries(CO2_FOLDER)) if f is not None]
        change = other.sync(files)
        assert not change.error and change.compacted
    assert_exact(stack, spark, tmp_path)
    assert_verified(stack)


def assert_verified(stack) -> None:
    """``tables verify`` agrees: no version of the CO2 table missing or duplicated."""
    from shared.admin_tables import verify_tables

    (check,) = verify_tables(stack.bridge(), "legacy/measurementCO2")
    assert check.exact and check.versions, check.lines()


def test_a_snapshot_swap_racing_sparks_optimize_leaves_the_newest_snapshot_once(
    spark, stack, closed_month, tmp_path
) -> None:
    """The bridge's overwrite of the device snapshot, held at its commit while Spark Z-orders the
    table (it rewrites the live snapshot's file): the bridge reads the table again and swaps the
    snapshot over Spark's file, so the table holds the newest snapshot's rows once."""
    name = "legacy_device"
    version = table(stack, name).version()
    key, data = deliver_snapshot(stack, 20, seed=41)
    with bridge_held_at(stack, name, version + 1, run_once) as outcome:
        done = spark_on_lake(
            spark, stack.container, f"{TABLES}/{name}", "OPTIMIZE {table} ZORDER BY (id)", tmp_path=tmp_path
        )
        assert done.results[0][0]["metrics"]["numFilesRemoved"] > 0
    assert outcome["result"].exit_code == 0
    expected = file_rows(data, key)
    assert same_rows(table_rows(table(stack, name)), expected)
    assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/{name}", tmp_path), expected)
    mirror_holds_the_source(stack)
