"""Delta Lake tables over the copied files, read back by delta-rs and by an independent reader."""

from __future__ import annotations

import io
import json
import random
import re
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from shared.demo.bucket import (
    GOOD, WIREPAS_BIG, BucketSpec, legacy_key, legacy_schema, make_table, parquet_bytes, v1_key, v1_schema,
)
from shared.run import Bridge, RunFailed, run_for_timer, run_once
from shared.sink.lake import delta_storage_options
from shared.model import FULL, PUBLISHED, TableFile
from shared.tables.delta import CHECKPOINT_INTERVAL, DeltaPublisher
from shared.haltian.keys import parse_key
from tests.faultproxy import FORBIDDEN, PASS, FaultProxy, list_prefix
from tests.test_reliability import bridge_for, proxied_env, run_killed_before_tables

pytestmark = pytest.mark.integration

ROOT = "haltian/raw"
SPEC = dict(legacy_hours=30, v1_hours=6, legacy_measurements=["measurementCO2"], v1_measurements=["measurementCO2"],
            legacy_snapshots=["device"], v1_snapshots=["devices"], snapshot_every_hours=12)
ALLOWED_TYPES = {"boolean", "byte", "short", "integer", "long", "float", "double", "string", "binary", "date",
                 "timestamp"}


def table(stack, folder: str) -> DeltaTable:
    options = delta_storage_options(stack.settings(), None)
    return DeltaTable(f"az://{stack.container_name}/{ROOT}/{folder.rstrip('/')}", storage_options=options)


