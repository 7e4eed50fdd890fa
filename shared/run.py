"""One bridge run: lock, plan, copy concurrently within the time budget, then the manifest.

What readers see is written in order: verified data first (each file atomically), then the
Delta tables, the manifest last. A run that dies leaves no manifest; the next run finds the
work that is left by comparing the bucket with the lake again, and writes a manifest for the
dead run from the files it left.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

from azure.core.exceptions import AzureError

from shared import logs, telemetry
from shared.copy import CopyContext, copy_file
from shared.errors import TransientError, describe
from shared.manifest.publish import write_manifest
from shared.manifest.recover import account_for_stopped_runs
from shared.model import (
    FULL,
    PRESENT,
    PUBLISHED,
    RELEASE,
    FileOutcome,
    Plan,
    ReconcileProgress,
    RunResult,
    WorkItem,
    merged,
)
from shared.plan import make_plan, window_months
from shared.progress import Progress
from shared.settings import Settings
from shared.sink.blob_writer import azure_transport
from shared.sink.connect import delta_storage_options, make_container_client, make_credential
from shared.paths import (
    LOCK_PATH,
    PARTITION_LOCKS,
    RECONCILE_STATE,
    partition_lock_path,
    partition_of_lock,
)
from shared.sink.lake import Lake
from shared.sink.records import new_run_id
from shared.sink.lock import (
    LockLost,
    RunLock,
    Scope,
)
from shared.source.s3 import S3Source, check_access
from shared.source.sessions import make_s3
from shared.reconcile.records import MonthRecords
from shared.reconcile.walk import Walk, walk
from shared.tables.delta import DeltaPublisher
from shared.tables.stage import TableStage
from shared.verify.schema import SchemaJudge

log = logging.getLogger(__name__)

#: Bytes of small published files a run keeps in memory for its tables, which then need not read
#: them back from the lake (an hourly run keeps all of its files; a backfill, its first ones).
TABLE_BYTES_KEPT = 64 << 20
#: The same for each month folder of a full reconcile: a few folders' syncs run at once
#: (``shared.reconcile.walk.SYNCS_AHEAD``).
FOLDER_BYTES_KEPT = 8 << 20


@dataclass(frozen=True)
class Bridge:
    """The clients a run needs; built once per worker process and reused across runs."""

    settings: Settings
    source: S3Source
    lake: Lake
    credential: Any | None = None

    def delta_publisher(self, run_id: str, **options: Any) -> DeltaPublisher:
        """A publisher with storage options fetched now (a fresh token in Azure); ``options`` are
        DeltaPublisher's other fields (its ``guard``, called before each commit)."""
        storage = delta_storage_options(self.settings, self.credential)
        return DeltaPublisher(self.lake, self.settings.adls_container, storage, run_id, **options)

    @classmethod
    def from_settings(cls, settings: Settings) -> Bridge:
        return _bridge_for(settings)


@cache
def _bridge_for(settings: Settings) -> Bridge:
    return build_bridge(settings)


def build_bridge(settings: Settings, entra_credential: Any | None = None) -> Bridge:
    """Clients for a run. The Entra credential (the app's managed identity by default) signs
    in to the lake and, for a keyless S3 role, to AWS STS."""
    credential = entra_credential or make_credential(settings)
    s3 = make_s3(settings, credential)
    check_access(s3.client, settings)
    source = S3Source(s3.client, settings.s3_bucket, s3.credentials)
    lake = Lake(
        make_container_client(settings, credential),
        settings.adls_root,
        azure_transport(settings.connection_pool_size),
    )
    return Bridge(settings, source, lake, credential)


def _run_threads() -> dict[str, Any]:
    """Executor options whose threads tag their log records with the calling run's id."""
    return {"initializer": logs.set_run_id, "initargs": (logs.run_id(),)}


def plan_run(
    bridge: Bridge,
    *,
    full: bool = False,
    now: datetime | None = None,
    partition: str | None = None,
    window_only: bool = False,
) -> Plan:
    """What a run would copy now in its window (a full reconcile's window first: the rest of the
    history is planned a month folder at a time as the run walks it, see
    :func:`shared.reconcile.walk.planned_folders`); reads the bucket and the lake, writes nothing.

    A run of the whole lake leaves the month folders that backfill workers hold to them.
    ``window_only``: the window's plan even when a full reconcile is due.
    """
    now = now or datetime.now(timezone.utc)
    settings = bridge.settings
    full = not window_only and partition is None and (full or _full_reconcile_due(bridge, now))
    leased = (
        frozenset()
        if partition
        else frozenset(partition_of_lock(path) for path in bridge.lake.leased(PARTITION_LOCKS))
    )
    with ThreadPoolExecutor(
        settings.max_concurrency, thread_name_prefix="bridge-list", **_run_threads()
    ) as executor:
        return make_plan(
            bridge.source,
            bridge.lake,
            prefix=settings.s3_prefix,
            organization=settings.organization_id,
            full=full,
            months=window_months(now, settings.lookback_months),
            executor=executor,
            partition=partition,
            leased=leased,
        )


