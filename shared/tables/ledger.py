"""Which source versions a table has been given: the bridge's application transactions.

Every bridge commit to a table carries Delta application transactions (``txn`` actions,
committed atomically with the rows; the protocol's tool for exactly-once sinks):

* ``haltian-azure-bridge`` at the table's delivery number ``n`` (1, 2, ...): two bridge
  writers that loaded the same table version conflict instead of both committing;
* ``haltian-azure-bridge:{source etag}:{source key}`` at ``n``, one per source version whose
  rows the commit delivers.

A source version is delivered when its ``txn`` is in the table's state, whatever another engine
did to its rows since (OPTIMIZE, DELETE, UPDATE): the bridge never delivers it again. Delta
keeps ``txn`` actions in every checkpoint (unless ``delta.setTransactionRetentionDuration`` is
set, which the bridge never sets), so log cleanup does not forget them.

delta-rs answers ``transaction_version`` one app id at a time (milliseconds each), so the whole
set is read here from the log: the newest checkpoint at or below the table's version, then the
JSON commits after it. The same replay gives what an hourly append needs to know of the table
(its protocol, schema and files per month), so that append needs no delta-rs load: at a cloud's
latency that load is about twenty sequential requests per table.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow.parquet as pq

from shared.errors import TransientError
from shared.sink.lake import Lake
from shared.paths import DELTA_LOG
from shared.tables.rows import LINEAGE, SOURCE_KEY, SOURCE_MONTH

APP_ID = "haltian-azure-bridge"
_SOURCE_PREFIX = APP_ID + ":"
#: Log files read at once (at most a checkpoint interval of commits, or a checkpoint's parts).
_READERS = 8
_COMMIT = re.compile(r"^\d{20}\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(?:\.(\d{10})\.(\d{10}))?\.parquet$")


def source_app_id(key: str, etag: str) -> str:
    return f"{_SOURCE_PREFIX}{etag}:{key}"


@dataclass(frozen=True)
class Delivered:
    """A table's deliveries: the last delivery number, and each source key's newest version
    (its ETag) and the delivery that brought it."""

    number: int
    versions: dict[str, str]
    numbers: dict[str, int] = field(default_factory=dict)

    def holds(self, key: str, etag: str) -> bool:
        return self.versions.get(key) == etag


@dataclass(frozen=True)
class TableLog:
    """A table as its Delta log says it is at ``version``: what the bridge's own append needs
    (:func:`shared.tables.append.commit_append`) without delta-rs loading the table."""

    version: int
    protocol: dict[str, Any]
    metadata: dict[str, Any]
    months: dict[str, int]  # live data files per month partition
    delivered: Delivered
    #: The live data files' add actions, by path (decoded).
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def columns(self) -> dict[str, str] | None:
        """The data columns (lineage apart) and their Delta types; None when one is not a plain
        type (a struct, an array, a map: delta-rs's writer handles those)."""
        fields = json.loads(self.metadata.get("schemaString") or "{}").get("fields", [])
        if any(not isinstance(f.get("type"), str) for f in fields):
            return None
        return {f["name"]: f["type"] for f in fields if f["name"] not in LINEAGE}

    def appendable(self) -> bool:
        """Whether the table asks of a writer only that it add files (:meth:`_plain`), partitioned
        by month as the bridge made a measurement table."""
        return self._plain() and list(self.metadata.get("partitionColumns") or []) == [SOURCE_MONTH]

    def overwritable(self) -> bool:
        """Whether the table asks of a writer only that it add and remove whole files
        (:meth:`_plain`), unpartitioned as the bridge made a snapshot table."""
        return self._plain() and not self.metadata.get("partitionColumns")

    def _plain(self) -> bool:
        """Writer version 2 at most (no CHECK constraints, generated or identity columns, column
        mapping, deletion vectors or other features another engine turned on), reader version 1,
        no column invariant, and the bridge's deliveries kept by every checkpoint."""
        protocol = self.protocol
        fields = json.loads(self.metadata.get("schemaString") or "{}").get("fields", [])
        return (
            int(protocol.get("minWriterVersion", 99)) <= 2
            and int(protocol.get("minReaderVersion", 99)) <= 1
            and not protocol.get("writerFeatures")
            and not protocol.get("readerFeatures")
            and not any("delta.invariants" in (f.get("metadata") or {}) for f in fields)
            and all(f.get("nullable", True) for f in fields)  # NOT NULL is an invariant at writer 2
            and not forgets_deliveries(self.metadata.get("configuration") or {})
        )

    def replaced_by(self, organizations: Iterable[str]) -> list[dict[str, Any]] | None:
        """The live files an overwrite of these organizations' snapshots removes: the files whose
        rows all match ``_source_key LIKE '%/{organization}/%'`` (the predicate delta-rs's
        overwrite takes) for one of them. None when the log cannot show that of every live file:
        a file's statistics must bound its ``_source_key`` values between two strings that share a
        prefix holding ``/{organization}/`` (every string between two such strings begins with it,
        truncated bounds included), and count no null key. Another engine's file of several
        organizations, or one without statistics, makes it None: delta-rs's writer then reads the
        files and rewrites what it must."""
        marks = [f"/{organization}/" for organization in organizations]
        removed = []
        for add in self.files.values():
            stats = _stats(add)
            low, high = (stats.get(bound, {}).get(SOURCE_KEY) for bound in ("minValues", "maxValues"))
            if (
                not (isinstance(low, str) and isinstance(high, str))
                or stats.get("nullCount", {}).get(SOURCE_KEY) != 0
            ):
                return None
            shared = os.path.commonprefix([low, high])
            if not any(mark in shared for mark in marks):
                return None
            removed.append(add)
        return removed

    def checkpoint_due(self, version: int) -> bool:
        """Whether delta-rs writes a checkpoint with commit ``version`` (it does with every
        ``delta.checkpointInterval``-th commit: versions 9, 19, ... at an interval of 10)."""
        interval = int((self.metadata.get("configuration") or {}).get("delta.checkpointInterval", 100))
        return (version + 1) % interval == 0


def _stats(add: dict[str, Any]) -> dict[str, Any]:
    """An add action's statistics (a JSON string in the log); empty when it has none or they are unreadable."""
    try:
        stats = json.loads(add.get("stats") or "{}")
    except ValueError:
        return {}
    return stats if isinstance(stats, dict) else {}


def forgets_deliveries(configuration: dict[str, str]) -> bool:
    """Whether the table lets checkpoints drop old application transactions
    (``delta.setTransactionRetentionDuration``): the bridge would then add rows it delivered again."""
    return "delta.setTransactionRetentionDuration" in configuration


class LogUnreadable(TransientError):
    """The log lacks a commit between its newest checkpoint and its newest commit."""


def read_delivered(lake: Lake, table_folder: str, version: int) -> Delivered:
    """The deliveries recorded in the table's log as of ``version``."""
    found = read_log(lake, table_folder, version)
    if found is None:
        raise LogUnreadable(f"{table_folder}: no Delta log at version {version}")
    return found.delivered


def read_log(lake: Lake, table_folder: str, version: int | None = None) -> TableLog | None:
    """The table as of ``version`` (its newest when None), or None when it has no log: the newest
    checkpoint at or below it, then the JSON commits after it, read at once.

    Raises:
        LogUnreadable: a commit in between is missing (a log cleaned up meanwhile).
    """
    log_folder = table_folder + DELTA_LOG
    names = {entry.path[len(log_folder) :] for entry in lake.list_entries(log_folder)}
    commits = sorted(int(name[:20]) for name in names if _COMMIT.match(name))
    if version is None:
        if not commits:
            return None
        version = commits[-1]
    start, parts = _newest_checkpoint(names, version)
    wanted = [f"{number:020d}.json" for number in range(start + 1, version + 1)]
    if any(name not in names for name in wanted):
        raise LogUnreadable(
            f"{table_folder}: the Delta log lacks a commit up to version {version}; the next "
            "run reads it again (should it stay missing, `tables rebuild` writes the table anew "
            "from the mirror)"
        )
    # One round trip for them all, not one per file: at a cloud's latency they add up.
    with ThreadPoolExecutor(_READERS, thread_name_prefix="bridge-log") as pool:
        bodies = list(pool.map(lambda name: lake.read_bytes(log_folder + name), parts + wanted))
    replay = _Replay()
    for body in bodies[: len(parts)]:
        replay.checkpoint(body)
    for body in bodies[len(parts) :]:
        for line in body.split(b"\n"):  # not splitlines(): JSON strings may hold U+2028 and the like
            if line.strip():
                replay.action(json.loads(line))
    return replay.result(version)


class _Replay:
    """Delta's log replay, for what the bridge reads: protocol, metadata, live files, txns."""

    def __init__(self) -> None:
        self.protocol: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, int] = {}

    def checkpoint(self, body: bytes) -> None:
        parquet = pq.ParquetFile(io.BytesIO(body))
        columns = [c for c in ("txn", "add", "protocol", "metaData") if c in parquet.schema_arrow.names]
        for row in parquet.read(columns=columns).to_pylist():
            if row.get("add"):  # a map column reads as (key, value) pairs
                row["add"]["partitionValues"] = dict(row["add"].get("partitionValues") or [])
            if row.get("metaData"):
                row["metaData"]["configuration"] = dict(row["metaData"].get("configuration") or [])
            self.action({k: v for k, v in row.items() if v is not None})

    def action(self, action: dict[str, Any]) -> None:
        if (txn := action.get("txn")) is not None:
            self.transactions[txn["appId"]] = txn["version"]
        elif (add := action.get("add")) is not None:
            self.files[unquote(add["path"])] = add
        elif (remove := action.get("remove")) is not None:
            self.files.pop(unquote(remove["path"]), None)
        elif (protocol := action.get("protocol")) is not None:
            self.protocol = protocol
        elif (metadata := action.get("metaData")) is not None:
            self.metadata = metadata

    def result(self, version: int) -> TableLog:
        newest: dict[str, tuple[int, str]] = {}
        for app_id, number in self.transactions.items():
            if not app_id.startswith(_SOURCE_PREFIX):
                continue
            etag, _, key = app_id[len(_SOURCE_PREFIX) :].partition(":")
            if key not in newest or newest[key][0] < number:
                newest[key] = (number, etag)
        delivered = Delivered(
            self.transactions.get(APP_ID, 0),
            {key: etag for key, (_, etag) in newest.items()},
            {key: number for key, (number, _) in newest.items()},
        )
        months: dict[str, int] = {}
        for add in self.files.values():
            if (month := (add.get("partitionValues") or {}).get(SOURCE_MONTH)) is not None:
                months[month] = months.get(month, 0) + 1
        return TableLog(version, self.protocol, self.metadata, months, delivered, self.files)


def _newest_checkpoint(names: Iterable[str], version: int) -> tuple[int, list[str]]:
    """The newest complete classic (single or multi-part) checkpoint at or below ``version``:
    its version and file names; (-1, []) when there is none and the log starts at 0."""
    found: dict[int, dict[int, list[str]]] = {}
    for name in names:
        match = _CHECKPOINT.match(name)
        if match is None:
            continue
        number = int(match[1])
        if number <= version:
            found.setdefault(number, {}).setdefault(int(match[3] or 1), []).append(name)
    for number in sorted(found, reverse=True):
        for total, files in found[number].items():
            if len(files) == total:
                return number, sorted(files)
    return -1, []
