"""A table's data files as the bridge writes them (see :mod:`shared.tables.append` for why): the
rows of the mirrored files streamed into one Parquet file per month partition, in row groups, with
the Delta statistics of each file's add action gathered as it is written, and uploaded into the
table folder.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from shared.sink.lake import ALWAYS, Lake
from shared.tables.rows import LINEAGE, SOURCE_MONTH


#: Direct Lake reads best from row groups of 1-16 million rows; a million keeps a writer's buffer small.
ROW_GROUP_ROWS = 1 << 20
#: Arrow memory of the rows buffered for one row group.
GROUP_BYTES = 32 << 20
#: Bytes per staged block of an uploaded data file.
UPLOAD_BLOCK_BYTES = 8 << 20


@dataclass(frozen=True)
class DataFile:
    """One data file written for a table: where it goes in the table, and its add action's stats."""

    path: str
    local: Path
    month: str | None  # its month partition; None in an unpartitioned (snapshot) table
    stats: str

    @property
    def partition_values(self) -> dict[str, str]:
        return {} if self.month is None else {SOURCE_MONTH: self.month}

    def add_action(self, modified_ms: int) -> AddAction:
        return AddAction(
            self.path, self.local.stat().st_size, self.partition_values, modified_ms, True, self.stats
        )


class FileStats:
    """A data file's Delta statistics, gathered from its batches as they are written, as delta-rs
    writes them: the row count; each column's null count; the least and greatest value of each
    column of a number, string, date, boolean or UTC timestamp type (timestamps to the
    millisecond, as Delta's writers truncate them and its readers expect). NaN is left out of
    the bounds as delta-rs leaves it; a column holding an infinity, and decimals, get none (a
    JSON number cannot say the one and can misstate the other)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.rows = 0
        self.nulls = {f.name: 0 for f in schema if not pa.types.is_nested(f.type)}
        self.bounded = [f.name for f in schema if _bounded(f.type)]
        self.low: dict[str, Any] = {}
        self.high: dict[str, Any] = {}
        self.unbounded: set[str] = set()  # an infinity: no bound a JSON number can say

    def add(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for name in self.nulls:
            self.nulls[name] += batch.column(name).null_count
        for name in self.bounded:
            values = batch.column(name)
            if pa.types.is_dictionary(values.type):
                values = values.dictionary  # every value the column holds, once
            low, high = (scalar.as_py() for scalar in pc.min_max(values).values())
            if low is None or (isinstance(low, float) and math.isnan(low)):
                continue  # no values, or only NaN (min_max skips NaN among numbers)
            if isinstance(low, float) and not (math.isfinite(low) and math.isfinite(high)):
                self.unbounded.add(name)
            if name not in self.low or low < self.low[name]:
                self.low[name] = low
            if name not in self.high or high > self.high[name]:
                self.high[name] = high

    def json(self) -> str:
        low = {k: _json(v) for k, v in self.low.items() if k not in self.unbounded}
        high = {k: _json(v) for k, v in self.high.items() if k not in self.unbounded}
        stats = {"numRecords": self.rows, "minValues": low, "maxValues": high, "nullCount": self.nulls}
        return json.dumps(stats, separators=(",", ":"))


def _bounded(arrow: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow):
        arrow = arrow.value_type
    if pa.types.is_timestamp(arrow):
        return arrow.tz is not None
    return bool(
        pa.types.is_integer(arrow)
        or pa.types.is_floating(arrow)
        or pa.types.is_string(arrow)
        or pa.types.is_large_string(arrow)
        or pa.types.is_date32(arrow)
        or pa.types.is_boolean(arrow)
    )


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return value


def write_month_files(
    batches: Iterator[tuple[str | None, pa.RecordBatch]], schema: pa.Schema, scratch: Path
) -> list[DataFile]:
    """Writes ``(month, batch)`` pairs (grouped by month, in order) into one data file per month
    (month None: one file outside any partition)."""
    files: list[DataFile] = []
    writer: _MonthWriter | None = None
    for month, batch in batches:
        if writer is None or writer.month != month:
            if writer is not None:
                files.append(writer.close())
            writer = _MonthWriter(month, schema, scratch)
        writer.add(batch)
    if writer is not None:
        files.append(writer.close())
    return files


def data_file_schema(schema: pa.Schema, partitioned: bool = True) -> pa.Schema:
    """The columns of a data file of a table of ``schema``: all but the partition column of a
    partitioned table (its value is in the add action, as Delta lays partitions out), the lineage
    columns as dictionaries."""
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), pa.string()), nullable=True)
            if f.name in LINEAGE
            else f
            for f in schema
            if not (partitioned and f.name == SOURCE_MONTH)
        ]
    )


class _MonthWriter:
    def __init__(self, month: str | None, schema: pa.Schema, scratch: Path) -> None:
        self.month = month
        name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        self.path = name if month is None else f"{SOURCE_MONTH}={month}/{name}"
        self.local = scratch / name
        self.schema = schema
        self.stats = FileStats(schema)
        self._writer = pq.ParquetWriter(self.local, schema, compression="snappy", store_schema=False)
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = self._buffered_bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        self.stats.add(batch)
        self._buffer.append(batch)
        self._buffered_rows += batch.num_rows
        self._buffered_bytes += batch.nbytes
        if self._buffered_bytes >= GROUP_BYTES or self._buffered_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(
                pa.Table.from_batches(self._buffer, self.schema), row_group_size=max(self._buffered_rows, 1)
            )
        self._buffer = []
        self._buffered_rows = self._buffered_bytes = 0

    def close(self) -> DataFile:
        self._flush()
        self._writer.close()
        return DataFile(self.path, self.local, self.month, self.stats.json())


def upload(lake: Lake, table_folder: str, data_file: DataFile) -> None:
    """Puts a data file into the table folder: one Put Blob, or blocks and one Put Block List."""
    relative = table_folder + data_file.path
    size = data_file.local.stat().st_size
    with data_file.local.open("rb") as source:
        if size <= UPLOAD_BLOCK_BYTES:
            lake.put(relative, source.read(), metadata={}, condition=ALWAYS)
            return
        write = uuid.uuid4().hex
        block_ids: list[str] = []
        while block := source.read(UPLOAD_BLOCK_BYTES):
            block_ids.append(lake.stage(relative, len(block_ids), block, write))
        lake.commit(relative, block_ids, md5=None, metadata={}, condition=ALWAYS)
