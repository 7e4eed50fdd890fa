"""A generated Haltian export: hourly files of both key layouts, writer variants, bad input.

The demo and the tests use the same generator. It returns what it wrote and what the bridge
should do with each key, so tests can check the lake against it. Each file is made with
:mod:`shared.demo.bucket`: schemas from Haltian's schema reference, rows, Parquet bytes, keys.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shared.demo.bucket import (
    GOOD,
    NEW_NOT_NULL_COLUMN,
    QUARANTINE,
    TS_MS,
    TS_US,
    UNRECOGNIZED,
    V1_NUMBER,
    BucketSpec,
    Written,
    legacy_key,
    legacy_schema,
    make_table,
    parquet_bytes,
    respelled,
    upload,
    v1_key,
    v1_schema,
)
from shared.haltian.keys import LEGACY, V1


def build_bucket(spec: BucketSpec) -> list[tuple[Written, bytes]]:
    """Every object of the bucket, as (what it is, its bytes); nothing is uploaded yet."""
    rng = random.Random(spec.seed)
    org = spec.organization
    objects: list[tuple[Written, bytes]] = []
    count = 0

    def add(key: str, layout: str, dataset: str, schema: pa.Schema, at: datetime, snapshot: bool) -> None:
        nonlocal count
        count += 1
        rows = (
            0 if (spec.empty_every and count % spec.empty_every == 0) else rng.randrange(1, spec.max_rows + 1)
        )
        if snapshot:
            rows = max(rows, 3)
        data = parquet_bytes(make_table(schema, rows, at, rng))
        objects.append((Written(key, GOOD, layout, dataset, rows, len(data)), data))

    for hour in range(spec.legacy_hours):
        at = spec.end - timedelta(hours=spec.legacy_hours - hour)
        for dataset in spec.legacy_measurements:
            add(legacy_key(org, dataset, at), LEGACY, dataset, legacy_schema(dataset), at, False)
        if at.hour % spec.snapshot_every_hours == 0 or hour == spec.legacy_hours - 1:
            for dataset in spec.legacy_snapshots:
                add(legacy_key(org, dataset, at), LEGACY, dataset, legacy_schema(dataset), at, True)
    first_snapshot = True
    for hour in range(spec.v1_hours):
        start = spec.end - timedelta(hours=spec.v1_hours - hour)
        end = start + timedelta(hours=1)
        # Haltian's v1 pages give both ms and us timestamps: files of one dataset use either.
        unit = "ms" if hour % 3 == 1 else "us"
        for dataset in spec.v1_measurements:
            add(v1_key(org, dataset, start, end), V1, dataset, v1_schema(dataset, unit), start, False)
        if start.hour % spec.snapshot_every_hours == 0 or hour == spec.v1_hours - 1:
            for dataset in spec.v1_snapshots:
                schema = v1_schema(dataset, unit, early=first_snapshot)
                add(v1_key(org, dataset, start, end), V1, dataset, schema, start, True)
            first_snapshot = False
    if spec.writer_variants:
        objects += variant_objects(spec, rng)
    if spec.bad_files:
        objects += bad_objects(spec, rng)
    if spec.large_file_bytes:
        objects.append(large_object(spec, rng))
    return objects


def variant_objects(spec: BucketSpec, rng: random.Random) -> list[tuple[Written, bytes]]:
    """Good files whose writer spells a documented type another way; each must match its contract.

    Their hours lie before the generated history (and after the bad files'), so none replaces a good file.
    """
    org = spec.organization
    base = spec.end - timedelta(hours=spec.legacy_hours + 20)
    variants = [
        ("measurementCO2", "deviceId", pa.large_string(), "large_string (polars and some Arrow writers)"),
        (
            "measurementPositionZone",
            "zoneId",
            pa.dictionary(pa.int32(), pa.string()),
            "dictionary-encoded column",
        ),
        ("measurementTVOC", "ts", pa.timestamp("ms", tz="Etc/UTC"), "UTC spelled Etc/UTC"),
        ("measurementBatteryVoltage", "ts", pa.timestamp("ms", tz="+00:00"), "UTC spelled +00:00"),
        ("measurementBatteryPercentage", "ts", pa.timestamp("ms", tz="Z"), "UTC spelled Z"),
        ("space", "name", pa.large_string(), "large_string in a snapshot"),
    ]
    objects = []
    wanted = set(spec.legacy_measurements) | set(spec.legacy_snapshots)
    for back, (dataset, column, arrow_type, note) in enumerate(variants):
        if dataset not in wanted:
            continue
        at = base - timedelta(hours=back)
        rows = 5 + back
        data = parquet_bytes(make_table(respelled(legacy_schema(dataset), column, arrow_type), rows, at, rng))
        objects.append(
            (Written(legacy_key(org, dataset, at), GOOD, LEGACY, dataset, rows, len(data), note), data)
        )
    return objects


def bad_objects(spec: BucketSpec, rng: random.Random) -> list[tuple[Written, bytes]]:
    """One of each kind of bad input the bridge must handle without failing the run.

    Their hours lie before the generated history, so no bad key replaces a good one.
    """
    org = spec.organization
    base = spec.end - timedelta(hours=spec.legacy_hours + 10)

    def hour(back: int) -> datetime:
        return base - timedelta(hours=back)

    schema = legacy_schema("measurementCO2")
    good = parquet_bytes(make_table(schema, 30, base, rng))
    # In this order, so that the random rows stay the ones the seed always gave.
    items = [
        *_unreadable_files(org, hour, good),
        *_breaking_drift(org, base, hour, rng),
        *_unusual_good_files(org, base, hour, rng),
        *_not_haltian_files(org, base, good),
    ]
    rows = {
        NEW_NOT_NULL_COLUMN: 7,
        "additive drift: co2Raw": 6,
        "a dataset never seen before": 8,
        "a late file in an old month": 4,
        "decimal256: published, kept out of the table": 2,
    }
    return [
        (Written(key, expect, layout, dataset, rows.get(note), len(data), note), data)
        for key, expect, layout, dataset, data, note in items
    ]


#: One bad input: its key, what the bridge should do, its layout and dataset, its bytes, a note.
_Case = tuple[str, str, str | None, str | None, bytes, str]


def _unreadable_files(org: str, hour: Callable[[int], datetime], good: bytes) -> list[_Case]:
    """Files with a Haltian key that are no Parquet file: quarantined."""
    return [
        (legacy_key(org, "measurementCO2", hour(0)), QUARANTINE, LEGACY, "measurementCO2", b"", "0 bytes"),
        (
            legacy_key(org, "measurementBatteryVoltage", hour(1)),
            QUARANTINE,
            LEGACY,
            "measurementBatteryVoltage",
            good[: len(good) // 2],
            "truncated",
        ),
        (
            legacy_key(org, "measurementBootCount", hour(2)),
            QUARANTINE,
            LEGACY,
            "measurementBootCount",
            b"deviceId,ts,bootCount\nabc,2026-01-01,3\n",
            "CSV named .parquet",
        ),
    ]


def _breaking_drift(
    org: str, base: datetime, hour: Callable[[int], datetime], rng: random.Random
) -> list[_Case]:
    """Files whose schema breaks their dataset's contract: quarantined."""
    renamed = legacy_schema("measurementTVOC").remove(3).append(pa.field("tvocPpb", pa.float32(), False))
    required_new = legacy_schema("measurementOccupantsCount").append(
        pa.field("occupantsConfidence", pa.int32(), False)
    )
    return [
        (
            legacy_key(org, "measurementTVOC", hour(3)),
            QUARANTINE,
            LEGACY,
            "measurementTVOC",
            parquet_bytes(make_table(renamed, 5, base, rng)),
            "breaking drift: tvoc renamed",
        ),
        (
            legacy_key(org, "measurementOccupantsCount", hour(5)),
            QUARANTINE,
            LEGACY,
            "measurementOccupantsCount",
            parquet_bytes(make_table(required_new, 7, base, rng)),
            NEW_NOT_NULL_COLUMN,
        ),
    ]


def _unusual_good_files(
    org: str, base: datetime, hour: Callable[[int], datetime], rng: random.Random
) -> list[_Case]:
    """Files that look unusual but are good: an added column, a new dataset, a decimal256, a late file."""
    schema = legacy_schema("measurementCO2")
    added = schema.append(pa.field("co2Raw", pa.int32(), True))
    new_dataset = pa.schema(
        [
            pa.field("deviceId", pa.string(), False),
            pa.field("measuredAt", TS_US, False),
            pa.field("noiseLevel", V1_NUMBER, False),
        ]
    )
    wide = pa.schema(
        [
            pa.field("deviceId", pa.string(), False),
            pa.field("measuredAt", TS_US, False),
            pa.field("distance", pa.decimal256(50, 20), False),
        ]
    )
    late = base - timedelta(days=400)
    return [
        (
            legacy_key(org, "measurementCO2", hour(4)),
            GOOD,
            LEGACY,
            "measurementCO2",
            parquet_bytes(make_table(added, 6, base, rng)),
            "additive drift: co2Raw",
        ),
        (
            v1_key(org, "measurementNoiseLevel", base, base + timedelta(hours=1)),
            GOOD,
            V1,
            "measurementNoiseLevel",
            parquet_bytes(make_table(new_dataset, 8, base, rng)),
            "a dataset never seen before",
        ),
        (
            v1_key(org, "measurementDistance", base, base + timedelta(hours=1)),
            GOOD,
            V1,
            "measurementDistance",
            parquet_bytes(make_table(wide, 2, base, rng)),
            "decimal256: published, kept out of the table",
        ),
        (
            legacy_key(org, "measurementCO2", late),
            GOOD,
            LEGACY,
            "measurementCO2",
            parquet_bytes(make_table(schema, 4, late, rng)),
            "a late file in an old month",
        ),
    ]


def _not_haltian_files(org: str, base: datetime, good: bytes) -> list[_Case]:
    """Keys that are no Haltian file, beside real ones: left unrecognized."""
    folder = f"parquet/{org}/measurementCO2/{base:%Y/%m}/"
    return [
        (folder + "_SUCCESS", UNRECOGNIZED, None, None, b"", "marker"),
        (folder, UNRECOGNIZED, None, None, b"", "folder marker"),
        (
            folder + f"{base:%Y_%m_%d_%H}_measurementCO2.csv",
            UNRECOGNIZED,
            None,
            None,
            b"a,b\n",
            "wrong extension",
        ),
        (f"parquet/{org}/README.txt", UNRECOGNIZED, None, None, b"hello", "stray file"),
        (
            folder + f"{base:%Y_%m_%d_%H}_measurementTVOC.parquet",
            UNRECOGNIZED,
            None,
            None,
            good,
            "dataset in the name differs from its folder",
        ),
    ]


def large_object(spec: BucketSpec, rng: random.Random) -> tuple[Written, bytes]:
    """A measurement file above the single-put size, uploaded in parts (its ETag is no MD5)."""
    at = spec.end - timedelta(hours=spec.legacy_hours + 30)
    schema = legacy_schema("measurementAmbientTemperature")
    rows = max(1, spec.large_file_bytes // 16)
    table = pa.table(
        {
            "deviceId": pa.array([f"dev-{i % 997}" for i in range(rows)], pa.string()),
            "ts": pa.array(range(rows), pa.int64()).cast(pa.timestamp("ms")).cast(TS_MS),
            "organizationId": pa.nulls(rows, pa.string()),
            "ambientTemperature": pa.array([rng.random() for _ in range(rows)], pa.float32()),
        },
        schema=schema,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none", row_group_size=max(1, rows // 4))
    data = sink.getvalue()
    key = legacy_key(spec.organization, "measurementAmbientTemperature", at)
    return Written(
        key, GOOD, LEGACY, "measurementAmbientTemperature", rows, len(data), "large, multipart"
    ), data


def generate(s3: Any, bucket: str, spec: BucketSpec) -> list[Written]:
    """Creates the bucket if needed, uploads a generated Haltian export, returns what it wrote."""
    try:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    objects = build_bucket(spec)
    upload(s3, bucket, objects)
    return [written for written, _ in objects]
