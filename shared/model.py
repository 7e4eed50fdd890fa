"""The run's data model: what a run planned, what happened to each file, what each table got.

Plain dataclasses that the stages fill in and the reports read (planning, copying, the Delta
tables, the run, the manifests, telemetry). This module imports none of those stages, so
nothing imports in a circle; the types it names for annotations only are leaf modules.
"""

from __future__ import annotations

import builtins
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.haltian.keys import HaltianKey
    from shared.sink.lake import LakeEntry
    from shared.source.s3 import SourceObject
    from shared.tables.facts import TableFacts
    from shared.verify.schema import SchemaOutcome

# What happened to a file.
PUBLISHED = "published"
QUARANTINED = "quarantined"
FAILED = "failed"
PRESENT = "present"

# What a run covers.
WINDOW = "window"
FULL = "full"
PARTITION = "partition"
#: Quarantined files copied again under the contracts in force (``quarantine release``).
RELEASE = "release"

MAX_EXAMPLES = 10


@dataclass(frozen=True)
class WorkItem:
    """One file to copy, and the lake blob it replaces (None for a new file)."""

    source: SourceObject
    key: HaltianKey
    replaces: LakeEntry | None = None


@dataclass
class Plan:
    """What a run found to do: the files to copy, and why the rest is skipped."""

    mode: str
    months: list[str] | None
    items: list[WorkItem] = field(default_factory=list)
    present: Counter[tuple[str, str]] = field(default_factory=Counter)
    quarantined: Counter[tuple[str, str]] = field(default_factory=Counter)
    unrecognized: int = 0
    unrecognized_examples: list[str] = field(default_factory=list)
    other_organization: int = 0
    listed_objects: int = 0
    listed_prefixes: int = 0
    #: The month folder of a backfill partition run (mode PARTITION).
    partition: str | None = None
    #: Files left to the backfill workers that hold their partitions now, and those partitions.
    leased: int = 0
    leased_folders: frozenset[str] = frozenset()
    #: The verified copies listed in the lake, by key: the tables are kept equal to them.
    mirrored: dict[str, LakeEntry] = field(default_factory=dict)
    #: The quarantined copies listed in the lake, by source key.
    quarantine: dict[str, LakeEntry] = field(default_factory=dict)
    #: When the lake was listed (before the listing started).
    listed_at: datetime | None = None
    #: Per dataset, the newest time window listed in the bucket, and the newest one mirrored.
    newest_delivered: dict[tuple[str, str], datetime] = field(default_factory=dict)
    newest_published: dict[tuple[str, str], datetime] = field(default_factory=dict)
    #: A full reconcile's progress (mode FULL only): how far this run got through the history.
    reconcile: ReconcileProgress | None = None

    def note_unrecognized(self, key: str) -> None:
        self.unrecognized += 1
        if len(self.unrecognized_examples) < MAX_EXAMPLES:
            self.unrecognized_examples.append(key)

    def note_newest(self, name: tuple[str, str], start: datetime, *, published: bool) -> None:
        if name not in self.newest_delivered or start > self.newest_delivered[name]:
            self.newest_delivered[name] = start
        if published and (name not in self.newest_published or start > self.newest_published[name]):
            self.newest_published[name] = start

    def absorb(self, other: Plan) -> None:
        """Adds what ``other`` (one month folder's plan) counted; its items stay its own."""
        self.present.update(other.present)
        self.quarantined.update(other.quarantined)
        for key in other.unrecognized_examples[: MAX_EXAMPLES - len(self.unrecognized_examples)]:
            self.unrecognized_examples.append(key)
        self.unrecognized += other.unrecognized
        self.other_organization += other.other_organization
        self.listed_objects += other.listed_objects
        self.listed_prefixes += other.listed_prefixes
        for name, start in other.newest_delivered.items():
            self.note_newest(name, start, published=False)
        for name, start in other.newest_published.items():
            self.note_newest(name, start, published=True)


@dataclass
class ReconcileProgress:
    """How far a full reconcile got: it walks the month folders oldest first, across as many runs
    as it needs (see :mod:`shared.reconcile.walk`)."""

    #: When the pass started (its first run's start): what a completed pass vouches for.
    pass_started_at: datetime
    #: ``run --all``: every folder's lake side listed, no record trusted.
    forced: bool = False
    #: Folders of the history outside the run's window, and those this pass had done before this run.
    folders: int = 0
    done_before: int = 0
    #: Folders this run finished: by their record (bucket side unchanged), or compared with the lake.
    unchanged: int = 0
    compared: int = 0
    #: The last folder, in walk order, up to which the pass is done; None once the pass completed.
    cursor: str | None = None
    completed: bool = False
    #: Why the walk stopped early (the time budget, a listing that failed), None when it did not.
    stopped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pass_started_at": self.pass_started_at.isoformat(),
            "forced": self.forced,
            "folders": self.folders,
            "done_before": self.done_before,
            "unchanged": self.unchanged,
            "compared": self.compared,
            "done": self.done_before + self.unchanged + self.compared,
            "cursor": self.cursor,
            "completed": self.completed,
            "stopped": self.stopped,
        }