def run_once(
    bridge: Bridge,
    *,
    full: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
    partition: str | None = None,
    release: Callable[[Bridge], Plan] | None = None,
) -> RunResult:
    """One run: everything the timer and ``python -m shared run`` do.

    With ``partition`` (a month folder), the run of one backfill worker: it holds that
    partition's lease instead of the lake's run lock, plans that folder only, and leaves
    ``_manifests/latest.json`` to the runs of the whole lake.

    With ``release`` (a function that plans quarantined files, see :mod:`shared.admin`), the
    run copies those files again from the source under the contracts in force, exactly as a
    normal run would, and takes each published one out of the quarantine.

    Raises:
        RunLocked: another run holds the lake's lock (or the partition's).
        LockLost: the run lost its lock while it worked and stopped before its next write;
            the next run accounts for the files it published.
    """
    started = now or datetime.now(timezone.utc)
    clock_start = time.monotonic()
    run_id = new_run_id(started)
    token = logs.set_run_id(run_id)
    try:
        return _run(bridge, run_id, started, clock_start, full, progress, partition, release)
    finally:
        logs.reset_run_id(token)


def _run(
    bridge: Bridge,
    run_id: str,
    started: datetime,
    clock_start: float,
    full: bool,
    progress: Progress | None,
    partition: str | None,
    release: Callable[[Bridge], Plan] | None,
) -> RunResult:
    settings = bridge.settings
    lock_path = LOCK_PATH if partition is None else partition_lock_path(partition)
    stages: dict[str, float] = {}
    with RunLock(bridge.lake, run_id, settings.lock_seconds, lock_path) as lock:
        with _stage(stages, "plan"):
            plan = (
                release(bridge)
                if release is not None
                else plan_run(bridge, full=full, now=started, partition=partition)
            )
        log.info(
            "planned %s run: %d files to copy of %d listed", plan.mode, len(plan.items), plan.listed_objects
        )
        lock.note_scope(Scope(plan.mode, None if plan.months is None else tuple(plan.months), plan.partition))
        result = RunResult(run_id, started, started, plan, settings.describe(), stage_seconds=stages)
        deadline = clock_start + settings.time_budget_seconds
        publisher = bridge.delta_publisher(run_id, guard=lock.check)
        copying = CopyContext(
            bridge.source,
            bridge.lake,
            SchemaJudge(bridge.lake, run_id),
            run_id,
            lock.check,
            server_side=settings.copy_mode == "server",
        )
        with ThreadPoolExecutor(
            settings.max_concurrency, thread_name_prefix="bridge-delta", **_run_threads()
        ) as syncing:
            tables = TableStage(plan, publisher, syncing)
            records = MonthRecords.read(bridge.lake) if plan.mode in (FULL, RELEASE) else None
            with _stage(stages, "copy"):
                if (
                    plan.mode == RELEASE
                    and records is not None
                    and records.forget({item.key.month_folder for item in plan.items})
                ):  # their lake side changes: the reconcile compares them again
                    lock.check()
                    records.write(bridge.lake)
                _copy_all(bridge, plan.items, copying, deadline, result, progress, tables)
                if plan.mode == RELEASE:
                    lock.check()
                    _leave_quarantine(bridge.lake, plan, result)
            with _stage(stages, "tables"):  # the table syncs still running when the last copy ended
                result.tables = tables.finish()
            if plan.mode == FULL and records is not None:
                with _stage(stages, "reconcile"):
                    plan.reconcile = _reconcile(
                        bridge, result, copying, deadline, progress, publisher, syncing, lock, records, full
                    )
                    result.tables = merged(result.tables)
            _log_drift(result)
        result.outcomes.sort(key=lambda o: o.item.key.key)
        result.finished_at = datetime.now(timezone.utc)
        with _stage(stages, "recovery"):
            account_for_stopped_runs(bridge.lake, plan, result, settings.lock_seconds, lock.check)
        result.full_reconcile_completed = (
            plan.reconcile is not None and plan.reconcile.completed and result.status == "complete"
        )
        with _stage(stages, "manifest"):
            write_manifest(bridge.lake, result, lock.check)
        if records is not None and plan.mode == FULL:  # after the manifest: see shared.reconcile.records
            lock.check()
            records.write(bridge.lake)
    log.info("%s", result.summary())
    telemetry.record_run(result)
    return result


@contextmanager
def _stage(stages: dict[str, float], name: str) -> Iterator[None]:
    """Adds the seconds the block takes to ``stages[name]`` (the run's stage times, in its manifest)."""
    begun = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - begun


