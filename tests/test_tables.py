"""The tables apart from the mirror: one per layout and dataset, read back by delta-rs and DuckDB.

Expected rows come from the source files as the bucket generator wrote them (built from
Haltian's schema reference), read by pyarrow: never from the bridge's idea of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import threading
import time
from collections import Counter
from urllib.parse import unquote
from datetime import datetime, timedelta, timezone

import hypothesis
import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake.transaction import CommitProperties

from shared.demo.bucket import (
    WIREPAS_BIG,
    BucketSpec,
    legacy_key,
    legacy_schema,
    make_table,
    parquet_bytes,
    v1_key,
    v1_schema,
)
from shared.haltian.keys import parse_key
from shared.model import FULL, PUBLISHED, TableChange, TableFile
from shared.run import Bridge, RunFailed, run_once
from shared.timer import run_for_timer
from shared.sink.connect import delta_storage_options
from shared.tables.data_files import FileStats
from shared.tables.budget import WriteBudget
from shared.tables.delta import DeltaPublisher
from shared.tables.ledger import Delivered, TableLog
from shared.tables.writes import CHECKPOINT_INTERVAL
from tests.tables import (
    ROOT,
    TABLES,
    download_table,
    duckdb_connection,
    file_rows,
    same_rows,
    source_rows,
    table,
    table_rows,
)
from tests.faultproxy import CRASH_AFTER, FORBIDDEN, PASS, RESET_MID_BODY, FaultProxy, list_prefix
from tests.test_reliability import bridge_for, proxied_env, run_killed_before_tables

pytestmark = pytest.mark.integration

SPEC = dict(
    legacy_hours=30,
    v1_hours=6,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
    snapshot_every_hours=12,
)
ALLOWED_TYPES = {
    "boolean",
    "byte",
    "short",
    "integer",
    "long",
    "float",
    "double",
    "string",
    "binary",
    "date",
    "timestamp",
}


def log_replay(stack, name: str) -> tuple[list[dict], list[str]]:
    """An independent reading of a table's JSON log: its commits' actions and its live files
    (of the commits log cleanup left)."""
    prefix = f"{TABLES}/{name}/_delta_log/"
    commits = sorted(n for n in stack.lake_names(prefix) if re.fullmatch(r".*/\d{20}\.json", n))
    actions: list[dict] = []
    live: dict[str, dict] = {}
    for blob in commits:
        for line in stack.container.get_blob_client(blob).download_blob().readall().decode().splitlines():
            action = json.loads(line)
            actions.append(action)
            if "add" in action:
                live[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    return actions, sorted(live)


def orphans(stack, name: str) -> list[str]:
    """Data files in a table's folder that no commit of its log ever named."""
    actions, _ = log_replay(stack, name)
    named = {a[kind]["path"] for a in actions for kind in ("add", "remove") if kind in a}
    prefix = f"{TABLES}/{name}/"
    return [n for n in stack.lake_names(prefix) if "/_delta_log/" not in n and n[len(prefix) :] not in named]


def co2_rows_by_duckdb(stack, name: str, tmp_path) -> list[tuple]:
    """The table as DuckDB's own Delta reader sees it (the table folder downloaded)."""
    local = download_table(stack, name, tmp_path / name)
    query = "SELECT deviceId, epoch_ms(ts), organizationId, co2, _source_key FROM delta_scan(?)"
    return sorted(duckdb_connection().execute(query, [str(local)]).fetchall(), key=repr)


def co2_rows(rows: list[dict]) -> list[tuple]:
    return sorted(
        (
            (r["deviceId"], int(r["ts"].timestamp() * 1000), r["organizationId"], r["co2"], r["_source_key"])
            for r in rows
        ),
        key=repr,
    )


def put_this_hour(stack, dataset: str, rows: int, seed: int) -> tuple[str, bytes]:
    """A new legacy file of ``dataset`` for the current hour (in the window, after the seeded
    hours) put into the bucket: its key and bytes."""
    at = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    key = legacy_key(BucketSpec().organization, dataset, at)
    data = parquet_bytes(make_table(legacy_schema(dataset), rows, at, random.Random(seed)))
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    return key, data


def co2_change(result) -> TableChange:
    return next(t for t in result.tables if t.layout == "legacy" and t.dataset == "measurementCO2")


def test_measurement_tables_hold_exactly_the_source_rows(stack, tmp_path) -> None:
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    result = run_once(stack.bridge())
    org = BucketSpec().organization
    folder = f"parquet/{org}/measurementCO2/"
    expected = source_rows(objects, folder)

    dt = table(stack, "legacy_measurementCO2")
    actual = table_rows(dt)
    assert same_rows(actual, expected)
    assert co2_rows_by_duckdb(stack, "legacy_measurementCO2", tmp_path) == co2_rows(expected)
    sources = {
        w.key: hashlib.md5(data).hexdigest() for w, data in objects if w.key.startswith(folder)
    }  # S3's ETag
    with_rows = {w.key for w, _ in objects if w.key.startswith(folder) and w.rows}
    assert {(r["_source_key"], r["_source_version"]) for r in actual} == {(k, sources[k]) for k in with_rows}
    assert {r["_source_month"] for r in actual} == {
        k.split("/")[-3] + "-" + k.split("/")[-2] for k in with_rows
    }

    # One physical schema: every data file's Parquet schema is the table's (less its partition column).
    table_schema = pa.schema(dt.schema().to_arrow())
    expected_schema = pa.schema([f for f in table_schema if f.name != "_source_month"])
    for uri in dt.file_uris():
        path = uri.split(f"{stack.container_name}/", 1)[1]
        footer = pq.ParquetFile(io.BytesIO(stack.container.get_blob_client(path).download_blob().readall()))
        assert footer.schema_arrow.remove_metadata() == expected_schema, uri

    # Every add action's statistics hold for its file's rows (what readers skip files by).
    actions, live = log_replay(stack, "legacy_measurementCO2")
    adds = {a["add"]["path"]: a["add"] for a in actions if "add" in a}
    for path in live:
        stats = json.loads(adds[path]["stats"])
        rows = pq.read_table(io.BytesIO(stack.lake_bytes(f"_tables/legacy_measurementCO2/{path}")))
        assert stats["numRecords"] == rows.num_rows, path
        for column in ("deviceId", "co2", "_source_key"):
            values = [v for v in rows.column(column).to_pylist() if v is not None]
            assert stats["minValues"][column] == min(values) and stats["maxValues"][column] == max(values)
            assert stats["nullCount"][column] == rows.column(column).null_count
        times = [
            v.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z"
            for v in rows.column("ts").to_pylist()
        ]
        assert (stats["minValues"]["ts"], stats["maxValues"]["ts"]) == (
            min(times),
            max(times),
        )  # to the millisecond
    assert not orphans(stack, "legacy_measurementCO2")

    # Nothing of a table in the mirror.
    assert not [n for n in stack.lake_names(f"{ROOT}/parquet/") if "_delta_log" in n]
    change = next(t for t in result.tables if t.dataset == "measurementCO2" and t.layout == "legacy")
    assert change.table == f"{TABLES}/legacy_measurementCO2"
    assert sorted(change.added) == sorted(sources) and change.version == dt.version()


