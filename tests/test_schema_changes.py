"""Haltian's documented files land, and a real schema change is accepted and released without a redeploy.

Against the real moto and Azurite servers. Every file comes from Haltian's schema reference
(:mod:`shared.demo.reference`); the Delta tables are read back by delta-rs and, independently,
by DuckDB's delta extension (delta-kernel-rs).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import cli
from shared.demo.bucket import (
    NEW_NOT_NULL_COLUMN,
    QUARANTINE,
    BucketSpec,
    legacy_key,
    legacy_schema,
    make_table,
    parquet_bytes,
)
from shared.demo.reference import is_measurement
from shared.haltian.keys import parse_key
from shared.manifest.build import build_manifest, manifest_schema
from shared.run import run_once
from tests.tables import LINEAGE, table
from tests.tables import duckdb_count as tables_duckdb_count
from tests.faultproxy import FORBIDDEN, PASS, FaultProxy
from tests.test_reliability import proxied_env

pytestmark = pytest.mark.integration

ROOT = "haltian/raw"
ORG = BucketSpec().organization


def table_name(folder: str) -> str:
    """The table of a mirrored dataset folder: ``{layout}_{dataset}``."""
    parts = folder.rstrip("/").split("/")
    return f"{'v1' if 'v1' in parts else 'legacy'}_{parts[-1]}"


def delta_rows(stack, folder: str) -> pa.Table:
    """The rows of a dataset's table, without the lineage columns."""
    rows = pa.table(table(stack, table_name(folder)).to_pyarrow_table())
    return rows.drop_columns([c for c in LINEAGE if c in rows.column_names])


def duckdb_count(stack, folder: str, local: Path) -> int:
    """Rows of a table as DuckDB's delta reader (delta-kernel-rs) sees it, from a copy of the table folder."""
    return tables_duckdb_count(stack, table_name(folder), local)


def file_rows(data: bytes) -> list[dict]:
    """A file's rows as Python values; UTC in any writer's spelling (even 'Z', which Python's zoneinfo
    does not know) read as UTC."""
    table = pq.read_table(io.BytesIO(data))
    utc = pa.schema(
        [
            f.with_type(pa.timestamp(f.type.unit, tz="UTC"))
            if pa.types.is_timestamp(f.type) and f.type.tz
            else f
            for f in table.schema
        ]
    )
    return table.cast(utc).to_pylist()


def as_rows(rows) -> list[dict]:
    return sorted(({name: row[name] for name in sorted(row)} for row in rows), key=repr)


def test_every_documented_dataset_lands_whole_and_reads_back_exactly(stack, tmp_path) -> None:
    objects = stack.seed(
        BucketSpec(legacy_hours=2, v1_hours=3, snapshot_every_hours=1, bad_files=False, max_rows=6)
    )
    result = run_once(stack.bridge())
    manifest = build_manifest(result)
    assert result.exit_code == 0 and manifest["totals"]["quarantined"] == 0 and result.failed == 0
    assert manifest["schema_drift"] == []
    assert not stack.lake_names(f"{ROOT}/_quarantine/")

    by_folder: dict[str, list] = {}
    for written, data in objects:
        by_folder.setdefault(parse_key(written.key).dataset_folder, []).append((written, data))
    assert len(by_folder) == 61  # 20 legacy and 41 v1 datasets, as Haltian documents them
    manifest_rows = {}
    for f in manifest["files"]:
        folder = parse_key(f["source_key"]).dataset_folder
        manifest_rows[folder] = manifest_rows.get(folder, 0) + f["rows"]
    for index, (folder, files) in enumerate(sorted(by_folder.items())):
        dataset = parse_key(files[0][0].key).dataset
        if is_measurement(dataset):
            expected = [row for _, data in files for row in file_rows(data)]
            assert manifest_rows[folder] == len(expected), folder
        else:
            newest = max(files, key=lambda item: parse_key(item[0].key).window_start)
            expected = file_rows(newest[1])
        table = delta_rows(stack, folder)
        # Every value reads back exactly through the table's one type per column (nulls for
        # columns an older file lacks), whatever unit or spelling each file was written in.
        assert as_rows(table.to_pylist()) == as_rows(
            {name: row.get(name) for name in table.column_names} for row in expected
        ), folder
        assert duckdb_count(stack, folder, tmp_path / str(index)) == len(expected), folder


