"""An independent checker of what a lake must show, whatever crashed where.

It reads only Haltian's bucket (boto3), the lake (azure-storage-blob) and the tables (delta-rs),
and never imports the bridge: the lake layout, the blob metadata names and the manifest and
index formats it relies on are the ones the README documents for the lake's readers. The
expected fate of each source file (mirrored or quarantined) is the scenario's to say.

Two levels:
  * :func:`check_any_moment` holds at every moment, right after a kill too: nothing half-written
    at a mirrored path, every table readable with no source version's rows twice, the index
    numbered without a gap, every index entry naming a manifest that exists.
  * :func:`check_finished` holds once the next runs have finished the work: every source version
    mirrored byte for byte (or quarantined), in exactly one manifest the index reaches, every
    manifest reached, and every table's rows those of the versions delivered to it.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow.parquet as pq
from deltalake import DeltaTable

SOURCE_ETAG = "haltian_source_etag"  # the README's "Blob metadata" section
LEGACY = re.compile(r"^parquet/(?P<org>[^/]+)/(?P<dataset>[A-Za-z0-9]+)/\d{4}/\d{2}/[^/]+\.parquet$")
V1 = re.compile(r"^parquet/v1/(?P<org>[^/]+)/(?P<dataset>[A-Za-z0-9]+)/\d{4}/\d{2}/[^/]+\.parquet$")


@dataclass
class Lake:
    """Where the checker looks: a container and a root, and delta-rs's options for it."""

    container: object
    root: str
    storage_options: dict[str, str]
    container_name: str

    def names(self, prefix: str) -> list[str]:
        return [
            b.name[len(self.root) + 1 :]
            for b in self.container.list_blobs(name_starts_with=f"{self.root}/{prefix}")
        ]

    def read(self, relative: str) -> bytes | None:
        blob = self.container.get_blob_client(f"{self.root}/{relative}")
        return blob.download_blob().readall() if blob.exists() else None

    def json(self, relative: str) -> dict | None:
        data = self.read(relative)
        return None if data is None else json.loads(data)

    def table(self, name: str) -> DeltaTable:
        uri = f"az://{self.container_name}/{self.root}/_tables/{name}"
        return DeltaTable(uri, storage_options=self.storage_options)


@dataclass
class Forward:
    """``latest.json`` and the reconcile state, seen over time: they only move forward."""

    seen: dict[str, list[str]] = field(default_factory=dict)

    def check(self, lake: Lake) -> None:
        for path, field_name in (
            ("_manifests/latest.json", "finished_at"),
            ("_state/reconcile.json", "completed_at"),
        ):
            document = lake.json(path)
            if document is None:
                assert not self.seen.get(path), f"{path} disappeared"
                continue
            at = document[field_name]
            history = self.seen.setdefault(path, [])
            assert not history or datetime.fromisoformat(at) >= datetime.fromisoformat(history[-1]), (
                f"{path} moved back from {history[-1]} to {at}"
            )
            history.append(at)


def table_of(key: str) -> str | None:
    """The table a source key's rows belong to, as the README names tables."""
    if (match := V1.match(key)) is not None:
        return f"v1_{match['dataset']}"
    if (match := LEGACY.match(key)) is not None:
        return f"legacy_{match['dataset']}"
    return None


def index_entries(lake: Lake) -> list[dict]:
    """The index as a consumer follows it: 1, 2, ... until one is missing."""
    entries = []
    while (entry := lake.json(f"_manifests/index/{len(entries) + 1:012d}.json")) is not None:
        entries.append(entry)
    return entries