def _leave_quarantine(lake: Lake, plan: Plan, result: RunResult) -> None:
    """A released file that is now published (or was meanwhile) leaves the quarantine."""
    for outcome in result.outcomes:
        entry = plan.quarantine.get(outcome.item.key.key)
        if entry is None or outcome.action not in (PUBLISHED, PRESENT):
            continue
        outcome.released_from = entry.path
        try:
            lake.delete(entry.path, etag=entry.etag)
        except AzureError as err:  # the file is published all the same; the next release removes the copy
            log.warning(
                "%s stays in quarantine although it is published: %s; the next quarantine release removes it",
                entry.path,
                describe(err),
            )


def _log_drift(result: RunResult) -> None:
    """One line per dataset with schema drift, however many of its files drifted."""
    for drift in result.schema_drift():
        name = f"{drift['layout']}/{drift['dataset']}"
        if drift["verdict"] == "breaking":
            log.warning(
                "breaking schema drift in %s against the %s (%s): %d files quarantined: %s; "
                "if Haltian changed the schema: python -m shared schema accept %s, then "
                "python -m shared quarantine release %s",
                name,
                drift["against"],
                drift["contract"],
                drift["files"],
                "; ".join(drift["problems"]),
                name,
                name,
            )
        else:
            log.info(
                "%s schema drift in %s against the %s: %d files published: %s",
                drift["verdict"],
                name,
                drift["against"],
                drift["files"],
                "; ".join(drift["problems"]),
            )


def _reconcile(
    bridge: Bridge,
    result: RunResult,
    copying: CopyContext,
    deadline: float,
    progress: Progress | None,
    publisher: DeltaPublisher,
    syncing: ThreadPoolExecutor,
    lock: RunLock,
    records: MonthRecords,
    forced: bool,
) -> ReconcileProgress:
    """The rest of the history, after the window: :func:`shared.reconcile.walk.walk`."""
    settings = bridge.settings
    plan = result.plan
    window = set(plan.months or ())
    leased = plan.leased_folders

    def copy(items: list[WorkItem], stage: TableStage) -> Counter[str | None]:
        return _copy_all(bridge, items, copying, deadline, result, progress, stage, FOLDER_BYTES_KEPT)

    with ThreadPoolExecutor(
        settings.max_concurrency, thread_name_prefix="bridge-list", **_run_threads()
    ) as listing:
        context = Walk(
            bridge.source,
            bridge.lake,
            settings.s3_prefix,
            settings.organization_id,
            result,
            copy,
            lambda folder: TableStage(folder.plan, publisher, syncing),
            listing,
            deadline,
            lock.check,
            lambda folder: (folder.holds_exports and folder.month in window) or folder.prefix in leased,
        )
        return walk(context, records, forced=forced, now=result.started_at)


def _copy_all(
    bridge: Bridge,
    items: list[WorkItem],
    copying: CopyContext,
    deadline: float,
    result: RunResult,
    progress: Progress | None,
    tables: TableStage,
    keep_bytes: int = TABLE_BYTES_KEPT,
) -> Counter[str | None]:
    """Copies the plan's files concurrently, telling ``tables`` of each one done (a dataset's table
    syncs once its last file is); a lost lock stops it (files in flight finish or are abandoned
    at their guard, the rest never start) and is raised. Returns what happened to the files,
    by action (None: left for the next run)."""

    def task(item: WorkItem) -> FileOutcome | None:
        copying.guard()
        if time.monotonic() >= deadline:
            return None  # the time budget is spent: leave the file for the next run
        return copy_file(item, copying)

    done_files = done_bytes = kept = 0
    actions: Counter[str | None] = Counter()
    if progress is not None:
        progress.start(len(items), sum(item.source.size for item in items))
    with ThreadPoolExecutor(
        bridge.settings.max_concurrency, thread_name_prefix="bridge-copy", **_run_threads()
    ) as executor:
        futures = {executor.submit(task, item): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            try:
                outcome = future.result()
            except LockLost:
                executor.shutdown(wait=True, cancel_futures=True)
                raise
            actions[None if outcome is None else outcome.action] += 1
            if outcome is None:
                result.deferred[(item.key.layout, item.key.dataset)] += 1
                tables.copied(item, None)
                continue
            if outcome.content is not None:
                if outcome.action == PUBLISHED and kept + len(outcome.content) <= keep_bytes:
                    kept += len(outcome.content)
                else:
                    outcome.content = None
            result.outcomes.append(outcome)
            tables.copied(item, outcome)
            done_files += 1
            done_bytes += item.source.size
            if progress is not None:
                progress.advance(done_files, done_bytes)
    return actions


def _full_reconcile_due(bridge: Bridge, now: datetime) -> bool:
    state = bridge.lake.read_json(RECONCILE_STATE)
    if not state or "completed_at" not in state:
        return True
    completed = datetime.fromisoformat(state["completed_at"])
    return now - completed >= timedelta(hours=bridge.settings.full_reconcile_hours)


class RunFailed(TransientError):
    """Some files or tables failed and are left for the next run; raised so the invocation shows failed."""
