"""Apache Spark with Delta Lake as a real reader and as another writer of the lake's Delta tables.

Spark 3.5 (``pyspark``, pinned in requirements-dev.txt) with Delta Lake's two jars, which
``make setup`` copies from Maven Central into ``.venv/spark-jars/``. One local Spark (two cores,
1 GiB driver, no UI) is started per test session by the ``spark`` fixture, and stopped at its end;
the fixture skips, naming what is missing, when Java or the jars are not there.

Azurite has no DFS (ABFS) endpoint, so Spark cannot open ``abfss://`` tables in it. Instead a test
stands in for "Spark acting on a table in ADLS" this way: download every blob of the table into a
local folder, let Spark run SQL on ``delta.`/that/folder```, then mirror what Spark did back into
the container: upload the files it added or changed (data files, ``_delta_log`` commits,
checkpoints, ``_last_checkpoint``, ``.crc`` table-state files) and delete the blobs whose files it
deleted (VACUUM, log clean-up). New files are uploaded if-absent, as Delta's log store writes
commits, so a commit the bridge made in between fails the upload instead of being overwritten.

    from tests.spark import spark_on_lake, spark_rows  # the fixture `spark` comes from conftest.py

    def test_something(spark, stack, tmp_path):
        done = spark_on_lake(spark, stack.container, "haltian/raw/parquet/x",
                             "OPTIMIZE {table}", "VACUUM {table} RETAIN 0 HOURS", tmp_path=tmp_path)
        assert done.deleted and done.count == 42
        rows = spark_rows(spark, stack.container, "haltian/raw/parquet/x", tmp_path)
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Where ``make setup`` puts Delta's jars; the versions are the Makefile's DELTA_VERSION.
SPARK_JARS_DIR = PROJECT_ROOT / ".venv" / "spark-jars"
SPARK_VERSION = "3.5.3"  # requirements-dev.txt's pyspark, the Spark that Delta 3.2.1 was built against
DELTA_VERSION = "3.2.1"  # the Makefile's DELTA_VERSION
DELTA_JARS = (f"delta-spark_2.12-{DELTA_VERSION}.jar", f"delta-storage-{DELTA_VERSION}.jar")

#: Spark's log4j2 settings: errors only, and nothing from the noisiest loggers.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = error
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = off
"""

_dirs = itertools.count()


def missing_for_spark() -> str | None:
    """Why a Spark with Delta cannot start here (None when it can), naming what to install."""
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").is_file()) and shutil.which("java") is None:
        return (
            "Spark needs Java: no java on PATH nor in JAVA_HOME (make setup installs openjdk-17-jre-headless)"
        )
    try:
        import pyspark
    except ImportError:
        return f"pyspark is not installed (requirements-dev.txt pins pyspark=={SPARK_VERSION}; make setup)"
    if pyspark.__version__ != SPARK_VERSION:
        return (
            f"pyspark {pyspark.__version__} is installed, Delta {DELTA_VERSION} needs {SPARK_VERSION} "
            "(make setup)"
        )
    missing = [name for name in DELTA_JARS if not (SPARK_JARS_DIR / name).is_file()]
    if missing:
        return f"Delta Lake's jars are missing from {SPARK_JARS_DIR}: {', '.join(missing)} (run make setup)"
    return None


@dataclass
class SparkTimes:
    """How long this session's Spark took to start (seconds), for the curious and the report."""

    start: float | None = None


SPARK_TIMES = SparkTimes()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark with Delta Lake for the whole test session (a ``pyspark.sql.SparkSession``)."""
    reason = missing_for_spark()
    if reason:
        pytest.skip(reason)
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    home = tmp_path_factory.mktemp("spark")
    log4j = home / "log4j2.properties"
    log4j.write_text(_LOG4J2)
    # C1 only: the tests' queries are tiny and each compiled once, so the JIT's second tier costs more than
    # it saves (a tenth or so of the rig test's time here).
    java_options = (
        f"-Dlog4j2.configurationFile={log4j.as_uri()} -Dderby.system.home={home / 'derby'}"
        " -XX:TieredStopAtLevel=1"
        # One session serves every Spark test; the default 48 MB code cache (C1 only) ran out in a
        # fresh clone's full run ("Out of space in CodeCache for adapters").
        " -XX:ReservedCodeCacheSize=256m"
    )
    jars = ",".join(str(SPARK_JARS_DIR / name) for name in DELTA_JARS)
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("haltian-bridge-tests")
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        # VACUUM lists the table in this many tasks (10000 by default: over a minute on two cores).
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")  # SQL's timestamp literals, whatever the machine's zone
        .config("spark.default.parallelism", "2")
        .config("spark.sql.warehouse.dir", str(home / "warehouse"))
        .config("spark.local.dir", str(home / "local"))
    )
    # Spark's launcher reads these from the environment; loopback only, and no stray SPARK_HOME.
    saved = {k: os.environ.get(k) for k in ("SPARK_LOCAL_IP", "SPARK_HOME", "PYSPARK_SUBMIT_ARGS")}
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ.pop("SPARK_HOME", None)
    os.environ.pop("PYSPARK_SUBMIT_ARGS", None)
    started = time.monotonic()
    try:
        session = builder.getOrCreate()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    session.sparkContext.setLogLevel("ERROR")
    SPARK_TIMES.start = time.monotonic() - started
    try:
        yield session
    finally:
        session.stop()
        # Stop the JVM too (pyspark leaves it running until Python exits).
        gateway = SparkContext._gateway
        if gateway is not None:
            process = getattr(gateway, "proc", None)
            gateway.shutdown()
            if process is not None:
                process.stdin.close()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            SparkContext._gateway = None
            SparkContext._jvm = None


# --- The table between the container and a local folder ----------------------------------------------


def _is_checksum_side_file(path: Path) -> bool:
    """Hadoop's local file system writes ``.NAME.crc`` beside every file: not part of the table."""
    return path.name.startswith(".") and path.name.endswith(".crc")


