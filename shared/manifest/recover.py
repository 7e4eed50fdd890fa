"""Accounting for files published by a run that stopped before it wrote its manifest.

Every file carries the id of the run that wrote it. A later run that lists a file whose run
has no manifest writes one for that run, status ``interrupted``, listing exactly the files the
lake shows it wrote, so the manifests account for every file and report each only once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core.exceptions import AzureError

from shared.errors import describe
from shared.haltian.keys import HaltianKey, parse_key
from shared.manifest import index
from shared.manifest.build import build_manifest
from shared.model import (
    FULL,
    PARTITION,
    PUBLISHED,
    QUARANTINED,
    WINDOW,
    FileOutcome,
    Plan,
    RunResult,
    WorkItem,
)
from shared.sink.lake import IF_MISSING, Lake, LakeEntry
from shared.sink.records import META_LISTED_AT, run_started
from shared.paths import LOCK_PATH, manifest_path, manifests_of, partition_lock_path
from shared.paths import quarantined as quarantine_path
from shared.sink.lock import LockRecord, Scope, lock_state
from shared.source.s3 import SourceObject

log = logging.getLogger(__name__)

#: Clock skew between this host and the lake, and blob times' whole seconds.
LISTING_MARGIN = timedelta(seconds=30)


def interrupted_runs(
    lake: Lake, plan: Plan, lease_seconds: float
) -> dict[str, tuple[str, list[tuple[HaltianKey, LakeEntry, bool]]]]:
    """Runs proven gone whose files the plan listed, which no manifest of theirs reports: run id
    -> (the manifest path to write, [(key, entry, quarantined)]). That is a run without a
    manifest, or a publish that landed after a manifest was written for its run."""
    by_run: dict[str, list[tuple[HaltianKey, LakeEntry, bool]]] = {}
    started: dict[str, datetime] = {}
    for entries, quarantined in ((plan.mirrored, False), (plan.quarantine, True)):
        for path, entry in entries.items():
            run_id = entry.record.run_id
            key = parse_key(path)
            began = None if run_id is None else run_started(run_id)
            if run_id and key is not None and began is not None:
                by_run.setdefault(run_id, []).append((key, entry, quarantined))
                started[run_id] = began
    if not by_run:
        return {}
    days = {manifests_of(began) for began in started.values()}
    manifests: dict[str, list[LakeEntry]] = {}
    for day in sorted(days):
        for entry in lake.list_entries(day):
            manifests.setdefault(entry.path.rsplit("/", 1)[1].split(".")[0], []).append(entry)
    locks: dict[str, tuple[LockRecord, str | None]] = {}
    found = {}
    for run_id, files in by_run.items():
        own = manifests.get(run_id, [])
        if own:
            files = _landed_late(lake, own, files, anytime=plan.mode == FULL)
        if files and _gone(lake, run_id, files, plan, lease_seconds, locks):
            found[run_id] = (_numbered(manifest_path(run_id, started[run_id]), len(own)), files)
    return found


def _landed_late(
    lake: Lake,
    manifests: list[LakeEntry],
    files: list[tuple[HaltianKey, LakeEntry, bool]],
    anytime: bool = False,
) -> list[tuple[HaltianKey, LakeEntry, bool]]:
    """The files of a run that has manifests which none of them reports: publishes that landed
    after the listing a manifest written for the run was made from (a request sent just before
    the run learnt it lost its lock). A run's own manifest reports every file it wrote; only
    files that landed after (or within :data:`LISTING_MARGIN` of) the newest listing are read
    against the manifests, so a normal run reads nothing.

    ``anytime``: every file is read against them, whenever it landed. A full reconcile lists the
    history a month folder at a time over several runs, so a manifest written for a stopped run
    may come from a listing that did not reach all of its files; the runs after report the rest.
    """
    listed = [entry.metadata.get(META_LISTED_AT) for entry in manifests]
    if not all(listed):
        return []  # the run wrote its own manifest, after every one of its writes
    since = max(datetime.fromisoformat(at) for at in listed if at) - LISTING_MARGIN
    recent = [f for f in files if anytime or f[1].last_modified is None or f[1].last_modified >= since]
    if not recent:
        return []
    reported = {
        (file["source_key"], file["source_etag"])
        for entry in manifests
        for file in (lake.read_json(entry.path) or {}).get("files", ())
    }
    return [f for f in recent if (f[0].key, f[1].record.source_etag) not in reported]


class ManifestDays:
    """Which runs have manifests of their own, from one listing of each day's manifests (the
    last :data:`DAYS_KEPT` days listed are kept): what a full reconcile asks of every run whose
    files it lists, to keep only the files of runs that may need a manifest written for them."""

    DAYS_KEPT = 62

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._days: OrderedDict[str, dict[str, bool]] = OrderedDict()

    def _runs(self, began: datetime) -> dict[str, bool]:
        """Run id -> whether one of its manifests is its own (not written for it by recovery)."""
        day = manifests_of(began)
        if day in self._days:
            self._days.move_to_end(day)
            return self._days[day]
        runs: dict[str, bool] = {}
        for entry in self._lake.list_entries(day):
            run_id = entry.path.rsplit("/", 1)[1].split(".")[0]
            runs[run_id] = runs.get(run_id, False) or META_LISTED_AT not in entry.metadata
        self._days[day] = runs
        if len(self._days) > self.DAYS_KEPT:
            self._days.popitem(last=False)
        return runs

    def orphans(self, entries: dict[str, LakeEntry], current_run: str) -> dict[str, LakeEntry]:
        """The entries of runs (not ``current_run``) without a manifest of their own."""
        kept = {}
        for path, entry in entries.items():
            run_id = entry.record.run_id
            if run_id is None or run_id == current_run or (began := run_started(run_id)) is None:
                continue
            if not self._runs(began).get(run_id, False):
                kept[path] = entry
        return kept


def _numbered(path: str, count: int) -> str:
    """The path of a run's manifest number ``count`` (0: ``{run}.json``, then ``{run}.1.json``, ...)."""
    return path if count == 0 else f"{path.removesuffix('.json')}.{count}.json"


