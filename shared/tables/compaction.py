"""Compaction the bridge commits itself: each due month's live files rewritten into one.

Other engines compact the same tables (Spark's ``OPTIMIZE`` and ``ZORDER``, Fabric's table
maintenance). Two compactions that read the same version remove the same files, and each adds its
own rewrite of their rows: the second must not land, or the month is in the table twice. Delta on
Spark refuses it (``ConcurrentDeleteDeleteException``); delta-rs's OPTIMIZE rebases past it (it
allows concurrent removes of ``dataChange=false`` files, and builds its commit with retries of its
own whatever the caller asks). So the bridge writes a compaction's commit itself, as it writes the
hourly append: as the version right after the one it read, with ``If-None-Match: *``. Any commit in
between, whatever it did, makes it fail; the bridge then reads the table again and decides afresh
(another engine's compaction may have done the work).

The month's files are read one at a time from the table folder (on the scratch disk, in record
batches) and streamed into one data file in row groups (:mod:`shared.tables.data_files`): memory is
a row group's, not the month's. Only a table whose log asks nothing more of a writer than to add and
remove files (:meth:`~shared.tables.ledger.TableLog.appendable`: no deletion vectors, column
mapping or other features) is compacted by the bridge; any other is left to the engine that turned
those features on.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.sink.lake import Lake
from shared.tables.append import commit_own, file_actions, now_ms, upload_all
from shared.tables.data_files import DataFile, data_file_schema, write_month_files
from shared.tables.ledger import APP_ID, TableLog
from shared.tables.rows import SOURCE_MONTH, lineage_fields
from shared.tables.types import table_schema

log = logging.getLogger(__name__)

#: The open month is compacted into one file whenever it holds more files than this (two days of
#: hourly deliveries), so it never holds more than this many and one.
OPEN_MONTH_FILES = 48
#: Rows read from a data file at a time.
_BATCH_ROWS = 64 * 1024


def due_months(months: dict[str, int], current: str) -> list[str]:
    """The months due for compaction: closed ones (before ``current``, ``YYYY-MM``) of more than
    one file, the open one past :data:`OPEN_MONTH_FILES`."""
    return sorted(m for m, count in months.items() if (m < current and count > 1) or count > OPEN_MONTH_FILES)


@dataclass(frozen=True)
class Compaction:
    """A compaction the bridge may commit: the table as it read it, and the months to rewrite."""

    folder: str
    found: TableLog
    months: list[str]

    @staticmethod
    def of(folder: str, found: TableLog, current: str) -> Compaction | None:
        """What is due in the table ``found`` (None when nothing is, or when the bridge does not
        rewrite this table's files: see the module's docstring)."""
        months = due_months(found.months, current)
        if not months:
            return None
        if not found.appendable() or found.columns() is None:
            log.info(
                "table %s: %s due for compaction, left to the engine that turned on its table features",
                folder.rstrip("/"),
                ", ".join(months),
            )
            return None
        return Compaction(folder, found, months)

    def files(self, month: str) -> list[dict[str, Any]]:
        """The month's live add actions, in path order."""
        return sorted(
            (a for a in self.found.files.values() if _month(a) == month),
            key=lambda a: str(a["path"]),
        )


def month_rows(found: TableLog, month: str) -> int | None:
    """The rows the month's live files hold, by their statistics (None when a file has none)."""
    total = 0
    for add in found.files.values():
        if _month(add) != month:
            continue
        try:
            total += int(json.loads(add.get("stats") or "{}")["numRecords"])
        except (KeyError, TypeError, ValueError):
            return None
    return total


def _month(add: dict[str, Any]) -> str | None:
    return (add.get("partitionValues") or {}).get(SOURCE_MONTH)


def commit_compaction(lake: Lake, guard: Callable[[], None], compaction: Compaction, run_id: str) -> int:
    """Rewrites each due month into one data file and commits them as the version after the one
    read, removing the files they replace (``dataChange=false``: the same rows). Returns the
    version committed.

    Raises:
        CommitConflict: another writer committed that version first (the new files are deleted).
    """
    found = compaction.found
    columns = found.columns()
    assert columns is not None  # Compaction.of checked it
    schema = data_file_schema(pa.schema([*table_schema(columns), *lineage_fields()]))
    removed = [add for month in compaction.months for add in compaction.files(month)]
    with tempfile.TemporaryDirectory(prefix="haltian-compact-") as scratch:
        written = write_month_files(
            _month_batches(lake, guard, compaction, schema, Path(scratch)), schema, Path(scratch)
        )
        uploaded = upload_all(lake, guard, compaction.folder, written)
        body = compaction_body(written, removed, found.delivered.number + 1, run_id)
    version = found.version + 1
    commit_own(lake, guard, compaction.folder, version, body, uploaded)
    return version


def _month_batches(
    lake: Lake, guard: Callable[[], None], compaction: Compaction, schema: pa.Schema, scratch: Path
) -> Iterator[tuple[str | None, pa.RecordBatch]]:
    """Each due month's rows, file by file, batch by batch, in the data files' schema."""
    for month in compaction.months:
        for add in compaction.files(month):
            for batch in data_file_batches(
                lake, guard, compaction.folder + unquote(str(add["path"])), schema, scratch
            ):
                yield month, batch


def data_file_batches(
    lake: Lake, guard: Callable[[], None], name: str, schema: pa.Schema, scratch: Path
) -> Iterator[pa.RecordBatch]:
    """A table data file's rows (the blob ``name``), batch by batch in ``schema`` (:func:`conform`),
    read from a copy on the scratch disk that is deleted once read."""
    guard()
    local = scratch / "reading.parquet"
    with local.open("wb") as target:
        lake.download_to(name, target)
    with pq.ParquetFile(local, pre_buffer=False, buffer_size=1 << 20) as source:
        for batch in source.iter_batches(batch_size=_BATCH_ROWS):
            yield conform(batch, schema)
    local.unlink()


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A table data file's batch in ``schema``: columns by name, a column the file lacks (added to
    the table after it was written) as nulls, another writer's physical types (Spark's INT96
    timestamps, plain strings for the lineage dictionaries) cast to the bridge's."""
    columns: list[pa.Array] = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        if column.type == field.type:
            columns.append(column)
        elif pa.types.is_dictionary(field.type):
            plain = column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
            columns.append(pc.cast(plain, field.type.value_type).dictionary_encode().cast(field.type))
        else:
            plain = column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
            columns.append(pc.cast(plain, field.type, safe=True))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def compaction_body(
    files: list[DataFile], removed: list[dict[str, Any]], number: int, run_id: str, data_change: bool = False
) -> bytes:
    """The commit: the bridge's delivery ``number`` (so a bridge writer that read the same version
    conflicts on it too), a remove per replaced file and an add per new one; an OPTIMIZE without
    data change, or (``data_change``, a repair of ``tables verify``) a rewrite whose rows differ."""
    modified_ms = now_ms()
    operation = (
        {"operation": "WRITE", "operationParameters": {"mode": "Overwrite", "repair": "tables verify"}}
        if data_change
        else {"operation": "OPTIMIZE", "operationParameters": {"targetSize": "one file per month"}}
    )
    actions: list[dict[str, Any]] = [
        {
            "commitInfo": {
                "timestamp": modified_ms,
                **operation,
                "isBlindAppend": False,
                "engineInfo": "haltian-azure-bridge",
                "haltian_run_id": run_id,
            }
        },
        {"txn": {"appId": APP_ID, "version": number, "lastUpdated": modified_ms}},
    ]
    return file_actions(actions, removed, files, modified_ms, data_change)
