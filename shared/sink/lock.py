"""One run at a time per lake root: a blob lease that a killed run lets expire.

The lease lasts ``BRIDGE_LOCK_SECONDS`` (15 to 60, the range Azure allows) and a background
thread renews it three times per period, so a run killed by the host frees the lock within
that time and never blocks the next one for ever.

A run that may have lost its lease stops: the run calls :meth:`RunLock.check` before each file
starts, before each file is published, before each Delta commit and before each state or
manifest write, and it raises :class:`LockLost` once a renewal found the lease broken or
taken, or no renewal succeeded for two thirds of the lease (a renewal is retried, without
ever waiting past a third of the lease), so a run learns of a loss it did not see while the
lease it last renewed is still its own.
"""

from __future__ import annotations

import contextvars
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient

from shared.errors import TransientError, describe
from shared.paths import LOCK_PATH
from shared.sink.lake import Lake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scope:
    """What a run lists, so a later run can tell whether its own listing shows every file this
    one may have written: its plan's mode, window months, or partition."""

    mode: str
    months: tuple[str, ...] | None = None
    partition: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "months": None if self.months is None else list(self.months),
            "partition": self.partition,
        }

    @classmethod
    def from_json(cls, value: Any) -> Scope | None:
        if not isinstance(value, dict) or not isinstance(value.get("mode"), str):
            return None
        months = value.get("months")
        return cls(value["mode"], tuple(months) if isinstance(months, list) else None, value.get("partition"))


@dataclass(frozen=True)
class Holder:
    """A run that held a lock before, as the next holder found it."""

    run_id: str
    #: It released the lock (then it had finished every write), rather than let it expire.
    released: bool
    scope: Scope | None


@dataclass(frozen=True)
class LockRecord:
    """The JSON body of a lock blob: who holds it, since when, what it lists, who held it before."""

    run_id: str | None = None
    host: str | None = None
    since: str | None = None
    previous: Holder | None = None
    scope: Scope | None = None

    def to_bytes(self) -> bytes:
        previous = (
            None
            if self.previous is None
            else {
                "run_id": self.previous.run_id,
                "released": self.previous.released,
                "scope": None if self.previous.scope is None else self.previous.scope.to_json(),
            }
        )
        document: dict[str, Any] = {
            "run_id": self.run_id,
            "host": self.host,
            "since": self.since,
            "previous": previous,
        }
        if self.scope is not None:
            document["scope"] = self.scope.to_json()
        return json.dumps(document).encode()

    @classmethod
    def parse(cls, data: bytes) -> LockRecord:
        """The record in a lock blob's body; an empty one for an empty, foreign or broken body."""
        try:
            document = json.loads(data or b"{}")
        except ValueError:
            return cls()
        if not isinstance(document, dict):
            return cls()
        before = document.get("previous")
        previous = None
        if isinstance(before, dict) and isinstance(before.get("run_id"), str):
            previous = Holder(
                before["run_id"], bool(before.get("released")), Scope.from_json(before.get("scope"))
            )
        text = {
            name: document[name] if isinstance(document.get(name), str) else None
            for name in ("run_id", "host", "since")
        }
        return cls(**text, previous=previous, scope=Scope.from_json(document.get("scope")))


class RunLocked(TransientError):
    """Another run holds the lock; this one stops at once."""


class LockLost(TransientError):
    """The run's lease may be another's now: the run stops before its next write.

    ``lost_at`` is when the run learnt it (UTC); nothing the run writes is newer.
    """

    def __init__(self, message: str, lost_at: datetime, run_id: str = "-") -> None:
        super().__init__(message)
        self.lost_at = lost_at
        self.run_id = run_id


