"""Operator commands for schema changes: ``schema show|accept`` and ``quarantine list|release``.

When Haltian changes a dataset's schema, its new files are quarantined as breaking drift
until an operator decides. Nothing here needs a redeploy:

* ``schema show LAYOUT/DATASET``: the contract in force (shipped or accepted), the newest
  schema seen in the lake, and how they differ;
* ``schema accept LAYOUT/DATASET``: the newest quarantined schema (or else the newest seen)
  becomes the dataset's contract, stored in the lake (:mod:`shared.verify.accepted`);
* ``quarantine list [LAYOUT/DATASET]``: what is in quarantine, and why;
* ``quarantine release [LAYOUT/DATASET]``: a run over the quarantined files, copied again
  from the source and judged by the contract in force; those that pass are published exactly
  as a normal run publishes and join their tables, the rest stay with their reason brought
  up to date.

The table commands (``tables rebuild``, ``tables drop-legacy``) are in :mod:`shared.admin_tables`.

Every command that changes the lake holds the run lock, so it never races a timer run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.errors import TerminalError
from shared.haltian.contracts import (
    Column,
    Verdict,
    check_schema,
    columns_of,
    columns_to_json,
    contract_for,
    fingerprint,
)
from shared.haltian.keys import LEGACY, V1, HaltianKey, parse_key
from shared.model import RELEASE, Plan, RunResult, WorkItem
from shared.run import Bridge, run_once
from shared.sink.records import new_run_id
from shared.paths import contract_path, quarantined
from shared.sink.lake import Lake, LakeEntry
from shared.sink.lock import RunLock
from shared.verify.accepted import ContractBook, ContractInForce, accept
from shared.verify.parquet import UnreadableParquet, read_footer

log = logging.getLogger(__name__)

_DATASET = re.compile(r"^(legacy|v1)/([A-Za-z][A-Za-z0-9]{0,99})$")


class AdminError(TerminalError):
    """An operator's request that cannot be carried out; the message says what to do instead."""


def parse_dataset(text: str) -> tuple[str, str]:
    """``legacy/measurementCO2`` as (layout, dataset).

    Raises:
        AdminError: not LAYOUT/DATASET with a known layout.
    """
    match = _DATASET.match(text or "")
    if match is None:
        raise AdminError(
            f"{text!r} is not LAYOUT/DATASET: the layout is {LEGACY} or {V1}, "
            "for example legacy/measurementCO2"
        )
    return match[1], match[2]


@dataclass(frozen=True)
class SeenSchema:
    """One file's schema in the lake, and where it was seen."""

    key: HaltianKey
    path: str
    quarantined: bool
    columns: tuple[Column, ...]
    reason: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "source_key": self.key.key,
            "path": self.path,
            "quarantined": self.quarantined,
            "reason": self.reason,
            "fingerprint": fingerprint(self.columns),
            "columns": columns_to_json(self.columns),
        }


def quarantined_entries(
    lake: Lake, prefix: str, layout: str | None = None, dataset: str | None = None
) -> list[tuple[HaltianKey | None, LakeEntry]]:
    """What is in quarantine below the source prefix, oldest first, with the key it holds.

    The key is None for an old version kept when a file changed at the source (those are kept
    for reference, never released).
    """
    found = []
    for entry in lake.list_entries(quarantined(prefix)):
        key = parse_key(entry.path[len(quarantined("")) :])
        if (layout or dataset) and (key is None or key.layout != layout or key.dataset != dataset):
            continue
        found.append((key, entry))
    found.sort(
        key=lambda item: (
            (item[0].window_start, item[0].key)
            if item[0]
            else (datetime.min.replace(tzinfo=timezone.utc), item[1].path)
        )
    )
    return found


def list_quarantine(bridge: Bridge, selection: str | None) -> dict[str, Any]:
    layout, dataset = parse_dataset(selection) if selection else (None, None)
    files = []
    for key, entry in quarantined_entries(bridge.lake, bridge.settings.s3_prefix, layout, dataset):
        files.append(
            {
                "path": entry.path,
                "source_key": key.key if key else None,
                "layout": key.layout if key else None,
                "dataset": key.dataset if key else None,
                "kind": "file" if key else "replaced version",
                "reason": entry.record.reason,
                "schema_fingerprint": entry.record.schema_fingerprint,
                "quarantined_at": entry.last_modified.isoformat() if entry.last_modified else None,
                "bytes": entry.size,
            }
        )
    return {"selection": selection, "count": len(files), "files": files}


