"""A Haltian-shaped bucket: both key layouts, every dataset, hourly files, and bad input.

The demo and the tests use the same generator. It returns what it wrote and what the
bridge should do with each key, so tests can check the lake against it.
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

from shared.haltian.contracts import contract_for
from shared.haltian.keys import LEGACY, V1

GOOD = "good"
QUARANTINE = "quarantine"
UNRECOGNIZED = "unrecognized"

TS_MS = pa.timestamp("ms", tz="UTC")
TS_US = pa.timestamp("us", tz="UTC")
V1_NUMBER = pa.decimal128(38, 20)
WIREPAS_BIG = 4_000_000_000  # above 2**31 - 1: a uint32 that must survive

LEGACY_MEASUREMENTS = [name for name in (
    "measurementAmbientTemperature", "measurementBatteryPercentage", "measurementBatteryVoltage",
    "measurementBootCount", "measurementCO2", "measurementDirectionalMovement", "measurementDistance",
    "measurementOccupancySeconds", "measurementOccupancyStatus", "measurementOccupantsCount",
    "measurementPosition", "measurementPositionZone", "measurementTVOC")]
LEGACY_SNAPSHOTS = ["organization", "device", "deviceGroup", "deviceGroupDevices", "deviceKeyword", "space", "zone"]
V1_MEASUREMENTS = LEGACY_MEASUREMENTS + ["measurementSystemTemperature"]
V1_SNAPSHOTS = ["organizations", "devices", "deviceGroups", "deviceGroupDevices", "deviceKeywords",
                "spaces", "zones", "deviceNotes"]


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
    v1_hours: int = 24
    legacy_measurements: list[str] = field(default_factory=lambda: list(LEGACY_MEASUREMENTS))
    v1_measurements: list[str] = field(default_factory=lambda: list(V1_MEASUREMENTS))
    legacy_snapshots: list[str] = field(default_factory=lambda: list(LEGACY_SNAPSHOTS))
    v1_snapshots: list[str] = field(default_factory=lambda: list(V1_SNAPSHOTS))
    snapshot_every_hours: int = 24
    max_rows: int = 40
    empty_every: int = 17
    bad_files: bool = True
    large_file_bytes: int = 0
    seed: int = 7


def _legacy_type(name: str) -> pa.DataType:
    return {"string": pa.string(), "float": pa.float32(), "int8": pa.int8(), "int32": pa.int32(),
            "uint32": pa.uint32(), "decimal128(10, 0)": pa.decimal128(10, 0),
            "timestamp[ms, tz=UTC]": TS_MS}[name]


def legacy_schema(dataset: str) -> pa.Schema:
    """The schema the legacy exporter writes, straight from the shipped contract."""
    contract = contract_for(LEGACY, dataset)
    assert contract is not None, dataset
    return pa.schema([pa.field(c.name, _legacy_type(c.type), c.nullable) for c in contract.columns])


def v1_schema(dataset: str) -> pa.Schema:
    """A plausible full v1 schema: the published renames and types, plus the columns we guess."""
    if dataset.startswith("measurement"):
        value = {
            "measurementOccupancyStatus": [pa.field("isOccupied", pa.bool_(), False)],
            "measurementBootCount": [pa.field("bootCount", pa.int64(), False),
                                     pa.field("bootReason", pa.string(), True)],
            "measurementPositionZone": [pa.field("zoneId", pa.string(), False)],
            "measurementPosition": [pa.field("isStatic", pa.bool_(), False),
                                    pa.field("spaceId", pa.string(), False),
                                    pa.field("positionGlobal", pa.string(), False)],
            "measurementDirectionalMovement": [pa.field("entries", pa.int64(), False),
                                               pa.field("exits", pa.int64(), False)],
        }.get(dataset, [pa.field(dataset.removeprefix("measurement")[0].lower()
                                 + dataset.removeprefix("measurement")[1:], V1_NUMBER, False)])
        return pa.schema([pa.field("deviceId", pa.string(), False), pa.field("measuredAt", TS_US, False), *value])
    if dataset == "deviceGroupDevices":
        return pa.schema([pa.field("deviceGroupId", pa.string(), False), pa.field("deviceId", pa.string(), False)])
    fields = [pa.field("createdAt", TS_US, False), pa.field("updatedAt", TS_US, True)]
    if dataset in ("deviceKeywords", "deviceNotes"):
        text = "keyword" if dataset == "deviceKeywords" else "note"
        return pa.schema([pa.field("deviceId", pa.string(), False), pa.field(text, pa.string(), False), *fields])
    fields = [pa.field("id", pa.string(), False), pa.field("name", pa.string(), True), *fields]
    if dataset == "devices":
        fields += [pa.field("modelType", pa.string(), False), pa.field("bleMac", pa.string(), True),
                   pa.field("wirepasNodeId", pa.int64(), True), pa.field("wirepasNetworkId", pa.int64(), True),
                   pa.field("spaceId", pa.string(), True), pa.field("fixedPositionGlobal", pa.string(), True)]
    return pa.schema(fields)


def make_table(schema: pa.Schema, rows: int, start: datetime, rng: random.Random) -> pa.Table:
    """Rows of plausible values for any schema the generator uses."""
    columns = []
    for f in schema:
        columns.append(pa.array([_value(f, start, i, rng) for i in range(rows)], type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _value(f: pa.Field, start: datetime, i: int, rng: random.Random) -> Any:
    t = f.type
    if i == 0 and (t == pa.uint32() or (t == pa.int64() and f.name.startswith("wirepas"))):
        return WIREPAS_BIG  # every device file holds one id above 2**31 - 1
    if f.nullable and rng.random() < 0.2:
        return None
    if pa.types.is_timestamp(t):
        return start + timedelta(seconds=rng.randrange(3600))
    if pa.types.is_string(t):
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
    for hour in range(spec.v1_hours):
        start = spec.end - timedelta(hours=spec.v1_hours - hour)
        end = start + timedelta(hours=1)
        for dataset in spec.v1_measurements:
            add(v1_key(org, dataset, start, end), V1, dataset, v1_schema(dataset), start, False)
        if start.hour % spec.snapshot_every_hours == 0 or hour == spec.v1_hours - 1:
            for dataset in spec.v1_snapshots:
                add(v1_key(org, dataset, start, end), V1, dataset, v1_schema(dataset), start, True)
    if spec.bad_files:
        objects += bad_objects(spec, rng)
    if spec.large_file_bytes:
        objects.append(large_object(spec, rng))
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
    rows = {"additive drift: co2Raw": 6, "a dataset never seen before": 8, "a late file in an old month": 4,
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
