"""Reading the bridge's tables in the tests: delta-rs, DuckDB's Delta reader, and the source rows.

Expected rows come from the source files as written into the bucket, read by pyarrow; never
from the bridge's idea of them.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import duckdb_extension_delta
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from shared.demo.bucket import GOOD
from shared.sink.connect import delta_storage_options

ROOT = "haltian/raw"
TABLES = f"{ROOT}/_tables"
LINEAGE = ("_source_key", "_source_version", "_source_month")
DELTA_EXTENSION = next(
    Path(duckdb_extension_delta.__file__).parent.glob("extensions/*/delta.duckdb_extension")
)


def table(stack, name: str, root: str = ROOT) -> DeltaTable:
    """The table ``{layout}_{dataset}`` in the tables folder, read by delta-rs from the lake."""
    options = delta_storage_options(stack.settings(), None)
    return DeltaTable(f"az://{stack.container_name}/{root}/_tables/{name}", storage_options=options)


def table_rows(dt: DeltaTable) -> list[dict]:
    return pa.table(dt.to_pyarrow_table()).to_pylist()


def download_table(stack, name: str, local: Path, root: str = ROOT) -> Path:
    """A copy of the table folder, for readers that cannot read Azurite (DuckDB, Spark)."""
    prefix = f"{root}/_tables/{name}/"
    for blob in stack.lake_names(prefix):
        target = local / blob[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(stack.container.get_blob_client(blob).download_blob().readall())
    return local


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(f"LOAD '{DELTA_EXTENSION}'")
    return connection


def duckdb_count(stack, name: str, local: Path) -> int:
    """Rows of a table as DuckDB's delta reader (delta-kernel-rs) sees it."""
    download_table(stack, name, local)
    return duckdb_connection().execute("SELECT count(*) FROM delta_scan(?)", [str(local)]).fetchone()[0]


def source_rows(objects, dataset_folder: str) -> list[dict]:
    """The rows of the valid source files below a dataset folder, each with its key."""
    rows = []
    for w, data in objects:
        if w.expect == GOOD and w.key.startswith(dataset_folder) and w.rows:
            rows += file_rows(data, w.key)
    return rows


def file_rows(data: bytes, key: str) -> list[dict]:
    return [{**row, "_source_key": key} for row in pq.read_table(io.BytesIO(data)).to_pylist()]


def same_rows(actual: list[dict], expected: list[dict]) -> bool:
    """Equal as multisets of values: every table column compared (a column a source file lacks
    reads null), the lineage reduced to the key."""
    columns = sorted({c for row in actual for c in row if c not in LINEAGE} | {"_source_key"})

    def norm(rows: list[dict]) -> list[tuple]:
        return sorted(tuple(repr(_plain(row.get(c))) for c in columns) for row in rows)

    return norm(actual) == norm(expected)


def _plain(value: object) -> object:
    """A timestamp as naive UTC: Spark hands rows over without their zone (in UTC here)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def two_months_on(monkeypatch, days: int = 62) -> None:
    """Every publisher the bridge makes sees "now" ``days`` on, so the months written today are
    closed and compacted by its next run."""
    from shared.run import Bridge

    later = datetime.now(timezone.utc) + timedelta(days=days)
    make_publisher = Bridge.delta_publisher

    def publisher(self, run_id: str, **options):
        made = make_publisher(self, run_id, **options)
        made.now = lambda: later
        return made

    monkeypatch.setattr(Bridge, "delta_publisher", publisher)
