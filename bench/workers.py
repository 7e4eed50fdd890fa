"""What the benchmark runs in child processes, so each one's peak RSS and CPU can be read alone.

    python -m bench.workers bridge  '<json>'   one run_once() of the bridge, with request counters
    python -m bench.workers ceiling '<json>'   the plain copy loop (or the plain no-op listing)

Each prints one JSON line on stdout; logs go to stderr.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.profiling import ThreadProfiler


class Counts:
    """Thread-safe request counters by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def s3_hook(self, event_name: str = "", **_: Any) -> None:
        """botocore ``before-send.s3``: once per HTTP request (retries included)."""
        self.add(event_name.rsplit(".", 1)[-1])
        return None  # a non-None answer would replace the HTTP request

    def s3_transport_hook(self, method: str, url: str) -> None:
        """shared.transport hook on the S3 side: the copy path's GETs (once per attempt)."""
        self.add("GetObject" if method == "GET" else method)

    def azure_transport_hook(self, method: str, url: str) -> None:
        """shared.transport hook on the lake side: Put Blob, Put Block, Put Block List (once per attempt)."""
        comp = parse_qs(urlsplit(url).query).get("comp", [""])[0]
        self.add(f"{method} {comp or 'blob'}")

    def azure_hook(self, request: Any) -> None:
        """azure-core ``raw_request_hook``: runs inside the retry loop, once per HTTP request."""
        http = request.http_request
        query = parse_qs(urlsplit(http.url).query)
        comp = query.get("comp", [""])[0]
        restype = query.get("restype", [""])[0]
        kind = f"{http.method} {comp or restype or 'blob'}"
        self.add(kind)


