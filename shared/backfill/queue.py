"""The backfill queue (Azure Storage) and what a worker does with one message."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

from shared import logs
from shared.backfill.partitions import Partition, discover, incomplete
from shared.model import RunResult
from shared.run import Bridge, RunFailed, run_once
from shared.sink.connect import entra_credential, sdk_options
from shared.settings import (
    BRIDGE_QUEUE_CONNECTION,
    BRIDGE_QUEUE_SERVICE_URI,
    Settings,
    SettingsError,
)

log = logging.getLogger(__name__)

#: What host.json sets as the queue's maxDequeueCount: after that many tries, the poison queue.
MAX_DEQUEUE_COUNT = 5


def queue_client(settings: Settings, credential: Any | None = None, *, poison: bool = False) -> QueueClient:
    """The backfill queue (or its poison queue), with the Functions host's base64 message encoding."""
    name = settings.backfill_queue + ("-poison" if poison else "")
    codecs = {
        "message_encode_policy": BinaryBase64EncodePolicy(),
        "message_decode_policy": BinaryBase64DecodePolicy(),
        **sdk_options(pool=8),
    }
    if settings.queue_connection_string:
        return QueueClient.from_connection_string(settings.queue_connection_string, name, **codecs)
    if settings.queue_service_uri:
        # Reached by identity, as the Functions host reaches it (BridgeQueue__credential).
        return QueueClient(
            settings.queue_service_uri, name, credential=credential or entra_credential(settings), **codecs
        )
    raise SettingsError(
        [
            f"backfills need {BRIDGE_QUEUE_SERVICE_URI} (in Azure) or {BRIDGE_QUEUE_CONNECTION} "
            "(a connection string, for the emulator)"
        ]
    )


@dataclass
class Enqueued:
    partitions: list[Partition]
    skipped_complete: int

    def document(self) -> dict[str, Any]:
        return {"queued": [p.prefix for p in self.partitions], "skipped_complete": self.skipped_complete}


def enqueue_backfill(
    bridge: Bridge, *, since: str | None = None, until: str | None = None, datasets: set[str] | None = None
) -> Enqueued:
    """One message per partition that still has files to copy; complete ones are skipped."""
    found = discover(bridge, since=since, until=until, datasets=datasets)
    todo = incomplete(bridge, found)
    queue = queue_client(bridge.settings, bridge.credential)
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    for partition in interleaved(todo):
        queue.send_message(partition.message().encode())
    log.info("backfill: %d partitions queued, %d already complete", len(todo), len(found) - len(todo))
    return Enqueued(todo, len(found) - len(todo))


def interleaved(partitions: list[Partition]) -> list[Partition]:
    """Partitions in an order where neighbours belong to different datasets, so workers that
    take consecutive messages rarely commit to one table at once."""
    by_dataset: dict[str, list[Partition]] = {}
    for partition in partitions:
        by_dataset.setdefault(partition.prefix.rsplit("/", 3)[0], []).append(partition)
    rounds = [iter(group) for group in by_dataset.values()]
    ordered: list[Partition] = []
    while rounds:
        for group in list(rounds):
            taken = next(group, None)
            if taken is None:
                rounds.remove(group)
            else:
                ordered.append(taken)
    return ordered


def process_message(bridge: Bridge, body: str) -> RunResult:
    """What the queue-triggered function does with one message: copy one partition.

    A partition whose time budget ran out with files left is queued again (a new message: it
    made progress, so it does not count towards the poison queue). A Delta commit that did
    not happen (say, it kept conflicting with the other partitions of its dataset) fails
    nothing: the files landed, and the next full reconcile brings the table up to date.

    Raises (so the host retries the message, then moves it to the poison queue):
        BadPartition: the message names no partition.
        RunLocked: another worker holds the partition now; by the retry it has finished or died.
        LockLost: the worker lost the partition's lease; the retry finishes the partition.
        RunFailed: some files failed, or the budget ran out before any file was done; the retry
            copies them.
    """
    partition = Partition.from_message(body, bridge.settings.s3_prefix)
    result = run_once(bridge, partition=partition.prefix)
    token = logs.set_run_id(result.run_id)  # what is logged about the run carries its id
    try:
        if result.failed or (result.deferred and not result.outcomes):
            raise RunFailed(result.summary())
        if result.table_errors:
            log.warning(
                "backfill %s: %d tables not committed; the files landed and the next full reconcile "
                "commits them",
                partition.prefix,
                result.table_errors,
            )
        if result.deferred:
            queue_client(bridge.settings, bridge.credential).send_message(partition.message().encode())
            log.info(
                "backfill %s: %d files left by the time budget; the partition is queued again",
                partition.prefix,
                sum(result.deferred.values()),
            )
    finally:
        logs.reset_run_id(token)
    return result


def run_for_queue(environ: Mapping[str, str], body: str) -> RunResult:
    """The queue trigger's entry: settings from the environment, then one partition."""
    from shared import telemetry

    logs.configure()
    telemetry.configure(environ)
    return process_message(Bridge.from_settings(Settings.from_mapping(environ)), body)
