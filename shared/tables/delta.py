"""One query-ready Delta table per layout and dataset, written by the bridge from the mirror.

The tables live apart from the mirror (:mod:`shared.tables.names`); the bridge writes their
rows itself, in one physical schema per table (:mod:`shared.tables.rows`):

* Measurements append: each source version's rows enter the table exactly once, recorded by
  application transactions in the same commit (:mod:`shared.tables.ledger`). A source version
  already delivered is never delivered again, whatever another engine did to its rows since
  (OPTIMIZE, DELETE, UPDATE). A source file whose bytes changed at Haltian replaces that key's
  rows in one commit (found by the ``_source_key`` column).
* Measurement tables are partitioned by ``_source_month``. A closed month is compacted into one
  file and the open month whenever it holds more than
  :data:`~shared.tables.compaction.OPEN_MONTH_FILES` files, in one commit with ``dataChange=false``
  (a reader sees the table before or after, never between), so a table holds about one file per
  month: far within Direct Lake's 1,000 files a table. The bridge writes that commit itself, as
  the version after the one it read, so it never lands over another engine's compaction
  (:mod:`shared.tables.compaction`).
* Entities and relationships are full snapshots: one commit replaces an organization's rows
  with its newest snapshot's (a lake that mirrors several organizations holds each one's newest
  snapshot); older snapshots stay readable by time travel within the log retention, and a
  snapshot older than the table's never replaces it.

A plain append (no replaced file, no new column, nothing a writer must enforce) is streamed by
the bridge itself (:mod:`shared.tables.append`) and holds a row group at a time; so is a snapshot's
overwrite whose log shows which files hold the rows it replaces. The hourly ones are committed by
the bridge too, without delta-rs loading the table. Everything else goes through delta-rs's
writer, which holds its input until it commits.

At most one data commit per table per run (a backfill of more than :data:`DELIVERY_BYTES` of
source files commits in parts, to bound memory; compaction may add one); checkpoints every
:data:`~shared.tables.writes.CHECKPOINT_INTERVAL` commits, and log entries older than
:data:`~shared.tables.writes.LOG_RETENTION` are removed at checkpoint time (both set when
:mod:`shared.tables.writes` creates the table). Protocol reader 1 / writer 2: what Synapse
serverless SQL reads.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from azure.core.exceptions import AzureError
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from shared.errors import describe
from shared.haltian.contracts import MEASUREMENT, dataset_kind
from shared.model import TableChange, TableFile
from shared.sink.lake import Lake, PublishConflict
from shared.sink.lock import LockLost
from shared.tables.append import CommitConflict, streamable
from shared.tables import sources
from shared.tables.budget import WriteBudget
from shared.tables.compaction import Compaction, commit_compaction, due_months, month_rows
from shared.tables.data_files import GROUP_BYTES
from shared.tables.evolution import columns_of
from shared.tables.features import UnwritableFeature, check_features, constraint_error, feature_error
from shared.tables.hourly import commit_hourly
from shared.tables.ledger import Delivered, LogUnreadable, TableLog, read_delivered, read_log
from shared.paths import table_folder
from shared.tables.rows import lineage_fields, month_of
from shared.tables.types import table_schema
from shared.tables.writes import TableConflict, commit_rows
from shared.transport import TransportError

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5
#: Source Parquet bytes one commit delivers at most, so a backfill commits in parts: what a commit
#: through delta-rs's writer holds in memory (measured: 3 to 8 times the source bytes), and a streamed
#: commit's scratch disk. Also the run's :class:`WriteBudget`: what the sync threads' writes may hold.
DELIVERY_BYTES = 128 << 20
#: Source bytes of one streamed commit: its files and the data files written from them are on the
#: scratch disk at once, never in memory.
STREAMED_PART_BYTES = 2 << 30


@dataclass
class DeltaPublisher:
    """Keeps each dataset's table equal to the rows of the source versions mirrored in the lake."""

    lake: Lake
    container: str
    storage_options: dict[str, str]
    run_id: str
    #: Called before every commit and every file read; raises when the run lost its lock (see
    #: ``sink.lock``).
    guard: Callable[[], None] = lambda: None
    #: Shared by the sync threads of a run: what their writes may hold in memory at once.
    budget: WriteBudget = field(default_factory=lambda: WriteBudget(DELIVERY_BYTES))
    #: What "now" is for closing months (tests move it).
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))
    #: A new table's column types from its newest file, older files widened to them (a rebuild
    #: after an operator accepted a type change); else from the oldest file.
    types_from_newest: bool = False

    def uri(self, folder: str) -> str:
        return f"az://{self.container}/{self.lake.path(folder).rstrip('/')}"

    def sync(self, files: list[TableFile]) -> TableChange:
        """Delivers the source versions among ``files`` (all of one layout and dataset) that the
        table has not been given, then compacts what is due.

        Never raises but for a lost lock: a table's problem (delta-rs, the lake, a feature the
        bridge cannot write, or a bug) is reported as its error, the mirror is untouched, and
        the next run tries again.
        """
        first = files[0].key
        folder = table_folder(first.layout, first.dataset)
        change = TableChange(
            first.layout, first.organization, first.dataset, self.lake.path(folder).rstrip("/")
        )
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                self._sync_once(files, folder, change)
                if change.compacted:
                    self._check_counts(files, folder, change)
                return change
            except (CommitFailedError, TableConflict, PublishConflict) as err:
                log.info(
                    "table %s: another writer committed first (%s), reloading (attempt %d)",
                    change.table,
                    err,
                    attempt,
                )
                change.reset()
                time.sleep(random.uniform(0.1, 0.4) * attempt)  # jittered: the writers do not meet again
            except LockLost:
                raise
            except UnwritableFeature as err:
                change.error = str(err)
                log.error("%s", err)
                return change
            except LogUnreadable as err:
                change.error = str(err)
                log.error("table %s: %s; the mirror is complete", change.table, change.error)
                return change
            except (DeltaError, OSError, AzureError, TransportError, pa.ArrowException) as err:
                change.error = feature_error(change, err) or constraint_error(change, err) or describe(err)
                log.error(
                    "table %s: %s; the mirror is complete and the next run tries again",
                    change.table,
                    change.error,
                )
                return change
            except Exception as err:  # noqa: BLE001 - one table's bug must not cost the run its manifest
                log.exception(
                    "table %s: unexpected error; the mirror is complete and the next run tries again",
                    change.table,
                )
                change.error = f"unexpected error: {describe(err)}"
                return change
        change.error = (
            f"other writers kept committing first ({COMMIT_ATTEMPTS} attempts); the next run tries again"
        )
        return change

    def _sync_once(self, files: list[TableFile], folder: str, change: TableChange) -> TableChange:
        key = files[0].key
        measurement = dataset_kind(key.layout, key.dataset) == MEASUREMENT
        found = read_log(self.lake, folder)  # the bridge's own read: one round trip for the whole log
        delivered = found.delivered if found is not None else Delivered(0, {})
        wanted = sources.wanted(files, delivered, measurement)
        if (
            found is not None
            and (found.appendable() if measurement else found.overwritable())
            and self._commit_own(folder, found, wanted, change, measurement)
        ):
            return change
        uri = self.uri(folder)
        table = self.load(uri)
        if table is not None:
            check_features(table, change)
            if found is None or table.version() != found.version:  # another writer committed meanwhile
                delivered = read_delivered(self.lake, folder, table.version())
                wanted = sources.wanted(files, delivered, measurement)
        number = delivered.number
        if wanted:
            table, commits = self._deliver(uri, table, wanted, delivered, measurement, change)
            number += commits
        change.version = None if table is None else table.version()
        if measurement and table is not None and (compacted := self.compact(folder, change)) is not None:
            change.version = compacted
        return change

    def _commit_own(
        self, folder: str, found: TableLog, wanted: list[TableFile], change: TableChange, measurement: bool
    ) -> bool:
        """The hourly case without delta-rs loading the table: the new files' rows in one commit
        the bridge writes itself (:func:`~shared.tables.hourly.commit_hourly`), a measurement table's append
        (:func:`~shared.tables.append.commit_append`) or a snapshot table's overwrite
        (:func:`~shared.tables.append.commit_overwrite`). False, with nothing done, when it needs
        delta-rs's writer: a replaced file, a new column, a backfill's parts, a commit that is due
        to write a checkpoint, or a snapshot whose rows to replace the log cannot show."""
        columns = found.columns()
        if (
            columns is None
            or found.checkpoint_due(found.version + 1)
            or sum(f.size for f in wanted) > STREAMED_PART_BYTES
            or (measurement and any(f.key.key in found.delivered.versions for f in wanted))
        ):
            return False
        accepted, excluded, new_columns = sources.accept(
            self.lake, self.guard, wanted, columns, self.types_from_newest
        )
        organizations = sorted({f.key.organization for f in accepted})
        removed = found.replaced_by(organizations) if accepted and not measurement else []
        if new_columns or removed is None:
            return False
        change.excluded.extend(excluded)
        try:
            number, months = commit_hourly(
                self, folder, found, accepted, columns, organizations, removed, measurement, change
            )
        except CommitConflict as err:
            raise TableConflict(str(err)) from err
        if measurement and due_months(months, f"{self.now():%Y-%m}"):
            if (compacted := self.compact(folder, change)) is not None:
                change.version = compacted
        return True

    def _deliver(
        self,
        uri: str,
        table: DeltaTable | None,
        wanted: list[TableFile],
        delivered: Delivered,
        measurement: bool,
        change: TableChange,
    ) -> tuple[DeltaTable | None, int]:
        """The rows of ``wanted`` (less the files that cannot join the table): one commit, or for a
        backfill one commit per part (see :func:`_part_bytes`). Returns the table and the number
        of commits."""
        columns = columns_of(table)
        accepted, excluded, new_columns = sources.accept(
            self.lake, self.guard, wanted, columns, self.types_from_newest
        )
        change.excluded.extend(excluded)
        if not accepted:
            return table, 0
        schema = pa.schema([*table_schema({**columns, **new_columns}), *lineage_fields()])
        limit = _part_bytes(table, measurement, bool(new_columns), accepted, delivered)
        with tempfile.TemporaryDirectory(prefix="haltian-table-") as scratch:
            number = delivered.number
            for part in sources.chunks(accepted, limit):
                local = sources.download(
                    self.lake, self.guard, part, Path(scratch)
                )  # one part at a time on the scratch disk
                if not local:
                    continue
                number += 1
                table = commit_rows(
                    self, uri, table, local, schema, bool(new_columns), delivered, measurement, number, change
                )
                for _, path in local:
                    path.unlink()
        return table, number - delivered.number

    def compact(self, folder: str, change: TableChange) -> int | None:
        """Compacts what is due (:mod:`shared.tables.compaction`) in one commit of the bridge's own
        that lands only as the version after the one it read. Another writer's commit first: the
        table is read again and what is due decided afresh (its compaction may have done the work);
        after :data:`COMMIT_ATTEMPTS` such misses the compaction is left to the next run. Returns
        the version committed, None when nothing was."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            found = read_log(self.lake, folder)
            due = None if found is None else Compaction.of(folder, found, f"{self.now():%Y-%m}")
            if found is None or due is None:
                return None
            try:
                with self.budget.hold(2 * GROUP_BYTES):
                    version = commit_compaction(self.lake, self.guard, due, self.run_id)
            except CommitConflict:
                log.info(
                    "table %s: another writer committed version %d before this compaction; reading "
                    "the table again (attempt %d)",
                    change.table,
                    found.version + 1,
                    attempt,
                )
                time.sleep(random.uniform(0.1, 0.4) * attempt)
                continue
            if found.checkpoint_due(version):
                self._checkpoint(folder)
            change.compacted.extend(due.months)
            log.info("table %s: compacted %s", change.table, ", ".join(due.months))
            return version
        log.info("table %s: other writers kept committing first; the next run compacts", change.table)
        return None

    def _check_counts(self, files: list[TableFile], folder: str, change: TableChange) -> None:
        """After a compaction (where two writers' rewrites of one month would meet), the months this
        sync touched hold no more rows than their delivered source versions, by the log's file
        statistics and the rows recorded when each file was verified: one read of the log, no data.
        More is a duplicated delivery, reported as the table's error, which raises the table-error
        metric and alert; fewer is another engine's delete, as it should be. A month whose delivered
        versions are not all among ``files`` (with their rows) is left to ``tables verify``."""
        found = read_log(self.lake, folder)
        if found is None:
            return
        added = set(change.added)
        touched = {month_of(f.key) for f in files if f.key.key in added} | set(change.compacted)
        known = {f.key.key: f for f in files}
        for month in sorted(touched):
            delivered = [k for k in found.delivered.versions if month_of_key(k) == month]
            sources = [known.get(k) for k in delivered]
            held = month_rows(found, month)
            if held is None or any(
                f is None or f.rows is None or not found.delivered.holds(f.key.key, f.source_etag)
                for f in sources
            ):
                continue
            expected = sum(f.rows or 0 for f in sources if f is not None)
            if held > expected:
                change.error = (
                    f"month {month} holds {held - expected:,} rows more than its {len(sources)} source "
                    f"files: rows are duplicated (python -m shared tables verify --repair "
                    f"{change.layout}/{change.dataset})"
                )
                log.error("table %s: %s", change.table, change.error)

    def _checkpoint(self, folder: str) -> None:
        """The checkpoint delta-rs writes with every ``delta.checkpointInterval``-th commit, for a
        commit the bridge wrote itself, and the log clean-up that goes with it."""
        table = self.load(self.uri(folder))
        if table is not None:
            table.create_checkpoint()
            table.cleanup_metadata()

    def load(self, uri: str) -> DeltaTable | None:
        """The table at ``uri`` (see :meth:`uri`) as delta-rs loads it at its newest version; None
        while there is no table."""
        try:
            return DeltaTable(uri, storage_options=self.storage_options)
        except TableNotFoundError:
            return None


def _part_bytes(
    table: DeltaTable | None,
    measurement: bool,
    new_columns: bool,
    files: list[TableFile],
    delivered: Delivered,
) -> int | None:
    """Source bytes one commit delivers at most: :data:`DELIVERY_BYTES` through delta-rs's writer
    (it holds them in memory), :data:`STREAMED_PART_BYTES` when every commit streams (they are on
    the scratch disk), so a backfilled month is one file and needs no compaction; a snapshot is
    one commit."""
    if not measurement:
        return None
    streamed = (table is None or (not new_columns and streamable(table))) and not any(
        f.key.key in delivered.versions for f in files
    )
    return STREAMED_PART_BYTES if streamed else DELIVERY_BYTES


def month_of_key(key: str) -> str:
    """The ``YYYY-MM`` of a source key's ``.../{YYYY}/{MM}/{file}`` folder, without parsing the whole
    key (it is called for every delivered version of a table)."""
    parts = key.rsplit("/", 3)
    return f"{parts[1]}-{parts[2]}" if len(parts) == 4 else ""
