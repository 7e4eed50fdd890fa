"""Metrics per run and per dataset, sent to Application Insights through OpenTelemetry.

The Azure Monitor OpenTelemetry distro runs in the worker (not the host's OpenTelemetry
mode) because custom metrics with dimensions are what the alerts and the workbook query, and
only the worker knows them. It authenticates with Entra ID (the app's managed identity), as
Application Insights has local (key) authentication turned off. Names are in
``telemetry_names`` and shared with ``infra/``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import cache

from opentelemetry import _logs, metrics, trace

from shared import telemetry_names as names
from shared.model import FAILED, PUBLISHED, QUARANTINED, RunResult

log = logging.getLogger(__name__)

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"


def configure(environ: Mapping[str, str]) -> bool:
    """Starts exporting to Application Insights when the app has a connection string.

    Returns whether exporting was configured. Entra ID auth: with
    ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` = ``ClientId=...;Authorization=AAD`` the
    named user-assigned identity signs the telemetry.
    """
    connection_string = environ.get(CONNECTION_STRING)
    if not connection_string:
        return False
    return _configure(connection_string, environ.get(AUTHENTICATION_STRING, ""))


@cache
def _configure(connection_string: str, authentication: str) -> bool:
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    fields = dict(p.split("=", 1) for p in authentication.split(";") if "=" in p)
    credential = None
    if fields.get("Authorization", "").upper() == "AAD":
        credential = ManagedIdentityCredential(client_id=fields.get("ClientId") or None)
    configure_azure_monitor(
        connection_string=connection_string,
        credential=credential,
        logger_name="shared",
        enable_live_metrics=False,
    )
    return True


@contextmanager
def flushed(timeout_seconds: float = 10.0) -> Iterator[None]:
    """Sends what an invocation recorded before it returns.

    The exporter sends metrics every 60 s and logs in batches; a Functions worker lives on
    after an invocation, and may be frozen or removed right after it. Without a flush the
    last run's metrics (the ones the "no run" and "stale" alerts read) could be lost.
    """
    try:
        yield
    finally:
        flush(timeout_seconds)


def flush(timeout_seconds: float = 10.0) -> None:
    """Exports every metric, log record and span recorded so far (a no-op when not configured)."""
    for provider in (metrics.get_meter_provider(), _logs.get_logger_provider(), trace.get_tracer_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            try:
                force_flush(int(timeout_seconds * 1000))
            except Exception as err:  # noqa: BLE001 - telemetry must never fail the invocation
                log.warning("telemetry not flushed: %s", type(err).__name__)


class _Instruments:
    def __init__(self) -> None:
        meter = metrics.get_meter("haltian_bridge")
        self.runs = meter.create_counter(
            names.RUNS,
            unit="1",
            description="bridge runs by status (complete, incomplete: deferred, failed) and mode",
        )
        self.duration = meter.create_histogram(names.RUN_DURATION, unit="s", description="run duration")
        self.files = meter.create_counter(names.FILES_PUBLISHED, unit="1", description="files published")
        self.bytes = meter.create_counter(names.BYTES_PUBLISHED, unit="By", description="bytes published")
        self.rows = meter.create_counter(names.ROWS_PUBLISHED, unit="1", description="rows published")
        self.quarantined = meter.create_counter(
            names.FILES_QUARANTINED, unit="1", description="files quarantined"
        )
        self.drift = meter.create_counter(
            names.SCHEMA_DRIFT,
            unit="1",
            description="datasets with schema drift in a run (once per dataset, not per file)",
        )
        self.failed = meter.create_counter(
            names.FILES_FAILED, unit="1", description="files failed, left for the next run"
        )
        self.deferred = meter.create_counter(
            names.FILES_DEFERRED, unit="1", description="files deferred by the time budget"
        )
        self.table_errors = meter.create_counter(
            names.TABLE_ERRORS, unit="1", description="tables a run could not update (the manifest says why)"
        )
        self.oldest_pending = meter.create_gauge(
            names.LAG_OLDEST_PENDING,
            unit="s",
            description="age of the oldest delivered file not yet published",
        )
        self.newest_published = meter.create_gauge(
            names.LAG_NEWEST_PUBLISHED, unit="s", description="age of the newest file published"
        )


@cache
def _instruments() -> _Instruments:
    return _Instruments()


def record_run(result: RunResult, *, now: datetime | None = None) -> None:
    """Emits one run's metrics: totals per dataset, the run itself, and the lag per dataset."""
    instruments = _instruments()
    now = now or result.finished_at
    for outcome in result.outcomes:
        dims = {"layout": outcome.item.key.layout, "dataset": outcome.item.key.dataset}
        if outcome.action == PUBLISHED:
            instruments.files.add(1, dims)
            instruments.bytes.add(outcome.bytes, dims)
            instruments.rows.add(outcome.rows or 0, dims)
        elif outcome.action == QUARANTINED:
            instruments.quarantined.add(1, dims)
        elif outcome.action == FAILED:
            instruments.failed.add(1, dims)
    for drift in result.schema_drift():
        instruments.drift.add(
            1, {"layout": drift["layout"], "dataset": drift["dataset"], "verdict": drift["verdict"]}
        )
    for (layout, dataset), count in result.deferred.items():
        instruments.deferred.add(count, {"layout": layout, "dataset": dataset})
    for table in result.tables:
        if table.error:
            instruments.table_errors.add(1, {"layout": table.layout, "dataset": table.dataset})
    status = "failed" if result.exit_code else result.status
    run_dims = {"status": status, "mode": result.plan.mode}
    instruments.runs.add(1, run_dims)
    instruments.duration.record((result.finished_at - result.started_at).total_seconds(), run_dims)
    for (layout, dataset), age in _oldest_pending(result, now).items():
        instruments.oldest_pending.set(age, {"layout": layout, "dataset": dataset})
    for (layout, dataset), age in _newest_published(result, now).items():
        instruments.newest_published.set(age, {"layout": layout, "dataset": dataset})


def record_failed_run() -> None:
    """A run that stopped before its manifest (listing or the lake failed)."""
    _instruments().runs.add(1, {"status": "failed", "mode": "unknown"})


def _oldest_pending(result: RunResult, now: datetime) -> dict[tuple[str, str], float]:
    """Per dataset: how long the oldest file still waiting has been delivered (0 when none waits)."""
    done = {o.item.key.key for o in result.outcomes if o.action in (PUBLISHED, QUARANTINED)}
    ages: dict[tuple[str, str], float] = {}
    for item in result.plan.items:
        name = (item.key.layout, item.key.dataset)
        age = 0.0 if item.key.key in done else max(0.0, (now - item.key.window_start).total_seconds())
        ages[name] = max(ages.get(name, 0.0), age)
    for name in result.plan.present:
        ages.setdefault(name, 0.0)
    return ages


def _newest_published(result: RunResult, now: datetime) -> dict[tuple[str, str], float]:
    """Per dataset: the age of the newest file in the lake (by its time window's start)."""
    newest = dict(result.plan.newest_published)
    for outcome in result.outcomes:
        key = outcome.item.key
        name = (key.layout, key.dataset)
        if outcome.action == PUBLISHED and (name not in newest or key.window_start > newest[name]):
            newest[name] = key.window_start
    return {name: max(0.0, (now - start).total_seconds()) for name, start in newest.items()}
