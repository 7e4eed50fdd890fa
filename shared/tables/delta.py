"""One Delta Lake table per dataset, registering the very files the bridge copied.

The table of a dataset is rooted at its mirrored folder (``.../{dataset}/_delta_log``) and
its add actions point at the copied ``{YYYY}/{MM}/*.parquet`` files: no data is rewritten.

* Measurements append: every verified file is in the table exactly once.
* Entities and relationships are full snapshots: the table is the newest snapshot (one commit
  removes the previous snapshot's file and adds the new one); older snapshots stay readable
  by time travel, and a snapshot older than the table's never replaces it.

Each sync compares the table's files with the verified files in the lake, so a run that
crashed between publishing and committing is healed by the next one, and a retried commit
cannot add a file twice. Commits carry an application transaction, so two writers at once
conflict instead of interleaving, and the loser reloads the table and tries again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError
from deltalake import DeltaTable, Field, Schema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    PostCommitHookProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)

from shared.errors import describe
from shared.haltian.contracts import MEASUREMENT, dataset_kind
from shared.haltian.keys import HaltianKey, parse_key
from shared.model import TableChange, TableFile
from shared.sink.lake import META_REPLACING, Lake, PublishConflict
from shared.sink.lock import LockLost
from shared.tables.facts import TableFacts, table_facts
from shared.tables.types import table_schema
from shared.verify.parquet import UnreadableParquet, read_footer

log = logging.getLogger(__name__)

APP_ID = "haltian-azure-bridge"
#: Readers replay at most this many JSON commits before a checkpoint.
CHECKPOINT_INTERVAL = 10
COMMIT_ATTEMPTS = 5


class NotTakenOut(Exception):
    """A file could not be taken out of its table, so its blob must not be replaced now."""


class _Conflict(Exception):
    """Another writer changed the table first: reload it and try again."""


@dataclass
class DeltaPublisher:
    """Keeps each dataset's Delta table equal to the verified files in the lake."""

    lake: Lake
    container: str
    storage_options: dict[str, str]
    run_id: str
    #: Called before every commit; raises when the run lost its lock (see ``sink.lock``).
    guard: Callable[[], None] = lambda: None

    def uri(self, dataset_folder: str) -> str:
        return f"az://{self.container}/{self.lake.path(dataset_folder).rstrip('/')}"

    def sync(self, files: list[TableFile]) -> TableChange:
        """Brings one dataset's table up to date with ``files`` (all of one dataset folder).

        Never raises but for a lost lock: a table's problem (delta-rs, the lake, or a bug) is
        reported as its error, the files stay published, and the next run tries again.
        """
        first = files[0].key
        change = TableChange(first.layout, first.organization, first.dataset, self.lake.path(first.dataset_folder))
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return self._sync_once(files, change)
            except (CommitFailedError, _Conflict) as err:
                log.info("table %s: concurrent commit (%s), reloading (attempt %d)", change.table, err, attempt)
                change.added.clear()
                change.removed.clear()
                change.excluded.clear()
                time.sleep(random.uniform(0.1, 0.4) * attempt)  # jittered: the writers do not meet again
            except LockLost:
                raise
            except (DeltaError, OSError, AzureError) as err:  # delta-rs, or the lake's listings and footers
                change.error = describe(err)
                log.error("table %s: %s; the files stay published and the next run tries again",
                          change.table, change.error)
                return change
            except Exception as err:  # noqa: BLE001 - one table's bug must not cost the run its manifest
                log.exception("table %s: unexpected error; the files stay published and the next run tries "
                              "again", change.table)
                change.error = f"unexpected error: {describe(err)}"
                return change
        change.error = f"gave up after {COMMIT_ATTEMPTS} conflicting commits; the next run tries again"
        return change

    def take_out(self, key: HaltianKey) -> None:
        """Removes a file from its table before its blob is overwritten by a new version, so
        the log never describes bytes other than the blob's (the next sync adds the new one).

        Raises:
            NotTakenOut: the commit kept conflicting, or failed.
        """
        uri = self.uri(key.dataset_folder)
        path = key.key[len(key.dataset_folder):]
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                table = self._load(uri)
                current = _current_files(table)
                if path not in current:
                    return
                self._commit(table, [_remove(path, current[path][0])], self._properties(table))  # type: ignore[arg-type]
                log.info("table %s: %s taken out before its new version replaces it", uri, path)
                return
            except CommitFailedError:
                time.sleep(random.uniform(0.1, 0.4) * attempt)
            except (DeltaError, OSError, AzureError) as err:
                raise NotTakenOut(describe(err)) from err
        raise NotTakenOut(f"gave up after {COMMIT_ATTEMPTS} conflicting commits")

    def _as_listed_now(self, files: list[TableFile]) -> list[TableFile]:
        """The candidates as the lake lists them now, after the table was loaded.

        A listing made before another writer replaced a file (or took it out to replace it)
        would put an old size back: every candidate takes the size, time and version listed
        now, files marked as being replaced are left out, and files gone are dropped. A writer
        that replaces a file takes it out of the table before it overwrites it, so a commit
        based on a table loaded before that conflicts, and one loaded after sees the mark or
        the new bytes here.
        """
        folders = sorted({f.key.month_folder for f in files})
        listed = {entry.path: entry for folder in folders for entry in self.lake.list_entries(folder)}
        now: list[TableFile] = []
        for candidate in files:
            entry = listed.get(candidate.key.key)
            if entry is None or entry.metadata.get(META_REPLACING) or entry.last_modified is None:
                continue
            same = entry.size == candidate.size and entry.last_modified == candidate.modified \
                and candidate.etag in (None, entry.etag)
            now.append(TableFile(candidate.key, entry.size, entry.last_modified,
                                 candidate.facts if same else None, entry.etag))
        return now

    def _sync_once(self, files: list[TableFile], change: TableChange) -> TableChange:
        uri = self.uri(files[0].key.dataset_folder)
        snapshot = dataset_kind(files[0].key.layout, files[0].key.dataset) != MEASUREMENT
        table = self._load(uri)
        current = _current_files(table)
        # The table holds every file as this run listed them: nothing to commit, and so no need
        # for a listing made after loading the table (the next run heals what came since).
        to_add = _missing(files, current, snapshot)
        if to_add:
            to_add = _missing(self._as_listed_now(files), current, snapshot)
        if not to_add:
            change.version = None if table is None else table.version()
            return change
        columns = _columns_of(table)

        adds: list[AddAction] = []
        new_columns: dict[str, str] = {}
        for candidate in to_add:
            facts = candidate.facts or self._read_facts(candidate)
            problem = facts.exclusion or _incompatibility(facts.columns, {**columns, **new_columns})
            if problem is not None:
                change.excluded.append({"source_key": candidate.key.key, "reason": problem})
                continue
            for name, delta in facts.columns.items():  # type: ignore[union-attr]
                if name not in columns:
                    new_columns.setdefault(name, delta)
            adds.append(AddAction(candidate.table_path, candidate.size, {}, candidate.modification_time,
                                  True, facts.stats or "{}"))
        if not adds:
            change.version = None if table is None else table.version()
            return change

        properties = self._properties(table)
        if table is None:
            schema = Schema.from_arrow(table_schema(new_columns))
            self.guard()
            try:
                create_table_with_add_actions(
                    uri, schema, adds, mode="error", name=files[0].key.dataset,
                    configuration={"delta.checkpointInterval": str(CHECKPOINT_INTERVAL)},
                    storage_options=self.storage_options, commit_properties=properties,
                    post_commithook_properties=PostCommitHookProperties(create_checkpoint=True,
                                                                        cleanup_expired_logs=False),
                )
            except DeltaError as err:
                if "already exists" not in str(err):
                    raise
                raise _Conflict("another writer created the table first") from err
            table = self._load(uri)
        else:
            stale = [a.path for a in adds if a.path in current]
            if stale:
                # The file's bytes changed at the source: its old add action goes first, in a
                # commit of its own (one version may not both remove and add the same path).
                self._commit(table, [_remove(path, current[path][0]) for path in stale], properties)
                change.removed.extend(stale)
                table = self._load(uri)
                properties = self._properties(table)
            if new_columns:
                self.guard()
                table.alter.add_columns([Field(name, delta, nullable=True) for name, delta in new_columns.items()])
                table = self._load(uri)
                properties = self._properties(table)
            if snapshot:
                # One commit swaps the snapshot: readers see the old one or the new one, never none.
                replaced = [path for path in _current_files(table) if path not in stale]
                self._commit(table, adds, properties, mode="overwrite")
                change.removed.extend(replaced)
            else:
                self._commit(table, adds, properties)
            table = self._load(uri)
        change.added.extend(a.path for a in adds)
        change.version = table.version()  # type: ignore[union-attr]
        return change

    def _commit(self, table: DeltaTable, actions: list[Any], properties: CommitProperties,
                mode: str = "append") -> None:
        self.guard()
        table.create_write_transaction(
            actions, mode=mode, schema=table.schema(), commit_properties=properties,
            post_commithook_properties=PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False),
        )

    def _properties(self, table: DeltaTable | None) -> CommitProperties:
        # The application transaction makes concurrent bridge commits to one table conflict,
        # so a writer never commits against a file list it did not see.
        version = 0 if table is None else (table.transaction_version(APP_ID) or 0)
        return CommitProperties(
            custom_metadata={"haltian_run_id": self.run_id},
            app_transactions=[Transaction(APP_ID, version + 1)],
            max_commit_retries=0,
        )

    def _load(self, uri: str) -> DeltaTable | None:
        try:
            return DeltaTable(uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def _read_facts(self, candidate: TableFile) -> TableFacts:
        """A published file's footer, read back from the lake (only when healing), from the
        version listed: a file replaced meanwhile makes the sync start over."""
        try:
            facts = read_footer(lambda length: self.lake.read_tail(candidate.key.key, candidate.size, length,
                                                                   candidate.etag), candidate.size)
        except PublishConflict as err:
            raise _Conflict(str(err)) from err
        except UnreadableParquet as err:
            return TableFacts(None, None, f"kept out of the Delta table: footer unreadable in the lake: {err}")
        return table_facts(facts.metadata)


def _current_files(table: DeltaTable | None) -> dict[str, tuple[int, int]]:
    """The table's files: path -> (size, modification time)."""
    if table is None:
        return {}
    actions = table.get_add_actions(flatten=True)
    columns = {name: actions.column(name).to_pylist() for name in ("path", "size_bytes", "modification_time")}
    return {p: (s, m) for p, s, m in zip(columns["path"], columns["size_bytes"], columns["modification_time"])}


def _columns_of(table: DeltaTable | None) -> dict[str, str]:
    if table is None:
        return {}
    return {f.name: _type_name(f.type) for f in table.schema().fields}


def _type_name(delta_type: Any) -> str:
    return str(getattr(delta_type, "type", delta_type))


def _remove(path: str, size: int) -> RemoveAction:
    return RemoveAction(path, True, int(time.time() * 1000), size, {})


def _incompatibility(file_columns: dict[str, str] | None, table_columns: dict[str, str]) -> str | None:
    """Why a file cannot join a table with these columns, or None when it can.

    A file may lack table columns (they read as nulls) and may bring new ones (the table
    schema grows); a column whose type differs from the table's is breaking drift.
    """
    assert file_columns is not None
    clashes = [f"column {name!r} is {delta} in the file but {table_columns[name]} in the table"
               for name, delta in file_columns.items() if name in table_columns and table_columns[name] != delta]
    if clashes:
        return "kept out of the Delta table: breaking schema drift: " + "; ".join(clashes)
    return None


def _missing(files: list[TableFile], current: dict[str, tuple[int, int]], snapshot: bool) -> list[TableFile]:
    """The files the table should hold but does not hold as given (size, modification time):
    all of them for a measurement table, the newest for a snapshot table."""
    if not files:
        return []
    wanted = _newest_snapshot(files, current) if snapshot else files
    return [f for f in wanted if current.get(f.table_path) != (f.size, f.modification_time)]


def _newest_snapshot(files: list[TableFile], current: dict[str, tuple[int, int]]) -> list[TableFile]:
    """The newest snapshot, unless the table already holds one at least as new."""
    newest = max(files, key=lambda f: (f.key.window_start, f.key.key))
    folder = newest.key.dataset_folder
    in_table = [parse_key(folder + path) for path in current]
    if any(k is not None and (k.window_start, k.key) > (newest.key.window_start, newest.key.key) for k in in_table):
        return []  # an older snapshot arrived late: it never replaces a newer one
    return [newest]
