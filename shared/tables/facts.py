"""What a Delta table needs to know of one Parquet file, taken from its footer."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.parquet as pq

from shared.tables.types import NoDeltaType, delta_columns


@dataclass(frozen=True)
class TableFacts:
    """A file's Delta columns, or why it cannot be in a table."""

    columns: dict[str, str] | None
    exclusion: str | None = None


def table_facts(metadata: pq.FileMetaData) -> TableFacts:
    """Delta columns from a Parquet footer (no data is read)."""
    try:
        columns = delta_columns(metadata.schema.to_arrow_schema())
    except NoDeltaType as err:
        return TableFacts(None, f"kept out of the Delta table: {err}")
    return TableFacts(columns)