def test_a_file_with_a_new_not_null_column_is_quarantined_accepted_released_and_joins_its_table(
    stack, monkeypatch, capsys, caplog
) -> None:
    objects = stack.seed(
        BucketSpec(
            legacy_hours=4,
            v1_hours=0,
            legacy_measurements=["measurementOccupantsCount"],
            legacy_snapshots=[],
            writer_variants=False,
        )
    )
    bad = [w for w, _ in objects if w.note == NEW_NOT_NULL_COLUMN]
    assert len(bad) == 1 and bad[0].expect == QUARANTINE
    folder = f"parquet/{ORG}/measurementOccupantsCount/"
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)

    # The newest delivery has the new schema too: breaking drift is reported once for the dataset, not per file.
    at = BucketSpec().end
    newer = legacy_schema("measurementOccupantsCount").append(
        pa.field("occupantsConfidence", pa.int32(), False)
    )
    second = legacy_key(ORG, "measurementOccupantsCount", at)
    stack.s3.put_object(
        Bucket=stack.bucket, Key=second, Body=parquet_bytes(make_table(newer, 3, at, random.Random(5)))
    )

    with caplog.at_level("WARNING", logger="shared"):
        assert cli.main(["run", "--json"]) == cli.EXIT_OK
    manifest = json.loads(capsys.readouterr().out)
    jsonschema.validate(manifest, manifest_schema())
    lines = [r.getMessage() for r in caplog.records if "measurementOccupantsCount" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(
        "breaking schema drift in legacy/measurementOccupantsCount"
    )
    drift = [d for d in manifest["schema_drift"] if d["dataset"] == "measurementOccupantsCount"]
    assert drift == [
        {
            "layout": "legacy",
            "dataset": "measurementOccupantsCount",
            "verdict": "breaking",
            "against": "contract",
            "contract": "legacy-2026-12",
            "files": 2,
            "problems": ["new column 'occupantsConfidence' is not nullable"],
            "examples": drift[0]["examples"],
        }
    ]
    rows_before = delta_rows(stack, folder).num_rows

    assert cli.main(["quarantine", "list", "legacy/measurementOccupantsCount", "--json"]) == cli.EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    assert sorted(f["source_key"] for f in listed["files"]) == sorted([bad[0].key, second])

    assert cli.main(["schema", "show", "legacy/measurementOccupantsCount", "--json"]) == cli.EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["contract"]["origin"] == "shipped" and shown["contract"]["version"] == "legacy-2026-12"
    assert shown["newest_seen"]["quarantined"] is True and shown["newest_seen"]["source_key"] == second
    assert shown["difference"]["verdict"] == "breaking"
    assert shown["quarantined_files"] == 2

    assert cli.main(["schema", "accept", "legacy/measurementOccupantsCount", "--json"]) == cli.EXIT_OK
    accepted = json.loads(capsys.readouterr().out)
    assert accepted["version"] == "accepted-1" and accepted["replaces"] == {
        "version": "legacy-2026-12",
        "origin": "shipped",
    }
    stored = json.loads(stack.lake_bytes("_contracts/legacy/measurementOccupantsCount/v0001.json"))
    assert stored["accepted_at"] and "schema accept" in stored["accepted_by"]
    assert {"name": "occupantsConfidence", "type": "int32", "nullable": False} in stored["columns"]

    assert cli.main(["quarantine", "release", "legacy/measurementOccupantsCount", "--json"]) == cli.EXIT_OK
    released = json.loads(capsys.readouterr().out)
    jsonschema.validate(released, manifest_schema())
    assert released["mode"] == "release" and released["status"] == "complete"
    files = {f["source_key"]: f for f in released["files"]}
    assert set(files) == {bad[0].key, second}
    for key, f in files.items():
        assert f["action"] == "published" and f["released_from"] == f"_quarantine/{key}"
        assert f["schema"]["contract"] == "accepted-1" and f["destination"] == key
    assert not stack.lake_names(f"{ROOT}/_quarantine/{folder}")
    table = delta_rows(stack, folder)
    assert table.num_rows == rows_before + 7 + 3
    assert "occupantsConfidence" in table.column_names
    assert sorted(v for v in table.column("occupantsConfidence").to_pylist() if v is not None) == sorted(
        r["occupantsConfidence"]
        for data in (
            dict(objects)[bad[0]],
            stack.s3.get_object(Bucket=stack.bucket, Key=second)["Body"].read(),
        )
        for r in pq.read_table(io.BytesIO(data)).to_pylist()
    )
    # A newer package ships another contract: the accepted one stays in force, and show says so.
    path = f"{ROOT}/_contracts/legacy/measurementOccupantsCount/v0001.json"
    stored["shipped_version"] = "legacy-2026-01"
    stack.container.get_blob_client(path).upload_blob(json.dumps(stored).encode(), overwrite=True)
    assert cli.main(["schema", "show", "legacy/measurementOccupantsCount", "--json"]) == cli.EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["contract"]["origin"] == "accepted" and shown["contract"]["version"] == "accepted-1"
    assert "accepted-1 stays in force" in shown["shipped_differs"]
    assert shown["difference"]["verdict"] == "match" and shown["accepted_versions"] == ["accepted-1"]
    # The next run leaves everything where it is: nothing copied twice, nothing re-quarantined.
    assert cli.main(["run", "--json"]) == cli.EXIT_OK
    again = json.loads(capsys.readouterr().out)
    assert again["totals"]["published"] == 0 and again["totals"]["quarantined"] == 0


def test_a_file_that_still_fails_stays_in_quarantine_with_its_reason_updated(
    stack, monkeypatch, capsys
) -> None:
    stack.seed(
        BucketSpec(
            legacy_hours=1,
            v1_hours=0,
            legacy_measurements=["measurementTVOC"],
            legacy_snapshots=[],
            writer_variants=False,
        )
    )
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_OK
    capsys.readouterr()
    tvoc = [n for n in stack.lake_names(f"{ROOT}/_quarantine/") if "measurementTVOC" in n]
    assert len(tvoc) == 1
    before = stack.container.get_blob_client(tvoc[0]).get_blob_properties()
    assert cli.main(["quarantine", "release", "legacy/measurementTVOC", "--json"]) == cli.EXIT_OK
    released = json.loads(capsys.readouterr().out)
    assert [f["action"] for f in released["files"]] == ["quarantined"]
    after = stack.container.get_blob_client(tvoc[0]).get_blob_properties()
    assert after.metadata["haltian_run_id"] == released["run_id"] != before.metadata["haltian_run_id"]
    assert "missing column 'tvoc'" in after.metadata["haltian_quarantine_reason"]


def test_a_released_file_whose_quarantine_copy_cannot_be_deleted_is_still_published(
    stack, monkeypatch, capsys, caplog
) -> None:
    """The lake refuses to delete the quarantine copy of a file the release published: the release
    still writes its manifest (the file published, with where it came from), warns, and the next
    release removes the copy without copying the file again (it is already in the lake)."""
    stack.seed(
        BucketSpec(
            legacy_hours=1,
            v1_hours=0,
            legacy_measurements=["measurementTVOC"],
            legacy_snapshots=[],
            writer_variants=False,
        )
    )
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_OK
    assert cli.main(["schema", "accept", "legacy/measurementTVOC"]) == cli.EXIT_OK
    capsys.readouterr()
    copies = [n for n in stack.lake_names(f"{ROOT}/_quarantine/") if "measurementTVOC" in n]
    assert len(copies) == 1
    refused: list[str] = []

    def rule(method: str, path: str) -> str:
        if method == "DELETE" and "/_quarantine/" in path:
            refused.append(path)
            return FORBIDDEN
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        for name, value in proxied_env(stack, None, proxy).items():
            monkeypatch.setenv(name, value)
        with caplog.at_level("WARNING", logger="shared"):
            assert cli.main(["quarantine", "release", "legacy/measurementTVOC", "--json"]) == cli.EXIT_OK
    finally:
        proxy.close()
    released = json.loads(capsys.readouterr().out)
    assert refused and [(f["action"], f["released_from"]) for f in released["files"]] == [
        ("published", copies[0][len(ROOT) + 1 :])
    ]
    assert any(
        "stays in quarantine" in r.getMessage() and "AuthorizationPermissionMismatch" in r.getMessage()
        for r in caplog.records
    )
    assert [n for n in stack.lake_names(f"{ROOT}/_quarantine/") if "measurementTVOC" in n] == copies

    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["quarantine", "release", "legacy/measurementTVOC", "--json"]) == cli.EXIT_OK
    again = json.loads(capsys.readouterr().out)
    assert again["files"] == [] and again["totals"]["already_present"] == 1  # not copied again
    assert not [n for n in stack.lake_names(f"{ROOT}/_quarantine/") if "measurementTVOC" in n]


