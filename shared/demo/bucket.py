"""The files of a Haltian-shaped bucket: both key layouts, every documented dataset.

Every good file's schema comes from Haltian's schema reference (:mod:`shared.demo.reference`),
never from the bridge's contracts, in the spellings real writers use (v1 timestamps in ms or us;
``large_string``, dictionary columns and other spellings of UTC). Here: those schemas, rows of
plausible values, Parquet bytes, the keys, what a generator wrote (:class:`Written`), what to
generate (:class:`BucketSpec`), and the upload; :mod:`shared.demo.export` builds the whole bucket.
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
    end: datetime = field(
        default_factory=lambda: datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    )
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
