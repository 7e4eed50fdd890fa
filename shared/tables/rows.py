"""A mirrored file's rows in its table's one physical schema, each naming its source.

Haltian's files spell one logical type several ways (millisecond and microsecond timestamps,
``uint32``, ``large_string``, dictionaries, files written before a column existed). A table's
data files all have the table's schema: every column is cast to the table's type (which holds
every value, see :mod:`shared.tables.types`), a column the file lacks is null, and three
lineage columns are added:

* ``_source_key``: the source object's key (the mirrored path below the lake root);
* ``_source_version``: the source object's ETag: which version of that key the row came from;
* ``_source_month``: ``YYYY-MM`` of the key's folder, the partition of measurement tables (what
  the bridge compacts once a month is closed).

The columns travel with the rows, so they survive any engine's compaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared.haltian.keys import HaltianKey
from shared.model import TableFile

SOURCE_KEY = "_source_key"
SOURCE_VERSION = "_source_version"
SOURCE_MONTH = "_source_month"
LINEAGE = (SOURCE_KEY, SOURCE_VERSION, SOURCE_MONTH)
#: Rows per record batch read from a source file: bounds the memory of a table write.
BATCH_ROWS = 65_536


def lineage_fields() -> list[pa.Field]:
    return [pa.field(name, pa.string(), nullable=True) for name in LINEAGE]


def month_of(key: HaltianKey) -> str:
    return f"{key.year:04d}-{key.month:02d}"


def table_batches(
    source: pq.ParquetFile, schema: pa.Schema, key: HaltianKey, version: str
) -> Iterator[pa.RecordBatch]:
    """The file's rows as record batches of ``schema`` (the table's columns, then the lineage;
    a lineage column of a dictionary type is built as one)."""
    lineage = {SOURCE_KEY: key.key, SOURCE_VERSION: version, SOURCE_MONTH: month_of(key)}
    for batch in source.iter_batches(batch_size=BATCH_ROWS):
        yield _conform(batch, schema, lineage)


def file_batches(
    local: list[tuple[TableFile, Path]], schema: pa.Schema
) -> Iterator[tuple[TableFile, pa.RecordBatch]]:
    """The rows of mirrored files on the scratch disk, batch by batch, each with its file."""
    for candidate, path in local:
        # Without pre-buffering, which would hold the whole file (measured: 256 MB of a 256 MB file).
        with pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20) as source:
            for batch in table_batches(source, schema, candidate.key, candidate.source_etag):
                yield candidate, batch


def _conform(batch: pa.RecordBatch, schema: pa.Schema, lineage: dict[str, str]) -> pa.RecordBatch:
    rows = batch.num_rows
    columns: list[pa.Array] = []
    for field in schema:
        if field.name in lineage:
            columns.append(_constant(lineage[field.name], rows, pa.types.is_dictionary(field.type)))
            continue
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(rows, field.type))
            continue
        column = batch.column(index)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        columns.append(column if column.type == field.type else pc.cast(column, field.type, safe=True))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _constant(value: str, rows: int, dictionary: bool) -> pa.Array:
    """One value on every row: repeated, or (``dictionary``) held once with an index per row."""
    if dictionary:
        return pa.DictionaryArray.from_arrays(pa.repeat(pa.scalar(0, pa.int32()), rows), pa.array([value]))
    return pa.repeat(pa.scalar(value, pa.string()), rows)
