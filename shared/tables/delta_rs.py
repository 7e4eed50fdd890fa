"""How the bridge drives delta-rs: its writer's properties, the post-commit hooks (checkpoints,
log clean-up), predicates, and the rows a write reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from deltalake import WriterProperties
from deltalake.transaction import PostCommitHookProperties

from shared.model import TableFile
from shared.tables.data_files import ROW_GROUP_ROWS
from shared.tables.rows import SOURCE_KEY, file_batches


def batches(local: list[tuple[TableFile, Path]], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    return (batch for _, batch in file_batches(local, schema))


def writer_properties() -> WriterProperties:
    return WriterProperties(max_row_group_size=ROW_GROUP_ROWS, compression="SNAPPY")


def hooks() -> PostCommitHookProperties:
    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=True)


def is_in(column: str, values: list[str]) -> str:
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in sorted(set(values)))
    return f"{column} IN ({quoted})"


def organizations_rows(organizations: list[str]) -> str:
    """The predicate of an overwrite that swaps these organizations' snapshots (others' rows stay)."""
    return " OR ".join(f"{SOURCE_KEY} LIKE '%/{organization}/%'" for organization in organizations)
