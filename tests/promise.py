"""The bridge's promise, as one reusable checker.

After any sequence of faults, one clean run later:
  * every readable Haltian Parquet file in the bucket is at its mirrored path, byte-identical,
    verified, and its rows in its table exactly once (measurements) or as the newest snapshot;
  * every unreadable or contract-breaking file is in quarantine with its reason, and nowhere else;
  * nothing partial or unverified is visible at a mirrored path (checked after faulty runs too);
  * the manifests account for every file, each file version in exactly one manifest;
  * no table holds two versions of one source key, or a version's rows twice (checked after faulty
    runs too);
  * ``latest.json`` only moves forward (:class:`LatestWatch`, across runs);
  * no file was written by a run after it lost its lock (:func:`check_no_write_after_lock_loss`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pyarrow.parquet as pq

from shared.haltian.contracts import (
    MEASUREMENT,
    Verdict,
    check_schema,
    columns_of,
    contract_for,
    dataset_kind,
)
from shared.haltian.keys import parse_key
from deltalake.exceptions import DeltaProtocolError, TableNotFoundError

from shared.sink.records import (
    META_REASON,
    META_ROWS,
    META_RUN_ID,
    META_SOURCE_ETAG,
    META_SOURCE_KEY,
    META_SOURCE_SIZE,
)
from tests.tables import file_rows, same_rows, table, table_rows

TABLE_TYPES_KEPT_OUT = ("decimal256",)


def _expected_fate(data: bytes, layout: str, dataset: str) -> str:
    """'mirror' or 'quarantine', decided independently of the bridge's own verifier."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any reader failure means unreadable
        return "quarantine"
    contract = contract_for(layout, dataset)
    if contract is not None:
        check = check_schema(contract.columns, columns_of(table.schema), complete=contract.complete)
        if check.verdict is Verdict.BREAKING:
            return "quarantine"
    return "mirror"


def check_nothing_partial(stack, root: str = "haltian/raw") -> int:
    """Every blob at a mirrored path is a whole, verified copy: bridge metadata, matching size and MD5.

    Holds at every moment, so it is checked after faulty runs as well. Returns the count checked.
    """
    checked = 0
    for blob in stack.container.list_blobs(name_starts_with=f"{root}/parquet/", include=["metadata"]):
        if "/_delta_log/" in blob.name:
            continue
        metadata = blob.metadata or {}
        assert metadata.get(META_SOURCE_ETAG), f"{blob.name} has no bridge metadata: not a verified copy"
        assert metadata.get(META_SOURCE_SIZE) == str(blob.size), f"{blob.name}: size differs from its source"
        data = stack.container.get_blob_client(blob.name).download_blob().readall()
        md5 = hashlib.md5(data).digest()
        if blob.content_settings.content_md5 is not None:  # absent for multipart sources (no whole-file MD5)
            assert blob.content_settings.content_md5 == md5, f"{blob.name}: MD5 mismatch"
        etag = metadata[META_SOURCE_ETAG]
        if "-" not in etag:
            assert md5.hex() == etag, f"{blob.name}: bytes differ from the source version it names"
        else:
            expected = _source_version(stack, metadata[META_SOURCE_KEY], etag)
            assert expected is None or data == expected, (
                f"{blob.name}: bytes differ from the source version it names"
            )
        checked += 1
    check_tables_match_blobs(stack, root)
    return checked


def _source_version(stack, key: str, etag: str) -> bytes:
    """The bytes of that version of a source object; None when the source has since been replaced
    (a later clean run republishes it, and check_promise compares it then)."""
    try:
        return stack.s3.get_object(Bucket=stack.bucket, Key=key, IfMatch=f'"{etag}"')["Body"].read()
    except stack.s3.exceptions.ClientError as err:
        if err.response["Error"]["Code"] in ("PreconditionFailed", "NoSuchKey", "412", "404"):
            return None
        raise


def manifests(stack, root: str = "haltian/raw") -> list[dict]:
    """Every run manifest in the lake (not latest.json's copy, not the index entries)."""
    names = [b.name for b in stack.container.list_blobs(name_starts_with=f"{root}/_manifests/")]
    return [
        json.loads(stack.container.get_blob_client(name).download_blob().readall())
        for name in sorted(names)
        if name != f"{root}/_manifests/latest.json" and not name.startswith(f"{root}/_manifests/index/")
    ]


