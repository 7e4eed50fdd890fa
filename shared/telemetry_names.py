"""Metric names the bridge emits, shared by the code, the alert rules and the workbook.

Azure Monitor stores OpenTelemetry metrics in ``customMetrics`` under these names, with the
dimensions listed beside each (as ``customDimensions``). infra/ queries them by these names;
a test keeps the two in step.
"""

RUNS = "bridge_runs"  # counter; status (complete|incomplete|failed), mode (window|full)
RUN_DURATION = "bridge_run_duration_seconds"  # histogram; status, mode
FILES_PUBLISHED = "bridge_files_published"  # counter; layout, dataset
BYTES_PUBLISHED = "bridge_bytes_published"  # counter; layout, dataset
ROWS_PUBLISHED = "bridge_rows_published"  # counter; layout, dataset
FILES_QUARANTINED = "bridge_files_quarantined"  # counter; layout, dataset
SCHEMA_DRIFT = (
    "bridge_schema_drift"  # counter; layout, dataset, verdict (breaking|additive): 1 per dataset per run
)
FILES_FAILED = "bridge_files_failed"  # counter; layout, dataset
FILES_DEFERRED = "bridge_files_deferred"  # counter; layout, dataset
TABLE_ERRORS = "bridge_table_errors"  # counter; layout, dataset: 1 per table per run it could not update
LAG_OLDEST_PENDING = (
    "bridge_lag_oldest_pending_seconds"  # gauge; layout, dataset: oldest delivered, not yet published
)
LAG_NEWEST_PUBLISHED = (
    "bridge_lag_newest_published_seconds"  # gauge; layout, dataset: age of newest published file
)

ALL = (
    RUNS,
    RUN_DURATION,
    FILES_PUBLISHED,
    BYTES_PUBLISHED,
    ROWS_PUBLISHED,
    FILES_QUARANTINED,
    SCHEMA_DRIFT,
    FILES_FAILED,
    FILES_DEFERRED,
    TABLE_ERRORS,
    LAG_OLDEST_PENDING,
    LAG_NEWEST_PUBLISHED,
)