def test_a_missing_container_stops_with_one_line_and_plan_on_an_empty_lake_works(
    stack, monkeypatch, capsys
) -> None:
    for name, value in stack.env(ADLS_CONTAINER="no-such-container").items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'no-such-container'" in err and "'devstoreaccount1'" in err and "does not exist" in err
    assert "Error" not in err and "Traceback" not in err
    assert cli.main(["schema", "show", "legacy/measurementCO2"]) == cli.EXIT_SETTINGS
    capsys.readouterr()

    monkeypatch.setenv("ADLS_CONTAINER", stack.container_name)
    assert cli.main(["plan"]) == cli.EXIT_OK
    assert "0 files" in capsys.readouterr().out
    assert cli.main(["schema", "accept", "legacy/measurementCO2"]) == cli.EXIT_SETTINGS
    assert "nothing to accept" in capsys.readouterr().err
    assert cli.main(["schema", "show", "nonsense"]) == cli.EXIT_SETTINGS
    assert "is not LAYOUT/DATASET" in capsys.readouterr().err


def test_a_lake_the_identity_may_not_read_stops_with_one_line(stack, monkeypatch, capsys) -> None:
    wrong = stack.env()["ADLS_CONNECTION_STRING"].replace("AccountKey=", "AccountKey=AAAA")
    for name, value in stack.env(ADLS_CONNECTION_STRING=wrong).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "may not read container" in err
        and "Storage Blob Data Contributor" in err
    )
    assert "AAAA" not in err and "Traceback" not in err


