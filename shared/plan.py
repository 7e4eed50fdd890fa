"""Planning a run: which source files are new, decided against the lake as the ledger.

No LastModified watermark: S3 stamps a multipart upload with the time it *started*, so a
watermark can skip a file for ever. A source file is new when the lake holds no verified copy
of that key with the same ETag and size (see :func:`decide`). To keep hourly runs cheap, only
the month folders that can hold new files are listed; a full reconcile lists everything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from shared.haltian.contracts import snapshots_first
from shared.haltian.keys import parse_key
from shared.model import FULL, PARTITION, WINDOW, Plan, WorkItem
from shared.paths import quarantined as quarantine_path
from shared.reconcile.folders import Folder, folder_of
from shared.reconcile.records import MonthRecords, listing_digest
from shared.sink.lake import Lake, LakeEntry
from shared.source.s3 import S3Source, SourceObject


class Decision(str, Enum):
    PRESENT = "present"
    QUARANTINED = "quarantined"
    NEW = "new"
    CHANGED = "changed"


def decide(obj: SourceObject, mirrored: LakeEntry | None, quarantined: LakeEntry | None) -> Decision:
    """Whether a source object still has to be copied.

    The rule: the copy at the mirrored path counts when its metadata names the same source
    ETag and size and its own size equals that size (it was written, with that metadata,
    only after verification, in one atomic commit). A quarantined copy of that same version
    also counts: it was judged and need not be judged again. Otherwise the file is NEW, or
    CHANGED when the mirrored path holds an older version.
    """
    if mirrored is not None and mirrored.mirrors(obj.etag, obj.size):
        return Decision.PRESENT
    if quarantined is not None and quarantined.holds(obj.etag, obj.size):
        return Decision.QUARANTINED
    return Decision.CHANGED if mirrored is not None else Decision.NEW


def window_months(now: datetime, lookback: int) -> list[tuple[int, int]]:
    """The current month and ``lookback`` months before it, oldest first."""
    index = now.year * 12 + now.month - 1
    return [(i // 12, i % 12 + 1) for i in range(index - lookback, index + 1)]


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


def organization_roots(source: S3Source, prefix: str, organization: str | None) -> list[str]:
    """The ``.../{org}/`` folders to read: legacy ones, and v1 ones below ``v1/``.

    With an organization set, its folders are named directly, so the bridge needs list
    permission on that organization's folders only.
    """
    last = prefix.rstrip("/").rsplit("/", 1)[-1]
    if _is_uuid(last):
        return [prefix]
    if organization is not None:
        return [f"{prefix}{organization}/", f"{prefix}v1/{organization}/"]
    roots: list[str] = []
    for folder in source.list_folders(prefix):
        name = folder[len(prefix) : -1]
        if _is_uuid(name):
            roots.append(folder)
        elif name == "v1":
            roots.extend(f for f in source.list_folders(folder) if _is_uuid(f[len(folder) : -1]))
    return roots


def make_plan(
    source: S3Source,
    lake: Lake,
    *,
    prefix: str,
    organization: str | None,
    full: bool,
    months: list[tuple[int, int]],
    executor: Executor,
    partition: str | None = None,
    leased: frozenset[str] = frozenset(),
) -> Plan:
    """Lists the source and the lake (in parallel) and joins them into a plan.

    ``partition`` plans one month folder only (a backfill worker); ``leased`` month folders
    are being copied by backfill workers, so their files are left to them.
    """
    if partition is not None:
        plan = Plan(mode=PARTITION, months=None, partition=partition)
        prefixes = [partition]
    else:
        # A full reconcile copies the window first (new data first); the rest of the history is
        # walked afterwards, month folder by month folder (shared.reconcile.walk).
        plan = Plan(mode=FULL if full else WINDOW, months=[f"{y:04d}-{m:02d}" for y, m in months])
        roots = organization_roots(source, prefix, organization)
        datasets = [
            d
            for folders in executor.map(source.list_folders, roots)
            for d in folders
            if folder_of(f"{d}0000/00/", "").holds_exports  # odd folders: the full reconcile counts them
        ]
        prefixes = [f"{d}{y:04d}/{m:02d}/" for d in datasets for y, m in months]
    plan.listed_prefixes = len(prefixes)
    plan.listed_at = datetime.now(timezone.utc)

    source_lists = executor.map(lambda p: list(source.list_objects(p)), prefixes)
    mirrored_lists = executor.map(lambda p: list(lake.list_entries(p)), prefixes)
    quarantined = _index(lake.list_entries(quarantine_path(partition or prefix)), strip=quarantine_path(""))
    mirrored = _index((e for entries in mirrored_lists for e in entries), strip="")
    plan.mirrored = mirrored
    plan.quarantine = quarantined
    _join(plan, (o for objects in source_lists for o in objects), mirrored, quarantined, organization)
    plan.leased_folders = leased
    if leased:
        kept = [item for item in plan.items if item.key.month_folder not in leased]
        plan.leased = len(plan.items) - len(kept)
        plan.items = kept
    # Oldest first (the lag of every dataset shrinks alike when the time budget ends a run); within
    # a window, snapshot datasets first: a table syncs once its dataset's files are copied
    # (shared.tables.stage), and theirs take longest.
    _oldest_first(plan)
    return plan


def _oldest_first(plan: Plan) -> None:
    plan.items.sort(
        key=lambda item: (
            item.key.window_start,
            *snapshots_first(item.key.layout, item.key.dataset),
            item.key.key,
        )
    )


@dataclass
class FolderPlan:
    """One month folder's part of a full reconcile."""

    folder: Folder
    #: The folder's own plan: its files to copy, and its mirrored and quarantined copies.
    plan: Plan
    #: The digest of the folder's listing in the bucket (``reconcile.records.listing_digest``).
    digest: str
    #: The record that showed the folder unchanged, so its lake side was not listed (else None).
    record: dict[str, Any] | None