def show_schema(bridge: Bridge, selection: str) -> dict[str, Any]:
    layout, dataset = parse_dataset(selection)
    book = ContractBook(bridge.lake)
    in_force = book.in_force(layout, dataset)
    seen = newest_seen(bridge, layout, dataset)
    pending = newest_seen(bridge, layout, dataset, prefer_quarantined=True)
    pending = pending if pending is not None and pending.quarantined else None
    quarantined = quarantined_entries(bridge.lake, bridge.settings.s3_prefix, layout, dataset)
    document: dict[str, Any] = {
        "dataset": f"{layout}/{dataset}",
        "contract": _contract_document(in_force),
        "accepted_versions": [d["version"] for d in book.history(layout, dataset)],
        "newest_seen": seen.document() if seen else None,
        "newest_quarantined": pending.document() if pending else None,
        "quarantined_files": len(quarantined),
        "difference": None,
        "quarantined_difference": None,
    }
    if in_force is not None and in_force.origin == "accepted":
        shipped = contract_for(layout, dataset)
        if (
            shipped is not None
            and in_force.document
            and shipped.version != in_force.document.get("shipped_version")
        ):
            document["shipped_differs"] = (
                f"the package now ships contract {shipped.version}; the accepted "
                f"{in_force.contract.version} stays in force"
            )
    if seen is not None:
        document["difference"] = _difference(in_force, seen.columns)
    if pending is not None:
        document["quarantined_difference"] = _difference(in_force, pending.columns)
    return document


def _contract_document(in_force: ContractInForce | None) -> dict[str, Any] | None:
    if in_force is None:
        return None
    contract = in_force.contract
    document = {
        "origin": in_force.origin,
        "version": contract.version,
        "complete": contract.complete,
        "columns": columns_to_json(contract.columns),
    }
    if in_force.document:
        for name in ("accepted_at", "accepted_by", "based_on", "replaces"):
            document[name] = in_force.document.get(name)
    return document


def _difference(in_force: ContractInForce | None, columns: tuple[Column, ...]) -> dict[str, Any]:
    if in_force is None:
        return {"verdict": "no contract", "problems": [], "added": [c.name for c in columns]}
    check = check_schema(in_force.contract.columns, columns, complete=in_force.contract.complete)
    return {"verdict": check.verdict.value, "problems": list(check.problems), "added": list(check.added)}


def newest_seen(
    bridge: Bridge, layout: str, dataset: str, *, prefer_quarantined: bool = False
) -> SeenSchema | None:
    """The newest file of a dataset in the lake (by its time window) whose schema can be read.

    With ``prefer_quarantined``, the newest quarantined file with a schema comes first (what
    ``schema accept`` accepts), and the newest published one only when none is quarantined.
    """
    lake = bridge.lake
    quarantined = [
        (k, e)
        for k, e in quarantined_entries(lake, bridge.settings.s3_prefix, layout, dataset)
        if k is not None and e.record.schema_fingerprint
    ]
    published = _newest_published(bridge, layout, dataset)
    candidates = [(k, e, True) for k, e in quarantined] + ([published + (False,)] if published else [])
    if prefer_quarantined and quarantined:
        candidates = [(k, e, True) for k, e in quarantined]
    for key, entry, in_quarantine in sorted(
        candidates, key=lambda c: (c[0].window_start, c[0].key), reverse=True
    ):
        columns = _columns_in_lake(lake, entry)
        if columns is not None:
            return SeenSchema(key, entry.path, in_quarantine, columns, entry.record.reason)
    return None


def _newest_published(bridge: Bridge, layout: str, dataset: str) -> tuple[HaltianKey, LakeEntry] | None:
    """The newest published file of a dataset: its newest year and month folder, of every organization."""
    lake = bridge.lake
    newest: tuple[HaltianKey, LakeEntry] | None = None
    for root in dataset_roots(bridge, layout):
        folder = f"{root}{dataset}/"
        years = sorted(lake.list_folders(folder))
        for year in reversed(years):
            months = sorted(lake.list_folders(year))
            entries = [
                e
                for month in reversed(months[-1:])
                for e in lake.list_entries(month)
                if "/_delta_log/" not in e.path
            ]
            parsed = [(parse_key(e.path), e) for e in entries]
            keys = [(k, e) for k, e in parsed if k is not None and k.layout == layout]
            if keys:
                best = max(keys, key=lambda item: (item[0].window_start, item[0].key))
                if newest is None or (best[0].window_start, best[0].key) > (
                    newest[0].window_start,
                    newest[0].key,
                ):
                    newest = best
                break
    return newest


