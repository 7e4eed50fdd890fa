"""Other engines co-own the tables: Apache Spark with Delta Lake (Fabric's and Synapse's Spark
runtimes) reads them and maintains them, and nothing it does costs a row or a mirrored file.

Each test: the bridge writes the tables, Spark acts on one (OPTIMIZE, VACUUM, DELETE, a table
feature), Haltian delivers more files, and the bridge runs a full reconcile (``run --all``, the
run that used to add compacted files back). Expected rows come from the source files.
"""

from __future__ import annotations

import io
import random
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from shared.demo.bucket import BucketSpec, legacy_key, legacy_schema, make_table, parquet_bytes
from shared.model import PUBLISHED
from shared.run import run_once
from tests.promise import check_nothing_partial
from tests.spark import spark_on_lake, spark_rows
from tests.tables import TABLES, file_rows, same_rows, source_rows, table, table_rows, two_months_on

pytestmark = pytest.mark.integration

ORG = BucketSpec().organization
CO2 = "legacy_measurementCO2"
CO2_FOLDER = f"parquet/{ORG}/measurementCO2/"
SPEC = dict(
    legacy_hours=30,
    v1_hours=6,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
    snapshot_every_hours=12,
    bad_files=False,
)


def deliver(stack, hours: int, seed: int) -> list[dict]:
    """Haltian delivers ``hours`` more CO2 files (after the seeded ones; each seed its own hours);
    returns their rows."""
    start = BucketSpec().end + timedelta(hours=1 + seed // 10)
    rows = []
    for hour in range(hours):
        at = start + timedelta(hours=hour)
        key = legacy_key(ORG, "measurementCO2", at)
        data = parquet_bytes(make_table(legacy_schema("measurementCO2"), 5, at, random.Random(seed + hour)))
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
        rows += file_rows(data, key)
    return rows


def mirror_is_whole(stack, objects, more: int) -> None:
    """Every mirrored file still holds its source bytes, and none is missing (the fixture's three
    deliveries and ``more``)."""
    assert check_nothing_partial(stack) == len(objects) + 3 + more


@pytest.fixture
def written(stack):
    """The bucket seeded and the tables written by a first run, then three hourly deliveries and
    runs (the CO2 table's open month so has several files); the source rows of the CO2 table."""
    objects = stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    assert run_once(bridge).exit_code == 0
    rows = source_rows(objects, CO2_FOLDER)
    for hour in range(3):
        rows += deliver(stack, 1, seed=hour * 10)
        assert run_once(bridge).exit_code == 0
    return objects, rows


def test_every_table_reads_in_spark_with_the_source_rows(spark, stack, written, tmp_path) -> None:
    objects, co2 = written
    assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path), co2)
    device_folder = f"parquet/{ORG}/device/"
    newest = max((w for w, _ in objects if w.key.startswith(device_folder)), key=lambda w: w.key)
    data = next(d for w, d in objects if w is newest)
    assert same_rows(
        spark_rows(spark, stack.container, f"{TABLES}/legacy_device", tmp_path), file_rows(data, newest.key)
    )
    v1 = source_rows(objects, f"parquet/v1/{ORG}/measurementCO2/")
    assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/v1_measurementCO2", tmp_path), v1)


@pytest.mark.parametrize("operation", ["OPTIMIZE {table}", "OPTIMIZE {table} ZORDER BY (deviceId)"])
def test_after_sparks_compaction_no_row_is_added_twice(spark, stack, written, tmp_path, operation) -> None:
    objects, co2 = written
    done = spark_on_lake(spark, stack.container, f"{TABLES}/{CO2}", operation, tmp_path=tmp_path)
    assert done.results[0][0]["metrics"]["numFilesRemoved"] > 0  # Spark did compact
    more = deliver(stack, 2, seed=100)
    result = run_once(stack.bridge(), full=True)
    assert result.exit_code == 0 and result.count(PUBLISHED) == 2
    assert same_rows(table_rows(table(stack, CO2)), co2 + more)
    assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path), co2 + more)
    mirror_is_whole(stack, objects, 2)


