"""The bridge's promise, as one reusable checker.

After any sequence of faults, one clean run later:
  * every readable Haltian Parquet file in the bucket is at its mirrored path, byte-identical,
    verified, and in its Delta table exactly once (measurements) or as the newest snapshot;
  * every unreadable or contract-breaking file is in quarantine with its reason, and nowhere else;
  * nothing partial or unverified is visible at a mirrored path (checked after faulty runs too);
  * the manifests account for every file.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict

import pyarrow.parquet as pq

from shared.haltian.contracts import MEASUREMENT, Verdict, check_schema, columns_of, contract_for, dataset_kind
from shared.haltian.keys import parse_key
from shared.sink.lake import META_REASON, META_SOURCE_ETAG, META_SOURCE_KEY, META_SOURCE_SIZE

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
            assert expected is None or data == expected, f"{blob.name}: bytes differ from the source version it names"
        checked += 1
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
    return [json.loads(stack.container.get_blob_client(name).download_blob().readall()) for name in sorted(names)
            if name != f"{root}/_manifests/latest.json" and not name.startswith(f"{root}/_manifests/index/")]


def check_promise(stack, root: str = "haltian/raw", prefix: str = "parquet/", organization: str | None = None) -> None:
    """The whole promise, after a clean run. Raises AssertionError naming the first breach.

    With ``organization``, another organization's files must be nowhere in the lake.
    """
    source: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    paginator = stack.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=stack.bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            source[item["Key"]] = stack.s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read()
            etags[item["Key"]] = item["ETag"].strip('"')

    blobs = {b.name[len(root) + 1:]: b for b in stack.container.list_blobs(name_starts_with=f"{root}/",
                                                                           include=["metadata"])}
    assert all(name.startswith(("parquet/", "_quarantine/", "_manifests/", "_state/", "_schemas/"))
               for name in blobs), "a blob outside the bridge's folders"

    published: set[str] = set()
    quarantined: set[str] = set()
    for manifest in manifests(stack, root):
        published |= {f["source_key"] for f in manifest["files"] if f["action"] == "published"}
        quarantined |= {f["source_key"] for f in manifest["files"] if f["action"] == "quarantined"}

    mirrored_by_table: dict[str, list[str]] = defaultdict(list)
    for key, data in source.items():
        parsed = parse_key(key)
        if parsed is None or (organization is not None and parsed.organization != organization):
            assert key not in blobs and f"_quarantine/{key}" not in blobs, f"{key!r} should not have been copied"
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
            mirrored_by_table[parsed.dataset_folder].append(key)
        else:
            q = blobs.get(f"_quarantine/{key}")
            assert q is not None and q.metadata.get(META_SOURCE_ETAG) == etag, f"{key} is not in quarantine"
            assert q.metadata.get(META_REASON), f"{key}: quarantined without a reason"
            assert key not in blobs or blobs[key].metadata.get(META_SOURCE_ETAG) != etag, \
                f"{key}: a bad version is at the mirrored path"
            assert key in quarantined, f"{key}: quarantined but in no manifest"

    for folder, keys in mirrored_by_table.items():
        _check_table(stack, root, folder, keys, source)


def _check_table(stack, root: str, folder: str, keys: list[str], source: dict[str, bytes]) -> None:
    commits = sorted(n for n in (b.name for b in stack.container.list_blobs(
        name_starts_with=f"{root}/{folder}_delta_log/")) if n.endswith(".json"))
    live: dict[str, dict] = {}
    added: list[str] = []
    for name in commits:
        for line in stack.container.get_blob_client(name).download_blob().readall().decode().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = action["add"]
                added.append(action["add"]["path"])
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    in_table = [k for k in keys if not _kept_out(source[k])]
    relative = {k[len(folder):] for k in in_table}
    parsed = parse_key(keys[0])
    if dataset_kind(parsed.layout, parsed.dataset) == MEASUREMENT:
        assert set(live) == relative, f"table {folder}: files {sorted(set(live) ^ relative)[:5]} differ"
        for path in relative:
            assert live[path]["size"] == len(source[folder + path]), f"table {folder}: stale add for {path}"
    else:
        newest = max(in_table, key=lambda k: (parse_key(k).window_start, k), default=None)
        if newest is not None:
            assert list(live) == [newest[len(folder):]], f"snapshot table {folder} is not the newest snapshot"


def _kept_out(data: bytes) -> bool:
    schema = pq.read_schema(io.BytesIO(data))
    return any(str(f.type).startswith(TABLE_TYPES_KEPT_OUT) for f in schema)