def test_snapshot_table_equals_the_newest_snapshot_and_keeps_history(stack) -> None:
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    org = BucketSpec().organization
    folder = f"parquet/{org}/device/"
    snapshots = sorted(
        ((parse_key(w.key), data) for w, data in objects if w.key.startswith(folder)),
        key=lambda s: s[0].window_start,
    )
    assert len(snapshots) >= 3
    newest_key, newest_data = snapshots[-1]
    dt = table(stack, "legacy_device")
    rows = [{**r, "_source_key": newest_key.key} for r in pq.read_table(io.BytesIO(newest_data)).to_pylist()]
    assert same_rows(table_rows(dt), rows)

    # A later snapshot replaces it in one commit; the old one stays reachable by time travel.
    later = newest_key.window_start + timedelta(hours=1)
    data = parquet_bytes(make_table(legacy_schema("device"), 5, later, random.Random(8)))
    later_key = legacy_key(org, "device", later)
    stack.s3.put_object(Bucket=stack.bucket, Key=later_key, Body=data)
    before = dt.version()
    result = run_once(bridge, full=True)
    dt = table(stack, "legacy_device")
    assert dt.version() == before + 1
    assert same_rows(
        table_rows(dt), [{**r, "_source_key": later_key} for r in pq.read_table(io.BytesIO(data)).to_pylist()]
    )
    change = next(t for t in result.tables if t.dataset == "device")
    assert change.removed == [newest_key.key] and change.added == [later_key]
    dt.load_as_version(before)
    assert same_rows(table_rows(dt), rows)

    # A snapshot that arrives late (older than the table's) never replaces the newer one.
    stale_at = snapshots[0][0].window_start - timedelta(hours=3)
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=legacy_key(org, "device", stale_at),
        Body=parquet_bytes(make_table(legacy_schema("device"), 2, stale_at, random.Random(9))),
    )
    run_once(bridge, full=True)
    dt = table(stack, "legacy_device")
    assert dt.version() == before + 1


def test_a_uint32_above_two_to_the_31_reads_back_intact(stack) -> None:
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    run_once(stack.bridge())
    dt = table(stack, "legacy_device")
    types = {f.name: str(f.type.type) for f in dt.schema().fields}
    assert types["wirepasNodeId"] == "long" and types["createdTs"] == "timestamp"
    assert WIREPAS_BIG in [r["wirepasNodeId"] for r in table_rows(dt)]


def test_rerunning_adds_no_commit(stack) -> None:
    stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    run_once(bridge)
    folders = sorted({n[len(TABLES) + 1 :].split("/")[0] for n in stack.lake_names(f"{TABLES}/")})
    versions = {f: table(stack, f).version() for f in folders}
    assert len(versions) >= 5
    second = run_once(bridge)
    third = run_once(bridge, full=True)
    assert second.tables == [] or all(not t.changed for t in second.tables)
    assert all(not t.changed for t in third.tables)
    assert {f: table(stack, f).version() for f in folders} == versions


