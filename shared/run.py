"""One bridge run: lock, plan, copy concurrently within the time budget, then the manifest.

What readers see is written in order: verified data first (each file atomically), then the
Delta tables, the manifest last. A run that dies leaves no manifest; the next run finds the
work that is left by comparing the bucket with the lake again, and writes a manifest for the
dead run from the files it left.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

from shared import logs, telemetry
from shared.copy import FAILED, PUBLISHED, QUARANTINED, FileOutcome, copy_file
from shared.haltian.keys import parse_key
from shared.manifest.build import LATEST, build_manifest, manifest_path
from shared.manifest.recover import write_interrupted
from shared.plan import FULL, Plan, WorkItem, make_plan, window_months
from shared.progress import Progress
from shared.settings import Settings, SettingsError
from shared.sink.blob_writer import azure_transport
from shared.sink.lake import (
    META_SOURCE_ETAG, STATE, Lake, delta_storage_options, make_container_client, make_credential,
)
from shared.sink.lock import LOCK_PATH, PARTITION_LOCKS, RunLock, RunLocked, partition_lock_path, partition_of_lock
from shared.source.s3 import S3Source, check_access, make_s3_client
from shared.tables.delta import DeltaPublisher, TableChange, TableFile
from shared.verify.schema import SchemaJudge

log = logging.getLogger(__name__)

RECONCILE_STATE = f"{STATE}/reconcile.json"


@dataclass(frozen=True)
class Bridge:
    """The clients a run needs; built once per worker process and reused across runs."""

    settings: Settings
    source: S3Source
    lake: Lake
    credential: Any | None = None

    def delta_publisher(self, run_id: str) -> DeltaPublisher:
        """A publisher with storage options fetched now (a fresh token in Azure)."""
        options = delta_storage_options(self.settings, self.credential)
        return DeltaPublisher(self.lake, self.settings.adls_container, options, run_id)

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
    client = make_s3_client(settings, credential)
    check_access(client, settings)
    source = S3Source(client, settings.s3_bucket)
    lake = Lake(make_container_client(settings, credential), settings.adls_root,
                azure_transport(settings.connection_pool_size))
    return Bridge(settings, source, lake, credential)


@dataclass
class RunResult:
    """A finished run: the plan, every file's outcome, and where the manifest went."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    plan: Plan
    settings: dict[str, Any]
    outcomes: list[FileOutcome] = field(default_factory=list)
    deferred: Counter = field(default_factory=Counter)
    tables: list[TableChange] = field(default_factory=list)
    recovered_runs: list[str] = field(default_factory=list)
    full_reconcile_completed: bool = False
    manifest_path: str | None = None

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action == action)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def table_errors(self) -> int:
        return sum(1 for t in self.tables if t.error)

    @property
    def status(self) -> str:
        """``complete`` when nothing is left for the next run, else ``incomplete``."""
        return "incomplete" if self.failed or self.deferred or self.table_errors else "complete"

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
            f"in {(self.finished_at - self.started_at).total_seconds():.1f} s"
        )


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def plan_run(bridge: Bridge, *, full: bool = False, now: datetime | None = None,
             partition: str | None = None) -> Plan:
    """What a run would copy now; reads the bucket and the lake, writes nothing.

    A run of the whole lake leaves the month folders that backfill workers hold to them.
    """
    now = now or datetime.now(timezone.utc)
    settings = bridge.settings
    full = partition is None and (full or _full_reconcile_due(bridge, now))
    leased = frozenset() if partition else frozenset(
        partition_of_lock(path) for path in bridge.lake.leased(PARTITION_LOCKS))
    with ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="bridge-list") as executor:
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


def run_once(bridge: Bridge, *, full: bool = False, now: datetime | None = None,
             progress: Progress | None = None, partition: str | None = None) -> RunResult:
    """One run: everything the timer and ``python -m shared run`` do.

    With ``partition`` (a month folder), the run of one backfill worker: it holds that
    partition's lease instead of the lake's run lock, plans that folder only, and leaves
    ``_manifests/latest.json`` to the runs of the whole lake.

    Raises:
        RunLocked: another run holds the lake's lock (or the partition's).
    """
    started = now or datetime.now(timezone.utc)
    clock_start = time.monotonic()
    run_id = new_run_id(started)
    logs.set_run_id(run_id)
    settings = bridge.settings
    lock_path = LOCK_PATH if partition is None else partition_lock_path(partition)
    with RunLock(bridge.lake, run_id, settings.lock_seconds, lock_path):
        plan = plan_run(bridge, full=full, now=started, partition=partition)
        log.info("planned %s run: %d files to copy of %d listed", plan.mode, len(plan.items),
                 plan.listed_objects)
        result = RunResult(run_id, started, started, plan, settings.describe())
        deadline = clock_start + settings.time_budget_seconds
        judge = SchemaJudge(bridge.lake, run_id)
        _copy_all(bridge, plan.items, judge, run_id, deadline, result, progress)
        result.tables = _sync_tables(bridge, plan, result, run_id)
        result.finished_at = datetime.now(timezone.utc)
        result.recovered_runs = write_interrupted(bridge.lake, plan, run_id, result.finished_at)
        result.full_reconcile_completed = plan.mode == FULL and result.status == "complete"
        _write_manifest(bridge.lake, result)
    log.info("%s", result.summary())
    telemetry.record_run(result)
    return result