def dataset_roots(bridge: Bridge, layout: str) -> list[str]:
    """The mirror folders below which a dataset of this layout has its ``{dataset}/`` folder."""
    lake = bridge.lake
    roots = lake.list_folders(bridge.settings.s3_prefix)
    if layout == V1:
        roots = [f for root in roots if root.endswith("/v1/") for f in lake.list_folders(root)]
    return roots


def _columns_in_lake(lake: Lake, entry: LakeEntry) -> tuple[Column, ...] | None:
    """A lake file's schema, from its footer (one or two ranged reads); None when unreadable."""
    try:
        facts = read_footer(lambda length: lake.read_tail(entry.path, entry.size, length), entry.size)
    except UnreadableParquet:
        return None
    return columns_of(facts.schema)


def accept_schema(bridge: Bridge, selection: str) -> dict[str, Any]:
    """Makes the newest quarantined (or else newest seen) schema the dataset's contract.

    Raises:
        AdminError: the lake holds no readable file of the dataset yet.
        RunLocked: a run holds the lake's lock.
    """
    layout, dataset = parse_dataset(selection)
    run_id = new_run_id(datetime.now(timezone.utc))
    with RunLock(bridge.lake, run_id, bridge.settings.lock_seconds):
        book = ContractBook(bridge.lake)
        in_force = book.in_force(layout, dataset)
        seen = newest_seen(bridge, layout, dataset, prefer_quarantined=True)
        if seen is None:
            raise AdminError(
                f"the lake holds no readable file of {layout}/{dataset} yet: nothing to accept "
                "(a run copies the files first)"
            )
        before = _difference(in_force, seen.columns)
        if in_force is not None and before["verdict"] == Verdict.MATCH.value:
            return {
                "dataset": f"{layout}/{dataset}",
                "changed": False,
                "contract": _contract_document(in_force),
                "based_on": seen.document(),
                "message": f"{seen.key.key} already matches contract "
                f"{in_force.contract.version}; nothing changed",
            }
        document = accept(
            bridge.lake,
            layout,
            dataset,
            seen.columns,
            run_id=run_id,
            in_force=in_force,
            based_on={
                "source_key": seen.key.key,
                "path": seen.path,
                "quarantined": seen.quarantined,
                "fingerprint": fingerprint(seen.columns),
            },
        )
    return {
        "dataset": f"{layout}/{dataset}",
        "changed": True,
        "version": document["version"],
        "path": bridge.lake.path(contract_path(layout, dataset, document["number"])),
        "replaces": document["replaces"],
        "difference_from_previous": before,
        "contract": document,
    }


def release_plan(bridge: Bridge, selection: str | None) -> Plan:
    """The quarantined files to copy again, at the source's current version (a release run's plan).

    A file whose source is gone stays in quarantine; old versions kept when a file changed at
    the source are never released.
    """
    layout, dataset = parse_dataset(selection) if selection else (None, None)
    plan = Plan(mode=RELEASE, months=None)
    for key, entry in quarantined_entries(bridge.lake, bridge.settings.s3_prefix, layout, dataset):
        if key is None:
            continue
        plan.listed_objects += 1
        source = next((o for o in bridge.source.list_objects(key.key) if o.key == key.key), None)
        if source is None:
            log.warning("%s stays in quarantine: its source is no longer in the bucket", key.key)
            continue
        plan.quarantine[key.key] = entry
        plan.items.append(WorkItem(source, key, bridge.lake.get_entry(key.key)))
    plan.items.sort(key=lambda item: (item.key.window_start, item.key.key))
    return plan


def release_quarantine(bridge: Bridge, selection: str | None) -> RunResult:
    """A run over the quarantined files: publishes those that pass the contract in force now.

    Raises:
        AdminError: a bad selection.
        RunLocked: a run holds the lake's lock.
    """
    if selection:
        parse_dataset(selection)
    return run_once(bridge, release=lambda b: release_plan(b, selection))