def test_accept_and_release_wait_for_the_run_lock(stack, monkeypatch, capsys) -> None:
    from shared.sink.lock import RunLock

    stack.seed(
        BucketSpec(legacy_hours=1, v1_hours=0, legacy_measurements=["measurementCO2"], legacy_snapshots=[])
    )
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_OK
    capsys.readouterr()
    with RunLock(stack.bridge().lake, "20261201T000000Z-abcdef", 15):
        assert cli.main(["schema", "accept", "legacy/measurementTVOC"]) == cli.EXIT_LOCKED
        assert cli.main(["quarantine", "release"]) == cli.EXIT_LOCKED
        assert "another bridge run holds the lock" in capsys.readouterr().err
    assert not stack.lake_names(f"{ROOT}/_contracts/")


def test_the_schema_change_workflow_on_entra_tokens_over_https(entra, capsys) -> None:
    """As Azure runs it: shared keys unused, the managed identity's tokens, the lake on a private CA."""
    entra.seed(
        BucketSpec(
            legacy_hours=2,
            v1_hours=0,
            legacy_measurements=["measurementOccupantsCount"],
            legacy_snapshots=[],
            writer_variants=False,
        )
    )
    entra.apply()
    dataset = "legacy/measurementOccupantsCount"
    assert cli.main(["run", "--json"]) == cli.EXIT_OK
    assert [
        d["dataset"]
        for d in json.loads(capsys.readouterr().out)["schema_drift"]
        if d["verdict"] == "breaking"
    ] == ["measurementOccupantsCount", "measurementTVOC"]
    assert cli.main(["schema", "accept", dataset, "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["version"] == "accepted-1"
    assert cli.main(["quarantine", "release", dataset, "--json"]) == cli.EXIT_OK
    released = json.loads(capsys.readouterr().out)
    assert [(f["action"], f["schema"]["contract"]) for f in released["files"]] == [
        ("published", "accepted-1")
    ]
    assert not [n for n in entra.lake_names("haltian/raw/_quarantine/") if "measurementOccupantsCount" in n]
    assert not entra.rig.identity.refused
    entra.apply(ADLS_CONTAINER="no-such-container")
    assert cli.main(["quarantine", "list"]) == cli.EXIT_SETTINGS
    assert "'no-such-container'" in capsys.readouterr().err