def check_promise(
    stack,
    root: str = "haltian/raw",
    prefix: str = "parquet/",
    organization: str | None = None,
    reported_once: bool = True,
) -> None:
    """The whole promise, after a clean run. Raises AssertionError naming the first breach.

    With ``organization``, another organization's files must be nowhere in the lake.
    ``reported_once=False`` only where the lake itself lost acknowledged writes (a killed
    Azurite does; Azure Storage does not): a manifest then reports a file that is gone, and the
    run that copies it again reports it too.
    """
    source: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    paginator = stack.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=stack.bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            source[item["Key"]] = stack.s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read()
            etags[item["Key"]] = item["ETag"].strip('"')

    blobs = {
        b.name[len(root) + 1 :]: b
        for b in stack.container.list_blobs(name_starts_with=f"{root}/", include=["metadata"])
    }
    assert all(
        name.startswith(("parquet/", "_quarantine/", "_manifests/", "_state/", "_schemas/", "_tables/"))
        for name in blobs
    ), "a blob outside the bridge's folders"

    published: set[str] = set()
    quarantined: set[str] = set()
    for manifest in manifests(stack, root):
        published |= {f["source_key"] for f in manifest["files"] if f["action"] == "published"}
        quarantined |= {f["source_key"] for f in manifest["files"] if f["action"] == "quarantined"}

    mirrored_by_table: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, data in source.items():
        parsed = parse_key(key)
        if parsed is None or (organization is not None and parsed.organization != organization):
            assert key not in blobs and f"_quarantine/{key}" not in blobs, (
                f"{key!r} should not have been copied"
            )
            continue
        etag = etags[key]
        fate = _expected_fate(data, parsed.layout, parsed.dataset)
        if fate == "mirror":
            assert key in blobs, f"{key} is not in the lake"
            blob = blobs[key]
            assert blob.metadata.get(META_SOURCE_ETAG) == etag, f"{key}: the lake holds another version"
            landed = stack.container.get_blob_client(f"{root}/{key}").download_blob().readall()
            assert landed == data, f"{key}: bytes differ"
            assert key in published, f"{key} is in no manifest"
            mirrored_by_table[(parsed.layout, parsed.dataset)].append(key)
        else:
            q = blobs.get(f"_quarantine/{key}")
            assert q is not None and q.metadata.get(META_SOURCE_ETAG) == etag, f"{key} is not in quarantine"
            assert q.metadata.get(META_REASON), f"{key}: quarantined without a reason"
            assert key not in blobs or blobs[key].metadata.get(META_SOURCE_ETAG) != etag, (
                f"{key}: a bad version is at the mirrored path"
            )
            assert key in quarantined, f"{key}: quarantined but in no manifest"

    for (layout, dataset), keys in mirrored_by_table.items():
        _check_table(stack, root, layout, dataset, keys, source)
    if reported_once:
        check_reported_once(stack, root)
    check_tables_match_blobs(stack, root)


def check_reported_once(stack, root: str = "haltian/raw") -> None:
    """Every file version published or quarantined is reported by exactly one manifest."""
    counts = Counter(
        (f["action"], f["source_key"], f["source_etag"])
        for manifest in manifests(stack, root)
        for f in manifest["files"]
        if f["action"] in ("published", "quarantined")
    )
    twice = sorted(k for k, n in counts.items() if n > 1)
    assert not twice, f"reported by more than one manifest: {twice[:3]}"
    for blob in stack.container.list_blobs(name_starts_with=f"{root}/parquet/", include=["metadata"]):
        metadata = blob.metadata or {}
        if "/_delta_log/" in blob.name or not metadata.get(META_SOURCE_ETAG):
            continue
        key = blob.name[len(root) + 1 :]
        assert ("published", key, metadata[META_SOURCE_ETAG]) in counts, (
            f"{key}: its version is in no manifest"
        )


