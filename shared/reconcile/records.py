"""What the full reconcile found in each month folder, and how far its current pass got.

A closed month rarely changes, so the reconcile lists the lake side of a month folder only when
the bucket's side of it differs from what it found last time (a digest of every key, ETag and
size, listed anyway: that is how a late file in an old month is found the same day), when it
never recorded it, or when its record is older than :data:`RECHECK_DAYS` (how a mirrored file
deleted or damaged in the lake is found: within that many days). ``run --all`` compares every
folder. A folder is recorded only when everything in it was found mirrored or copied, its table
synced, and no run without a manifest had files in it.

One document, ``_state/months.json``, read at the start of a run and written after its
manifest: a run that stops before never records what it did, so the next run compares those
folders again and finds whatever the stopped run published. A few hundred bytes a folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from shared.paths import MONTHS_STATE
from shared.sink.lake import IF_MISSING, Lake, if_unchanged
from shared.source.s3 import SourceObject

#: Every recorded folder's lake side is listed again at least this often.
RECHECK_DAYS = 7


def listing_digest(objects: Iterable[SourceObject]) -> str:
    """A digest of a folder's listing: every key, ETag and size, in listing order."""
    digest = hashlib.blake2b(digest_size=16)
    for obj in objects:
        digest.update(f"{obj.key}\t{obj.etag}\t{obj.size}\n".encode())
    return digest.hexdigest()


def _spread(prefix: str) -> float:
    """A folder's own fraction of :data:`RECHECK_DAYS`, between one half and one, so the folders
    first recorded on one day are not all compared again on one later day."""
    return 0.5 + int(hashlib.blake2b(prefix.encode(), digest_size=2).hexdigest(), 16) / 0x1FFFE


class MonthRecords:
    """The records of ``_state/months.json``, and the current pass's cursor."""

    def __init__(self, document: Any, etag: str | None = None) -> None:
        document = document if isinstance(document, dict) else {}
        folders = document.get("folders")
        self.folders: dict[str, dict[str, Any]] = folders if isinstance(folders, dict) else {}
        passing = document.get("pass") if isinstance(document.get("pass"), dict) else {}
        #: The last folder (in walk order) of the pass under way that every run before got past.
        self.cursor: str | None = passing.get("after")
        #: When the pass under way started (its first run's start), None when none is.
        self.pass_started: str | None = passing.get("started_at")
        self.changed = False
        self._etag = etag

    @classmethod
    def read(cls, lake: Lake) -> MonthRecords:
        return cls(*lake.read_json_version(MONTHS_STATE))

    def unchanged(self, prefix: str, digest: str, now: datetime) -> dict[str, Any] | None:
        """The folder's record when its listing is as recorded and the record is recent enough."""
        record = self.folders.get(prefix)
        if record is None or record.get("digest") != digest:
            return None
        checked = datetime.fromisoformat(record["checked_at"])
        if now - checked >= timedelta(days=RECHECK_DAYS * _spread(prefix)):
            return None
        return record

    def record(self, prefix: str, record: dict[str, Any]) -> None:
        self.folders[prefix] = record
        self.changed = True

    def forget(self, prefixes: Iterable[str]) -> bool:
        """Drops these folders' records (their lake side changed: a quarantine release)."""
        dropped = [p for p in prefixes if self.folders.pop(p, None) is not None]
        self.changed = self.changed or bool(dropped)
        return bool(dropped)

    def move(self, cursor: str | None, started: str | None) -> None:
        """The pass got past ``cursor`` (None: no pass is under way)."""
        if (cursor, started) != (self.cursor, self.pass_started):
            self.cursor, self.pass_started = cursor, started
            self.changed = True

    def document(self) -> dict[str, Any]:
        return {
            "pass": {"after": self.cursor, "started_at": self.pass_started},
            "folders": dict(sorted(self.folders.items())),
        }

    def write(self, lake: Lake) -> bool:
        """Writes the records over the version read (a run that lost its lock meanwhile, and
        whose successor wrote them, writes nothing: the folders are compared again)."""
        if not self.changed:
            return True
        condition = IF_MISSING if self._etag is None else if_unchanged(self._etag)
        written = lake.write_json(MONTHS_STATE, self.document(), condition=condition)
        self.changed = not written
        return written
