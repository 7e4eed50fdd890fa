"""The writes that go through delta-rs's writer: one commit of a delivery's rows (a new table's
first rows, an append, a changed source file's rows replaced, an organization's snapshot swapped),
and a new table's creation with the bridge's table settings.

A measurement table's plain append is streamed (:mod:`shared.tables.append`) even here: delta-rs
only commits it. Everything else is written by delta-rs, which holds its input until it commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from deltalake.transaction import CommitProperties, Transaction

from shared.errors import TransientError
from shared.model import TableChange, TableFile
from shared.tables import delta_rs
from shared.tables.append import append_streamed, streamable
from shared.tables.data_files import GROUP_BYTES
from shared.tables.ledger import APP_ID, Delivered, source_app_id
from shared.tables.rows import SOURCE_KEY, SOURCE_MONTH
from shared.tables.snapshots import current_snapshots

if TYPE_CHECKING:
    from shared.tables.delta import DeltaPublisher

#: Readers replay at most this many JSON commits before a checkpoint.
CHECKPOINT_INTERVAL = 10
#: Delta's default: log entries older than this go at checkpoint time; time travel reaches this far.
LOG_RETENTION = "interval 30 days"
#: Files of up to about 512 MB (Fabric asks for 400 MB-1 GB; a Haltian month is far smaller).
TARGET_FILE_BYTES = 512 << 20
_CONFIGURATION = {
    "delta.checkpointInterval": str(CHECKPOINT_INTERVAL),
    "delta.logRetentionDuration": LOG_RETENTION,
}


class TableConflict(TransientError):
    """Another writer changed the table first: reload it and try again."""


def commit_rows(
    publisher: DeltaPublisher,
    uri: str,
    table: DeltaTable | None,
    local: list[tuple[TableFile, Path]],
    schema: pa.Schema,
    merge: bool,
    delivered: Delivered,
    measurement: bool,
    number: int,
    change: TableChange,
) -> DeltaTable | None:
    """One commit of ``publisher``'s table: these files' rows, as delivery ``number``.

    A measurement table's plain append (no replaced file, no new column) is streamed
    (:mod:`shared.tables.append`); the rest goes through delta-rs's writer, which holds its
    input in memory (a new measurement table is created empty first, so that its first rows
    stream too)."""
    properties = commit_properties(publisher.run_id, number, [(f.key.key, f.source_etag) for f, _ in local])
    replaced = sorted({f.key.key for f, _ in local if f.key.key in delivered.versions}) if measurement else []
    if measurement and table is None:
        publisher.guard()
        table = create_empty(
            uri, schema, local[0][0].key.dataset, publisher.storage_options, publisher.run_id
        )
        merge = False
    if measurement and table is not None and not replaced and not merge and streamable(table):
        with publisher.budget.hold(min(sum(f.size for f, _ in local), 2 * GROUP_BYTES)):
            append_streamed(
                publisher.lake, publisher.guard, table, local, schema, properties, delta_rs.hooks()
            )
        change.added.extend(f.key.key for f, _ in local)
        return table
    reader = pa.RecordBatchReader.from_batches(schema, delta_rs.batches(local, schema))
    organizations = sorted({f.key.organization for f, _ in local})
    options = _write_options(
        publisher.storage_options, properties, table, merge, measurement, local, replaced, organizations
    )
    with publisher.budget.hold(sum(f.size for f, _ in local)):
        publisher.guard()
        if table is None:
            create(uri, reader, measurement, options, local[0][0].key.dataset)
            table = publisher.load(uri)
        else:
            write_deltalake(table, reader, **options)  # brings ``table`` to the version it committed
            change.removed.extend(replaced if measurement else current_snapshots(delivered, organizations))
    change.added.extend(f.key.key for f, _ in local)
    return table


def _write_options(
    storage_options: dict[str, str],
    properties: CommitProperties,
    table: DeltaTable | None,
    merge: bool,
    measurement: bool,
    local: list[tuple[TableFile, Path]],
    replaced: list[str],
    organizations: list[str],
) -> dict[str, Any]:
    """delta-rs's write of :func:`commit_rows`: an append, the rows of ``replaced`` source keys
    swapped, or ``organizations``' snapshots swapped (a new table: its first rows)."""
    options: dict[str, Any] = dict(
        storage_options=storage_options,
        commit_properties=properties,
        writer_properties=delta_rs.writer_properties(),
        target_file_size=TARGET_FILE_BYTES,
        post_commithook_properties=delta_rs.hooks(),
    )
    if table is not None:
        options["schema_mode"] = "merge" if merge else None
        if measurement and replaced:
            # A source file whose bytes changed: its old rows go in the commit that adds the new ones.
            options.update(
                mode="overwrite", predicate=delta_rs.is_in(SOURCE_KEY, [f.key.key for f, _ in local])
            )
        elif measurement:
            options["mode"] = "append"
        else:
            # One commit swaps each organization's snapshot; other organizations' rows stay.
            options.update(mode="overwrite", predicate=delta_rs.organizations_rows(organizations))
    return options


def create(
    uri: str, reader: pa.RecordBatchReader, measurement: bool, options: dict[str, Any], dataset: str
) -> None:
    with _created_first():
        write_deltalake(
            uri,
            reader,
            mode="error",
            name=dataset,
            partition_by=[SOURCE_MONTH] if measurement else None,
            configuration=_CONFIGURATION,
            **options,
        )


def create_empty(
    uri: str, schema: pa.Schema, dataset: str, storage_options: dict[str, str], run_id: str
) -> DeltaTable:
    """A new measurement table with no rows yet (version 0: its schema and settings only)."""
    with _created_first():
        return DeltaTable.create(
            uri,
            schema,
            mode="error",
            partition_by=[SOURCE_MONTH],
            name=dataset,
            configuration=_CONFIGURATION,
            storage_options=storage_options,
            commit_properties=CommitProperties(
                custom_metadata={"haltian_run_id": run_id}, max_commit_retries=0
            ),
        )


def commit_properties(run_id: str, number: int, sources: list[tuple[str, str]]) -> CommitProperties:
    """A bridge commit's properties: its run, and the application transactions of delivery
    ``number`` and of each ``(source key, etag)`` it delivers (see :mod:`shared.tables.ledger`)."""
    return CommitProperties(
        custom_metadata={"haltian_run_id": run_id},
        app_transactions=[Transaction(APP_ID, number)]
        + [Transaction(source_app_id(key, etag), number) for key, etag in sources],
        max_commit_retries=0,
    )


@contextmanager
def _created_first() -> Iterator[None]:
    """Another writer's table creation that won the race is a conflict: load it and try again."""
    try:
        yield
    except DeltaError as err:
        if "already exists" not in str(err):
            raise
        raise TableConflict("another writer created the table first") from err