class RunLock:
    """Context manager holding the lake's run lock (or a partition's lease) for one run."""

    def __init__(self, lake: Lake, run_id: str, lease_seconds: int = 60, path: str = LOCK_PATH) -> None:
        self.blob = lake.blob_client(path)
        self.path = path
        self.run_id = run_id
        self.lease_seconds = lease_seconds
        self._lease: BlobLeaseClient | None = None
        self._stop = threading.Event()
        # The renewer runs in a copy of this thread's context, so its log records carry the run id.
        self._renewer = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._renew,),
            name="bridge-lock-renewer",
            daemon=True,
        )
        self._renewed = time.monotonic()  # when the last successful renewal was sent
        self._lost: tuple[str, datetime] | None = None
        self._record = LockRecord()
        self._mark = threading.Lock()

    def __enter__(self) -> RunLock:
        try:
            self.blob.upload_blob(b"{}", overwrite=False)
        except ResourceExistsError:
            pass
        previous = self._previous()
        sent = time.monotonic()
        try:
            self._lease = self.blob.acquire_lease(lease_duration=self.lease_seconds)
        except HttpResponseError as err:
            if err.status_code != 409:
                raise
            raise RunLocked(f"another bridge run holds the lock ({self._holder()}); this run stops") from err
        self._renewed = sent
        self._record = LockRecord(
            self.run_id, socket.gethostname(), datetime.now(timezone.utc).isoformat(), previous
        )
        self.blob.upload_blob(self._record.to_bytes(), overwrite=True, lease=self._lease)
        self._renewer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join()
        if self._lease is not None and self._lost is None:
            self._release()

    def _release(self) -> None:
        """Releases the lease, retrying transient errors for up to a third of the lease."""
        deadline = time.monotonic() + self.lease_seconds / 3
        while True:
            try:
                self._lease.release(**self._quick(deadline - time.monotonic()))  # type: ignore[union-attr]  # held
                return
            except HttpResponseError as err:
                if err.status_code in (409, 412) or time.monotonic() >= deadline:
                    break
            except AzureError:
                if time.monotonic() >= deadline:
                    break
            time.sleep(0.5)
        log.warning("could not release the run lock; it expires within %s s", self.lease_seconds)

    def note_scope(self, scope: Scope) -> None:
        """Records what the run lists in the lock (see :class:`Scope`)."""
        self.check()
        self._record = replace(self._record, scope=scope)
        self.blob.upload_blob(self._record.to_bytes(), overwrite=True, lease=self._lease, **self._quick())

    def check(self) -> None:
        """Returns while the lease is surely this run's.

        Raises:
            LockLost: a renewal failed, or none succeeded for two thirds of the lease.
        """
        if self._lost is None and time.monotonic() - self._renewed > self.lease_seconds * 2 / 3:
            self._mark_lost(f"no renewal succeeded for {self.lease_seconds * 2 / 3:.0f} s")
        if self._lost is not None:
            reason, lost_at = self._lost
            raise LockLost(
                f"run {self.run_id} lost its lock {self.path} ({reason}); it stopped before its next "
                "write, and the next run accounts for its files",
                lost_at,
                self.run_id,
            )

    def _mark_lost(self, reason: str) -> None:
        with self._mark:
            if self._lost is None:
                self._lost = (reason, datetime.now(timezone.utc))

    def _quick(self, limit: float | None = None) -> dict[str, Any]:
        # No SDK retries and no wait past ``limit`` (a third of the lease by default): a stalled
        # request must not keep the run believing in a lease that may have expired.
        limit = self.lease_seconds / 3 if limit is None else max(0.5, limit)
        return {
            "retry_total": 0,
            "connection_timeout": limit,
            "read_timeout": limit,
            "timeout": max(1, int(limit)),
        }

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            deadline = time.monotonic() + self.lease_seconds / 3
            problem = "no answer"
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._mark_lost(f"no renewal succeeded within {self.lease_seconds / 3:.0f} s ({problem})")
                    return
                sent = time.monotonic()
                try:
                    self._lease.renew(**self._quick(remaining))  # type: ignore[union-attr]  # set before the renewer starts
                except HttpResponseError as err:
                    if err.status_code in (409, 412):
                        self._mark_lost("the lease was broken or taken by another")
                        return
                    problem = describe(err)
                except Exception as err:  # noqa: BLE001 - transient, tried again within the third of the lease
                    problem = describe(err)
                else:
                    self._renewed = sent
                    break
                if self._stop.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
                    return

    def _previous(self) -> Holder | None:
        """Who held the lock before, and whether it released it (then it had finished every
        write) rather than let it expire or have it broken."""
        record, state = lock_state(self.blob)
        if not record.run_id or state == "leased":
            return None
        return Holder(record.run_id, state == "available", record.scope)

    def _holder(self) -> str:
        try:
            holder = LockRecord.parse(self.blob.download_blob().readall())
        except HttpResponseError:
            return "holder unknown"
        if not holder.run_id:
            return "holder unknown"
        return f"run {holder.run_id} on {holder.host} since {holder.since}"


def lock_state(blob: Any) -> tuple[LockRecord, str | None]:
    """A lock blob's holder record and its lease state (``leased``, ``available`` after a
    release, ``expired``, ``broken``...); (an empty record, None) when there is no lock blob."""
    try:
        downloader = blob.download_blob()
        data = downloader.readall()
    except ResourceNotFoundError:
        return LockRecord(), None
    return LockRecord.parse(data), downloader.properties.lease.state
