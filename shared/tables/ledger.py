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
JSON commits after it.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from shared.sink.lake import Lake
from shared.tables.names import DELTA_LOG

APP_ID = "haltian-azure-bridge"
_SOURCE_PREFIX = APP_ID + ":"
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


def read_delivered(lake: Lake, table_folder: str, version: int) -> Delivered:
    """The deliveries recorded in the table's log as of ``version``."""
    log_folder = table_folder + DELTA_LOG
    names = [entry.path[len(log_folder):] for entry in lake.list_entries(log_folder)]
    start, parts = _newest_checkpoint(names, version)
    transactions: dict[str, int] = {}
    for part in parts:
        data = pq.read_table(io.BytesIO(lake.read_bytes(log_folder + part)), columns=["txn"]).column("txn")
        for txn in data.to_pylist():
            if txn is not None:
                transactions[txn["appId"]] = txn["version"]
    for number in range(start + 1, version + 1):
        for line in lake.read_bytes(f"{log_folder}{number:020d}.json").decode().splitlines():
            if '"txn"' in line:
                txn = json.loads(line).get("txn")
                if txn:
                    transactions[txn["appId"]] = txn["version"]
    newest: dict[str, tuple[int, str]] = {}
    for app_id, number in transactions.items():
        if not app_id.startswith(_SOURCE_PREFIX):
            continue
        etag, _, key = app_id[len(_SOURCE_PREFIX):].partition(":")
        if key not in newest or newest[key][0] < number:
            newest[key] = (number, etag)
    return Delivered(transactions.get(APP_ID, 0), {key: etag for key, (_, etag) in newest.items()},
                     {key: number for key, (number, _) in newest.items()})


def _newest_checkpoint(names: list[str], version: int) -> tuple[int, list[str]]:
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