def plan_folder(
    source: S3Source,
    lake: Lake,
    folder: Folder,
    records: MonthRecords,
    *,
    organization: str | None,
    compare: bool,
    now: datetime,
) -> FolderPlan:
    """One month folder joined with its mirror and quarantine, both listed in full; or, when the
    bucket's side is as recorded and ``compare`` is false, the record's counts alone."""
    plan = Plan(mode=FULL, months=None, listed_at=datetime.now(timezone.utc))
    plan.listed_prefixes = 1
    objects = list(source.list_objects(folder.prefix))
    digest = listing_digest(objects)
    record = None if compare else records.unchanged(folder.prefix, digest, now)
    if record is not None:
        name = (folder.layout, folder.dataset)
        plan.listed_objects = len(objects)
        plan.present[name] += record["present"]
        plan.quarantined[name] += record["quarantined"]
        plan.unrecognized = record["unrecognized"]
        plan.other_organization = record["other_organization"]
        if record.get("newest"):
            plan.note_newest(name, datetime.fromisoformat(record["newest"]), published=True)
        return FolderPlan(folder, plan, digest, record)
    if folder.holds_exports:
        plan.mirrored = _index(lake.list_entries(folder.prefix), strip="")
        plan.quarantine = _index(lake.list_entries(quarantine_path(folder.prefix)), strip=quarantine_path(""))
    _join(plan, objects, plan.mirrored, plan.quarantine, organization)
    _oldest_first(plan)
    return FolderPlan(folder, plan, digest, None)


def _index(entries: Iterable[LakeEntry], strip: str) -> dict[str, LakeEntry]:
    return {entry.path[len(strip) :]: entry for entry in entries}


def _join(
    plan: Plan,
    objects: Iterable[SourceObject],
    mirrored: dict[str, LakeEntry],
    quarantined: dict[str, LakeEntry],
    organization: str | None,
) -> None:
    for obj in objects:
        plan.listed_objects += 1
        key = parse_key(obj.key)
        if key is None:
            plan.note_unrecognized(obj.key)
            continue
        if organization is not None and key.organization != organization:
            plan.other_organization += 1
            continue
        decision = decide(obj, mirrored.get(obj.key), quarantined.get(obj.key))
        name = (key.layout, key.dataset)
        plan.note_newest(name, key.window_start, published=obj.key in mirrored)
        if decision is Decision.PRESENT:
            plan.present[name] += 1
        elif decision is Decision.QUARANTINED:
            plan.quarantined[name] += 1
        else:
            plan.items.append(WorkItem(obj, key, mirrored.get(obj.key)))
