"""Appending rows to a measurement table while holding only a row group of them.

delta-rs's writer holds a write's whole input in memory until it commits (measured: one
256 MiB source file took 1.2 to 2.2 GB). An append needs nothing that writer adds (no
predicate, no schema change, no constraint to check), so the bridge writes the table's data
files itself, as delta-rs would name and lay them out:

* one data file per month partition (``_source_month=YYYY-MM/part-...-c000.snappy.parquet``),
  streamed with pyarrow from the mirrored files' record batches, in row groups of at most
  :data:`~shared.tables.data_files.ROW_GROUP_ROWS` rows or
  :data:`~shared.tables.data_files.GROUP_BYTES` of Arrow memory (:mod:`shared.tables.data_files`);
* the partition column left out of the file (its value is in the add action), the other
  lineage columns held as dictionaries (one value per file) rather than repeated strings, and
  written without an Arrow schema, so every reader sees the table's plain string columns;
* uploaded into the table folder in blocks (invisible to readers: no log names them yet), then
  committed with the same application transactions a write would carry: by delta-rs
  (:func:`append_streamed`), or, when the table's log asks nothing more of a writer, by the bridge
  itself (:func:`commit_append`: the hourly case, with no delta-rs load of the table).

A snapshot table's hourly overwrite is written the same way when its log shows which files hold
the rows it replaces (:func:`commit_overwrite`): one data file, one commit removing those files.

A file uploaded by a write whose commit fails is deleted; one left by a crash is in no commit,
so no reader sees it (a VACUUM removes it).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from azure.core.exceptions import AzureError
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import CommitProperties, PostCommitHookProperties

from shared.errors import TransientError, describe
from shared.model import TableFile
from shared.sink.lake import IF_MISSING, Lake, PublishConflict
from shared.sink.lock import LockLost
from shared.paths import DELTA_LOG, table_folder
from shared.tables.data_files import DataFile, data_file_schema, upload, write_month_files
from shared.tables.rows import SOURCE_MONTH, file_batches, month_of

log = logging.getLogger(__name__)


def streamable(table: DeltaTable) -> bool:
    """Whether an append may bypass delta-rs's writer: the table asks nothing of a writer but
    to add files (protocol writer 2 at most: no check constraints, generated columns, column
    mapping or features another engine turned on) and no column carries an invariant."""
    protocol = table.protocol()
    if protocol.min_writer_version > 2 or protocol.writer_features:
        return False
    return not any(
        "delta.invariants" in (field.metadata or {}) or not field.nullable  # NOT NULL: an invariant
        for field in table.schema().fields
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def append_streamed(
    lake: Lake,
    guard: Callable[[], None],
    table: DeltaTable,
    local: list[tuple[TableFile, Path]],
    schema: pa.Schema,
    properties: CommitProperties,
    hooks: PostCommitHookProperties,
) -> None:
    """Writes the rows of ``local`` month by month into data files, uploads them, and adds them
    to ``table`` in one commit by delta-rs with ``properties`` (``guard`` is called before every
    upload and the commit). Files no commit will name (a lost lock, a conflict) are deleted;
    after any other error the commit may have landed, so they stay."""
    key = local[0][0].key
    folder = table_folder(key.layout, key.dataset)
    with tempfile.TemporaryDirectory(prefix="haltian-append-") as scratch:
        files, uploaded = _write_and_upload(lake, guard, folder, local, schema, Path(scratch))
        modified = now_ms()
        try:
            table.create_write_transaction(
                [f.add_action(modified) for f in files],
                mode="append",
                schema=table.schema(),
                partition_by=[SOURCE_MONTH],
                commit_properties=properties,
                post_commithook_properties=hooks,
            )
        except CommitFailedError:
            _delete_quietly(lake, uploaded)
            raise
    table.update_incremental()  # to the version it committed (a write transaction leaves it behind)


def commit_append(
    lake: Lake,
    guard: Callable[[], None],
    folder: str,
    version: int,
    local: list[tuple[TableFile, Path]],
    schema: pa.Schema,
    transactions: list[tuple[str, int]],
    run_id: str,
) -> list[str]:
    """As :func:`append_streamed`, but committed by the bridge itself: one Put Blob of the log's
    commit ``version`` that only lands while there is none (``If-None-Match: *``, the mutual
    exclusion every Delta writer on Azure relies on), holding a commitInfo, the application
    transactions ``(app id, number)`` and an add action per data file. For a table whose log
    :meth:`~shared.tables.ledger.TableLog.appendable` allows it; returns the months written.

    Raises:
        CommitConflict: another writer committed ``version`` first (the files are deleted).
    """
    with tempfile.TemporaryDirectory(prefix="haltian-append-") as scratch:
        files, uploaded = _write_and_upload(lake, guard, folder, local, schema, Path(scratch))
        body = commit_body(files, transactions, run_id, now_ms())
    commit_own(lake, guard, folder, version, body, uploaded)
    return [f.month for f in files if f.month is not None]


def commit_overwrite(
    lake: Lake,
    guard: Callable[[], None],
    folder: str,
    version: int,
    local: list[tuple[TableFile, Path]],
    schema: pa.Schema,
    transactions: list[tuple[str, int]],
    run_id: str,
    predicate: str,
    removed: list[dict[str, Any]],
) -> None:
    """A snapshot table's overwrite committed by the bridge itself, as :func:`commit_append`: the
    rows of ``local`` in one data file (the table is not partitioned), and one commit that adds it
    and removes ``removed`` (live add actions whose rows all match ``predicate``). For a table whose
    log :meth:`~shared.tables.ledger.TableLog.overwritable` allows it and shows what to remove
    (:meth:`~shared.tables.ledger.TableLog.replaced_by`).

    Raises:
        CommitConflict: another writer committed ``version`` first (the file is deleted).
    """
    with tempfile.TemporaryDirectory(prefix="haltian-overwrite-") as scratch:
        files, uploaded = _write_and_upload(
            lake, guard, folder, local, schema, Path(scratch), partitioned=False
        )
        body = commit_body(files, transactions, run_id, now_ms(), overwrite=(predicate, removed))
    commit_own(lake, guard, folder, version, body, uploaded)


def commit_own(
    lake: Lake, guard: Callable[[], None], folder: str, version: int, body: bytes, uploaded: list[str]
) -> None:
    """Puts the log's commit ``version`` (``body``) only while there is none (``If-None-Match: *``,
    the mutual exclusion every Delta writer on Azure relies on). The data files in ``uploaded``
    are deleted when it cannot land; after any other error it may have landed, so they stay.

    Raises:
        CommitConflict: another writer committed ``version`` first.
    """
    name = f"{folder}{DELTA_LOG}{version:020d}.json"
    try:
        guard()
        lake.put(name, body, metadata={}, condition=IF_MISSING)
    except PublishConflict as err:
        if lake.read_bytes(name) == body:  # this very commit, retried after a lost answer
            return
        _delete_quietly(lake, uploaded)
        raise CommitConflict(f"another writer committed version {version} first") from err
    except LockLost:  # nothing committed
        _delete_quietly(lake, uploaded)
        raise


class CommitConflict(TransientError):
    """Another writer committed the table's next version first: read the log again, try again."""