@pytest.mark.parametrize("deletion_vectors", [False, True])
def test_rows_another_engine_deleted_stay_deleted(spark, stack, written, tmp_path, deletion_vectors) -> None:
    objects, co2 = written
    gone = sorted({r["_source_key"] for r in co2})[1]  # every row of one source file
    statements = (
        ["ALTER TABLE {table} SET TBLPROPERTIES ('delta.enableDeletionVectors' = true)"]
        if deletion_vectors
        else []
    )
    statements += [f"DELETE FROM {{table}} WHERE _source_key = '{gone}' OR co2 > 1500"]
    spark_on_lake(spark, stack.container, f"{TABLES}/{CO2}", *statements, tmp_path=tmp_path)
    kept = [r for r in co2 if r["_source_key"] != gone and not r["co2"] > 1500]
    assert len(kept) < len(co2) - 1
    more = deliver(stack, 2, seed=200)
    result = run_once(stack.bridge(), full=True)
    change = next(t for t in result.tables if t.table.endswith(CO2))
    if deletion_vectors:
        # delta-rs cannot write a table with deletion vectors: the table is left as Spark left it.
        assert change.error and "deletionVectors" in change.error and "conflict" not in change.error
        assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path), kept)
    else:
        assert result.exit_code == 0
        assert same_rows(table_rows(table(stack, CO2)), kept + more)
        assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path), kept + more)
    mirror_is_whole(stack, objects, 2)


def deliver_snapshot(stack, hours_after_seed: int, seed: int) -> tuple[str, bytes]:
    """Haltian delivers a new ``device`` snapshot (after the seeded ones and the fixture's hours)."""
    at = BucketSpec().end + timedelta(hours=hours_after_seed)
    key = legacy_key(ORG, "device", at)
    data = parquet_bytes(make_table(legacy_schema("device"), 4, at, random.Random(seed)))
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    return key, data


def test_a_snapshot_the_bridge_overwrote_itself_reads_in_spark_and_survives_sparks_rewrite(
    spark, stack, written, tmp_path
) -> None:
    """The bridge commits an hourly snapshot's overwrite itself (it removes the old snapshot's
    file); Spark reads the new snapshot and time-travels to the old one. After Spark rewrites the
    file (a DELETE: its statistics cut the key to 32 characters, so the log no longer shows whose
    rows the file holds), the next snapshot goes through delta-rs and still replaces it whole."""
    objects, _ = written
    before = table(stack, "legacy_device")
    key, data = deliver_snapshot(stack, 20, seed=41)
    assert run_once(stack.bridge()).exit_code == 0
    after = table(stack, "legacy_device")
    assert after.version() == before.version() + 1
    assert after.history(1)[0].get("engineInfo") == "haltian-azure-bridge"  # the bridge's own commit
    assert same_rows(
        spark_rows(spark, stack.container, f"{TABLES}/legacy_device", tmp_path), file_rows(data, key)
    )
    assert same_rows(
        spark_rows(spark, stack.container, f"{TABLES}/legacy_device", tmp_path, version=before.version()),
        table_rows(before),
    )

    gone = min(pq.read_table(io.BytesIO(data)).column("id").to_pylist())
    spark_on_lake(
        spark,
        stack.container,
        f"{TABLES}/legacy_device",
        "DELETE FROM {table} WHERE id = '%s'" % gone,
        tmp_path=tmp_path,
    )
    assert (
        len(spark_rows(spark, stack.container, f"{TABLES}/legacy_device", tmp_path))
        == len(file_rows(data, key)) - 1
    )
    newer, newer_data = deliver_snapshot(stack, 21, seed=42)
    result = run_once(stack.bridge(), full=True)
    assert result.exit_code == 0
    assert table(stack, "legacy_device").history(1)[0].get("engineInfo", "").startswith("delta-rs")
    assert same_rows(table_rows(table(stack, "legacy_device")), file_rows(newer_data, newer))
    assert same_rows(
        spark_rows(spark, stack.container, f"{TABLES}/legacy_device", tmp_path), file_rows(newer_data, newer)
    )
    mirror_is_whole(stack, objects, 2)