def _azure_options(concurrency: int, hook: Any, block_bytes: int | None = None) -> dict[str, Any]:
    """The options of shared.sink.connect.make_container_client, plus a request counter."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import ExponentialRetry

    session = requests.Session()
    pool = concurrency * 2 + 4
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool))
    options = {
        "transport": RequestsTransport(session=session, session_owner=False),
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=3, retry_total=4),
        "max_single_put_size": 64 * 1024 * 1024,
        "connection_timeout": 10,
        "read_timeout": 120,
        "raw_request_hook": hook,
    }
    if block_bytes:
        options["max_block_size"] = block_bytes
    return options


def _usage() -> dict[str, float]:
    """This process's CPU, and its peak RSS as /proc's VmHWM (a cross-check of the parent's wait4)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    hwm = 0.0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024 / 1_000_000
    except OSError:
        pass
    return {"vm_hwm_mb": hwm, "cpu_user_s": usage.ru_utime, "cpu_sys_s": usage.ru_stime}


def bridge(config: dict[str, Any]) -> dict[str, Any]:
    """One ``run_once`` of the bridge, built as ``Bridge.from_settings`` would, plus counters."""
    started_process = time.monotonic()
    from azure.storage.blob import BlobServiceClient

    import shared.run as run_module
    from shared import logs
    from shared.model import PUBLISHED, QUARANTINED
    from shared.run import Bridge, run_once
    from shared.settings import Settings
    from shared.sink.lake import Lake
    from shared.sink.blob_writer import azure_transport
    from shared.source.s3 import S3Source, s3_transport
    from shared.source.sessions import make_s3

    logs.configure(logging.INFO, logging.StreamHandler(sys.stderr))
    settings = Settings.from_mapping(config["env"])
    s3_counts, azure_counts = Counts(), Counts()
    access = make_s3(settings)
    client = access.client
    client.meta.events.register("before-send.s3", s3_counts.s3_hook)  # listing (boto3)
    service = BlobServiceClient.from_connection_string(
        settings.adls_connection_string, **_azure_options(settings.max_concurrency, azure_counts.azure_hook))
    # The copy path's requests go through shared.transport: counted by its hook, as build_bridge builds it.
    lake = Lake(service.get_container_client(settings.adls_container), settings.adls_root,
                azure_transport(settings.connection_pool_size, hook=azure_counts.azure_transport_hook))
    source = S3Source(client, settings.s3_bucket, access.credentials,
                      s3_transport(client, hook=s3_counts.s3_transport_hook))
    bridge = Bridge(settings, source, lake, None)

    # Stage timers: wrappers around the module-level steps run_once calls (no code changed).
    stages: Counter[str] = Counter()

    copy_hwm: list[float] = []

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name == "_finish_tables":  # the peak of planning and copying (and the table syncs begun meanwhile)
                copy_hwm.append(_usage()["vm_hwm_mb"])
            begun = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[name] += time.perf_counter() - begun
        return wrapper

    for name in ("plan_run", "_copy_all", "_finish_tables", "_write_manifest"):
        setattr(run_module, name, timed(name, getattr(run_module, name)))

    profiler = ThreadProfiler() if config.get("profile") else None
    ready = time.monotonic() - started_process
    begun = time.perf_counter()
    if profiler:
        with profiler:
            result = run_once(bridge)
    else:
        result = run_once(bridge)
    wall = time.perf_counter() - begun
    if profiler:
        profiler.write(config["profile"], config.get("title", "bridge"))

    published = [o for o in result.outcomes if o.action == PUBLISHED]
    return {
        "wall_s": wall,
        "startup_s": ready,
        "files": len(published),
        "bytes": sum(o.bytes for o in published),
        "quarantined": result.count(QUARANTINED),
        "failed": result.failed,
        "deferred": sum(result.deferred.values()),
        "present": sum(result.plan.present.values()),
        "status": result.status,
        "mode": result.plan.mode,
        "listed_objects": result.plan.listed_objects,
        "listed_prefixes": result.plan.listed_prefixes,
        "table_errors": result.table_errors,
        "tables_changed": sum(1 for t in result.tables if t.changed),
        "verify_s": sum(o.verify_seconds for o in result.outcomes),
        "verify_cpu_s": sum(o.verify_cpu_seconds for o in result.outcomes),
        "file_s": sum(o.seconds for o in result.outcomes),
        "concurrency": settings.max_concurrency,
        "stages_s": dict(stages),
        "copy_hwm_mb": copy_hwm[0] if copy_hwm else None,
        "s3_requests": dict(s3_counts.counts),
        "azure_requests": dict(azure_counts.counts),
        **_usage(),
    }


def ceiling(config: dict[str, Any]) -> dict[str, Any]:
    """A plain loop: list, GET each object, PUT it (overwrite); no verification, ledger or manifest.

    In ``noop`` mode: list the window's month folders on both sides and compare ETag and size,
    which is the least any ledger-based no-op run has to do.
    """
    import boto3
    import botocore.config
    from azure.storage.blob import BlobServiceClient

    concurrency = config["concurrency"]
    raw = config.get("client") == "raw"
    s3_counts, azure_counts = Counts(), Counts()
    s3 = boto3.client(
        "s3", endpoint_url=config["endpoint"], region_name="eu-west-1",
        aws_access_key_id=config["key_id"], aws_secret_access_key=config["secret"],
        config=botocore.config.Config(max_pool_connections=concurrency * 2 + 4, s3={"addressing_style": "path"},
                                      retries={"mode": "standard", "max_attempts": 5}),
    )
    s3.meta.events.register("before-send.s3", s3_counts.s3_hook)
    service = BlobServiceClient.from_connection_string(
        config["connection_string"], **_azure_options(concurrency, azure_counts.azure_hook, 8 * 1024 * 1024))
    container = service.get_container_client(config["container"])
    bucket = config["bucket"]
    paginator = s3.get_paginator("list_objects_v2")

    def list_keys(prefix: str) -> list[dict[str, Any]]:
        return [o for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", ())]

    profiler = ThreadProfiler() if config.get("profile") else None
    if profiler:
        profiler.__enter__()
    begun = time.perf_counter()
    files = size = present = 0
    if config["mode"] == "copy":
        objects = list_keys(config["prefix"])

        def copy(obj: dict[str, Any]) -> int:
            if raw:
                return raw_copy(obj)
            response = s3.get_object(Bucket=bucket, Key=obj["Key"])
            length = response["ContentLength"]
            with response["Body"] as body:
                if length <= 8 * 1024 * 1024:
                    container.upload_blob(obj["Key"], body.read(), overwrite=True, validate_content=True)
                else:  # streamed in 8 MiB blocks, as the bridge does
                    container.upload_blob(obj["Key"], body, length=length, overwrite=True, validate_content=True)
            return length

        if raw:  # the bridge's own GET (signed by botocore's signer) and Blob requests, nothing around them
            from shared.sink.blob_writer import BlobWriter, azure_transport
            from botocore.credentials import Credentials

            from shared.source.s3 import S3Source, SourceObject, s3_transport

            source = S3Source(s3, bucket, Credentials(config["key_id"], config["secret"]),
                              s3_transport(s3, hook=s3_counts.s3_transport_hook))
            writer = BlobWriter(container, azure_transport(concurrency * 2 + 4,
                                                          hook=azure_counts.azure_transport_hook))

        def raw_copy(obj: dict[str, Any]) -> int:
            listed = SourceObject(obj["Key"], obj["Size"], obj["ETag"].strip('"'))
            block = 8 * 1024 * 1024
            if obj["Size"] <= block:
                data = source.get(listed).data
                writer.put_blob(obj["Key"], data, content_type="application/octet-stream", metadata={}, condition={})
                return len(data)
            body = source.get(listed, stream=True)
            ids, length = [], 0
            while chunk := body.read(block):
                ids.append(f"{len(ids):08d}")
                writer.put_block(obj["Key"], ids[-1], chunk)
                length += len(chunk)
            body.close()
            writer.put_block_list(obj["Key"], ids, content_type="application/octet-stream", content_md5=None,
                                  metadata={}, condition={})
            return length

        with ThreadPoolExecutor(concurrency) as pool:
            sizes = list(pool.map(copy, objects))
        files, size = len(sizes), sum(sizes)
    elif config["mode"] == "hour":
        files, size = _least_hour(s3, list_keys, container, bucket, config)
    else:
        def folders(prefix: str) -> list[str]:
            return _folders(s3, bucket, prefix)

        roots = folders(config["prefix"])
        with ThreadPoolExecutor(concurrency) as pool:
            datasets = [d for found in pool.map(folders, roots) for d in found]
            prefixes = [f"{d}{month}/" for d in datasets for month in config["months"]]
            sources = pool.map(list_keys, prefixes)
            blobs = pool.map(lambda p: list(container.list_blobs(name_starts_with=p, include=["metadata"])), prefixes)
            lake = {b.name: b for found in blobs for b in found}
            for obj in (o for found in sources for o in found):
                files += 1
                blob = lake.get(obj["Key"])
                meta = (blob.metadata or {}) if blob is not None else {}
                if meta.get("haltian_source_etag") == obj["ETag"].strip('"') \
                        and meta.get("haltian_source_size") == str(obj["Size"]):
                    present += 1
    wall = time.perf_counter() - begun
    if profiler:
        profiler.__exit__(None, None, None)
        profiler.write(config["profile"], config.get("title", "ceiling"))
    return {
        "wall_s": wall, "files": files, "bytes": size, "present": present, "concurrency": concurrency,
        "s3_requests": dict(s3_counts.counts), "azure_requests": dict(azure_counts.counts), **_usage(),
    }


def _folders(s3: Any, bucket: str, under: str) -> list[str]:
    """The folders directly below ``under`` (a delimited listing)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under, Delimiter="/")
    return [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", ())]


def _dataset_folders(s3: Any, bucket: str, prefix: str) -> list[str]:
    """The dataset folders below ``prefix``: organisation roots of both layouts, then their datasets."""
    roots = [org for root in _folders(s3, bucket, prefix)
             for org in (_folders(s3, bucket, root) if root.endswith("/v1/") else [root])]
    return [d for root in roots for d in _folders(s3, bucket, root)]


def _least_hour(s3: Any, list_keys: Any, container: Any, bucket: str, config: dict[str, Any]) -> tuple[int, int]:
    """The least an hourly run must do: list the window on both sides, copy what is new, one
    conditional PUT per changed dataset (its table commit) and one manifest.

    Copies go below ``loop/`` so that the mirror the bridge compares with is left as it was.
    """
    concurrency = config["concurrency"]
    with ThreadPoolExecutor(concurrency) as pool:
        prefixes = [f"{d}{month}/" for d in _dataset_folders(s3, bucket, config["prefix"]) for month in config["months"]]
        sources = list(pool.map(list_keys, prefixes))
        blobs = list(pool.map(lambda p: list(container.list_blobs(name_starts_with=p, include=["metadata"])), prefixes))
        lake = {b.name: b for found in blobs for b in found}
        new = [o for found in sources for o in found
               if (lake.get(o["Key"]) is None
                   or (lake[o["Key"]].metadata or {}).get("haltian_source_etag") != o["ETag"].strip('"'))]

        def copy(obj: dict[str, Any]) -> int:
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            container.upload_blob(f"loop/{obj['Key']}", body, overwrite=True, validate_content=True)
            return len(body)

        sizes = list(pool.map(copy, new))
        stamp = time.time_ns()
        changed = sorted({o["Key"].rsplit("/", 3)[0] for o in new})
        list(pool.map(lambda d: container.upload_blob(f"loop/_commits/{d}/{stamp}.json", b"{}", overwrite=False),
                      changed))
    container.upload_blob(f"loop/_manifests/{stamp}.json", json.dumps({"files": len(new)}).encode(), overwrite=False)
    return len(new), sum(sizes)


def main() -> None:
    role, config = sys.argv[1], json.loads(sys.argv[2])
    result = {"bridge": bridge, "ceiling": ceiling}[role](config)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
