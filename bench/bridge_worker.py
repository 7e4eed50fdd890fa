"""The bridge's child (``python -m bench.workers bridge '<json>'``): one ``run_once``, built as
``Bridge.from_settings`` would build it, with request counters, the run's own stage times and
the peak RSS of planning and copying."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from bench.counting import Counts, azure_options, usage
from bench.profiling import ThreadProfiler


class CopyPeak:
    """A run's progress (``shared.progress.Progress``) that samples the process's peak RSS (VmHWM)
    when the last file is copied: the peak of planning and copying (and the table syncs begun
    meanwhile)."""

    def __init__(self) -> None:
        self.total_files = 0
        self.hwm_mb: float | None = None

    def start(self, total_files: int, total_bytes: int) -> None:
        self.total_files = total_files

    def advance(self, files: int, done_bytes: int) -> None:
        if files == self.total_files and self.hwm_mb is None:
            self.hwm_mb = usage()["vm_hwm_mb"]


def bridge(config: dict[str, Any]) -> dict[str, Any]:
    """One ``run_once`` of the bridge, built as ``Bridge.from_settings`` would, plus counters."""
    started_process = time.monotonic()
    from shared.run import run_once

    built, s3_counts, azure_counts = _build(config)
    peak = CopyPeak()
    profiler = ThreadProfiler() if config.get("profile") else None
    ready = time.monotonic() - started_process
    begun = time.perf_counter()
    if profiler:
        with profiler:
            result = run_once(built, progress=peak)
    else:
        result = run_once(built, progress=peak)
    wall = time.perf_counter() - begun
    if profiler:
        profiler.write(config["profile"], config.get("title", "bridge"))
    return {
        "wall_s": wall,
        "startup_s": ready,
        **_figures(result),
        "concurrency": built.settings.max_concurrency,
        "stages_s": dict(result.stage_seconds),
        "copy_hwm_mb": peak.hwm_mb,
        "s3_requests": dict(s3_counts.counts),
        "azure_requests": dict(azure_counts.counts),
        **usage(),
    }


def _build(config: dict[str, Any]) -> tuple[Any, Counts, Counts]:
    """The bridge of the settings in ``config["env"]``, and its S3 and Azure request counters."""
    from azure.storage.blob import BlobServiceClient

    from shared import logs
    from shared.run import Bridge
    from shared.settings import Settings
    from shared.sink.lake import Lake
    from shared.sink.blob_writer import azure_transport
    from shared.source.s3 import S3Source, s3_transport
    from shared.source.sessions import make_s3

    logs.configure(logging.INFO, logging.StreamHandler(sys.stderr))
    settings = Settings.from_mapping(config["env"])
    s3_counts, azure_counts = Counts(), Counts()
    access = make_s3(settings)
    client = access.client
    client.meta.events.register("before-send.s3", s3_counts.s3_hook)  # listing (boto3)
    service = BlobServiceClient.from_connection_string(
        settings.adls_connection_string, **azure_options(settings.max_concurrency, azure_counts.azure_hook)
    )
    # The copy path's requests go through shared.transport: counted by its hook, as build_bridge builds it.
    lake = Lake(
        service.get_container_client(settings.adls_container),
        settings.adls_root,
        azure_transport(settings.connection_pool_size, hook=azure_counts.azure_transport_hook),
    )
    source = S3Source(
        client, settings.s3_bucket, access.credentials, s3_transport(client, hook=s3_counts.s3_transport_hook)
    )
    return Bridge(settings, source, lake, None), s3_counts, azure_counts


def _figures(result: Any) -> dict[str, Any]:
    """What the run did: files copied, quarantined, failed, found present; its plan and tables."""
    from shared.model import PUBLISHED, QUARANTINED

    published = [o for o in result.outcomes if o.action == PUBLISHED]
    return {
        "files": len(published),
        "bytes": sum(o.bytes for o in published),
        "quarantined": result.count(QUARANTINED),
        "failed": result.failed,
        "deferred": sum(result.deferred.values()),
        "present": sum(result.plan.present.values()),
        "status": result.status,
        "mode": result.plan.mode,
        "listed_objects": result.plan.listed_objects,
        "listed_prefixes": result.plan.listed_prefixes,
        "table_errors": result.table_errors,
        "tables_changed": sum(1 for t in result.tables if t.changed),
        "verify_s": sum(o.verify_seconds for o in result.outcomes),
        "verify_cpu_s": sum(o.verify_cpu_seconds for o in result.outcomes),
        "file_s": sum(o.seconds for o in result.outcomes),
    }