def _gone(
    lake: Lake,
    run_id: str,
    files: list[tuple[HaltianKey, LakeEntry, bool]],
    plan: Plan,
    lease_seconds: float,
    locks: dict[str, tuple[LockRecord, str | None]],
) -> bool:
    """Whether a run without a manifest has surely stopped, so it will never write one, and
    whether this plan's listing shows every file it may have written (else a later full
    reconcile writes its manifest).

    Its scope (what it listed) is in the lock it held, while it is the holder or the one before;
    a full reconcile sees everything, a window run sees the runs of no more months, a partition
    run sees the runs of its own partition.

    The locks it could hold (the lake's run lock, the partition lease of each month folder it
    wrote to) say: it holds one now (alive); it released one (it finished every write: gone);
    or neither (its lease expired, was broken or is another's). Then it is gone once none of its
    files is younger than one lease when listed: a run stops within a third of a lease of losing
    its lock, so a run that published a file just before the listing might still have a last
    publish on its way.
    """
    paths = {LOCK_PATH} | {partition_lock_path(key.month_folder) for key, _, _ in files}
    released = False
    scope: Scope | None = None
    for path in sorted(paths):
        if path not in locks:
            locks[path] = lock_state(lake.blob_client(path))
        record, state = locks[path]
        previous = record.previous
        if record.run_id == run_id:
            if state == "leased":
                return False
            released = released or state == "available"
            scope = scope or record.scope
        elif previous is not None and previous.run_id == run_id:
            released = released or previous.released
            scope = scope or previous.scope
    if not _covers(plan, scope):
        return False
    if released:
        return True
    newest = max(
        (entry.last_modified for _, entry, _ in files if entry.last_modified is not None), default=None
    )
    listed_at = plan.listed_at
    return newest is None or listed_at is None or (listed_at - newest).total_seconds() >= lease_seconds


def _covers(plan: Plan, scope: Scope | None) -> bool:
    """Whether this plan listed every folder a run of ``scope`` may have written to."""
    if plan.mode == FULL:
        return True
    if not scope:
        return False
    if plan.mode == PARTITION:
        return scope.mode == PARTITION and scope.partition == plan.partition
    if plan.mode == WINDOW and scope.mode == WINDOW:
        return set(scope.months or ()) <= set(plan.months or ())
    return False


