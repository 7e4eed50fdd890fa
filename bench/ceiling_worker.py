"""The ceiling's child (``python -m bench.workers ceiling '<json>'``): a plain loop with no
verification, ledger, lock, tables or manifest. In ``copy`` mode it lists, GETs each object and
PUTs it (overwrite); in ``noop`` mode it lists the window on both sides and compares; in ``hour``
mode it does the least an hourly run must do."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.counting import Counts, azure_options, usage
from bench.profiling import ThreadProfiler


def ceiling(config: dict[str, Any]) -> dict[str, Any]:
    """A plain loop: list, GET each object, PUT it (overwrite); no verification, ledger or manifest.

    In ``noop`` mode: list the window's month folders on both sides and compare ETag and size,
    which is the least any ledger-based no-op run has to do.
    """
    concurrency = config["concurrency"]
    s3_counts, azure_counts = Counts(), Counts()
    s3, container = _clients(config, s3_counts, azure_counts)
    bucket = config["bucket"]
    paginator = s3.get_paginator("list_objects_v2")

    def list_keys(prefix: str) -> list[dict[str, Any]]:
        return [
            o for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", ())
        ]

    profiler = ThreadProfiler() if config.get("profile") else None
    if profiler:
        profiler.__enter__()
    begun = time.perf_counter()
    files = size = present = 0
    if config["mode"] == "copy":
        files, size = _copy_objects(s3, list_keys, container, config, s3_counts, azure_counts)
    elif config["mode"] == "hour":
        files, size = _least_hour(s3, list_keys, container, bucket, config)
    else:
        files, present = _compare_window(s3, list_keys, container, bucket, config)
    wall = time.perf_counter() - begun
    if profiler:
        profiler.__exit__(None, None, None)
        profiler.write(config["profile"], config.get("title", "ceiling"))
    return {
        "wall_s": wall,
        "files": files,
        "bytes": size,
        "present": present,
        "concurrency": concurrency,
        "s3_requests": dict(s3_counts.counts),
        "azure_requests": dict(azure_counts.counts),
        **usage(),
    }


def _clients(config: dict[str, Any], s3_counts: Counts, azure_counts: Counts) -> tuple[Any, Any]:
    """boto3's S3 client and azure-storage-blob's container client, each with its request counter."""
    import boto3
    import botocore.config
    from azure.storage.blob import BlobServiceClient

    concurrency = config["concurrency"]
    s3 = boto3.client(
        "s3",
        endpoint_url=config["endpoint"],
        region_name="eu-west-1",
        aws_access_key_id=config["key_id"],
        aws_secret_access_key=config["secret"],
        config=botocore.config.Config(
            max_pool_connections=concurrency * 2 + 4,
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 5},
        ),
    )
    s3.meta.events.register("before-send.s3", s3_counts.s3_hook)
    service = BlobServiceClient.from_connection_string(
        config["connection_string"], **azure_options(concurrency, azure_counts.azure_hook, 8 * 1024 * 1024)
    )
    return s3, service.get_container_client(config["container"])


def _copy_objects(
    s3: Any, list_keys: Any, container: Any, config: dict[str, Any], s3_counts: Counts, azure_counts: Counts
) -> tuple[int, int]:
    """The copy mode: list, then GET and PUT each object from a thread pool; files and bytes copied."""
    bucket = config["bucket"]
    objects = list_keys(config["prefix"])
    raw_copy = (
        _raw_copier(s3, container, config, s3_counts, azure_counts) if config.get("client") == "raw" else None
    )

    def copy(obj: dict[str, Any]) -> int:
        if raw_copy:
            return raw_copy(obj)
        response = s3.get_object(Bucket=bucket, Key=obj["Key"])
        length = response["ContentLength"]
        with response["Body"] as body:
            if length <= 8 * 1024 * 1024:
                container.upload_blob(obj["Key"], body.read(), overwrite=True, validate_content=True)
            else:  # streamed in 8 MiB blocks, as the bridge does
                container.upload_blob(obj["Key"], body, length=length, overwrite=True, validate_content=True)
        return length

    with ThreadPoolExecutor(config["concurrency"]) as pool:
        sizes = list(pool.map(copy, objects))
    return len(sizes), sum(sizes)


def _raw_copier(
    s3: Any, container: Any, config: dict[str, Any], s3_counts: Counts, azure_counts: Counts
) -> Callable[[dict[str, Any]], int]:
    """The copy of one object with the bridge's own GET (signed by botocore's signer) and Blob
    requests, nothing around them."""
    from shared.sink.blob_writer import BlobWriter, azure_transport
    from botocore.credentials import Credentials

    from shared.source.s3 import S3Source, SourceObject, s3_transport

    source = S3Source(
        s3,
        config["bucket"],
        Credentials(config["key_id"], config["secret"]),
        s3_transport(s3, hook=s3_counts.s3_transport_hook),
    )
    writer = BlobWriter(
        container, azure_transport(config["concurrency"] * 2 + 4, hook=azure_counts.azure_transport_hook)
    )

    def raw_copy(obj: dict[str, Any]) -> int:
        listed = SourceObject(obj["Key"], obj["Size"], obj["ETag"].strip('"'))
        block = 8 * 1024 * 1024
        if obj["Size"] <= block:
            data = source.get(listed).data
            writer.put_blob(
                obj["Key"], data, content_type="application/octet-stream", metadata={}, condition={}
            )
            return len(data)
        body = source.get(listed, stream=True)
        ids, length = [], 0
        while chunk := body.read(block):
            ids.append(f"{len(ids):08d}")
            writer.put_block(obj["Key"], ids[-1], chunk)
            length += len(chunk)
        body.close()
        writer.put_block_list(
            obj["Key"],
            ids,
            content_type="application/octet-stream",
            content_md5=None,
            metadata={},
            condition={},
        )
        return length

    return raw_copy


def _compare_window(
    s3: Any, list_keys: Any, container: Any, bucket: str, config: dict[str, Any]
) -> tuple[int, int]:
    """The noop mode: list the window's month folders on both sides and compare ETag and size;
    files listed and files found present."""
    files = present = 0

    def folders(prefix: str) -> list[str]:
        return _folders(s3, bucket, prefix)

    roots = folders(config["prefix"])
    with ThreadPoolExecutor(config["concurrency"]) as pool:
        datasets = [d for found in pool.map(folders, roots) for d in found]
        prefixes = [f"{d}{month}/" for d in datasets for month in config["months"]]
        sources = pool.map(list_keys, prefixes)
        blobs = pool.map(
            lambda p: list(container.list_blobs(name_starts_with=p, include=["metadata"])), prefixes
        )
        lake = {b.name: b for found in blobs for b in found}
        for obj in (o for found in sources for o in found):
            files += 1
            blob = lake.get(obj["Key"])
            meta = (blob.metadata or {}) if blob is not None else {}
            if meta.get("haltian_source_etag") == obj["ETag"].strip('"') and meta.get(
                "haltian_source_size"
            ) == str(obj["Size"]):
                present += 1
    return files, present


def _folders(s3: Any, bucket: str, under: str) -> list[str]:
    """The folders directly below ``under`` (a delimited listing)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under, Delimiter="/")
    return [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", ())]


def _dataset_folders(s3: Any, bucket: str, prefix: str) -> list[str]:
    """The dataset folders below ``prefix``: organisation roots of both layouts, then their datasets."""
    roots = [
        org
        for root in _folders(s3, bucket, prefix)
        for org in (_folders(s3, bucket, root) if root.endswith("/v1/") else [root])
    ]
    return [d for root in roots for d in _folders(s3, bucket, root)]


def _least_hour(
    s3: Any, list_keys: Any, container: Any, bucket: str, config: dict[str, Any]
) -> tuple[int, int]:
    """The least an hourly run must do: list the window on both sides, copy what is new, one
    conditional PUT per changed dataset (its table commit) and one manifest.

    Copies go below ``loop/`` so that the mirror the bridge compares with is left as it was.
    """
    concurrency = config["concurrency"]
    with ThreadPoolExecutor(concurrency) as pool:
        prefixes = [
            f"{d}{month}/"
            for d in _dataset_folders(s3, bucket, config["prefix"])
            for month in config["months"]
        ]
        sources = list(pool.map(list_keys, prefixes))
        blobs = list(
            pool.map(lambda p: list(container.list_blobs(name_starts_with=p, include=["metadata"])), prefixes)
        )
        lake = {b.name: b for found in blobs for b in found}
        new = [
            o
            for found in sources
            for o in found
            if (
                lake.get(o["Key"]) is None
                or (lake[o["Key"]].metadata or {}).get("haltian_source_etag") != o["ETag"].strip('"')
            )
        ]

        def copy(obj: dict[str, Any]) -> int:
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            container.upload_blob(f"loop/{obj['Key']}", body, overwrite=True, validate_content=True)
            return len(body)

        sizes = list(pool.map(copy, new))
        stamp = time.time_ns()
        changed = sorted({o["Key"].rsplit("/", 3)[0] for o in new})
        list(
            pool.map(
                lambda d: container.upload_blob(f"loop/_commits/{d}/{stamp}.json", b"{}", overwrite=False),
                changed,
            )
        )
    container.upload_blob(
        f"loop/_manifests/{stamp}.json", json.dumps({"files": len(new)}).encode(), overwrite=False
    )
    return len(new), sum(sizes)