def log_replay(stack, folder: str) -> tuple[list[dict], list[str]]:
    """An independent reading of a table's JSON log: its commits' actions and its live files."""
    prefix = f"{ROOT}/{folder}_delta_log/"
    commits = sorted(n for n in stack.lake_names(prefix) if n.endswith(".json"))
    actions: list[dict] = []
    live: dict[str, dict] = {}
    for name in commits:
        for line in stack.container.get_blob_client(name).download_blob().readall().decode().splitlines():
            action = json.loads(line)
            actions.append(action)
            if "add" in action:
                live[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    return actions, sorted(live)


def co2_rows_by_duckdb(stack, folder: str, paths: list[str], tmp_path) -> list[tuple]:
    """The table's rows as duckdb reads its files itself (downloaded), not as delta-rs does."""
    local = []
    for i, path in enumerate(paths):
        target = tmp_path / f"{i}.parquet"
        target.write_bytes(stack.lake_bytes(folder + path))
        local.append(str(target))
    query = "SELECT deviceId, epoch_ms(ts), organizationId, co2 FROM read_parquet($files, union_by_name = true)"
    return sorted(duckdb.connect().execute(query, {"files": local}).fetchall(), key=repr)


def co2_rows(rows: list[dict]) -> list[tuple]:
    return sorted(((r["deviceId"], int(r["ts"].timestamp() * 1000), r["organizationId"], r["co2"]) for r in rows),
                  key=repr)


def rows_of(objects, dataset_folder: str) -> list[tuple]:
    tables = [pq.read_table(io.BytesIO(data)) for w, data in objects
              if w.expect == GOOD and w.key.startswith(dataset_folder) and w.rows]
    # Row by row, so files whose writers spelled a type differently (large_string, ...) compare as values.
    return as_rows(row for t in tables for row in t.to_pylist())


def as_rows(rows) -> list[dict]:
    """Rows in a stable order, each with its columns in name order (so only values compare)."""
    return sorted(({name: row[name] for name in sorted(row)} for row in rows), key=repr)


def test_measurement_tables_hold_exactly_the_source_rows(stack, tmp_path) -> None:
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    result = run_once(stack.bridge())
    org = BucketSpec().organization
    folder = f"parquet/{org}/measurementCO2/"
    expected = rows_of(objects, folder)

    dt = table(stack, folder)
    assert as_rows(dt.to_pyarrow_table().to_pylist()) == expected
    _, live = log_replay(stack, folder)
    source_files = sorted(w.key[len(folder):] for w, _ in objects if w.key.startswith(folder))
    assert live == source_files
    assert co2_rows_by_duckdb(stack, folder, live, tmp_path) == co2_rows(expected)

    change = next(t for t in result.tables if t.table == f"{ROOT}/{folder}".rstrip("/") or t.dataset == "measurementCO2"
                  and t.layout == "legacy")
    assert sorted(change.added) == source_files and change.version == dt.version()


def test_snapshot_table_equals_the_newest_snapshot_and_keeps_history(stack) -> None:
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    org = BucketSpec().organization
    folder = f"parquet/{org}/device/"
    snapshots = sorted(((parse_key(w.key), data) for w, data in objects if w.key.startswith(folder)),
                       key=lambda s: s[0].window_start)
    assert len(snapshots) >= 3
    newest_key, newest_data = snapshots[-1]
    dt = table(stack, folder)
    assert dt.to_pyarrow_table().to_pylist() == pq.read_table(io.BytesIO(newest_data)).to_pylist()
    assert [u.rsplit("/", 1)[1] for u in dt.file_uris()] == [newest_key.key.rsplit("/", 1)[1]]

    # A later snapshot replaces it in one commit; the old one stays reachable by time travel.
    later = newest_key.window_start + timedelta(hours=1)
    data = parquet_bytes(make_table(legacy_schema("device"), 5, later, random.Random(8)))
    stack.s3.put_object(Bucket=stack.bucket, Key=legacy_key(org, "device", later), Body=data)
    before = dt.version()
    result = run_once(bridge, full=True)
    dt = table(stack, folder)
    assert dt.version() == before + 1
    assert dt.to_pyarrow_table().to_pylist() == pq.read_table(io.BytesIO(data)).to_pylist()
    change = next(t for t in result.tables if t.dataset == "device")
    assert change.removed == [newest_key.key[len(folder):]] and len(change.added) == 1
    dt.load_as_version(before)
    assert dt.to_pyarrow_table().num_rows == pq.read_table(io.BytesIO(newest_data)).num_rows

    # A snapshot that arrives late (older than the table's) never replaces the newer one.
    stale_at = snapshots[0][0].window_start - timedelta(hours=3)
    stack.s3.put_object(Bucket=stack.bucket, Key=legacy_key(org, "device", stale_at),
                        Body=parquet_bytes(make_table(legacy_schema("device"), 2, stale_at, random.Random(9))))
    run_once(bridge, full=True)
    dt = table(stack, folder)
    assert dt.version() == before + 1
    assert dt.to_pyarrow_table().to_pylist() == pq.read_table(io.BytesIO(data)).to_pylist()


def test_a_uint32_above_two_to_the_31_reads_back_intact(stack) -> None:
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    run_once(stack.bridge())
    dt = table(stack, f"parquet/{BucketSpec().organization}/device/")
    types = {f.name: str(f.type.type) for f in dt.schema().fields}
    assert types["wirepasNodeId"] == "long" and types["createdTs"] == "timestamp"
    assert WIREPAS_BIG in dt.to_pyarrow_table().column("wirepasNodeId").to_pylist()


def test_rerunning_adds_no_commit(stack) -> None:
    stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    run_once(bridge)
    folders = [n[len(ROOT) + 1: -len("_delta_log/00000000000000000000.json")]
               for n in stack.lake_names(f"{ROOT}/parquet/") if n.endswith("_delta_log/00000000000000000000.json")]
    versions = {f: table(stack, f).version() for f in folders}
    assert len(versions) >= 5
    second = run_once(bridge)
    third = run_once(bridge, full=True)
    assert second.tables == [] or all(not t.changed for t in second.tables)
    assert all(not t.changed for t in third.tables)
    assert {f: table(stack, f).version() for f in folders} == versions


def test_a_run_with_nothing_new_lists_each_lake_folder_once(stack) -> None:
    """The tables already hold every file: the sync commits nothing, so it needs no listing of
    its own (it lists again, after loading a table, only when the table lacks a file, as it does
    while a file is kept out of it: hence no bad files here)."""
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
    """The lake answers the copy stage but refuses the sync's own listing of a month folder (a
    403 the SDK does not retry; a 500 after its last retry, as CI met, is the same to the sync):
    that table reports its error, the run still writes its manifest, the timer invocation shows
    failed, and the next run commits the table. (A first run is a full reconcile: its plan lists
    the lake from the root, so every month-folder listing is the sync's.)"""
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    failed: Counter = Counter()

    def rule(method: str, path: str) -> str:
        prefix = list_prefix(method, path)
        if prefix is not None and re.fullmatch(r".*/parquet/(?!v1/)[^/]+/measurementCO2/\d{4}/\d{2}/", prefix):
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
    assert "AuthorizationPermissionMismatch" in broken[0]["error"], broken[0]
    assert all(t["version"] is not None for t in manifest["tables"] if not t["error"])

    healed = run_once(stack.bridge())
    assert healed.exit_code == 0 and not [t for t in healed.tables if t.error]
    folder = f"parquet/{BucketSpec().organization}/measurementCO2/"
    assert as_rows(table(stack, folder).to_pyarrow_table().to_pylist()) == rows_of(objects, folder)


def test_a_crash_between_publish_and_commit_heals_on_the_next_run(stack, monkeypatch) -> None:
    objects = stack.seed(BucketSpec(**SPEC, bad_files=False))
    run_killed_before_tables(stack, monkeypatch)
    assert len(stack.data_files()) == len(objects)
    assert not [n for n in stack.lake_names() if "_delta_log" in n or "_manifests" in n]

    result = run_once(stack.bridge())  # nothing left to copy, but every table is committed
    assert result.outcomes == []
    org = BucketSpec().organization
    folder = f"parquet/{org}/measurementCO2/"
    assert as_rows(table(stack, folder).to_pyarrow_table().to_pylist()) == rows_of(objects, folder)
    assert {t.dataset for t in result.tables} == {"measurementCO2", "device", "devices"}


def test_two_concurrent_committers_both_land_and_no_file_twice(stack) -> None:
    org = BucketSpec().organization
    at = datetime(2026, 10, 1, tzinfo=timezone.utc)
    keys = []
    for hour in range(8):
        key = legacy_key(org, "measurementCO2", at + timedelta(hours=hour))
        data = parquet_bytes(make_table(legacy_schema("measurementCO2"), 3, at, random.Random(hour)))
        stack.container.upload_blob(f"{ROOT}/{key}", data)
        keys.append((key, len(data)))
    bridge: Bridge = stack.bridge()
    now = datetime.now(timezone.utc)
    files = [TableFile(parse_key(k), size, now) for k, size in keys]
    halves = [files[:5], files[3:]]  # overlapping: files 3 and 4 are offered by both writers
    barrier = threading.Barrier(2)
    changes = []

    def commit(part: list[TableFile], name: str) -> None:
        publisher = DeltaPublisher(bridge.lake, stack.container_name, delta_storage_options(stack.settings(), None),
                                   name)
        barrier.wait()
        changes.append(publisher.sync(part))

    threads = [threading.Thread(target=commit, args=(part, f"writer-{i}")) for i, part in enumerate(halves)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c.error is None for c in changes)
    _, live = log_replay(stack, f"parquet/{org}/measurementCO2/")
    assert live == sorted(k[len(f"parquet/{org}/measurementCO2/"):] for k, _ in keys)
    actions, _ = log_replay(stack, f"parquet/{org}/measurementCO2/")
    added = [a["add"]["path"] for a in actions if "add" in a]
    assert len(added) == len(set(added)) == 8  # every file exactly once


def test_additive_drift_evolves_the_schema_and_decimal256_stays_out(stack) -> None:
    stack.seed(BucketSpec(**SPEC))
    result = run_once(stack.bridge())
    org = BucketSpec().organization
    co2 = table(stack, f"parquet/{org}/measurementCO2/")
    assert "co2Raw" in [f.name for f in co2.schema().fields]
    values = co2.to_pyarrow_table().column("co2Raw").to_pylist()
    assert sum(v is not None for v in values) > 0 and sum(v is None for v in values) > 0

    distance = next(t for t in result.tables if t.dataset == "measurementDistance")
    assert distance.added == [] and len(distance.excluded) == 1
    assert "decimal256(50, 20) has no Delta type" in distance.excluded[0]["reason"]
    key = distance.excluded[0]["source_key"]
    assert stack.lake_bytes(key)  # still copied
    manifest = json.loads(stack.container.get_blob_client(f"{ROOT}/_manifests/latest.json").download_blob().readall())
    assert any(t["excluded"] and t["dataset"] == "measurementDistance" for t in manifest["tables"])


def test_breaking_drift_keeps_a_file_out_and_the_table_serving(stack) -> None:
    """A column the (partial) v1 contract does not name changes type: the file is published, but kept
    out of the table, which keeps serving the rows it had."""
    stack.seed(BucketSpec(**SPEC, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    org = BucketSpec().organization
    folder = f"parquet/v1/{org}/measurementCO2/"
    documented = v1_schema("measurementCO2")
    keys = []
    for day, extra in ((3, pa.int64()), (4, pa.string())):  # the undocumented column's type changes
        at = datetime(2026, 10, day, tzinfo=timezone.utc)
        schema = documented.append(pa.field("calibration", extra, True))
        keys.append(v1_key(org, "measurementCO2", at, at + timedelta(hours=1)))
        stack.s3.put_object(Bucket=stack.bucket, Key=keys[-1],
                            Body=parquet_bytes(make_table(schema, 4, at, random.Random(day))))
        if day == 3:
            run_once(bridge, full=True)
            before = table(stack, folder).to_pyarrow_table().num_rows
    result = run_once(bridge, full=True)
    assert [o.action for o in result.outcomes] == ["published"]
    change = next(t for t in result.tables if t.layout == "v1" and t.dataset == "measurementCO2")
    assert change.excluded == [{"source_key": keys[1], "reason": change.excluded[0]["reason"]}]
    assert "breaking schema drift" in change.excluded[0]["reason"]
    assert table(stack, folder).to_pyarrow_table().num_rows == before


def test_every_table_log_stays_within_what_synapse_and_fabric_read(stack) -> None:
    stack.seed(BucketSpec(**SPEC))
    bridge = stack.bridge()
    run_once(bridge)
    folders = sorted({n[len(ROOT) + 1: n.index("_delta_log/")] for n in stack.lake_names(f"{ROOT}/parquet/")
                      if "_delta_log/" in n})
    assert len(folders) == 5  # legacy and v1 CO2 and devices, and the new dataset
    for folder in folders:
        actions, _ = log_replay(stack, folder)
        protocol = next(a["protocol"] for a in actions if "protocol" in a)
        assert (protocol["minReaderVersion"], protocol["minWriterVersion"]) == (1, 2)
        assert "readerFeatures" not in protocol and "writerFeatures" not in protocol
        for metadata in (a["metaData"] for a in actions if "metaData" in a):
            assert metadata["partitionColumns"] == []
            for column in json.loads(metadata["schemaString"])["fields"]:
                assert column["type"] in ALLOWED_TYPES or re.fullmatch(r"decimal\(\d+,\d+\)", str(column["type"]))
                assert column["nullable"] is True
            assert "delta.columnMapping.mode" not in metadata.get("configuration", {})
        for add in (a["add"] for a in actions if "add" in a):
            assert add["partitionValues"] == {}
            stats = json.loads(add["stats"])
            assert {"numRecords", "minValues", "maxValues", "nullCount"} <= set(stats)
            assert "deletionVector" not in add or add["deletionVector"] is None


def test_checkpoints_are_written_regularly(stack) -> None:
    org = BucketSpec().organization
    bridge = stack.bridge()
    at = datetime(2026, 9, 1, tzinfo=timezone.utc)
    for hour in range(CHECKPOINT_INTERVAL + 1):
        key = legacy_key(org, "measurementCO2", at + timedelta(hours=hour))
        stack.s3.put_object(Bucket=stack.bucket, Key=key,
                            Body=parquet_bytes(make_table(legacy_schema("measurementCO2"), 2, at, random.Random(hour))))
        run_once(bridge, full=True)
    names = stack.lake_names(f"{ROOT}/parquet/{org}/measurementCO2/_delta_log/")
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
    org = BucketSpec().organization
    views = re.findall(r"CREATE OR ALTER VIEW \[dbo\]\.\[(\w+)\] AS", script)
    assert sorted(views) == ["legacy_device", "legacy_measurementCO2", "v1_devices", "v1_measurementCO2"]
    assert script.count("FORMAT = 'DELTA'") == 4
    assert f"BULK '{stack.azurite.url}/devstoreaccount1/{stack.container_name}/{ROOT}/parquet/{org}/device/'" in script
