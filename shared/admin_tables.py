"""Operator commands for the Delta tables: ``tables rebuild``, ``tables verify`` and ``tables drop-legacy``.

* ``tables rebuild LAYOUT/DATASET``: the dataset's table written anew from the mirror;
* ``tables verify [LAYOUT/DATASET] [--repair]``: rows per source version against the mirror;
* ``tables drop-legacy``: the Delta logs earlier versions kept in the mirror folders, removed.

Both hold the run lock, so they never race a timer run. The schema and quarantine commands
are in :mod:`shared.admin`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from shared.admin import AdminError, dataset_roots, parse_dataset
from shared.haltian.keys import LEGACY, V1
from shared.model import TableChange, TableFile
from shared.paths import DELTA_LOG, table_folder
from shared.run import Bridge
from shared.sink.lake import Lake, LakeEntry
from shared.sink.lock import RunLock
from shared.sink.records import new_run_id
from shared.haltian.contracts import MEASUREMENT, dataset_kind
from shared.tables.names import parse_table
from shared.tables.sources import candidate
from shared.tables.sql import find_tables, view_name
from shared.tables.verify import TableCheck, verify_table

log = logging.getLogger(__name__)


def mirrored_files(bridge: Bridge, layout: str, dataset: str) -> list[TableFile]:
    """Every verified copy of a dataset in the mirror (of every organization), as table candidates."""
    candidates = (
        candidate(entry)
        for root in dataset_roots(bridge, layout)
        for entry in bridge.lake.list_entries(f"{root}{dataset}/")
    )
    return [c for c in candidates if c is not None and c.key.layout == layout]


def rebuild_table(bridge: Bridge, selection: str) -> TableChange:
    """``tables rebuild LAYOUT/DATASET``: the table written anew from the mirror (never from S3).

    Holds the run lock. The old table folder is deleted first, so a table another engine made
    unwritable (a feature the bridge cannot write) or whose column types changed is replaced by
    one in the bridge's own schema, each column in its newest file's type (older files' values
    widened to it; a file whose values it cannot hold stays out, named in the result); readers
    find no table until the new one is committed, and a rebuild that stops half-way is finished
    by running it again.

    Raises:
        AdminError: not LAYOUT/DATASET, or the mirror holds no file of it.
        RunLocked: a run holds the lake's lock.
    """
    layout, dataset = parse_dataset(selection)
    run_id = new_run_id(datetime.now(timezone.utc))
    with RunLock(bridge.lake, run_id, bridge.settings.lock_seconds) as lock:
        files = mirrored_files(bridge, layout, dataset)
        if not files:
            raise AdminError(f"the mirror holds no file of {layout}/{dataset}: nothing to build a table from")
        for path in _deletion_order(bridge.lake.list_entries(table_folder(layout, dataset))):
            lock.check()
            bridge.lake.delete(path)
        publisher = bridge.delta_publisher(run_id, guard=lock.check, types_from_newest=True)
        change = publisher.sync(files)
    log.info(
        "table %s rebuilt from %d mirrored files: version %s%s",
        change.table,
        len(files),
        change.version,
        f"; error: {change.error}" if change.error else "",
    )
    return change


def _deletion_order(entries: Iterable[LakeEntry]) -> list[str]:
    """A table's blobs in an order that leaves a readable table, or none, at every step: the log
    from its newest version down (each step leaves an older version whole), then the data files
    (once no log names them, they are not a table to any reader)."""
    log_files, data = [], []
    for entry in entries:
        name = entry.path.rsplit("/", 1)[1]
        if f"/{DELTA_LOG}" in entry.path:
            digits = name.split(".", 1)[0]
            log_files.append((int(digits) if digits.isdigit() else sys.maxsize, entry.path))
        else:
            data.append(entry.path)
    return [path for _, path in sorted(log_files, reverse=True)] + sorted(data)


def drop_legacy_tables(bridge: Bridge) -> dict[str, Any]:
    """``tables drop-legacy``: removes the Delta logs that earlier versions kept inside the mirrored
    dataset folders (``.../{dataset}/_delta_log/``), once the dataset's table in ``_tables/`` exists.

    Only log blobs go: the mirrored files beside them are the mirror. Holds the run lock.

    Raises:
        RunLocked: a run holds the lake's lock.
    """
    lake = bridge.lake
    run_id = new_run_id(datetime.now(timezone.utc))
    removed: list[str] = []
    kept: list[str] = []
    with RunLock(lake, run_id, bridge.settings.lock_seconds) as lock:
        for folder in _legacy_table_folders(lake, bridge.settings.s3_prefix):
            parts = folder.rstrip("/").split("/")
            new_table = table_folder(V1 if V1 in parts else LEGACY, parts[-1])
            if new_table + DELTA_LOG not in lake.list_folders(new_table):
                kept.append(lake.path(folder + DELTA_LOG))
                continue
            for entry in list(lake.list_entries(folder + DELTA_LOG)):
                lock.check()
                lake.delete(entry.path)
            removed.append(lake.path(folder + DELTA_LOG))
    return {"removed": removed, "kept_until_the_new_table_exists": kept}


def _legacy_table_folders(lake: Lake, prefix: str) -> list[str]:
    """The mirrored dataset folders below ``prefix`` that still hold a ``_delta_log/``."""
    found: list[str] = []
    pending = [prefix]
    while pending:
        folder = pending.pop()
        children = lake.list_folders(folder)
        if folder + DELTA_LOG in children:
            found.append(folder)
        depth = folder[len(prefix) :].count("/")
        if depth < 3:  # the export's own levels: parquet/, v1/, organizations, datasets
            pending.extend(
                c for c in children if not c.endswith(DELTA_LOG) and not c[len(prefix) :].startswith("_")
            )
    return sorted(found)


def verify_tables(bridge: Bridge, selection: str | None, repair: bool = False) -> list[TableCheck]:
    """``tables verify [LAYOUT/DATASET] [--repair]``: each measurement table's rows per source
    version against its mirrored files (:mod:`shared.tables.verify`); every table when no
    selection is given. ``repair`` holds the run lock while it rewrites what it must.

    Raises:
        AdminError: not LAYOUT/DATASET.
        RunLocked: with ``repair``, a run holds the lake's lock.
    """
    if selection:
        chosen = [parse_dataset(selection)]
    else:
        named = (parse_table(view_name(folder)) for folder in find_tables(bridge.lake))
        chosen = [t for t in named if t is not None and dataset_kind(*t) == MEASUREMENT]
    run_id = new_run_id(datetime.now(timezone.utc))
    if not repair:
        publisher = bridge.delta_publisher(run_id)
        return [verify_table(publisher, dataset_roots(bridge, lay), lay, d) for lay, d in chosen]
    with RunLock(bridge.lake, run_id, bridge.settings.lock_seconds) as lock:
        publisher = bridge.delta_publisher(run_id, guard=lock.check)
        return [verify_table(publisher, dataset_roots(bridge, lay), lay, d, repair=True) for lay, d in chosen]
