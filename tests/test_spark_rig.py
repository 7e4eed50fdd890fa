"""The Spark rig (tests/spark.py) against a real Azurite container: Spark reads a table that
delta-rs wrote, compacts it, deletes rows and vacuums, and delta-rs reads the result back."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from shared.sink.connect import delta_storage_options
from tests.spark import SPARK_TIMES, spark_on_lake, spark_rows, upload_changes

pytestmark = pytest.mark.integration

TABLE = "haltian/raw/parquet/spark-rig"
EPOCH = datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc)  # across a summer-time change in Europe


def _at(i: int) -> datetime:
    return EPOCH + timedelta(minutes=7 * i)


def _batch(first: int) -> pa.Table:
    ids = list(range(first, first + 10))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([f"row-{i}" for i in ids], pa.string()),
            "ts": pa.array([_at(i) for i in ids], pa.timestamp("us", tz="UTC")),
        }
    )


def _data_blobs(stack) -> set[str]:
    return {n for n in stack.lake_names(TABLE + "/") if "/_delta_log/" not in n}


def test_spark_reads_optimizes_deletes_and_vacuums_a_table_in_azurite(spark, stack, tmp_path) -> None:
    started = time.monotonic()
    local = tmp_path / "delta-rs"
    for first in (0, 10, 20):  # three commits, one small file each
        write_deltalake(str(local), _batch(first), mode="append")
    uploaded = upload_changes(stack.container, TABLE, local, {}).uploaded
    assert len(uploaded) == len([p for p in local.rglob("*") if p.is_file()])
    written_files = _data_blobs(stack)
    assert len(written_files) == 3

    rows = spark_rows(spark, stack.container, TABLE, tmp_path)
    assert sorted(r["id"] for r in rows) == list(range(30))
    assert {(r["name"], r["ts"]) for r in rows} == {(f"row-{i}", _at(i)) for i in range(30)}  # aware, UTC

    run = spark_on_lake(
        spark,
        stack.container,
        TABLE,
        "OPTIMIZE {table}",
        "DELETE FROM {table} WHERE id % 3 = 0",
        "VACUUM {table} RETAIN 0 HOURS",
        tmp_path=tmp_path,
    )
    kept = [i for i in range(30) if i % 3]
    assert run.count == len(kept)
    assert run.results[0][0]["metrics"]["numFilesRemoved"] == 3  # OPTIMIZE compacted the three files
    assert run.results[1] == [{"num_affected_rows": 10}]
    assert set(run.deleted) == written_files  # VACUUM: the three files OPTIMIZE replaced, gone
    assert not any("/_delta_log/" in name for name in run.deleted)
    assert all(name.startswith(TABLE + "/") for name in run.uploaded)

    options = delta_storage_options(stack.settings(), None)
    table = DeltaTable(f"az://{stack.container_name}/{TABLE}", storage_options=options)
    assert sorted(table.to_pyarrow_table().column("id").to_pylist()) == kept
    operations = [h["operation"] for h in sorted(table.history(), key=lambda h: h["version"])]
    assert operations == ["WRITE", "WRITE", "WRITE", "OPTIMIZE", "DELETE", "VACUUM START", "VACUUM END"]
    # The container holds the live files and nothing else: VACUUM's deletions reached it.
    live = {uri.split(f"/{stack.container_name}/", 1)[1] for uri in table.file_uris()}
    assert _data_blobs(stack) == live
    assert not written_files & live

    # Spark reads back what it wrote through the container.
    assert sorted(r["id"] for r in spark_rows(spark, stack.container, TABLE, tmp_path)) == kept
    print(f"Spark started in {SPARK_TIMES.start:.1f} s; this test took {time.monotonic() - started:.1f} s")