def test_a_run_with_nothing_new_lists_each_lake_folder_once(stack) -> None:
    """The tables already hold every source version: the sync lists no month folder (it reads
    each table's log, not the mirror), so each is listed once, by the plan."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    run_once(stack.bridge())
    lists: Counter = Counter()

    def rule(method: str, path: str) -> str:
        prefix = list_prefix(method, path)
        if prefix is not None:
            lists[prefix] += 1
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        result = run_once(bridge_for(proxied_env(stack, None, proxy)))
    finally:
        proxy.close()
    assert result.count(PUBLISHED) == 0 and all(not t.changed for t in result.tables)
    months = {prefix: n for prefix, n in lists.items() if re.fullmatch(r".*/parquet/.+/\d{4}/\d{2}/", prefix)}
    assert len(months) >= 4, lists  # the window's month folders of the datasets copied
    assert set(months.values()) == {1}, {p: n for p, n in months.items() if n != 1}


def test_a_lake_that_fails_during_the_table_sync_costs_that_table_only(stack) -> None:
    """The lake answers the copy stage but refuses every listing of one table's log (a 403 the
    SDK does not retry; a 500 after its last retry, as CI met, is the same to the sync): that
    table reports its error, the run still writes its manifest, the timer invocation shows
    failed, and the next run commits the table."""
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    failed: Counter = Counter()

    def rule(method: str, path: str) -> str:
        prefix = list_prefix(method, path)
        if prefix is not None and prefix.endswith("/_tables/legacy_measurementCO2/_delta_log/"):
            failed[prefix] += 1
            return FORBIDDEN
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        with pytest.raises(RunFailed, match="Delta tables not updated: 1,"):
            run_for_timer(proxied_env(stack, None, proxy))
    finally:
        proxy.close()
    assert failed  # the fault was met
    manifest = json.loads(stack.lake_bytes("_manifests/latest.json"))  # a copy of the run's manifest
    published = [f for f in manifest["files"] if f["action"] == PUBLISHED]
    assert manifest["mode"] == FULL and len(published) == len(objects)
    broken = [t for t in manifest["tables"] if t["error"]]
    assert [(t["layout"], t["dataset"]) for t in broken] == [("legacy", "measurementCO2")], manifest["tables"]
    # delta-rs (which loads the log) says no more than this of a refused listing.
    assert re.search(r"AuthorizationPermissionMismatch|403|MicrosoftAzure", broken[0]["error"]), broken[0]
    assert all(t["version"] is not None for t in manifest["tables"] if not t["error"])

    healed = run_once(stack.bridge())
    assert healed.exit_code == 0 and not [t for t in healed.tables if t.error]
    folder = f"parquet/{BucketSpec().organization}/measurementCO2/"
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), source_rows(objects, folder))


def test_a_run_reads_none_of_the_small_files_it_published_back_for_its_tables(stack) -> None:
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    reads: Counter = Counter()

    def rule(method: str, path: str) -> str:
        if method == "GET" and "/parquet/" in path.split("?")[0]:
            reads[path] += 1
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        result = run_for_timer(proxied_env(stack, None, proxy))
    finally:
        proxy.close()
    assert result.count(PUBLISHED) == len(objects) and not reads, sorted(reads)[:3]
    folder = f"parquet/{BucketSpec().organization}/measurementCO2/"
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), source_rows(objects, folder))


def test_a_table_sync_whose_reads_of_the_mirror_are_cut_off_reads_them_again(stack, monkeypatch) -> None:
    """The lake cuts off the body of three mirrored CO2 files the table sync reads (files an
    earlier run published), twice each, then answers: the rows enter the table once each, from
    whole files."""
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    run_killed_before_tables(stack, monkeypatch)
    cut: Counter = Counter()

    def rule(method: str, path: str) -> str:
        if (
            method == "GET"
            and "/measurementCO2/" in path
            and path.endswith(".parquet")
            and "_tables" not in path
        ):
            if path in cut or len(cut) < 3:
                cut[path] += 1  # the first read is of its footer (the facts of a file another run published)
                return RESET_MID_BODY if 2 <= cut[path] <= 3 else PASS
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        run_for_timer(proxied_env(stack, None, proxy))
    finally:
        proxy.close()
    folder = f"parquet/{BucketSpec().organization}/measurementCO2/"
    assert len(cut) == 3 and all(n == 4 for n in cut.values()), (
        cut
    )  # the footer; cut off twice, then read whole
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), source_rows(objects, folder))


def test_a_crash_between_publish_and_commit_heals_on_the_next_run(stack, monkeypatch) -> None:
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    run_killed_before_tables(stack, monkeypatch)
    assert len(stack.data_files()) == len(objects)
    assert not [n for n in stack.lake_names() if "_tables" in n or "_manifests" in n]

    result = run_once(stack.bridge())  # nothing left to copy, but every table is committed
    assert result.outcomes == []
    org = BucketSpec().organization
    folder = f"parquet/{org}/measurementCO2/"
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), source_rows(objects, folder))
    assert {t.dataset for t in result.tables} == {"measurementCO2", "device", "devices"}


def test_two_concurrent_committers_both_land_and_no_file_twice(stack) -> None:
    org = BucketSpec().organization
    at = datetime(2026, 10, 1, tzinfo=timezone.utc)
    files, expected = [], []
    for hour in range(8):
        key = legacy_key(org, "measurementCO2", at + timedelta(hours=hour))
        data = parquet_bytes(make_table(legacy_schema("measurementCO2"), 3, at, random.Random(hour)))
        etag = hashlib.md5(data).hexdigest()
        stack.container.upload_blob(f"{ROOT}/{key}", data, metadata={"haltian_source_etag": etag})
        files.append(TableFile(parse_key(key), len(data), etag))
        expected += file_rows(data, key)
    bridge: Bridge = stack.bridge()
    halves = [files[:5], files[3:]]  # overlapping: files 3 and 4 are offered by both writers
    barrier = threading.Barrier(2)
    changes = []

    def commit(part: list[TableFile], name: str) -> None:
        publisher = DeltaPublisher(
            bridge.lake, stack.container_name, delta_storage_options(stack.settings(), None), name
        )
        barrier.wait()
        changes.append(publisher.sync(part))

    threads = [threading.Thread(target=commit, args=(part, f"writer-{i}")) for i, part in enumerate(halves)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c.error is None for c in changes), changes
    assert sorted(k for c in changes for k in c.added) == sorted(f.key.key for f in files)  # each once
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), expected)
    assert not orphans(stack, "legacy_measurementCO2")  # the losing writer's files went with its commit


def test_a_check_constraint_another_engine_added_holds_for_new_rows(stack) -> None:
    """A Spark user adds a CHECK constraint (ALTER TABLE ... ADD CONSTRAINT): the bridge's rows
    then go through a writer that enforces it, never straight into the table."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    dt = table(stack, "legacy_measurementCO2")
    before = len(table_rows(dt))
    org = BucketSpec().organization
    at = datetime(2026, 10, 20, tzinfo=timezone.utc)
    key = legacy_key(org, "measurementCO2", at)
    dt.alter.add_constraint({"not_that_file": f"_source_key <> '{key}'"})  # every row so far holds it
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=key,
        Body=parquet_bytes(make_table(legacy_schema("measurementCO2"), 4, at, random.Random(20))),
    )
    result = run_once(bridge, full=True)
    assert [o.action for o in result.outcomes] == [PUBLISHED]
    change = co2_change(result)
    assert change.error is not None and "4 new rows break a CHECK constraint" in change.error, change.error
    assert "\n" not in change.error and "Error" not in change.error
    assert len(table_rows(table(stack, "legacy_measurementCO2"))) == before
    assert not orphans(stack, "legacy_measurementCO2")


def test_additive_drift_evolves_the_schema_and_decimal256_stays_out(stack) -> None:
    stack.seed(BucketSpec(**SPEC))
    result = run_once(stack.bridge())
    co2 = table(stack, "legacy_measurementCO2")
    assert "co2Raw" in [f.name for f in co2.schema().fields]
    values = [r["co2Raw"] for r in table_rows(co2)]
    assert sum(v is not None for v in values) > 0 and sum(v is None for v in values) > 0

    distance = next(t for t in result.tables if t.dataset == "measurementDistance")
    assert distance.added == [] and len(distance.excluded) == 1
    assert "decimal256(50, 20) has no Delta type" in distance.excluded[0]["reason"]
    key = distance.excluded[0]["source_key"]
    assert stack.lake_bytes(key)  # still copied
    manifest = json.loads(
        stack.container.get_blob_client(f"{ROOT}/_manifests/latest.json").download_blob().readall()
    )
    assert any(t["excluded"] and t["dataset"] == "measurementDistance" for t in manifest["tables"])