def local_state(local_dir: Path) -> dict[str, str]:
    """Each file of the local table (relative POSIX path) and its SHA-256, less Hadoop's side files."""
    state = {}
    for path in sorted(Path(local_dir).rglob("*")):
        if path.is_file() and not _is_checksum_side_file(path):
            state[path.relative_to(local_dir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def _prefix(table_path: str) -> str:
    return table_path.strip("/") + "/"


def download_table(container_client, table_path: str, local_dir: Path | str) -> dict[str, str]:
    """Downloads every blob under ``table_path/`` into ``local_dir``; returns its state (for upload_changes).

    ``container_client`` is an ``azure.storage.blob.ContainerClient``; ``table_path`` is relative
    to the container (``haltian/raw/parquet/x``).
    """
    local_dir = Path(local_dir)
    local_dir.mkdir(parents=True, exist_ok=True)
    prefix = _prefix(table_path)
    for blob in container_client.list_blobs(name_starts_with=prefix):
        target = local_dir / blob.name[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            container_client.download_blob(blob.name).readinto(out)
    return local_state(local_dir)


@dataclass
class Changes:
    """What :func:`upload_changes` did, as blob names relative to the container."""

    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _upload_order(relative: str) -> tuple[int, str]:
    """Data files, then commits in version order, then the rest of the log, ``_last_checkpoint`` last:
    the order a writer makes them visible in, so a reader in between never sees a commit without its
    files or ``_last_checkpoint`` naming a checkpoint not yet there."""
    if not relative.startswith("_delta_log/"):
        return 0, relative
    name = relative.rsplit("/", 1)[-1]
    if name == "_last_checkpoint":
        return 3, relative
    if name.endswith(".json") and "/" not in relative[len("_delta_log/") :]:
        return 1, relative
    return 2, relative


def upload_changes(
    container_client, table_path: str, local_dir: Path | str, before: dict[str, str]
) -> Changes:
    """Mirrors what was done to ``local_dir`` since :func:`download_table` returned ``before``.

    Uploads new files if absent (a blob that appeared meanwhile raises ``ResourceExistsError``, as a
    concurrent commit of the same version would fail Delta's log store), overwrites changed ones
    (``_last_checkpoint``), then deletes the blobs whose local files are gone.
    """
    local_dir = Path(local_dir)
    prefix = _prefix(table_path)
    after = local_state(local_dir)
    changes = Changes()
    for relative in sorted((r for r in after if before.get(r) != after[r]), key=_upload_order):
        name = prefix + relative
        with open(local_dir / relative, "rb") as data:
            container_client.upload_blob(name, data, overwrite=relative in before)
        changes.uploaded.append(name)
    for relative in sorted(r for r in before if r not in after):
        container_client.delete_blob(prefix + relative)
        changes.deleted.append(prefix + relative)
    return changes


def _local_copy(tmp_path: Path | str) -> Path:
    # A new folder each time: Spark caches each path's Delta log, so a path is never reused.
    return Path(tempfile.mkdtemp(prefix=f"spark-table-{next(_dirs)}-", dir=tmp_path))


def _table_sql(local_dir: Path) -> str:
    return f"delta.`{local_dir.resolve().as_posix()}`"


def _forget_delta_logs(spark) -> None:
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


@dataclass
class SparkRun:
    """What :func:`spark_on_lake` did: each statement's result rows, the blobs it changed, and the
    table's row count afterwards."""

    results: list[list[dict]]
    uploaded: list[str]
    deleted: list[str]
    count: int
    local_dir: Path


def spark_on_lake(
    spark, container_client, table_path: str, *sql_statements: str, tmp_path: Path | str
) -> SparkRun:
    """Spark as another writer of the table at ``table_path`` in the container.

    Downloads the table, runs each statement with ``{table}`` replaced by the local copy
    (``delta.`/tmp/...```), uploads what changed and deletes what Spark deleted.
    """
    local_dir = _local_copy(tmp_path)
    before = download_table(container_client, table_path, local_dir)
    table = _table_sql(local_dir)
    try:
        results = [rows_of(spark.sql(sql.format(table=table))) for sql in sql_statements]
        count = spark.read.format("delta").load(str(local_dir)).count()
    finally:
        _forget_delta_logs(spark)
    changes = upload_changes(container_client, table_path, local_dir, before)
    return SparkRun(results, changes.uploaded, changes.deleted, count, local_dir)


def rows_of(frame) -> list[dict]:
    """A DataFrame's rows as plain dicts. TIMESTAMP columns as aware UTC datetimes, as delta-rs and
    pyarrow give them (pyspark gives naive ones in the Python process's local zone); TIMESTAMP_NTZ
    ones stay naive."""
    from pyspark.sql.types import TimestampType

    zoned = [f.name for f in frame.schema.fields if isinstance(f.dataType, TimestampType)]
    rows = [row.asDict(recursive=True) for row in frame.collect()]
    for row in rows:
        for name in zoned:
            if row[name] is not None:
                row[name] = row[name].astimezone(timezone.utc)
    return rows


def spark_rows(
    spark, container_client, table_path: str, tmp_path: Path | str, version: int | None = None
) -> list[dict]:
    """The table's rows as Spark reads them (at ``version``, or the latest), as plain dicts (see rows_of)."""
    local_dir = _local_copy(tmp_path)
    download_table(container_client, table_path, local_dir)
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    try:
        return rows_of(reader.load(str(local_dir)))
    finally:
        _forget_delta_logs(spark)