def _copy_all(bridge: Bridge, items: list[WorkItem], judge: SchemaJudge, run_id: str,
              deadline: float, result: RunResult, progress: Progress | None) -> None:
    def task(item: WorkItem) -> FileOutcome | None:
        if time.monotonic() >= deadline:
            return None  # the time budget is spent: leave the file for the next run
        return copy_file(item, bridge.source, bridge.lake, judge, run_id,
                         server_side=bridge.settings.copy_mode == "server")

    done_files = done_bytes = 0
    if progress is not None:
        progress.start(len(items), sum(item.source.size for item in items))
    with ThreadPoolExecutor(bridge.settings.max_concurrency, thread_name_prefix="bridge-copy") as executor:
        futures = {executor.submit(task, item): item for item in items}
        for future in as_completed(futures):
            item = futures[future]
            outcome = future.result()
            if outcome is None:
                result.deferred[(item.key.layout, item.key.dataset)] += 1
                continue
            result.outcomes.append(outcome)
            done_files += 1
            done_bytes += item.source.size
            if progress is not None:
                progress.advance(done_files, done_bytes)
    result.outcomes.sort(key=lambda o: o.item.key.key)


def _sync_tables(bridge: Bridge, plan: Plan, result: RunResult, run_id: str) -> list[TableChange]:
    """Brings every dataset's Delta table in line with the verified files this run knows of.

    The candidates are the verified copies the plan listed (which heals a crash between
    publish and commit) and the files this run published.
    """
    candidates: dict[str, TableFile] = {}
    for path, entry in plan.mirrored.items():
        key = parse_key(path)
        if key is not None and entry.metadata.get(META_SOURCE_ETAG) and entry.last_modified is not None:
            candidates[path] = TableFile(key, entry.size, entry.last_modified)
    for outcome in result.outcomes:
        if outcome.action == PUBLISHED and outcome.lake_modified is not None:
            key = outcome.item.key
            candidates[key.key] = TableFile(key, outcome.bytes, outcome.lake_modified, outcome.table)
    by_table: dict[str, list[TableFile]] = {}
    for candidate in candidates.values():
        by_table.setdefault(candidate.key.dataset_folder, []).append(candidate)
    if not by_table:
        return []
    publisher = bridge.delta_publisher(run_id)
    with ThreadPoolExecutor(bridge.settings.max_concurrency, thread_name_prefix="bridge-delta") as executor:
        changes = list(executor.map(publisher.sync, (by_table[folder] for folder in sorted(by_table))))
    return [change for change in changes if change.changed or change.excluded or change.error]


def _full_reconcile_due(bridge: Bridge, now: datetime) -> bool:
    state = bridge.lake.read_json(RECONCILE_STATE)
    if not state or "completed_at" not in state:
        return True
    completed = datetime.fromisoformat(state["completed_at"])
    return now - completed >= timedelta(hours=bridge.settings.full_reconcile_hours)


def _write_manifest(lake: Lake, result: RunResult) -> None:
    document = build_manifest(result)
    path = manifest_path(result.run_id, result.started_at)
    lake.write_json(path, document)
    if result.plan.partition is None:
        lake.write_json(LATEST, document)
    result.manifest_path = lake.path(path)
    if result.full_reconcile_completed:
        lake.write_json(RECONCILE_STATE, {"completed_at": result.started_at.isoformat(),
                                          "run_id": result.run_id})


class RunFailed(Exception):
    """Some files failed and are left for the next run; raised so the invocation shows failed."""


def run_for_timer(environ: Mapping[str, str], *, past_due: bool = False) -> RunResult | None:
    """What the timer trigger does: one run with settings from the environment.

    Returns None when another run holds the lock (that is not a failure: the other run does
    the work).

    Raises:
        SettingsError: the app settings are wrong; the message names each one.
        RunFailed: the run finished, but some files failed; the manifest lists them.
    """
    logs.configure()
    telemetry.configure(environ)
    if past_due:
        log.warning("timer is past due: the previous scheduled run was missed or late")
    settings = Settings.from_mapping(environ)
    try:
        result = run_once(Bridge.from_settings(settings))
    except RunLocked as err:
        log.warning("%s", err)
        return None
    except SettingsError as err:  # S3 refused the key or role, or the region is wrong: one plain line
        log.error("run not started: %s", err)
        telemetry.record_failed_run()
        raise
    except Exception:
        log.exception("run stopped before it could write its manifest; the next run starts over")
        telemetry.record_failed_run()
        raise
    if result.failed:
        log.error("%s; the failed files are listed in %s", result.summary(), result.manifest_path)
        raise RunFailed(result.summary())
    return result