def test_breaking_drift_keeps_a_file_out_and_the_table_serving(stack) -> None:
    """A column the (partial) v1 contract does not name changes type: the file is published, but kept
    out of the table, which keeps serving the rows it had."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    org = BucketSpec().organization
    documented = v1_schema("measurementCO2")
    keys = []
    for day, extra in ((3, pa.int64()), (4, pa.string())):  # the undocumented column's type changes
        at = datetime(2026, 10, day, tzinfo=timezone.utc)
        schema = documented.append(pa.field("calibration", extra, True))
        keys.append(v1_key(org, "measurementCO2", at, at + timedelta(hours=1)))
        stack.s3.put_object(
            Bucket=stack.bucket,
            Key=keys[-1],
            Body=parquet_bytes(make_table(schema, 4, at, random.Random(day))),
        )
        if day == 3:
            run_once(bridge, full=True)
            before = len(table_rows(table(stack, "v1_measurementCO2")))
    result = run_once(bridge, full=True)
    assert [o.action for o in result.outcomes] == ["published"]
    change = next(t for t in result.tables if t.layout == "v1" and t.dataset == "measurementCO2")
    assert change.excluded == [{"source_key": keys[1], "reason": change.excluded[0]["reason"]}]
    assert "breaking schema drift" in change.excluded[0]["reason"]
    assert len(table_rows(table(stack, "v1_measurementCO2"))) == before


def test_every_table_log_stays_within_what_synapse_and_fabric_read(stack) -> None:
    stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    run_once(bridge)
    names = sorted({n[len(TABLES) + 1 :].split("/")[0] for n in stack.lake_names(f"{TABLES}/")})
    assert {"legacy_device", "legacy_measurementCO2", "v1_devices", "v1_measurementCO2"} <= set(names), names
    for name in names:
        actions, _ = log_replay(stack, name)
        protocol = next(a["protocol"] for a in actions if "protocol" in a)
        assert (protocol["minReaderVersion"], protocol["minWriterVersion"]) == (1, 2)
        assert "readerFeatures" not in protocol and "writerFeatures" not in protocol
        measurement = "measurement" in name
        for metadata in (a["metaData"] for a in actions if "metaData" in a):
            assert metadata["partitionColumns"] == (["_source_month"] if measurement else [])
            for column in json.loads(metadata["schemaString"])["fields"]:
                assert column["type"] in ALLOWED_TYPES or re.fullmatch(
                    r"decimal\(\d+,\d+\)", str(column["type"])
                )
                assert column["nullable"] is True
            assert "delta.columnMapping.mode" not in metadata.get("configuration", {})
        for add in (a["add"] for a in actions if "add" in a):
            stats = json.loads(add["stats"])
            assert {"numRecords", "minValues", "maxValues", "nullCount"} <= set(stats)
            assert add.get("deletionVector") is None
        last = stack.lake_names(f"{TABLES}/{name}/_delta_log/_last_checkpoint")
        for blob in last:  # Synapse serverless fails on a _last_checkpoint over 200 bytes
            assert len(stack.container.get_blob_client(blob).download_blob().readall()) <= 200


def one_hour_counted(stack, name: str, dataset: str, rows: int, seed: int) -> tuple:
    """The seeded bucket's first run, then a new file of ``dataset`` this hour and a run through a
    proxy that counts the requests to table ``name``'s folder: (bridge, the table before, its rows,
    the new key, its bytes, the run's result, requests by kind, the paths of the blob GETs)."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    before = table(stack, name)
    rows_before = table_rows(before)
    key, data = put_this_hour(stack, dataset, rows, seed=seed)
    requests: Counter = Counter()
    reads: list[str] = []

    def rule(method: str, path: str) -> str:
        if f"{name}/" in unquote(path):
            listing = list_prefix(method, path) is not None
            requests["list" if listing else method] += 1
            if method == "GET" and not listing:
                reads.append(unquote(path))
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        result = run_once(bridge_for(proxied_env(stack, None, proxy)))
    finally:
        proxy.close()
    return bridge, before, rows_before, key, data, result, requests, reads


def test_an_hourly_delivery_is_one_read_of_the_log_and_one_commit_that_readers_follow(
    stack, tmp_path
) -> None:
    """The normal hour: a new file for a table that exists is appended without delta-rs loading
    the table (about twenty round trips at a cloud's latency): one listing of the log, its files
    read at once, one data file, one commit, each request once. delta-rs, DuckDB and a plain
    replay of the log all read the commit the bridge wrote itself."""
    bridge, before, rows_before, key, data, result, requests, _ = one_hour_counted(
        stack, "legacy_measurementCO2", "measurementCO2", rows=5, seed=5
    )
    change = co2_change(result)
    assert change.error is None and change.added == [key] and change.version == before.version() + 1
    log_reads = len(
        [
            n
            for n in stack.lake_names(f"{TABLES}/legacy_measurementCO2/_delta_log/")
            if n.endswith(".json") or n.endswith(".parquet")
        ]
    )
    assert requests["list"] == 1 and requests["PUT"] == 2, requests  # the data file, the commit
    assert requests["GET"] <= log_reads, requests  # the log's files at most, each once
    assert set(requests) <= {"list", "GET", "PUT"}, requests

    after = table(stack, "legacy_measurementCO2")
    assert after.version() == change.version
    new_rows = file_rows(data, key)
    assert same_rows(table_rows(after), rows_before + new_rows)
    assert co2_rows_by_duckdb(stack, "legacy_measurementCO2", tmp_path) == co2_rows(rows_before + new_rows)
    actions, live = log_replay(stack, "legacy_measurementCO2")
    commit = [a for a in actions if "txn" in a and key in a["txn"]["appId"]]
    assert (
        len(commit) == 1
        and commit[0]["txn"]["appId"] == f"haltian-azure-bridge:{hashlib.md5(data).hexdigest()}:{key}"
    )
    assert sorted(live) == sorted(p.split("legacy_measurementCO2/", 1)[1] for p in after.file_uris())
    assert not orphans(stack, "legacy_measurementCO2")
    assert all(not t.changed for t in run_once(bridge).tables)