def interrupted_manifest(
    run_id: str, files: list[tuple[HaltianKey, LakeEntry, bool]], recovered_by: str, now: datetime
) -> dict[str, Any]:
    """A manifest for a run that stopped before writing its own, from what its files say."""
    outcomes = [
        recovered_outcome(key, entry, quarantined)
        for key, entry, quarantined in sorted(files, key=lambda f: f[0].key)
    ]
    result = RunResult(
        run_id, run_started(run_id) or now, now, Plan(mode="unknown", months=None), {}, outcomes=outcomes
    )
    return build_manifest(result, recovered_by=recovered_by)


def recovered_outcome(key: HaltianKey, entry: LakeEntry, quarantined: bool) -> FileOutcome:
    """A file's outcome as its blob tells it (its metadata was written with its bytes)."""
    record = entry.record
    size = entry.size if record.source_size is None else record.source_size
    source = SourceObject(key.key, size, record.source_etag or "")
    return FileOutcome(
        QUARANTINED if quarantined else PUBLISHED,
        WorkItem(source, key),
        destination=quarantine_path(key.key) if quarantined else key.key,
        bytes=entry.size,
        rows=record.rows,
        schema_fingerprint=record.schema_fingerprint,
        reason=record.reason if quarantined else None,
        integrity=["content-md5"],
    )


def write_interrupted(
    lake: Lake,
    plan: Plan,
    recovered_by: str,
    now: datetime,
    lease_seconds: float,
    guard: Callable[[], None] = lambda: None,
) -> list[str]:
    """Writes a manifest for each interrupted run the plan saw and adds it to the index;
    returns their run ids.

    Each is written with If-None-Match: when the run's own manifest (or another run's recovery)
    got there first, this one is not written, so no two manifests report the same files.
    """
    recovered = []
    metadata = {META_LISTED_AT: plan.listed_at.isoformat()} if plan.listed_at is not None else None
    for run_id, (path, files) in sorted(interrupted_runs(lake, plan, lease_seconds).items()):
        document = interrupted_manifest(run_id, files, recovered_by, now)
        guard()
        if not lake.write_json(path, document, condition=IF_MISSING, metadata=metadata):
            continue
        guard()
        index.append(lake, path, document)
        recovered.append(run_id)
    return recovered


def index_stopped(
    lake: Lake, now: datetime, lease_seconds: float, guard: Callable[[], None] = lambda: None
) -> list[str]:
    """Adds to the index the manifests whose run stopped between writing one and its index
    entry; returns those runs' ids.

    A manifest counts once it is a lease old and its run holds no lock it could hold (the
    lake's run lock, the partition lease its manifest names): a run alive indexes its own
    manifest right after writing it. Adding is idempotent, so a run that indexes its manifest
    late meanwhile gets no second entry.
    """
    stopped = []
    for entry in index.unindexed(lake, now, index.read(lake)):
        if entry.last_modified is not None and (now - entry.last_modified).total_seconds() < lease_seconds:
            continue
        document = lake.read_json(entry.path)
        if document is None or _holds_a_lock(lake, document):
            continue
        guard()
        index.append(lake, entry.path, document)
        log.warning(
            "run %s stopped between writing its manifest and indexing it; its manifest is now in the index",
            document["run_id"],
        )
        stopped.append(document["run_id"])
    return stopped


def _holds_a_lock(lake: Lake, manifest: dict[str, Any]) -> bool:
    paths = [LOCK_PATH] + ([partition_lock_path(manifest["partition"])] if manifest.get("partition") else [])
    for path in paths:
        record, state = lock_state(lake.blob_client(path))
        if record.run_id == manifest["run_id"] and state == "leased":
            return True
    return False


def account_for_stopped_runs(
    lake: Lake, plan: Plan, result: RunResult, lease_seconds: float, guard: Callable[[], None]
) -> None:
    """Writes manifests for the runs the plan shows stopped before writing their own, and
    indexes the manifests of runs that stopped before their index entry.

    Not this run's own work: when the lake fails it, the run still writes its manifest, ends
    ``incomplete`` (a full reconcile is then not done, so the next run is one), and the next
    run accounts for those runs. A lost lock still stops the run.
    """
    try:
        result.recovered_runs = write_interrupted(
            lake, plan, result.run_id, result.finished_at, lease_seconds, guard
        )
        result.indexed_runs = index_stopped(lake, datetime.now(timezone.utc), lease_seconds, guard)
    except AzureError as err:
        result.recovery_error = describe(err)
        log.warning(
            "runs that stopped before writing their manifest are left for the next run to account for: %s",
            result.recovery_error,
        )
