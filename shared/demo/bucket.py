"""A Haltian-shaped bucket: both key layouts, every documented dataset, hourly files, bad input.

The demo and the tests use the same generator. Every good file's schema comes from Haltian's
schema reference (:mod:`shared.demo.reference`), never from the bridge's contracts, in the
spellings real writers use (v1 timestamps in ms or us; ``large_string``, dictionary columns
and other spellings of UTC). It returns what it wrote and what the bridge should do with each
key, so tests can check the lake against it.
"""

from __future__ import annotations

import io
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from boto3.s3.transfer import TransferConfig

from shared.demo import reference
from shared.haltian.keys import LEGACY, V1

GOOD = "good"
QUARANTINE = "quarantine"
UNRECOGNIZED = "unrecognized"
#: The note of the bad file that brings a new NOT NULL column: the schema-change workflow's example.
NEW_NOT_NULL_COLUMN = "breaking drift: new NOT NULL column occupantsConfidence"

TS_MS = pa.timestamp("ms", tz="UTC")
TS_US = pa.timestamp("us", tz="UTC")
V1_NUMBER = pa.decimal128(38, 20)
WIREPAS_BIG = 4_000_000_000  # above 2**31 - 1: a uint32 that must survive

LEGACY_MEASUREMENTS = [d for d in reference.datasets(LEGACY) if reference.is_measurement(d)]
LEGACY_SNAPSHOTS = [d for d in reference.datasets(LEGACY) if not reference.is_measurement(d)]
V1_MEASUREMENTS = [d for d in reference.datasets(V1) if reference.is_measurement(d)]
V1_SNAPSHOTS = [d for d in reference.datasets(V1) if not reference.is_measurement(d)]


@dataclass(frozen=True)
class Written:
    """One key the generator wrote, and what the bridge should make of it."""

    key: str
    expect: str
    layout: str | None
    dataset: str | None
    rows: int | None
    size: int
    note: str = ""


@dataclass
class BucketSpec:
    """What to generate. Defaults give a small but complete bucket."""

    organization: str = "6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11"
    end: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0))
    legacy_hours: int = 48
    v1_hours: int = 12
    legacy_measurements: list[str] = field(default_factory=lambda: list(LEGACY_MEASUREMENTS))
    v1_measurements: list[str] = field(default_factory=lambda: list(V1_MEASUREMENTS))
    legacy_snapshots: list[str] = field(default_factory=lambda: list(LEGACY_SNAPSHOTS))
    v1_snapshots: list[str] = field(default_factory=lambda: list(V1_SNAPSHOTS))
    snapshot_every_hours: int = 24
    max_rows: int = 40
    empty_every: int = 17
    bad_files: bool = True
    #: Good files whose writer spells a type another way (large_string, dictionary, UTC as +00:00 ...).
    writer_variants: bool = True
    large_file_bytes: int = 0
    seed: int = 7


def legacy_schema(dataset: str) -> pa.Schema:
    """The schema the legacy exporter writes, as Haltian's schema reference documents it."""
    return reference.schema(LEGACY, dataset)


def v1_schema(dataset: str, timestamp_unit: str | None = None, *, early: bool = False) -> pa.Schema:
    """A v1 file's schema as Haltian documents it; ``early``: written before the columns Haltian added later."""
    without = reference.later_columns(V1, dataset) if early else set()
    return reference.schema(V1, dataset, timestamp_unit=timestamp_unit, without=without)


def respelled(schema: pa.Schema, column: str, arrow_type: pa.DataType) -> pa.Schema:
    """The same schema with one column's type spelled another way (as another writer would)."""
    index = schema.get_field_index(column)
    return schema.set(index, schema.field(index).with_type(arrow_type))