def commit_body(
    files: list[DataFile],
    transactions: list[tuple[str, int]],
    run_id: str,
    modified_ms: int,
    overwrite: tuple[str, list[dict[str, Any]]] | None = None,
) -> bytes:
    """A Delta commit (newline-delimited JSON actions) adding ``files`` with these app transactions;
    with ``overwrite`` (a predicate, and the live add actions of the files whose rows all match
    it), an overwrite that removes those files."""
    mode: dict[str, str] = (
        {"mode": "Append"} if overwrite is None else {"mode": "Overwrite", "predicate": overwrite[0]}
    )
    actions: list[dict[str, Any]] = [
        {
            "commitInfo": {
                "timestamp": modified_ms,
                "operation": "WRITE",
                "operationParameters": mode,
                "isBlindAppend": overwrite is None,
                "engineInfo": "haltian-azure-bridge",
                "haltian_run_id": run_id,
            }
        }
    ]
    actions += [
        {"txn": {"appId": app_id, "version": number, "lastUpdated": modified_ms}}
        for app_id, number in transactions
    ]
    return file_actions(actions, overwrite[1] if overwrite else [], files, modified_ms, data_change=True)


def file_actions(
    head: list[dict[str, Any]],
    removed: list[dict[str, Any]],
    added: list[DataFile],
    modified_ms: int,
    data_change: bool,
) -> bytes:
    """A commit's body: ``head`` (its commitInfo and txns), a remove action per live add action in
    ``removed``, an add action per data file in ``added``, as newline-delimited JSON."""
    actions = list(head)
    actions += [
        {
            "remove": {
                "path": add["path"],
                "deletionTimestamp": modified_ms,
                "dataChange": data_change,
                "extendedFileMetadata": True,
                "partitionValues": add.get("partitionValues") or {},
                "size": add["size"],
            }
        }
        for add in removed
    ]
    actions += [
        {
            "add": {
                "path": f.path,
                "partitionValues": f.partition_values,
                "size": f.local.stat().st_size,
                "modificationTime": modified_ms,
                "dataChange": data_change,
                "stats": f.stats,
            }
        }
        for f in added
    ]
    return "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in actions).encode()


def _write_and_upload(
    lake: Lake,
    guard: Callable[[], None],
    folder: str,
    local: list[tuple[TableFile, Path]],
    schema: pa.Schema,
    scratch: Path,
    partitioned: bool = True,
) -> tuple[list[DataFile], list[str]]:
    """The month files of ``local``'s rows (one file when not ``partitioned``), written to
    ``scratch`` and uploaded into ``folder`` (``guard`` called before each upload and after the
    last); on any failure the uploaded ones are deleted."""
    streamed = data_file_schema(schema, partitioned)
    ordered = sorted(local, key=lambda item: (month_of(item[0].key), item[0].key.key))
    files = write_month_files(
        ((month_of(f.key) if partitioned else None, batch) for f, batch in file_batches(ordered, streamed)),
        streamed,
        scratch,
    )
    return files, upload_all(lake, guard, folder, files)


def upload_all(lake: Lake, guard: Callable[[], None], folder: str, files: list[DataFile]) -> list[str]:
    """Uploads data files into the table ``folder`` (``guard`` called before each upload and after
    the last); returns their names. On any failure the ones uploaded are deleted: no commit names
    them yet."""
    uploaded: list[str] = []
    try:
        for data_file in files:
            guard()
            uploaded.append(folder + data_file.path)
            upload(lake, folder, data_file)
        guard()
    except BaseException:
        _delete_quietly(lake, uploaded)
        raise
    return uploaded


def _delete_quietly(lake: Lake, paths: list[str]) -> None:
    """Deletes data files no commit names (a failed commit's): left behind, only a VACUUM would."""
    for path in paths:
        try:
            lake.delete(path)
        except AzureError as err:
            log.info(
                "could not delete %s, which no commit names (a VACUUM removes it): %s", path, describe(err)
            )