def test_an_hourly_snapshot_is_one_read_of_the_log_and_one_commit_that_readers_follow(
    stack, tmp_path
) -> None:
    """A new snapshot for a table that exists, in a lake of one organization: no delta-rs load or
    scan of the old rows (about forty round trips at a cloud's latency). One listing of the log,
    its files read at once, one data file, one commit that removes the old snapshot's file and
    adds the new one. delta-rs, DuckDB and a plain replay of the log all read the new snapshot's
    rows only, and the old ones by time travel."""
    bridge, before, rows_before, key, data, result, requests, reads = one_hour_counted(
        stack, "legacy_device", "device", rows=4, seed=11
    )
    change = next(t for t in result.tables if t.layout == "legacy" and t.dataset == "device")
    assert change.error is None and change.added == [key] and change.version == before.version() + 1
    assert requests["list"] == 1 and requests["PUT"] == 2, requests  # the data file, the commit
    assert reads and all("/_delta_log/" in path for path in reads), reads  # the log only: no data file read
    assert set(requests) <= {"list", "GET", "PUT"}, requests
    previous = sorted({row["_source_key"] for row in rows_before})
    assert len(previous) == 1 and change.removed == previous

    after = table(stack, "legacy_device")
    assert after.version() == change.version
    assert same_rows(table_rows(after), file_rows(data, key))
    local = download_table(stack, "legacy_device", tmp_path / "legacy_device")
    by_duckdb = (
        duckdb_connection()
        .execute("SELECT _source_key, count(*) FROM delta_scan(?) GROUP BY _source_key", [str(local)])
        .fetchall()
    )
    assert by_duckdb == [(key, pq.read_metadata(io.BytesIO(data)).num_rows)]
    actions, live = log_replay(stack, "legacy_device")
    commit = [a for a in actions if "txn" in a and key in a["txn"]["appId"]]
    assert (
        len(commit) == 1
        and commit[0]["txn"]["appId"] == f"haltian-azure-bridge:{hashlib.md5(data).hexdigest()}:{key}"
    )
    assert sorted(live) == sorted(p.split("legacy_device/", 1)[1] for p in after.file_uris())
    assert not orphans(stack, "legacy_device")
    after.load_as_version(before.version())
    assert same_rows(table_rows(after), rows_before)
    assert all(not t.changed for t in run_once(bridge).tables)


def test_a_snapshot_table_whose_files_mix_organizations_is_overwritten_by_delta_rs() -> None:
    """The bridge's own overwrite removes whole files, so only files whose statistics bound every
    ``_source_key`` within one organization's folder (truncated bounds too: every string between
    two with a common prefix has it), and count no null key, let it; anything else goes through
    delta-rs's writer, which reads the rows and keeps the other organizations'."""
    ours, other = "0b7f3c1e-2d4a-4c5b-8e9f-1a2b3c4d5e6f", "5c9d7e1f-3a2b-4c4d-9e8f-7a6b5c4d3e2f"

    def add(low: str | None, high: str | None, nulls: int = 0, path: str = "part-1.parquet") -> dict:
        stats = {"numRecords": 3, "nullCount": {"_source_key": nulls}, "minValues": {}, "maxValues": {}}
        if low is not None:
            stats["minValues"]["_source_key"], stats["maxValues"]["_source_key"] = low, high
        return {"path": path, "size": 10, "partitionValues": {}, "stats": json.dumps(stats)}

    def removed(*adds: dict) -> list[dict] | None:
        log = TableLog(
            3,
            {"minReaderVersion": 1, "minWriterVersion": 2},
            {"partitionColumns": []},
            {},
            Delivered(3, {}),
            {a["path"]: a for a in adds},
        )
        return log.replaced_by([ours])

    key = f"parquet/{ours}/device/2026/11/2026_11_02_05_device.parquet"
    truncated = (
        f"parquet/{ours}/device/2026/11/2026",
        f"parquet/{ours}/device/2026/11/2027",
    )  # delta-rs's bounds
    assert removed(add(key, key)) == [add(key, key)]
    assert removed(add(*truncated)) == [add(*truncated)]
    assert removed(add(key, key), add(*truncated, path="part-2.parquet")) is not None
    assert removed(add(f"parquet/{ours}/device/x", f"parquet/{other}/device/x")) is None  # two organizations
    assert removed(add(key, key), add(f"parquet/{other}/d", f"parquet/{other}/d", path="p2")) is None
    assert removed(add(f"parquet/{ours[:20]}", f"parquet/{ours[:20]}~")) is None  # bounds cut inside the name
    assert removed(add(key, key, nulls=1)) is None  # rows without a key do not match the predicate
    assert removed(add(None, None)) is None  # no bounds
    assert removed({"path": "p", "size": 1, "partitionValues": {}}) is None  # no statistics
    assert removed() == []


def test_a_commit_whose_answer_is_lost_is_known_as_its_own(stack) -> None:
    """The bridge's Put Blob of a commit lands, but the connection drops before its answer: the
    retry finds the version taken, reads it, recognises its own commit, and keeps its data file
    (deleting it would leave the commit naming a missing file)."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    key, _ = put_this_hour(stack, "measurementCO2", 3, seed=3)
    cut: list[str] = []

    def rule(method: str, path: str) -> str:
        if method == "PUT" and re.search(r"legacy_measurementCO2/_delta_log/\d{20}\.json", path) and not cut:
            cut.append(path)
            return CRASH_AFTER  # the server writes it; its answer never leaves (the client lives on)
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        result = run_once(bridge_for(proxied_env(stack, None, proxy)))
    finally:
        proxy.close()
    assert cut, "the commit was not written by the bridge's own Put Blob"
    change = co2_change(result)
    assert change.error is None and change.added == [key]
    assert not orphans(stack, "legacy_measurementCO2")
    dt = table(stack, "legacy_measurementCO2")
    assert change.version == dt.version()
    assert len([r for r in table_rows(dt) if r["_source_key"] == key]) == 3  # the file's rows, once


def test_a_log_missing_a_commit_costs_that_table_one_plain_error(stack) -> None:
    """A commit gone from between the newest checkpoint and the newest commit (a log cleaned up
    by hand, or mid-run): that table reports it in one line and is left alone; the mirror and
    the other tables go on."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    log_folder = f"{TABLES}/legacy_measurementCO2/_delta_log/"
    commits = sorted(n for n in stack.lake_names(log_folder) if re.fullmatch(r".*/\d{20}\.json", n))
    assert len(commits) >= 2 and not any("checkpoint" in n for n in stack.lake_names(log_folder))
    stack.container.delete_blob(commits[0])
    for dataset in ("measurementCO2", "device"):
        put_this_hour(stack, dataset, 2, seed=9)
    result = run_once(bridge)
    assert result.count(PUBLISHED) == 2
    broken = next(t for t in result.tables if t.layout == "legacy" and t.dataset == "measurementCO2")
    assert broken.error is not None and "lacks a commit" in broken.error, broken.error
    assert "\n" not in broken.error and "Error" not in broken.error and "LogUnreadable" not in broken.error
    other = next(t for t in result.tables if t.layout == "legacy" and t.dataset == "device")
    assert other.error is None and other.changed