def check_any_moment(lake: Lake, s3, bucket: str) -> None:
    """What holds right after a crash as well as after a finished run."""
    for name in lake.names("parquet/"):
        blob = lake.container.get_blob_client(f"{lake.root}/{name}")
        properties = blob.get_blob_properties()
        etag = (properties.metadata or {}).get(SOURCE_ETAG)
        assert etag, f"{name} is at a mirrored path without its source version: not a verified copy"
        data = blob.download_blob().readall()
        source = s3.get_object(Bucket=bucket, Key=name)
        assert source["ETag"].strip('"') == etag and source["Body"].read() == data, (
            f"{name}: the mirrored bytes are not the source version they name"
        )
    entries = index_entries(lake)
    numbers = sorted(int(n.rsplit("/", 1)[1].removesuffix(".json")) for n in lake.names("_manifests/index/"))
    assert numbers == list(range(1, len(numbers) + 1)), f"the index has a gap: {numbers}"
    assert len(entries) == len(numbers)
    for entry in entries:
        assert lake.json(entry["manifest"]) is not None, f"index entry {entry['sequence']} names no manifest"
    for name in {n.split("/")[1] for n in lake.names("_tables/")}:
        if not any(n.endswith(".json") for n in lake.names(f"_tables/{name}/_delta_log/")):
            continue  # data files of a first commit that never came: not a table yet, for any reader
        rows = lake.table(name).to_pyarrow_table(columns=["_source_key", "_source_version"]).to_pylist()
        versions: dict[str, set[str]] = {}
        for row in rows:
            versions.setdefault(row["_source_key"], set()).add(row["_source_version"])
        mixed = [k for k, v in versions.items() if len(v) > 1]
        assert not mixed, f"table {name}: rows of two versions of {mixed[:2]}"
        counts = Counter(row["_source_key"] for row in rows)
        for key, count in counts.items():
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert count <= pq.read_metadata(io.BytesIO(data)).num_rows, f"table {name}: rows of {key} twice"


def check_finished(lake: Lake, s3, bucket: str, quarantined: set[str], snapshots: set[str]) -> None:
    """Everything the scenario's source holds is in the lake, reported once, and in its table.

    ``quarantined``: the source keys that must land in quarantine; ``snapshots``: the tables
    that hold only the newest file of each organization (entity snapshots).
    """
    check_any_moment(lake, s3, bucket)
    source: dict[str, tuple[str, bytes]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="parquet/"):
        for item in page.get("Contents", ()):
            source[item["Key"]] = (
                item["ETag"].strip('"'),
                s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read(),
            )

    entries = index_entries(lake)
    reached = [entry["manifest"] for entry in entries]
    assert len(set(reached)) == len(reached), "a manifest is in the index twice"
    written = {
        n for n in lake.names("_manifests/") if re.fullmatch(r"_manifests/\d{4}/\d{2}/\d{2}/[^/]+\.json", n)
    }
    assert written == set(reached), (
        f"manifests the index does not reach: {sorted(written - set(reached))[:3]}"
    )
    reported = Counter()
    for path in reached:
        for file in lake.json(path)["files"]:
            if file["action"] in ("published", "quarantined"):
                reported[(file["source_key"], file["source_etag"], file["action"])] += 1
    twice = [k for k, n in reported.items() if n > 1]
    assert not twice, f"reported by more than one manifest: {twice[:2]}"

    rows_by_table: dict[str, Counter] = {}
    for key, (etag, data) in sorted(source.items()):
        if key in quarantined:
            held = lake.container.get_blob_client(f"{lake.root}/_quarantine/{key}")
            assert held.exists(), f"{key} is not in quarantine"
            assert held.get_blob_properties().metadata.get(SOURCE_ETAG) == etag
            assert (key, etag, "quarantined") in reported, (
                f"{key}: quarantined but in no manifest the index reaches"
            )
            continue
        assert lake.read(key) == data, f"{key}: not mirrored byte for byte"
        assert (key, etag, "published") in reported, f"{key}: published but in no manifest the index reaches"
        table = table_of(key)
        if table is not None:
            rows_by_table.setdefault(table, Counter())[(key, etag)] = pq.read_metadata(
                io.BytesIO(data)
            ).num_rows
    for table, expected in rows_by_table.items():
        if table in snapshots:  # the newest snapshot's rows only (one organization here)
            newest = max(expected)
            expected = Counter({newest: expected[newest]})
        rows = lake.table(table).to_pyarrow_table(columns=["_source_key", "_source_version"]).to_pylist()
        actual = Counter((row["_source_key"], row["_source_version"]) for row in rows)
        assert actual == expected, (
            f"table {table}: rows per source version differ from the source's "
            f"({sorted(set(actual) ^ set(expected))[:2]})"
        )