@dataclass
class FileOutcome:
    """What happened to one file, as the manifest reports it."""

    action: str
    item: WorkItem
    destination: str | None = None
    bytes: int = 0
    rows: int | None = None
    schema_fingerprint: str | None = None
    schema: SchemaOutcome | None = None
    reason: str | None = None
    integrity: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verify_seconds: float = 0.0  # wall time, GIL waits included
    verify_cpu_seconds: float = 0.0  # this thread's CPU time spent verifying
    table: TableFacts | None = None
    lake_modified: datetime | None = None
    replaced_copy: str | None = None
    #: The quarantine path a released file came from (``quarantine release``).
    released_from: str | None = None
    #: A small published file's bytes, kept for its table (see ``run.TABLE_BYTES_KEPT``), then dropped.
    content: builtins.bytes | None = field(default=None, repr=False)  # ``bytes`` is a field's name here


@dataclass(frozen=True)
class TableFile:
    """A verified source version at its mirrored path: a candidate for its dataset's table."""

    key: HaltianKey
    size: int
    source_etag: str  # the source version the mirrored blob holds
    lake_etag: str | None = None  # the blob version listed (None: the one this run wrote)
    facts: TableFacts | None = None  # None: read from the file's footer when needed
    content: bytes | None = field(default=None, repr=False, compare=False)  # None: read from the lake
    rows: int | None = None  # its rows, as verified when it was copied (None: not recorded)


@dataclass
class TableChange:
    """What one sync did to one table, for the manifest."""

    layout: str
    organization: str
    dataset: str
    #: The table's folder below the container (``{root}/_tables/{layout}_{dataset}``).
    table: str
    version: int | None = None
    #: Source keys whose rows this run delivered; removed: source keys whose earlier rows it replaced.
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    #: Months (``YYYY-MM``) this run compacted into one file each.
    compacted: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.compacted)

    def reset(self) -> None:
        """Forgets an attempt that another writer's commit overtook."""
        self.added.clear()
        self.removed.clear()
        self.excluded.clear()
        self.compacted.clear()


def merged(changes: list[TableChange]) -> list[TableChange]:
    """One entry per table for a run whose syncs of it were several (the window's, then each month
    folder's of a full reconcile): everything they did, the last version, the last error."""
    by_table: dict[str, TableChange] = {}
    for change in changes:
        into = by_table.get(change.table)
        if into is None:
            by_table[change.table] = change
            continue
        into.added += change.added
        into.removed += change.removed
        into.excluded += change.excluded
        into.compacted += [month for month in change.compacted if month not in into.compacted]
        if change.version is not None:
            into.version = change.version
        into.error = change.error or into.error
    return sorted(by_table.values(), key=lambda change: (change.layout, change.dataset))


@dataclass
class RunResult:
    """A finished run: the plan, every file's outcome, and where the manifest went."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    plan: Plan
    settings: dict[str, Any]
    outcomes: list[FileOutcome] = field(default_factory=list)
    deferred: Counter[tuple[str, str]] = field(default_factory=Counter)
    tables: list[TableChange] = field(default_factory=list)
    recovered_runs: list[str] = field(default_factory=list)
    #: Runs that wrote their manifest but stopped before its index entry, indexed by this run.
    indexed_runs: list[str] = field(default_factory=list)
    #: Why the runs that stopped before their manifest could not be accounted for (the next run does).
    recovery_error: str | None = None
    full_reconcile_completed: bool = False
    manifest_path: str | None = None
    #: Seconds each stage of the run took (plan, copy, tables, recovery; manifest once written).
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action == action)

    def schema_drift(self) -> list[dict[str, Any]]:
        """Schema drift once per dataset (not once per file): breaking drift that quarantined
        files, and additive drift that was published, with every distinct problem and a few keys."""
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for outcome in self.outcomes:
            schema = outcome.schema
            if schema is None or not schema.drift or outcome.action not in (PUBLISHED, QUARANTINED):
                continue
            verdict = "breaking" if outcome.action == QUARANTINED else schema.verdict
            key = outcome.item.key
            entry = found.setdefault(
                (key.layout, key.dataset, verdict),
                {
                    "layout": key.layout,
                    "dataset": key.dataset,
                    "verdict": verdict,
                    "against": schema.against,
                    "contract": schema.contract,
                    "files": 0,
                    "problems": [],
                    "examples": [],
                },
            )
            entry["files"] += 1
            entry["problems"] += [p for p in schema.drift if p not in entry["problems"]]
            if len(entry["examples"]) < 3:
                entry["examples"].append(key.key)
        return [found[name] for name in sorted(found)]

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def table_errors(self) -> int:
        return sum(1 for t in self.tables if t.error)

    @property
    def status(self) -> str:
        """``complete`` when nothing is left for the next run, else ``incomplete``."""
        left = self.failed or self.deferred or self.table_errors or self.recovery_error
        reconcile = self.plan.reconcile
        return "incomplete" if left or (reconcile is not None and reconcile.stopped) else "complete"

    @property
    def exit_code(self) -> int:
        """0 when every file was published, skipped or quarantined and every table committed."""
        return 1 if self.failed or self.table_errors else 0

    def summary(self) -> str:
        published = [o for o in self.outcomes if o.action == PUBLISHED]
        return (
            f"run {self.run_id} ({self.plan.mode}) {self.status}: "
            f"{len(published)} published ({sum(o.bytes for o in published):,} bytes, "
            f"{sum(o.rows or 0 for o in published):,} rows), "
            f"{self.count(QUARANTINED)} quarantined, {self.failed} failed, "
            f"{sum(self.deferred.values())} deferred to the next run, "
            f"{sum(self.plan.present.values())} already present, "
            f"{self.plan.unrecognized} unrecognised keys, "
            + (f"Delta tables not updated: {self.table_errors}, " if self.table_errors else "")
            + f"in {(self.finished_at - self.started_at).total_seconds():.1f} s"
        )
