"""The backfill queue (Azure Storage) and what a worker does with one message."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

from shared.backfill.partitions import Partition, discover, incomplete
from shared.run import Bridge, RunFailed, RunResult, run_once
from shared.sink.lake import entra_credential, sdk_options
from shared.settings import (
    BRIDGE_QUEUE_CONNECTION, BRIDGE_QUEUE_SERVICE_URI, Settings, SettingsError,
)

log = logging.getLogger(__name__)

#: What host.json sets as the queue's maxDequeueCount: after that many tries, the poison queue.
MAX_DEQUEUE_COUNT = 5


def queue_client(settings: Settings, credential: Any | None = None, *, poison: bool = False) -> QueueClient:
    """The backfill queue (or its poison queue), with the Functions host's base64 message encoding."""
    name = settings.backfill_queue + ("-poison" if poison else "")
    codecs = {"message_encode_policy": BinaryBase64EncodePolicy(),
              "message_decode_policy": BinaryBase64DecodePolicy(), **sdk_options(pool=8)}
    if settings.queue_connection_string:
        return QueueClient.from_connection_string(settings.queue_connection_string, name, **codecs)
    if settings.queue_service_uri:
        # Reached by identity, as the Functions host reaches it (BridgeQueue__credential).
        return QueueClient(settings.queue_service_uri, name, credential=credential or entra_credential(settings),
                           **codecs)
    raise SettingsError([f"backfills need {BRIDGE_QUEUE_SERVICE_URI} (in Azure) or {BRIDGE_QUEUE_CONNECTION} "
                         "(a connection string, for the emulator)"])


@dataclass
class Enqueued:
    partitions: list[Partition]
    skipped_complete: int

    def document(self) -> dict[str, Any]:
        return {"queued": [p.prefix for p in self.partitions], "skipped_complete": self.skipped_complete}


def enqueue_backfill(bridge: Bridge, *, since: str | None = None, until: str | None = None,
                     datasets: set[str] | None = None) -> Enqueued:
    """One message per partition that still has files to copy; complete ones are skipped."""
    found = discover(bridge, since=since, until=until, datasets=datasets)
    todo = incomplete(bridge, found)
    queue = queue_client(bridge.settings, bridge.credential)
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    for partition in todo:
        queue.send_message(partition.message().encode())
    log.info("backfill: %d partitions queued, %d already complete", len(todo), len(found) - len(todo))
    return Enqueued(todo, len(found) - len(todo))


def process_message(bridge: Bridge, body: str) -> RunResult:
    """What the queue-triggered function does with one message: copy one partition.

    Raises (so the host retries the message, then moves it to the poison queue):
        BadPartition: the message names no partition.
        RunLocked: another worker holds the partition now; by the retry it has finished or died.
        RunFailed: some files failed; the retry copies them.
    """
    partition = Partition.from_message(body, bridge.settings.s3_prefix)
    result = run_once(bridge, partition=partition.prefix)
    if result.failed or result.table_errors:
        raise RunFailed(result.summary())
    return result


def run_for_queue(environ: Mapping[str, str], body: str) -> RunResult:
    """The queue trigger's entry: settings from the environment, then one partition."""
    from shared import logs, telemetry

    logs.configure()
    telemetry.configure(environ)
    return process_message(Bridge.from_settings(Settings.from_mapping(environ)), body)
