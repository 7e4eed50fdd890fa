"""A run's part of the full reconcile: the history outside the run's window, one month folder at
a time, oldest first, in what is left of the time budget once the window's files are copied.

Each folder's bucket side is listed and, unless it is as recorded (:mod:`.records`), its lake
side and quarantine too; the two are joined, the folder's new files copied and its table synced,
and the folder let go before the next: memory is bounded by the largest folder, not by the
history. A few folders are listed ahead while the current one copies; at most
:data:`SYNCS_AHEAD` folders' table syncs run behind it (never two of one table).

A pass through the history may take several runs (a first run into years of history, a budget
spent on a large delivery): each run goes on after the last folder up to which every run before
finished, and a pass is complete, and the full reconcile done, when one run reaches the end.
The cursor never moves past a folder with a file that failed or waited, or a table that did not
sync, so the pass comes back to it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import datetime, timezone

from azure.core.exceptions import AzureError
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import TransientError, describe
from shared.manifest.recover import ManifestDays
from shared.model import (
    FAILED,
    PRESENT,
    PUBLISHED,
    QUARANTINED,
    ReconcileProgress,
    RunResult,
    TableChange,
    WorkItem,
)
from shared.plan import FolderPlan, organization_roots, plan_folder
from shared.reconcile.folders import Folder, month_folders, order_of
from shared.reconcile.records import MonthRecords
from shared.sink.lake import Lake
from shared.source.s3 import S3Source
from shared.tables.stage import TableStage
from shared.transport import TransportError

log = logging.getLogger(__name__)

#: Folders whose table syncs may run behind the folder being copied.
SYNCS_AHEAD = 4
BUDGET_SPENT = "the run's time budget was spent"
#: Folders walked between two collections of Python's cyclic garbage (measured in
#: tests/test_reconcile.py: without them the walk's peak grew 2.5x over 4x the folders).
COLLECT_EVERY = 8
#: Folders listed ahead of the one being copied.
LISTED_AHEAD = 4
#: Errors that stop the walk (the run keeps what it did; the next run goes on from the cursor).
LISTING_ERRORS = (AzureError, BotoCoreError, ClientError, TransportError, TransientError)


@dataclass
class Walk:
    """What the walk needs of its run."""

    source: S3Source
    lake: Lake
    prefix: str
    organization: str | None
    result: RunResult
    #: Copies a folder's files, telling its table stage of each; returns what happened to them
    #: (by action; files left for the next run as ``None``).
    copy: Callable[[list[WorkItem], TableStage], Counter[str | None]]
    #: A table stage for a folder's plan (its syncs on the run's sync threads).
    stage: Callable[[FolderPlan], TableStage]
    listing: Executor
    deadline: float
    guard: Callable[[], None]
    #: Month folders the window part of the run covered, and those backfill workers hold.
    skip: Callable[[Folder], bool]


@dataclass
class _Pending:
    folder: FolderPlan
    stage: TableStage | None
    clean: bool
    actions: Counter[str | None] = field(default_factory=Counter)
    changes: list[TableChange] | None = None


def walk(ctx: Walk, records: MonthRecords, *, forced: bool, now: datetime) -> ReconcileProgress:
    """Walks the history from the pass's cursor (from the start when ``forced`` or when no pass is
    under way), recording each folder in ``records``; returns how far it got."""
    started = now if forced or records.pass_started is None else datetime.fromisoformat(records.pass_started)
    cursor = None if forced or records.pass_started is None else records.cursor
    progress = ReconcileProgress(started, forced=forced, cursor=cursor)
    plan = ctx.result.plan
    if time.monotonic() >= ctx.deadline:
        progress.stopped = BUDGET_SPENT
        records.move(cursor, started.isoformat())
        return progress
    try:
        found = month_folders(
            ctx.source, organization_roots(ctx.source, ctx.prefix, ctx.organization), ctx.listing
        )
    except LISTING_ERRORS as err:
        progress.stopped = f"listing the month folders failed: {describe(err)}"
        log.warning("full reconcile: %s; the next run tries again", progress.stopped)
        return progress
    for key in found.stray:
        plan.listed_objects += 1
        plan.note_unrecognized(key)
    folders = [f for f in found.folders if not ctx.skip(f)]
    todo = after(folders, cursor)
    progress.folders, progress.done_before = len(folders), len(folders) - len(todo)
    manifests = ManifestDays(ctx.lake)
    pending: deque[_Pending] = deque()
    clean_so_far = True
    planned_plans = planned_folders(
        ctx.source,
        ctx.lake,
        todo,
        records,
        ctx.listing,
        organization=ctx.organization,
        compare=forced,
        now=now,
    )
    for planned in planned_plans:
        if progress.stopped is None and time.monotonic() >= ctx.deadline:
            progress.stopped = BUDGET_SPENT
        if progress.stopped is not None:
            break
        try:
            folder = planned.result()
        except LISTING_ERRORS as err:
            progress.stopped = f"listing failed: {describe(err)}"
            break
        plan.absorb(folder.plan)
        pending.append(_visit(ctx, folder, manifests, pending))
        if pending[-1].actions[None]:  # files left: the budget ran out during the folder's copies
            progress.stopped = BUDGET_SPENT
        clean_so_far = _settle(ctx, pending, records, progress, clean_so_far, now, block=False)
    _settle(ctx, pending, records, progress, clean_so_far, now, block=True)
    if progress.stopped is None and progress.cursor == (todo[-1].prefix if todo else cursor):
        progress.completed, progress.cursor = True, None
        records.move(None, None)
    else:
        records.move(progress.cursor, started.isoformat())
        log.info(
            "full reconcile: %d of %d month folders done, %s; the next run goes on after %s",
            progress.done_before + progress.unchanged + progress.compared,
            progress.folders,
            progress.stopped or "some files or tables are left for the next run",
            progress.cursor or "the start",
        )
    return progress


def after(folders: list[Folder], cursor: str | None) -> list[Folder]:
    """The folders a pass has left after ``cursor`` (all of them for None)."""
    if cursor is None:
        return folders
    last = order_of(cursor)
    return [folder for folder in folders if folder.order > last]


def planned_folders(
    source: S3Source,
    lake: Lake,
    todo: list[Folder],
    records: MonthRecords,
    listing: Executor,
    *,
    organization: str | None,
    compare: bool,
    now: datetime,
) -> Iterator[Future[FolderPlan]]:
    """The folders' plans in walk order, :data:`LISTED_AHEAD` listed ahead on ``listing``'s
    threads (cancelled when the caller stops early)."""
    ahead: deque[Future[FolderPlan]] = deque()
    folders = iter(todo)
    listed = 0
    try:
        while True:
            while len(ahead) < LISTED_AHEAD and (folder := next(folders, None)) is not None:
                ahead.append(
                    listing.submit(
                        plan_folder,
                        source,
                        lake,
                        folder,
                        records,
                        organization=organization,
                        compare=compare,
                        now=now,
                    )
                )
            if not ahead:
                return
            yield ahead.popleft()
            listed += 1
            if listed % COLLECT_EVERY == 0:
                gc.collect()  # the SDKs' listings leave cycles; unswept, they grow with the folders walked
    finally:
        for future in ahead:
            future.cancel()


def _visit(ctx: Walk, folder: FolderPlan, manifests: ManifestDays, pending: deque[_Pending]) -> _Pending:
    """Starts a folder's work: its copies now, its table's sync on the sync threads."""
    if folder.record is not None:
        return _Pending(folder, None, clean=True)
    plan = ctx.result.plan
    orphans = manifests.orphans(folder.plan.mirrored, ctx.result.run_id)
    quarantined = manifests.orphans(folder.plan.quarantine, ctx.result.run_id)
    plan.mirrored.update(orphans)  # for the run's recovery (shared.manifest.recover)
    plan.quarantine.update(quarantined)
    table = (folder.folder.layout, folder.folder.dataset)
    for earlier in pending:  # one sync of a table at a time
        if (
            earlier.stage is not None
            and (earlier.folder.folder.layout, earlier.folder.folder.dataset) == table
        ):
            _finish(earlier)
    ctx.guard()
    stage = ctx.stage(folder)
    actions = ctx.copy(folder.plan.items, stage)
    folder.plan.mirrored, folder.plan.quarantine = {}, {}
    left = actions[FAILED] + actions[None]
    return _Pending(folder, stage, left == 0 and not orphans and not quarantined, actions)


def _finish(pending: _Pending) -> None:
    if pending.stage is not None and pending.changes is None:
        pending.changes = pending.stage.finish()
        pending.clean = pending.clean and not any(change.error for change in pending.changes)


def _settle(
    ctx: Walk,
    pending: deque[_Pending],
    records: MonthRecords,
    progress: ReconcileProgress,
    clean_so_far: bool,
    now: datetime,
    *,
    block: bool,
) -> bool:
    """Takes the finished folders off the front of ``pending`` (all of them when ``block``):
    records each clean one, moves the cursor past each while every one before was clean.
    Returns whether every folder so far was."""
    while pending and (block or len(pending) > SYNCS_AHEAD or _synced(pending[0])):
        done = pending.popleft()
        _finish(done)
        if done.changes:
            ctx.result.tables.extend(done.changes)
        folder = done.folder
        if folder.record is not None:
            progress.unchanged += 1
        else:
            progress.compared += 1
            if done.clean:
                records.record(folder.folder.prefix, _record(folder, done.actions, now))
        clean_so_far = clean_so_far and done.clean
        if clean_so_far:
            progress.cursor = folder.folder.prefix
    return clean_so_far


def _synced(pending: _Pending) -> bool:
    return pending.stage is None or pending.stage.done()


def _record(folder: FolderPlan, actions: Counter[str | None], now: datetime) -> dict[str, object]:
    """A folder found whole: every file mirrored or quarantined (before or by this run)."""
    plan = folder.plan
    name = (folder.folder.layout, folder.folder.dataset)
    newest = plan.newest_delivered.get(name)
    return {
        "digest": folder.digest,
        "objects": plan.listed_objects,
        "present": plan.present[name] + actions[PUBLISHED] + actions[PRESENT],
        "quarantined": plan.quarantined[name] + actions[QUARANTINED],
        "unrecognized": plan.unrecognized,
        "other_organization": plan.other_organization,
        "newest": None if newest is None else newest.isoformat(),
        "checked_at": now.astimezone(timezone.utc).isoformat(),
    }
