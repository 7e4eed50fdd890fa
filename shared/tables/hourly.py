"""The hourly case: a table's new rows in one commit the bridge writes itself, without delta-rs
loading the table (at a cloud's latency that load is about twenty sequential requests per table).

A measurement table's append (:func:`~shared.tables.append.commit_append`) or a snapshot table's
overwrite (:func:`~shared.tables.append.commit_overwrite`), with the same application
transactions a delta-rs write would carry; which syncs may take this way is the publisher's call
(:meth:`shared.tables.delta.DeltaPublisher.sync`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shared.model import TableChange, TableFile
from shared.tables import delta_rs, sources
from shared.tables.append import commit_append, commit_overwrite
from shared.tables.data_files import GROUP_BYTES
from shared.tables.ledger import APP_ID, TableLog, source_app_id
from shared.tables.rows import lineage_fields
from shared.tables.snapshots import current_snapshots
from shared.tables.types import table_schema

if TYPE_CHECKING:
    from shared.tables.delta import DeltaPublisher


def commit_hourly(
    publisher: DeltaPublisher,
    folder: str,
    found: TableLog,
    accepted: list[TableFile],
    columns: dict[str, str],
    organizations: list[str],
    removed: list[dict[str, Any]],
    measurement: bool,
    change: TableChange,
) -> tuple[int, dict[str, int]]:
    """The rows of ``accepted`` (of ``organizations``) in one commit after the table's version in
    ``found``, ``removed`` the files a snapshot's overwrite removes. Sets the change's version;
    returns the table's delivery number and files per month after it.

    Raises:
        CommitConflict: another writer committed that version first.
    """
    number = found.delivered.number
    months = dict(found.months)
    version = found.version
    if accepted:
        schema = pa.schema([*table_schema(columns), *lineage_fields()])
        with tempfile.TemporaryDirectory(prefix="haltian-table-") as scratch:
            local = sources.download(publisher.lake, publisher.guard, accepted, Path(scratch))
            if local:
                number += 1
                for month in _commit(
                    publisher,
                    folder,
                    found,
                    local,
                    schema,
                    number,
                    organizations,
                    removed,
                    measurement,
                    change,
                ):
                    months[month] = months.get(month, 0) + 1
                version += 1
                change.added.extend(f.key.key for f, _ in local)
    change.version = version
    return number, months


def _commit(
    publisher: DeltaPublisher,
    folder: str,
    found: TableLog,
    local: list[tuple[TableFile, Path]],
    schema: pa.Schema,
    number: int,
    organizations: list[str],
    removed: list[dict[str, Any]],
    measurement: bool,
    change: TableChange,
) -> list[str]:
    """The commit of :func:`commit_hourly`, as delivery ``number``: the months a measurement table's
    append wrote (none for a snapshot table's overwrite)."""
    transactions = [(APP_ID, number)] + [(source_app_id(f.key.key, f.source_etag), number) for f, _ in local]
    version = found.version + 1
    with publisher.budget.hold(min(sum(f.size for f, _ in local), 2 * GROUP_BYTES)):
        if measurement:
            return commit_append(
                publisher.lake,
                publisher.guard,
                folder,
                version,
                local,
                schema,
                transactions,
                publisher.run_id,
            )
        commit_overwrite(
            publisher.lake,
            publisher.guard,
            folder,
            version,
            local,
            schema,
            transactions,
            publisher.run_id,
            delta_rs.organizations_rows(organizations),
            removed,
        )
        change.removed.extend(current_snapshots(found.delivered, organizations))
    return []