def test_vacuum_at_zero_retention_removes_nothing_the_bridge_needs(spark, stack, written, tmp_path) -> None:
    objects, co2 = written
    run = spark_on_lake(
        spark,
        stack.container,
        f"{TABLES}/{CO2}",
        "OPTIMIZE {table}",
        "VACUUM {table} RETAIN 0 HOURS",
        tmp_path=tmp_path,
    )
    assert run.deleted and all(name.startswith(f"{TABLES}/{CO2}/") for name in run.deleted)
    mirror_is_whole(stack, objects, 0)
    more = deliver(stack, 2, seed=300)
    result = run_once(stack.bridge(), full=True)
    assert result.exit_code == 0
    assert same_rows(table_rows(table(stack, CO2)), co2 + more)
    mirror_is_whole(stack, objects, 2)


def test_a_feature_the_bridge_cannot_write_stops_that_table_only_in_plain_words(
    spark, stack, written, tmp_path, monkeypatch
) -> None:
    from shared import cli

    objects, co2 = written
    spark_on_lake(
        spark,
        stack.container,
        f"{TABLES}/{CO2}",
        "ALTER TABLE {table} SET TBLPROPERTIES ('delta.feature.rowTracking' = 'supported')",
        tmp_path=tmp_path,
    )
    more = deliver(stack, 2, seed=400)
    result = run_once(stack.bridge(), full=True)
    assert result.exit_code == 1 and result.count(PUBLISHED) == 2  # the mirror carries on
    broken = [t for t in result.tables if t.error]
    assert [t.table for t in broken] == [f"{TABLES}/{CO2}"]
    error = broken[0].error
    assert "legacy_measurementCO2" in error and "rowTracking" in error and "tables rebuild" in error
    assert "conflict" not in error.lower() and "\n" not in error
    assert same_rows(table_rows(table(stack, CO2)), co2)  # as Spark left it
    mirror_is_whole(stack, objects, 2)
    assert all(t.version is not None for t in result.tables if not t.error)  # the others were committed

    # The operator rebuilds the table from the mirror; then runs and Spark go on as before.
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["tables", "rebuild", "legacy/measurementCO2"]) == cli.EXIT_OK
    assert same_rows(table_rows(table(stack, CO2)), co2 + more)
    assert run_once(stack.bridge(), full=True).exit_code == 0
    assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path), co2 + more)


def test_a_month_the_bridge_compacted_reads_in_spark(spark, stack, tmp_path, monkeypatch) -> None:
    """Two months later the seeded months are closed: the next run compacts each into one file
    (a commit of its own), and Spark reads the same rows."""
    stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    run_once(bridge)
    before = table(stack, CO2).version()
    rows = table_rows(table(stack, CO2))
    more = deliver(stack, 1, seed=500)
    two_months_on(monkeypatch)
    change = next(t for t in run_once(bridge).tables if t.table.endswith(CO2))
    assert change.compacted and table(stack, CO2).version() == before + 2
    assert same_rows(spark_rows(spark, stack.container, f"{TABLES}/{CO2}", tmp_path), rows + more)
    files = table(stack, CO2).file_uris()
    assert len(files) == len({r["_source_month"] for r in table_rows(table(stack, CO2))})  # one file a month
    for uri in files:
        path = uri.split(f"{stack.container_name}/", 1)[1]
        footer = pq.ParquetFile(io.BytesIO(stack.container.get_blob_client(path).download_blob().readall()))
        assert footer.metadata.num_row_groups == 1
