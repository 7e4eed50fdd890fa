"""The bridge end to end against the real moto S3 server and Azurite, over HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import random
import time
from datetime import datetime, timedelta, timezone

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.demo.bucket import (
    GOOD,
    QUARANTINE,
    UNRECOGNIZED,
    BucketSpec,
    legacy_key,
    legacy_schema,
    make_table,
    parquet_bytes,
)
from shared.manifest.build import manifest_schema
from shared.paths import LATEST_MANIFEST as LATEST
from shared.model import PUBLISHED, QUARANTINED, RunResult
from shared.reconcile.preview import preview
from shared.run import plan_run, run_once
from shared.sink.records import (
    META_CONTRACT,
    META_REASON,
    META_ROWS,
    META_SCHEMA,
    META_SOURCE_ETAG,
    META_SOURCE_KEY,
)
from shared.sink.lock import RunLock, RunLocked

pytestmark = pytest.mark.integration

ROOT = "haltian/raw"
SMALL = dict(
    legacy_hours=6,
    v1_hours=4,
    legacy_measurements=["measurementCO2", "measurementTVOC"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
)


def manifest_of(stack, result: RunResult) -> dict:
    document = stack.container.get_blob_client(result.manifest_path).download_blob().readall()
    manifest = json.loads(document)
    jsonschema.validate(manifest, manifest_schema())
    return manifest


def test_first_run_copies_every_file_verified_and_byte_identical(stack) -> None:
    objects = stack.seed(BucketSpec(**SMALL))
    result = run_once(stack.bridge())
    assert result.exit_code == 0 and result.status == "complete" and result.plan.mode == "full"

    good = [(w, data) for w, data in objects if w.expect == GOOD]
    published = {o.item.key.key: o for o in result.outcomes if o.action == PUBLISHED}
    assert set(published) == {w.key for w, _ in good}
    for written, data in good:
        landed = stack.lake_bytes(written.key)
        assert hashlib.sha256(landed).digest() == hashlib.sha256(data).digest(), written.key
        assert published[written.key].rows == written.rows
        properties = stack.container.get_blob_client(f"{ROOT}/{written.key}").get_blob_properties()
        assert properties.metadata[META_SOURCE_KEY] == written.key
        assert properties.metadata[META_ROWS] == str(written.rows)
        assert properties.metadata[META_SOURCE_ETAG] == hashlib.md5(data).hexdigest()
        assert len(properties.metadata[META_SCHEMA]) == 16
        assert properties.content_settings.content_md5 == hashlib.md5(data).digest()
    assert "etag-md5" in published[good[0][0].key].integrity
    assert "content-md5" in published[good[0][0].key].integrity

    # Where the run's time went, in its manifest: every stage before the manifest itself (a first run
    # is a full reconcile: the window, then the walk through the rest); the first four end by
    # finished_at (the recovery comes after it).
    stages = manifest_of(stack, result)["stage_seconds"]
    assert set(stages) == {"plan", "copy", "tables", "reconcile", "recovery"}
    duration = (result.finished_at - result.started_at).total_seconds()
    before = stages["plan"] + stages["copy"] + stages["tables"] + stages["reconcile"]
    assert stages["copy"] > 0 and before <= duration + 0.01
    assert set(result.stage_seconds) == {*stages, "manifest"}


def test_bad_files_are_quarantined_with_reasons_and_odd_keys_are_counted(stack) -> None:
    objects = stack.seed(BucketSpec(**SMALL))
    result = run_once(stack.bridge())
    manifest = manifest_of(stack, result)
    expected_quarantine = {w.key: w.note for w, _ in objects if w.expect == QUARANTINE}
    quarantined = {f["source_key"]: f for f in manifest["files"] if f["action"] == QUARANTINED}
    assert set(quarantined) == set(expected_quarantine)
    reasons = {expected_quarantine[k]: f["reason"] for k, f in quarantined.items()}
    assert "0 bytes" in reasons["0 bytes"]
    assert "truncated" in reasons["truncated"]
    assert "not a Parquet file" in reasons["CSV named .parquet"]
    assert "missing column 'tvoc'" in reasons["breaking drift: tvoc renamed"]
    for key, entry in quarantined.items():
        assert entry["destination"] == f"_quarantine/{key}"
        blob = stack.container.get_blob_client(f"{ROOT}/_quarantine/{key}")
        assert blob.get_blob_properties().metadata[META_REASON]
        assert f"{ROOT}/{key}" not in stack.lake_names(f"{ROOT}/{key}")  # never at the mirrored path

    unrecognized = {w.key for w, _ in objects if w.expect == UNRECOGNIZED}
    assert manifest["unrecognized"]["count"] == len(unrecognized)
    assert set(manifest["unrecognized"]["examples"]) <= unrecognized
    assert not any(name.endswith(("_SUCCESS", ".csv", "README.txt")) for name in stack.lake_names())
    assert manifest["totals"]["failed"] == 0 and result.exit_code == 0


def test_drift_and_new_datasets_are_published_and_flagged(stack) -> None:
    stack.seed(BucketSpec(**SMALL))
    manifest = manifest_of(stack, run_once(stack.bridge()))
    files = {f["source_key"]: f for f in manifest["files"]}
    additive = next(f for f in files.values() if f["schema"] and f["schema"]["verdict"] == "additive")
    assert additive["action"] == PUBLISHED and additive["schema"]["against"] == "contract"
    assert additive["schema"]["drift"] == ["added nullable column 'co2Raw'"]

    noise = next(f for f in files.values() if f["dataset"] == "measurementNoiseLevel")
    assert noise["action"] == PUBLISHED
    assert noise["schema"] == {
        "verdict": "recorded",
        "against": "first-seen schema",
        "contract": None,
        "drift": [],
    }
    recorded = stack.container.get_blob_client(f"{ROOT}/_schemas/v1/measurementNoiseLevel.json")
    assert b"noiseLevel" in recorded.download_blob().readall()
    metadata = stack.container.get_blob_client(f"{ROOT}/{noise['source_key']}").get_blob_properties().metadata
    assert metadata[META_CONTRACT] == "none"


def test_drift_from_a_first_seen_schema_is_reported_not_quarantined(stack) -> None:
    stack.seed(BucketSpec(**SMALL))
    run_once(stack.bridge())
    # A later v1 file of the never-published dataset drops a column it had.
    org = BucketSpec().organization
    at = datetime(2026, 11, 2, 5, tzinfo=timezone.utc)
    key = (
        f"parquet/v1/{org}/measurementNoiseLevel/2026/11/"
        f"{at:%Y_%m_%d_%H%M}_{at + timedelta(hours=1):%Y_%m_%d_%H%M}_measurementNoiseLevel.parquet"
    )
    schema = pa.schema(
        [
            pa.field("deviceId", pa.string(), False),
            pa.field("measuredAt", pa.timestamp("us", tz="UTC"), False),
        ]
    )
    stack.s3.put_object(
        Bucket=stack.bucket, Key=key, Body=parquet_bytes(make_table(schema, 3, at, random.Random(2)))
    )
    result = run_once(stack.bridge(), full=True)
    entry = next(f for f in manifest_of(stack, result)["files"] if f["source_key"] == key)
    assert entry["action"] == PUBLISHED
    assert entry["schema"]["verdict"] == "breaking" and entry["schema"]["against"] == "first-seen schema"
    assert entry["schema"]["drift"] == ["missing column 'noiseLevel'"]


def test_second_run_copies_nothing_and_lists_only_the_recent_months(stack) -> None:
    stack.seed(BucketSpec(**SMALL))
    bridge = stack.bridge()
    first = run_once(bridge)
    second = run_once(bridge)
    assert second.plan.mode == "window"
    assert second.outcomes == [] and second.exit_code == 0
    assert sum(second.plan.present.values()) > 0
    manifest = manifest_of(stack, second)
    assert manifest["totals"]["published"] == 0
    # Two months (current and previous) for each dataset folder, no more.
    datasets = {(o.item.key.layout, o.item.key.organization, o.item.key.dataset) for o in first.outcomes}
    assert second.plan.listed_prefixes == 2 * len(datasets)
    latest = stack.container.get_blob_client(f"{ROOT}/{LATEST}").download_blob().readall()
    assert second.run_id.encode() in latest


def test_a_late_file_in_an_old_month_is_found_by_the_full_reconcile(stack) -> None:
    stack.seed(BucketSpec(**SMALL, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    org = BucketSpec().organization
    old = datetime(2024, 3, 5, 7, tzinfo=timezone.utc)
    key = legacy_key(org, "measurementCO2", old)
    data = parquet_bytes(make_table(legacy_schema("measurementCO2"), 9, old, random.Random(3)))
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)

    assert [i.key.key for i in plan_run(bridge).items] == []  # the hourly window does not look there
    assert [i.key.key for i in preview(bridge, full=True).plan.items] == [key]
    # Once the daily reconcile is due, a plain run reconciles everything on its own.
    later = datetime.now(timezone.utc) + timedelta(hours=25)
    result = run_once(bridge, now=later)
    assert result.plan.mode == "full"
    assert [o.item.key.key for o in result.outcomes] == [key]
    assert stack.lake_bytes(key) == data


def test_a_changed_source_file_is_published_again_and_the_manifest_says_so(stack) -> None:
    stack.seed(BucketSpec(**SMALL, bad_files=False))
    bridge = stack.bridge()
    run_once(bridge)
    key = next(
        k
        for k in (o["Key"] for o in stack.s3.list_objects_v2(Bucket=stack.bucket)["Contents"])
        if "measurementCO2" in k and "/v1/" not in k
    )
    old_etag = stack.s3.head_object(Bucket=stack.bucket, Key=key)["ETag"].strip('"')
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    data = parquet_bytes(make_table(legacy_schema("measurementCO2"), 11, at, random.Random(4)))
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
    result = run_once(bridge, full=True)
    entry = next(f for f in manifest_of(stack, result)["files"])
    assert entry["source_key"] == key and entry["action"] == PUBLISHED
    assert entry["replaced_source_etag"] == old_etag
    assert stack.lake_bytes(key) == data
    kept = entry["replaced_copy"]
    assert kept == f"_quarantine/{key.removesuffix('.parquet')}.replaced-{old_etag}.parquet"
    assert hashlib.md5(stack.lake_bytes(kept)).hexdigest() == old_etag  # the old version, byte for byte
    reason = stack.container.get_blob_client(f"{ROOT}/{kept}").get_blob_properties().metadata[META_REASON]
    assert "replaced at the mirrored path" in reason
    assert run_once(bridge, full=True).outcomes == []


def test_a_large_multipart_file_is_streamed_in_blocks_and_verified_from_its_footer(stack) -> None:
    objects = stack.seed(BucketSpec(**SMALL, bad_files=False, large_file_bytes=12 * 1024 * 1024))
    large, data = next((w, d) for w, d in objects if w.note == "large, multipart")
    assert "-" in stack.s3.head_object(Bucket=stack.bucket, Key=large.key)["ETag"]  # not an MD5
    # The same bytes uploaded in one PUT elsewhere: its ETag is their MD5, which the copy checks.
    single = large.key.replace("/2026_", "/2025_").replace("/2026/", "/2025/")
    stack.s3.put_object(Bucket=stack.bucket, Key=single, Body=data)
    result = run_once(stack.bridge(), full=True)
    md5 = hashlib.md5(data).digest()
    for key, etag_is_md5 in ((large.key, False), (single, True)):
        outcome = next(o for o in result.outcomes if o.item.key.key == key)
        assert outcome.action == PUBLISHED and outcome.rows == large.rows
        assert ("etag-md5" in outcome.integrity) is etag_is_md5 and "size" in outcome.integrity
        blob = stack.container.get_blob_client(f"{ROOT}/{key}")
        assert len(blob.get_block_list("committed")[0]) > 1
        # Each block carried its Content-MD5 (checked by the service). The whole file is hashed only
        # when there is an MD5 ETag to compare with; then the blob keeps that MD5 as its Content-MD5.
        assert blob.get_blob_properties().content_settings.content_md5 == (md5 if etag_is_md5 else None)
        landed = blob.download_blob().readall()
        assert landed == data
        assert pq.ParquetFile(io.BytesIO(landed)).metadata.num_rows == large.rows


def test_the_time_budget_defers_files_to_the_next_run(stack) -> None:
    stack.seed(BucketSpec(**SMALL, bad_files=False))
    tight = stack.bridge(BRIDGE_TIME_BUDGET_SECONDS="1", BRIDGE_MAX_CONCURRENCY="1")
    # Spend the budget before the copy starts: nothing is started, everything is deferred.
    result = run_once(tight, progress=_Sleeper(1.1))
    assert result.outcomes == [] and sum(result.deferred.values()) == len(result.plan.items) > 0
    assert result.status == "incomplete" and result.exit_code == 0
    manifest = manifest_of(stack, result)
    assert manifest["totals"]["deferred"] == len(result.plan.items)
    assert not result.full_reconcile_completed

    follow_up = run_once(stack.bridge())
    assert follow_up.plan.mode == "full"  # the first full reconcile did not finish, so it goes on
    assert follow_up.count(PUBLISHED) == len(result.plan.items) and follow_up.status == "complete"


class _Sleeper:
    """A progress reporter that sleeps when the copy starts (to spend a time budget)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def start(self, files: int, size: int) -> None:
        time.sleep(self.seconds)

    def advance(self, files: int, size: int) -> None:
        pass


