"""One run at a time per lake root: a blob lease that a killed run lets expire.

The lease lasts ``BRIDGE_LOCK_SECONDS`` (15 to 60, the range Azure allows) and a background
thread renews it three times per period, so a run killed by the host frees the lock within
that time and never blocks the next one for ever.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import datetime, timezone
from types import TracebackType

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobLeaseClient

from shared.sink.lake import STATE, Lake

log = logging.getLogger(__name__)

LOCK_PATH = f"{STATE}/run.lock"
PARTITION_LOCKS = f"{STATE}/partitions/"


def partition_lock_path(partition: str) -> str:
    """The lease blob of a backfill partition (a month folder such as ``parquet/ORG/DATASET/2026/05/``)."""
    return f"{PARTITION_LOCKS}{partition.rstrip('/')}.lock"


def partition_of_lock(path: str) -> str:
    return path[len(PARTITION_LOCKS):].removesuffix(".lock") + "/"


class RunLocked(Exception):
    """Another run holds the lock; this one stops at once."""


class RunLock:
    """Context manager holding the lake's run lock for one run."""

    def __init__(self, lake: Lake, run_id: str, lease_seconds: int = 60, path: str = LOCK_PATH) -> None:
        self.blob = lake.blob_client(path)
        self.run_id = run_id
        self.lease_seconds = lease_seconds
        self._lease: BlobLeaseClient | None = None
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="bridge-lock-renewer", daemon=True)

    def __enter__(self) -> RunLock:
        try:
            self.blob.upload_blob(b"{}", overwrite=False)
        except ResourceExistsError:
            pass
        try:
            self._lease = self.blob.acquire_lease(lease_duration=self.lease_seconds)
        except HttpResponseError as err:
            if err.status_code != 409:
                raise
            raise RunLocked(f"another bridge run holds the lock ({self._holder()}); this run stops") from err
        holder = {"run_id": self.run_id, "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat()}
        self.blob.upload_blob(json.dumps(holder).encode(), overwrite=True, lease=self._lease)
        self._renewer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join()
        if self._lease is not None:
            try:
                self._lease.release()
            except HttpResponseError:
                log.warning("could not release the run lock; it expires within %s s", self.lease_seconds)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self._lease.renew()  # type: ignore[union-attr]
            except HttpResponseError:
                log.exception("could not renew the run lock")

    def _holder(self) -> str:
        try:
            holder = json.loads(self.blob.download_blob().readall() or b"{}")
        except (HttpResponseError, ValueError):
            return "holder unknown"
        if not holder.get("run_id"):
            return "holder unknown"
        return f"run {holder['run_id']} on {holder.get('host')} since {holder.get('since')}"