def _log_state(fields: list[dict], configuration: dict[str, str] | None = None) -> TableLog:
    """A table's state as the Delta protocol spells it: protocol (1, 2), a month-partitioned schema."""
    schema = {
        "type": "struct",
        "fields": fields + [{"name": "_source_month", "type": "string", "nullable": True, "metadata": {}}],
    }
    return TableLog(
        3,
        {"minReaderVersion": 1, "minWriterVersion": 2},
        {
            "schemaString": json.dumps(schema),
            "partitionColumns": ["_source_month"],
            "configuration": configuration or {},
        },
        {},
        Delivered(1, {}),
    )


def test_the_bridge_commits_itself_only_what_a_writer_version_2_may_write_blindly() -> None:
    """A NOT NULL column is an invariant at writer version 2 (PROTOCOL.md, Column Invariants), and
    delta.setTransactionRetentionDuration lets checkpoints forget the bridge's deliveries: either
    sends the append to delta-rs's writer (which enforces the one and refuses the other)."""
    plain = {"name": "co2", "type": "double", "nullable": True, "metadata": {}}
    assert _log_state([plain]).appendable()
    assert not _log_state([{**plain, "nullable": False}]).appendable()
    assert not _log_state(
        [{**plain, "metadata": {"delta.invariants": '{"expression": {"expression": "co2 > 0"}}'}}]
    ).appendable()
    assert not _log_state([plain], {"delta.setTransactionRetentionDuration": "interval 7 days"}).appendable()


def test_a_table_that_would_forget_its_deliveries_gets_no_rows_and_one_plain_error(stack) -> None:
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    dt = table(stack, "legacy_measurementCO2")
    before = len(table_rows(dt))
    dt.alter.set_table_properties({"delta.setTransactionRetentionDuration": "interval 1 days"})
    put_this_hour(stack, "measurementCO2", 2, seed=4)
    result = run_once(bridge)
    assert result.count(PUBLISHED) == 1
    change = co2_change(result)
    assert change.error is not None and "delta.setTransactionRetentionDuration" in change.error, change.error
    assert "\n" not in change.error and "Error" not in change.error
    assert len(table_rows(table(stack, "legacy_measurementCO2"))) == before
    assert not orphans(stack, "legacy_measurementCO2")


def test_a_commit_holding_a_line_separator_in_a_string_is_read(stack) -> None:
    """JSON strings may hold U+2028 unescaped (serde_json and Jackson write it raw): another
    engine's commit with one in its commitInfo is read, and the next hourly append lands."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    dt = table(stack, "legacy_measurementCO2")
    dt.alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 30 days"},
        commit_properties=CommitProperties(custom_metadata={"note": "one\u2028two"}),
    )
    newest = sorted(
        n for n in stack.lake_names(f"{TABLES}/legacy_measurementCO2/_delta_log/") if n.endswith(".json")
    )[-1]
    assert "\u2028".encode() in stack.container.get_blob_client(newest).download_blob().readall()
    key, _ = put_this_hour(stack, "measurementCO2", 2, seed=6)
    change = co2_change(run_once(bridge))
    assert change.error is None and change.added == [key], change.error


def test_checkpoints_are_written_regularly(stack) -> None:
    org = BucketSpec().organization
    bridge = stack.bridge()
    at = datetime(2026, 9, 1, tzinfo=timezone.utc)
    for hour in range(CHECKPOINT_INTERVAL + 1):
        key = legacy_key(org, "measurementCO2", at + timedelta(hours=hour))
        stack.s3.put_object(
            Bucket=stack.bucket,
            Key=key,
            Body=parquet_bytes(make_table(legacy_schema("measurementCO2"), 2, at, random.Random(hour))),
        )
        run_once(bridge, full=True)
    names = stack.lake_names(f"{TABLES}/legacy_measurementCO2/_delta_log/")
    assert any(n.endswith(".checkpoint.parquet") for n in names)
    assert any(n.endswith("_last_checkpoint") for n in names)


def test_sql_prints_one_synapse_view_per_table(stack, monkeypatch, capsys) -> None:
    from shared import cli

    stack.seed(BucketSpec(**SPEC, bad_files=False))
    run_once(stack.bridge())
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["sql"]) == cli.EXIT_OK
    script = capsys.readouterr().out
    views = re.findall(r"CREATE OR ALTER VIEW \[dbo\]\.\[(\w+)\] AS", script)
    assert sorted(views) == ["legacy_device", "legacy_measurementCO2", "v1_devices", "v1_measurementCO2"]
    assert script.count("FORMAT = 'DELTA'") == 4
    assert (
        f"BULK '{stack.azurite.url}/devstoreaccount1/{stack.container_name}/{TABLES}/legacy_device/'"
        in script
    )


def mirror(stack, key: str, data: bytes) -> TableFile:
    """A file placed in the mirror as a run leaves it (its source version in its metadata), for
    tests that drive the table sync alone."""
    etag = hashlib.md5(data).hexdigest()
    stack.container.upload_blob(
        f"{ROOT}/{key}",
        data,
        overwrite=True,
        metadata={"haltian_source_etag": etag, "haltian_source_size": str(len(data))},
    )
    return TableFile(parse_key(key), len(data), etag)


def publisher(stack, now: datetime) -> DeltaPublisher:
    bridge: Bridge = stack.bridge()
    return DeltaPublisher(
        bridge.lake,
        stack.container_name,
        delta_storage_options(stack.settings(), None),
        "test-run",
        now=lambda: now,
    )


def test_a_source_file_whose_bytes_changed_replaces_its_rows_in_one_commit(stack) -> None:
    org = BucketSpec().organization
    at = datetime(2026, 10, 1, tzinfo=timezone.utc)
    keys = [legacy_key(org, "measurementCO2", at + timedelta(hours=h)) for h in range(3)]
    datas = [
        parquet_bytes(make_table(legacy_schema("measurementCO2"), 4, at, random.Random(h))) for h in range(3)
    ]
    first = publisher(stack, at).sync([mirror(stack, k, d) for k, d in zip(keys, datas)])
    assert first.error is None and len(first.added) == 3

    changed = parquet_bytes(make_table(legacy_schema("measurementCO2"), 7, at, random.Random(99)))
    files = [
        mirror(stack, keys[0], datas[0]),
        mirror(stack, keys[1], changed),
        mirror(stack, keys[2], datas[2]),
    ]
    second = publisher(stack, at).sync(files)
    assert second.error is None and second.added == [keys[1]] and second.removed == [keys[1]]
    assert second.version == first.version + 1  # one commit
    expected = file_rows(datas[0], keys[0]) + file_rows(changed, keys[1]) + file_rows(datas[2], keys[2])
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), expected)


def deliver_days(stack, days: int, start: datetime, rows: int = 2) -> tuple[list[dict], DeltaPublisher]:
    """``days`` of hourly deliveries, one bridge sync a day (24 files), tiny files."""
    org = BucketSpec().organization
    expected: list[dict] = []
    sink = None
    for day in range(days):
        files = []
        for hour in range(24):
            at = start + timedelta(days=day, hours=hour)
            key = legacy_key(org, "measurementCO2", at)
            data = parquet_bytes(
                make_table(legacy_schema("measurementCO2"), rows, at, random.Random(day * 24 + hour))
            )
            files.append(mirror(stack, key, data))
            expected += file_rows(data, key)
        sink = publisher(stack, start + timedelta(days=day, hours=23, minutes=30))
        change = sink.sync(files)
        assert change.error is None, change.error
    return expected, sink


def table_layout(stack, name: str) -> tuple[dict[str, int], int]:
    """Files per ``_source_month`` and row groups in all, as the data files' own footers say."""
    dt = table(stack, name)
    actions = pa.table(dt.get_add_actions(flatten=True))
    months = Counter(actions.column("partition._source_month").to_pylist())
    row_groups = 0
    for path in actions.column("path").to_pylist():
        blob = stack.container.get_blob_client(f"{TABLES}/{name}/{path}").download_blob().readall()
        row_groups += pq.ParquetFile(io.BytesIO(blob)).num_row_groups
    return dict(months), row_groups


