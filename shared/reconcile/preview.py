"""``python -m shared plan``: what a run would copy, its full reconcile's walk included, one month
folder at a time (the window's plan first), without copying or writing anything."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from shared.model import FULL, Plan
from shared.plan import organization_roots
from shared.reconcile.folders import month_folders
from shared.reconcile.records import MonthRecords
from shared.reconcile.walk import after, planned_folders
from shared.run import Bridge, plan_run


def plan_history(bridge: Bridge, *, full: bool = False, now: datetime | None = None) -> Iterator[Plan]:
    """The run's window plan, then (when it is a full reconcile) each month folder's plan in walk
    order: every folder with ``full`` (``--all``), else those the pass under way has left, each
    compared with the lake unless its record shows it unchanged. The window plan counts the
    unrecognised keys found between the folders."""
    now = now or datetime.now(timezone.utc)
    window = plan_run(bridge, full=full, now=now)
    if window.mode != FULL:
        yield window
        return
    settings, lake = bridge.settings, bridge.lake
    records = MonthRecords.read(lake)
    months = set(window.months or ())
    with ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="bridge-list") as listing:
        found = month_folders(
            bridge.source,
            organization_roots(bridge.source, settings.s3_prefix, settings.organization_id),
            listing,
        )
        for key in found.stray:
            window.listed_objects += 1
            window.note_unrecognized(key)
        yield window
        folders = [
            f
            for f in found.folders
            if not (f.holds_exports and f.month in months) and f.prefix not in window.leased_folders
        ]
        todo = folders if full or records.pass_started is None else after(folders, records.cursor)
        for planned in planned_folders(
            bridge.source,
            lake,
            todo,
            records,
            listing,
            organization=settings.organization_id,
            compare=full,
            now=now,
        ):
            yield planned.result().plan


@dataclass
class Preview:
    """A whole plan's counts, with its files to copy (the first ``keep`` of them, in walk order)."""

    plan: Plan
    to_copy: int = 0
    to_copy_bytes: int = 0


def preview(bridge: Bridge, *, full: bool = False, keep: int | None = None) -> Preview:
    """The plans of :func:`plan_history` in one: memory for ``keep`` files to copy (None: all)."""
    whole: Preview | None = None
    for plan in plan_history(bridge, full=full):
        if whole is None:
            whole = Preview(plan, len(plan.items), sum(item.source.size for item in plan.items))
            if keep is not None:
                del plan.items[keep:]
            plan.mirrored, plan.quarantine = {}, {}
            continue
        whole.plan.absorb(plan)
        whole.to_copy += len(plan.items)
        whole.to_copy_bytes += sum(item.source.size for item in plan.items)
        room = None if keep is None else max(0, keep - len(whole.plan.items))
        whole.plan.items += plan.items[:room]
    assert whole is not None
    return whole