def _table_rows(stack, root: str, name: str) -> list[dict] | None:
    """A table's rows as delta-rs reads them from the lake; None when there is no table, or when
    another engine made it one delta-rs cannot read (deletion vectors)."""
    try:
        return table_rows(table(stack, name, root))
    except (TableNotFoundError, DeltaProtocolError):
        return None


def check_tables_match_blobs(stack, root: str = "haltian/raw") -> int:
    """No table holds two versions of one source key, nor more rows of a version than its file
    has (as the mirrored copy's row count says while the mirror holds that version); holds at
    every moment. Returns the source keys checked."""
    mirrored = {
        b.name[len(root) + 1 :]: b.metadata or {}
        for b in stack.container.list_blobs(name_starts_with=f"{root}/parquet/", include=["metadata"])
    }
    checked = 0
    for name in sorted({n[len(root) + 9 :].split("/")[0] for n in stack.lake_names(f"{root}/_tables/")}):
        rows = _table_rows(stack, root, name) or []
        versions: dict[str, Counter] = defaultdict(Counter)
        for row in rows:
            versions[row["_source_key"]][row["_source_version"]] += 1
        for key, counts in versions.items():
            assert len(counts) == 1, f"table {name}: {key} has rows of several versions {sorted(counts)}"
            ((version, count),) = counts.items()
            metadata = mirrored.get(key, {})
            if metadata.get(META_SOURCE_ETAG) == version and metadata.get(META_ROWS):
                assert count <= int(metadata[META_ROWS]), (
                    f"table {name}: {key} has {count} rows, its file fewer"
                )
            checked += 1
    return checked


class LatestWatch:
    """``latest.json`` seen after each run: it only ever moves forward."""

    def __init__(self) -> None:
        self.seen: list[tuple[datetime, str]] = []

    def check(self, stack, root: str = "haltian/raw") -> None:
        blob = stack.container.get_blob_client(f"{root}/_manifests/latest.json")
        if not blob.exists():
            return
        latest = json.loads(blob.download_blob().readall())
        at = (datetime.fromisoformat(latest["finished_at"]), latest["run_id"])
        assert not self.seen or at[0] >= self.seen[-1][0], (
            f"latest.json moved back from {self.seen[-1]} to {at}"
        )
        self.seen.append(at)


def check_no_write_after_lock_loss(
    stack, losses: dict[str, datetime], root: str = "haltian/raw", in_flight_seconds: float = 0
) -> int:
    """No blob carries the id of a run that lost its lock with a time after the loss (blob
    times have whole seconds: a write in the same second cannot show). ``in_flight_seconds``:
    how long a publish request sent just before the run learnt of the loss may take to land
    (a test proxy that delays publishes). Returns the blobs checked."""
    checked = 0
    for blob in stack.container.list_blobs(name_starts_with=f"{root}/", include=["metadata"]):
        run_id = (blob.metadata or {}).get(META_RUN_ID)
        if run_id in losses:
            limit = losses[run_id].replace(microsecond=0) + timedelta(seconds=in_flight_seconds)
            assert blob.last_modified <= limit, (
                f"{blob.name} was written by run {run_id} after it lost its lock"
            )
            checked += 1
    return checked


def _check_table(
    stack, root: str, layout: str, dataset: str, keys: list[str], source: dict[str, bytes]
) -> None:
    """The table holds exactly the rows of its source versions: every mirrored file's for a
    measurement table, the newest snapshot's for a snapshot table."""
    in_table = [k for k in keys if not _kept_out(source[k])]
    if dataset_kind(layout, dataset) != MEASUREMENT:
        newest = max(in_table, key=lambda k: (parse_key(k).window_start, k), default=None)
        in_table = [newest] if newest is not None else []
    expected = [row for k in in_table for row in file_rows(source[k], k)]
    rows = _table_rows(stack, root, f"{layout}_{dataset}")
    if rows is None:
        assert not expected, f"table {layout}_{dataset} is missing"
        return
    assert same_rows(rows, expected), (
        f"table {layout}_{dataset}: rows differ from its sources' ({len(rows)} rows, {len(expected)} expected)"
    )


def _kept_out(data: bytes) -> bool:
    schema = pq.read_schema(io.BytesIO(data))
    return any(str(f.type).startswith(TABLE_TYPES_KEPT_OUT) for f in schema)