@pytest.mark.parametrize("days", [int(os.environ.get("TABLE_DAYS", "40"))])
def test_hourly_deliveries_stay_within_direct_lake_bounds(stack, days) -> None:
    """Closed months are compacted into one file, the open month holds at most 49; rows exact.
    ``make soak`` runs a whole year (TABLE_DAYS=365)."""
    start = datetime(2025, 11, 1, tzinfo=timezone.utc)
    expected, _ = deliver_days(stack, days, start)
    months, row_groups = table_layout(stack, "legacy_measurementCO2")
    last = f"{start + timedelta(days=days - 1):%Y-%m}"
    assert all(count == 1 for month, count in months.items() if month != last), months
    assert months[last] <= 49, months
    assert sum(months.values()) <= 1000 and row_groups <= 1000
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), expected)
    actions, _ = log_replay(stack, "legacy_measurementCO2")
    optimize = [
        a["commitInfo"]
        for a in actions
        if "commitInfo" in a and a["commitInfo"].get("operation") == "OPTIMIZE"
    ]
    assert optimize  # compactions are commits of their own, without data change
    assert [a for a in actions if "add" in a and a["add"]["dataChange"] is False]


def test_the_log_is_checkpointed_and_cleaned(stack) -> None:
    """The bridge creates tables with a checkpoint interval and Delta's default log retention, and
    cleans expired entries at checkpoint time: with a retention of one second (set as an operator
    would, in Spark or delta-rs), the log holds about one checkpoint interval of commits."""
    start = datetime(2026, 10, 1, tzinfo=timezone.utc)
    deliver_days(stack, 1, start)
    dt = table(stack, "legacy_measurementCO2")
    configuration = dt.metadata().configuration
    assert configuration["delta.checkpointInterval"] == str(CHECKPOINT_INTERVAL)
    assert configuration["delta.logRetentionDuration"] == "interval 30 days"
    dt.alter.set_table_properties({"delta.logRetentionDuration": "interval 1 second"})
    time.sleep(1.5)
    deliver_days(stack, 2 * CHECKPOINT_INTERVAL + 2, start + timedelta(days=1))
    log_files = stack.lake_names(f"{TABLES}/legacy_measurementCO2/_delta_log/")
    commits = [n for n in log_files if re.fullmatch(r".*/\d{20}\.json", n)]
    assert len(commits) <= 2 * CHECKPOINT_INTERVAL + 2, commits
    assert len(table_rows(table(stack, "legacy_measurementCO2"))) == 2 * 24 * (2 * CHECKPOINT_INTERVAL + 3)


def test_a_snapshot_table_holds_each_organizations_newest_snapshot(stack) -> None:
    """A bucket with two organizations (no HALTIAN_ORGANIZATION_ID): a new snapshot of one
    replaces that organization's rows only."""
    other = "0b7f3c1e-2d4a-4c5b-8e9f-1a2b3c4d5e6f"
    at = datetime(2026, 10, 1, tzinfo=timezone.utc)
    snapshots = {}
    for org, hour, seed in (
        (BucketSpec().organization, 0, 1),
        (other, 0, 2),
        (BucketSpec().organization, 5, 3),
    ):
        key = legacy_key(org, "device", at + timedelta(hours=hour))
        snapshots[key] = parquet_bytes(make_table(legacy_schema("device"), 3 + seed, at, random.Random(seed)))
    keys = list(snapshots)
    first = publisher(stack, at).sync([mirror(stack, k, snapshots[k]) for k in keys[:2]])
    assert first.error is None and sorted(first.added) == sorted(keys[:2])
    second = publisher(stack, at).sync([mirror(stack, k, snapshots[k]) for k in keys])
    assert second.error is None and second.added == [keys[2]] and second.removed == [keys[0]]
    expected = file_rows(snapshots[keys[1]], keys[1]) + file_rows(snapshots[keys[2]], keys[2])
    assert same_rows(table_rows(table(stack, "legacy_device")), expected)


