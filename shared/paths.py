"""Every path the bridge reads or writes in the lake, relative to the configured root (``ADLS_ROOT``).

::

    {s3 key}                                        the mirror: each Haltian file at its own key
    _quarantine/{s3 key}                            a file that failed verification
    _quarantine/{s3 key less .parquet}.replaced-{source etag}.parquet
                                                    a mirrored version its source replaced
    _manifests/{yyyy}/{mm}/{dd}/{run id}.json       one manifest per run
    _manifests/latest.json                          the newest run's manifest
    _manifests/index/                               the manifest index (``manifest.index``)
    _state/run.lock                                 the timer run's lease blob
    _state/partitions/{month folder}.lock           a backfill partition's lease blob
    _state/reconcile.json                           when the last full reconcile finished
    _state/months.json                              what the full reconcile found in each month folder
    _state/manifest-index.json                      the manifests the index already holds
    _schemas/{layout}/{dataset}.json                each dataset's first-seen schema
    _contracts/{layout}/{dataset}/v{nnnn}.json      the contracts an operator accepted
    _tables/{layout}_{dataset}/                     the Delta tables (``tables.names``)

The bridge's own folders start with ``_``, which no Haltian key does (keys start with
``parquet/`` or ``downloads/``, see ``haltian.keys``).
"""

from __future__ import annotations

from datetime import date

MANIFESTS = "_manifests"
QUARANTINE = "_quarantine"
STATE = "_state"
SCHEMAS = "_schemas"
CONTRACTS = "_contracts"
TABLES = "_tables"

LATEST_MANIFEST = f"{MANIFESTS}/latest.json"
MANIFEST_INDEX = f"{MANIFESTS}/index"
INDEX_HINT = f"{STATE}/manifest-index.json"
RECONCILE_STATE = f"{STATE}/reconcile.json"
MONTHS_STATE = f"{STATE}/months.json"
LOCK_PATH = f"{STATE}/run.lock"
PARTITION_LOCKS = f"{STATE}/partitions/"
#: A table's log folder, below its table folder.
DELTA_LOG = "_delta_log/"


def manifests_of(day: date) -> str:
    """The folder of one day's manifests (by the day the run started, UTC)."""
    return f"{MANIFESTS}/{day:%Y/%m/%d}/"


def manifest_path(run_id: str, started: date) -> str:
    return f"{manifests_of(started)}{run_id}.json"


def quarantined(key: str) -> str:
    """Where a source key's file is kept when it failed verification; with a key prefix (or "",
    all of them), the folder to list."""
    return f"{QUARANTINE}/{key}"


def replaced(key: str, source_etag: str) -> str:
    """Where a mirrored version is kept when its source file changed: quarantine, by its source ETag."""
    return f"{QUARANTINE}/{key.removesuffix('.parquet')}.replaced-{source_etag}.parquet"


def partition_lock_path(partition: str) -> str:
    """The lease blob of a backfill partition (a month folder such as ``parquet/ORG/DATASET/2026/05/``)."""
    return f"{PARTITION_LOCKS}{partition.rstrip('/')}.lock"


def partition_of_lock(path: str) -> str:
    return path[len(PARTITION_LOCKS) :].removesuffix(".lock") + "/"


def schema_path(layout: str, dataset: str) -> str:
    return f"{SCHEMAS}/{layout}/{dataset}.json"


def contracts_of(layout: str = "", dataset: str = "") -> str:
    """The folder of one dataset's accepted contracts; without arguments, of all of them."""
    return f"{CONTRACTS}/{layout}/{dataset}/" if layout else f"{CONTRACTS}/"


def contract_path(layout: str, dataset: str, number: int) -> str:
    return f"{contracts_of(layout, dataset)}v{number:04d}.json"


def table_name(layout: str, dataset: str) -> str:
    """``{layout}_{dataset}``: letters, digits and one underscore (keys allow nothing else)."""
    return f"{layout}_{dataset}"


def table_folder(layout: str, dataset: str) -> str:
    """The table's root folder relative to the lake root, with a trailing slash."""
    return f"{TABLES}/{table_name(layout, dataset)}/"