def make_table(schema: pa.Schema, rows: int, start: datetime, rng: random.Random) -> pa.Table:
    """Rows of plausible values for any schema the generator uses."""
    columns = []
    for f in schema:
        columns.append(pa.array([_value(f, start, i, rng) for i in range(rows)], type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _value(f: pa.Field, start: datetime, i: int, rng: random.Random) -> Any:
    t = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
    if i == 0 and (t == pa.uint32() or (t == pa.int64() and f.name.startswith("wirepas"))):
        return WIREPAS_BIG  # every device file holds one id above 2**31 - 1
    if f.nullable and rng.random() < 0.2:
        return None
    if pa.types.is_timestamp(t):
        return start + timedelta(seconds=rng.randrange(3600))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if f.name.endswith("Id") or f.name == "id":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if f.name.startswith("position") or f.name.startswith("polygon") or f.name == "fixedPositionGlobal":
            return f'{{"type":"Point","coordinates":[{rng.uniform(24, 26):.6f},{rng.uniform(60, 66):.6f}]}}'
        return f"{f.name}-{i}"
    if pa.types.is_boolean(t):
        return rng.random() < 0.5
    if pa.types.is_decimal(t):
        return Decimal(rng.randrange(100000)) / Decimal(100) if t.scale else Decimal(rng.randrange(5000))
    if pa.types.is_floating(t):
        return rng.uniform(0, 1000)
    if t == pa.uint32() or (t == pa.int64() and f.name.startswith("wirepas")):
        return rng.randrange(2**32)
    if t == pa.int8():
        return rng.randrange(2)
    return rng.randrange(10000)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def legacy_key(org: str, dataset: str, at: datetime, root: str = "parquet") -> str:
    return f"{root}/{org}/{dataset}/{at:%Y/%m}/{at:%Y_%m_%d_%H}_{dataset}.parquet"


def v1_key(org: str, dataset: str, start: datetime, end: datetime) -> str:
    return f"parquet/v1/{org}/{dataset}/{start:%Y/%m}/{start:%Y_%m_%d_%H%M}_{end:%Y_%m_%d_%H%M}_{dataset}.parquet"


def build_bucket(spec: BucketSpec) -> list[tuple[Written, bytes]]:
    """Every object of the bucket, as (what it is, its bytes); nothing is uploaded yet."""
    rng = random.Random(spec.seed)
    org = spec.organization
    objects: list[tuple[Written, bytes]] = []
    count = 0

    def add(key: str, layout: str, dataset: str, schema: pa.Schema, at: datetime, snapshot: bool) -> None:
        nonlocal count
        count += 1
        rows = 0 if (spec.empty_every and count % spec.empty_every == 0) else rng.randrange(1, spec.max_rows + 1)
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
        ("measurementPositionZone", "zoneId", pa.dictionary(pa.int32(), pa.string()), "dictionary-encoded column"),
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
        objects.append((Written(legacy_key(org, dataset, at), GOOD, LEGACY, dataset, rows, len(data), note), data))
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
    renamed = legacy_schema("measurementTVOC").remove(3).append(pa.field("tvocPpb", pa.float32(), False))
    added = schema.append(pa.field("co2Raw", pa.int32(), True))
    new_dataset = pa.schema([pa.field("deviceId", pa.string(), False), pa.field("measuredAt", TS_US, False),
                             pa.field("noiseLevel", V1_NUMBER, False)])
    required_new = legacy_schema("measurementOccupantsCount").append(
        pa.field("occupantsConfidence", pa.int32(), False))
    wide = pa.schema([pa.field("deviceId", pa.string(), False), pa.field("measuredAt", TS_US, False),
                      pa.field("distance", pa.decimal256(50, 20), False)])
    late = base - timedelta(days=400)
    folder = f"parquet/{org}/measurementCO2/{base:%Y/%m}/"
    items = [
        (legacy_key(org, "measurementCO2", hour(0)), QUARANTINE, LEGACY, "measurementCO2", b"", "0 bytes"),
        (legacy_key(org, "measurementBatteryVoltage", hour(1)), QUARANTINE, LEGACY,
         "measurementBatteryVoltage", good[: len(good) // 2], "truncated"),
        (legacy_key(org, "measurementBootCount", hour(2)), QUARANTINE, LEGACY,
         "measurementBootCount", b"deviceId,ts,bootCount\nabc,2026-01-01,3\n", "CSV named .parquet"),
        (legacy_key(org, "measurementTVOC", hour(3)), QUARANTINE, LEGACY, "measurementTVOC",
         parquet_bytes(make_table(renamed, 5, base, rng)), "breaking drift: tvoc renamed"),
        (legacy_key(org, "measurementOccupantsCount", hour(5)), QUARANTINE, LEGACY, "measurementOccupantsCount",
         parquet_bytes(make_table(required_new, 7, base, rng)), NEW_NOT_NULL_COLUMN),
        (legacy_key(org, "measurementCO2", hour(4)), GOOD, LEGACY, "measurementCO2",
         parquet_bytes(make_table(added, 6, base, rng)), "additive drift: co2Raw"),
        (v1_key(org, "measurementNoiseLevel", base, base + timedelta(hours=1)), GOOD, V1, "measurementNoiseLevel",
         parquet_bytes(make_table(new_dataset, 8, base, rng)), "a dataset never seen before"),
        (v1_key(org, "measurementDistance", base, base + timedelta(hours=1)), GOOD, V1, "measurementDistance",
         parquet_bytes(make_table(wide, 2, base, rng)), "decimal256: published, kept out of the table"),
        (legacy_key(org, "measurementCO2", late), GOOD, LEGACY, "measurementCO2",
         parquet_bytes(make_table(schema, 4, late, rng)), "a late file in an old month"),
        (folder + "_SUCCESS", UNRECOGNIZED, None, None, b"", "marker"),
        (folder, UNRECOGNIZED, None, None, b"", "folder marker"),
        (folder + f"{base:%Y_%m_%d_%H}_measurementCO2.csv", UNRECOGNIZED, None, None, b"a,b\n", "wrong extension"),
        (f"parquet/{org}/README.txt", UNRECOGNIZED, None, None, b"hello", "stray file"),
        (folder + f"{base:%Y_%m_%d_%H}_measurementTVOC.parquet", UNRECOGNIZED, None, None, good,
         "dataset in the name differs from its folder"),
    ]
    rows = {NEW_NOT_NULL_COLUMN: 7, "additive drift: co2Raw": 6, "a dataset never seen before": 8, "a late file in an old month": 4,
            "decimal256: published, kept out of the table": 2}
    return [(Written(key, expect, layout, dataset, rows.get(note), len(data), note), data)
            for key, expect, layout, dataset, data, note in items]


def large_object(spec: BucketSpec, rng: random.Random) -> tuple[Written, bytes]:
    """A measurement file above the single-put size, uploaded in parts (its ETag is no MD5)."""
    at = spec.end - timedelta(hours=spec.legacy_hours + 30)
    schema = legacy_schema("measurementAmbientTemperature")
    rows = max(1, spec.large_file_bytes // 16)
    table = pa.table({
        "deviceId": pa.array([f"dev-{i % 997}" for i in range(rows)], pa.string()),
        "ts": pa.array(range(rows), pa.int64()).cast(pa.timestamp("ms")).cast(TS_MS),
        "organizationId": pa.nulls(rows, pa.string()),
        "ambientTemperature": pa.array([rng.random() for _ in range(rows)], pa.float32()),
    }, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none", row_group_size=max(1, rows // 4))
    data = sink.getvalue()
    key = legacy_key(spec.organization, "measurementAmbientTemperature", at)
    return Written(key, GOOD, LEGACY, "measurementAmbientTemperature", rows, len(data), "large, multipart"), data


def upload(s3: Any, bucket: str, objects: list[tuple[Written, bytes]], threads: int = 16) -> None:
    """Puts every object into the bucket (multipart for those above 8 MiB)."""
    config = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)

    def put(item: tuple[Written, bytes]) -> None:
        written, data = item
        if len(data) > config.multipart_threshold:
            s3.upload_fileobj(io.BytesIO(data), bucket, written.key, Config=config)
        else:
            s3.put_object(Bucket=bucket, Key=written.key, Body=data)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, objects))


def generate(s3: Any, bucket: str, spec: BucketSpec) -> list[Written]:
    """Creates the bucket if needed, uploads a generated Haltian export, returns what it wrote."""
    try:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    objects = build_bucket(spec)
    upload(s3, bucket, objects)
    return [written for written, _ in objects]