def test_drop_legacy_removes_old_logs_from_the_mirror_once_the_new_tables_exist(
    stack, monkeypatch, capsys
) -> None:
    from shared import cli

    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    org = BucketSpec().organization
    old_logs = [
        f"{ROOT}/parquet/{org}/measurementCO2/_delta_log/00000000000000000000.json",
        f"{ROOT}/parquet/v1/{org}/measurementNoTable/_delta_log/00000000000000000000.json",
    ]
    for name in old_logs:  # as an earlier version left them
        stack.container.upload_blob(name, b'{"commitInfo":{}}\n')
    run_once(stack.bridge())
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["tables", "drop-legacy", "--json"]) == cli.EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "removed": [f"{ROOT}/parquet/{org}/measurementCO2/_delta_log/"],
        "kept_until_the_new_table_exists": [f"{ROOT}/parquet/v1/{org}/measurementNoTable/_delta_log/"],
    }
    names = stack.lake_names(f"{ROOT}/parquet/")
    assert old_logs[0] not in names and old_logs[1] in names
    assert len([n for n in names if "_delta_log" not in n]) == len(objects)  # every mirrored file kept


def test_a_large_backfill_commits_in_parts_each_source_once(stack, monkeypatch) -> None:
    """Past a part's bytes of source files (DELIVERY_BYTES through delta-rs's writer, STREAMED_PART_BYTES
    streamed) a sync commits in parts; every source is delivered once, and a later sync adds nothing."""
    import shared.tables.delta as delta

    org = BucketSpec().organization
    at = datetime(2026, 8, 1, tzinfo=timezone.utc)
    files, expected = [], []
    for hour in range(12):
        key = legacy_key(org, "measurementCO2", at + timedelta(days=hour * 5))
        data = parquet_bytes(make_table(legacy_schema("measurementCO2"), 5, at, random.Random(hour)))
        files.append(mirror(stack, key, data))
        expected += file_rows(data, key)
    monkeypatch.setattr(delta, "DELIVERY_BYTES", 3 * max(f.size for f in files))
    monkeypatch.setattr(delta, "STREAMED_PART_BYTES", 3 * max(f.size for f in files))
    change = publisher(stack, at).sync(files)
    assert change.error is None and sorted(change.added) == sorted(f.key.key for f in files)
    assert change.version >= 3  # created, then at least three more parts
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), expected)
    again = publisher(stack, at).sync(files)
    assert again.added == [] and again.version == change.version


def test_an_accepted_type_change_is_served_after_a_rebuild(stack, monkeypatch, capsys) -> None:
    """A column Haltian widened (int32 to int64): the new file stays out of the table (breaking
    drift) until the operator rebuilds it; the rebuilt table has the newest type, every row, and
    every data file in that one schema. A narrower file joins a wider table, widened."""
    from shared import cli

    org = BucketSpec().organization
    at = datetime(2026, 10, 1, tzinfo=timezone.utc)
    files, expected = [], []
    for hour, width in ((0, pa.int32()), (1, pa.int32()), (2, pa.int64())):
        schema = legacy_schema("measurementCO2").append(pa.field("calibration", width, True))
        key = legacy_key(org, "measurementCO2", at + timedelta(hours=hour))
        data = parquet_bytes(make_table(schema, 4, at, random.Random(hour)))
        files.append(mirror(stack, key, data))
        expected += file_rows(data, key)
    change = publisher(stack, at).sync(files)
    assert [e["source_key"] for e in change.excluded] == [files[2].key.key]
    assert "breaking schema drift" in change.excluded[0]["reason"]

    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["tables", "rebuild", "legacy/measurementCO2", "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["excluded"] == []
    dt = table(stack, "legacy_measurementCO2")
    assert {f.name: str(f.type.type) for f in dt.schema().fields}["calibration"] == "long"
    assert same_rows(table_rows(dt), expected)
    for uri in dt.file_uris():
        footer = pq.ParquetFile(
            io.BytesIO(
                stack.container.get_blob_client(uri.split(f"{stack.container_name}/", 1)[1])
                .download_blob()
                .readall()
            )
        )
        assert footer.schema_arrow.field("calibration").type == pa.int64()

    # A later file in the old, narrower type joins the table widened.
    schema = legacy_schema("measurementCO2").append(pa.field("calibration", pa.int32(), True))
    key = legacy_key(org, "measurementCO2", at + timedelta(hours=3))
    data = parquet_bytes(make_table(schema, 4, at, random.Random(3)))
    later = publisher(stack, at).sync(files + [mirror(stack, key, data)])
    assert later.added == [key] and later.excluded == []
    assert same_rows(table_rows(table(stack, "legacy_measurementCO2")), expected + file_rows(data, key))


def test_the_write_budget_lets_writes_that_fit_run_together_and_holds_the_rest_back() -> None:
    """Sync threads of one run share a budget of source bytes: writes that fit go at once, one
    that does not waits for the others to finish, one larger than the budget goes alone."""
    budget = WriteBudget(100)
    order: list[str] = []
    release = {name: threading.Event() for name in ("a", "b", "big")}
    holding = {name: threading.Event() for name in release}

    def write(name: str, size: int) -> None:
        with budget.hold(size):
            order.append(name)
            holding[name].set()
            release[name].wait(10)

    threads = {
        name: threading.Thread(target=write, args=(name, size))
        for name, size in (("a", 60), ("b", 40), ("big", 500))
    }
    threads["a"].start()
    assert holding["a"].wait(5)
    threads["b"].start()
    assert holding["b"].wait(5)  # 60 + 40 fit in 100: both at once
    threads["big"].start()
    assert not holding["big"].wait(0.5)  # larger than the budget: not while others hold any
    release["a"].set()
    assert not holding["big"].wait(0.5)  # b still holds 40
    release["b"].set()
    assert holding["big"].wait(5)  # alone now
    assert budget.held == 100  # capped at the budget
    release["big"].set()
    for thread in threads.values():
        thread.join(5)
    assert order == ["a", "b", "big"] and budget.held == 0


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    st.lists(
        st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=6),
        min_size=1,
        max_size=4,
    )
)
def test_a_streamed_files_bounds_hold_for_every_value_a_reader_may_skip_it_by(batches) -> None:
    """What Delta readers skip a file by (min/max) must hold for every value in it: a query for an
    infinity must never skip the file that holds it. NaN is left out, as delta-rs leaves it."""
    stats = FileStats(pa.schema([("x", pa.float64())]))
    for values in batches:
        stats.add(pa.record_batch([pa.array(values, pa.float64())], names=["x"]))
    written = json.loads(stats.json())
    values = [v for batch in batches for v in batch if v is not None and v == v]  # not null, not NaN
    assert written["numRecords"] == sum(len(b) for b in batches)
    assert written["nullCount"]["x"] == sum(v is None for b in batches for v in b)
    if "x" in written["minValues"]:
        assert all(written["minValues"]["x"] <= v <= written["maxValues"]["x"] for v in values)
