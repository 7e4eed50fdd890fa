"""A run's table stage: each dataset's table syncs as soon as the run has copied its last file
of that dataset, while the copies of the other datasets go on.

At cloud latency a table's sync is a few round trips in sequence (read the log, upload the rows,
commit; a snapshot's overwrite through delta-rs takes more), so the syncs started as each
dataset's copies end overlap the copies still running instead of waiting for the run's last
file. Each table is still synced once per run, from every verified copy of its dataset: the
ones the plan listed in the lake (which finishes the work of a run that stopped between
publishing and committing) and the ones this run published.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Executor, Future

from shared.haltian.contracts import snapshots_first
from shared.model import PUBLISHED, FileOutcome, Plan, TableChange, TableFile, WorkItem
from shared.tables.delta import DeltaPublisher
from shared.tables.sources import candidate

#: A table by layout and dataset.
Table = tuple[str, str]


class TableStage:
    """Starts each table's sync on ``executor`` once nothing of its dataset is left to copy.

    :meth:`copied` is called once for every item of the plan, from one thread (the run's copy
    loop); :meth:`finish` waits for every sync and returns the tables that changed or failed.
    """

    def __init__(self, plan: Plan, publisher: DeltaPublisher, executor: Executor) -> None:
        self._publisher = publisher
        self._executor = executor
        self._left: Counter[Table] = Counter((item.key.layout, item.key.dataset) for item in plan.items)
        self._files: dict[Table, dict[str, TableFile]] = {}
        for path, entry in plan.mirrored.items():
            if (listed := candidate(entry)) is not None:
                self._files.setdefault((listed.key.layout, listed.key.dataset), {})[path] = listed
        self._syncs: dict[Table, Future[TableChange]] = {}
        for table in sorted(self._files, key=lambda table: snapshots_first(*table)):
            if not self._left[table]:  # nothing to copy: its sync need not wait
                self._start(table)

    def copied(self, item: WorkItem, outcome: FileOutcome | None) -> None:
        """``item`` is done: published, skipped, failed, or left for the next run (None)."""
        key = item.key
        table = (key.layout, key.dataset)
        if outcome is not None and outcome.action == PUBLISHED:
            self._files.setdefault(table, {})[key.key] = TableFile(
                key, outcome.bytes, item.source.etag, None, outcome.table, outcome.content, outcome.rows
            )
            outcome.content = None  # the table holds it now, and drops it once it has synced
        self._left[table] -= 1
        if self._left[table] == 0 and table in self._files:
            self._start(table)

    def done(self) -> bool:
        """Whether every table's sync has started and ended (none waits for a copy)."""
        return not self._files and all(sync.done() for sync in self._syncs.values())

    def finish(self) -> list[TableChange]:
        """Waits for every table's sync (starting those whose copies did not all report, as when
        the copy loop stopped early) and returns the changed or failed ones, by table."""
        for table in sorted(self._files, key=lambda table: snapshots_first(*table)):
            self._start(table)
        changes = [sync.result() for sync in self._syncs.values()]
        return sorted(
            (change for change in changes if change.changed or change.excluded or change.error),
            key=lambda change: (change.layout, change.dataset),
        )

    def _start(self, table: Table) -> None:
        self._syncs[table] = self._executor.submit(
            self._publisher.sync, list(self._files.pop(table).values())
        )