def test_a_second_run_at_once_stops_with_a_clear_message(stack) -> None:
    bridge = stack.bridge()
    with RunLock(bridge.lake, "holder-run"):
        with pytest.raises(RunLocked, match="run holder-run on .* since"):
            run_once(bridge)
    assert run_once(bridge).exit_code == 0  # released: the next run proceeds


def test_plan_writes_nothing(stack) -> None:
    stack.seed(BucketSpec(**SMALL))
    plan = plan_run(stack.bridge())
    assert len(plan.items) > 0 and plan.unrecognized > 0
    assert stack.lake_names() == []


def test_nothing_is_written_outside_the_root_folder(stack) -> None:
    stack.seed(BucketSpec(**SMALL))
    run_once(stack.bridge())
    names = stack.lake_names()
    assert names and all(name.startswith(f"{ROOT}/") for name in names)
    tops = {name[len(ROOT) + 1 :].split("/")[0] for name in names}
    assert tops == {"parquet", "_tables", "_quarantine", "_manifests", "_state", "_schemas"}


def test_organization_filter_reads_only_that_organization(stack) -> None:
    mine = BucketSpec(**SMALL, bad_files=False)
    other = BucketSpec(**SMALL, bad_files=False, organization="11111111-2222-4333-8444-555555555555", seed=9)
    stack.seed(mine)
    stack.seed(other)
    result = run_once(stack.bridge(HALTIAN_ORGANIZATION_ID=mine.organization))
    assert result.outcomes and {o.item.key.organization for o in result.outcomes} == {mine.organization}
    assert not any(other.organization in name for name in stack.lake_names())
