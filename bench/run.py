"""The bridge's benchmark: ``python -m bench.run [--quick] [--rounds N] [--profile]``.

Three tools copy the same bucket from moto (S3) into Azurite, each into a fresh container,
in alternating rounds (bridge, rclone, ceiling, bridge, rclone, ceiling, ...):

* the bridge: ``run_once`` in a child process (peak RSS, CPU and request counts of its own);
* rclone: ``rclone copy`` with ``--transfers N --checkers N``, N = BRIDGE_MAX_CONCURRENCY;
* the ceiling: a plain GET-then-PUT loop with no verification, ledger or manifest.

Workloads: small files (Haltian's common case), large files, and a no-op hourly run over
a long history. The medians go to stdout and to ``bench/RESULTS.md``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.data import DATA, NOOP_DATASETS, OUT, RESULTS, History, SourceFile, history, large_files, small_files
from bench.measure import (
    CEILING_TRIALS, FULL, LOGS, MB, PROFILE, PROJECT_ROOT, QUICK, TOOLS, Measurement, Processes, cpu_seconds,
    machine_details, rss_mb,
)
from bench.report import _setup, profile_summary, render

log = logging.getLogger("bench")


# --- the benchmark -----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale = QUICK if args.quick else FULL
        self.rounds = args.rounds or self.scale.rounds
        self.concurrency = args.concurrency
        self.procs = Processes()
        self.measurements: list[Measurement] = []
        self.notes: dict[str, list[str]] = {}
        self.facts: dict[str, Any] = {}
        self.azurite = None
        self.moto_pid: int | None = None
        self.run_tag = secrets.token_hex(2)
        self.failures: list[str] = []

    # servers and clients

    def start_servers(self) -> None:
        from shared.demo.servers import azurite, azurite_connection_string, moto_server

        self.moto = self.procs.start_server(moto_server())
        self.moto_pid = self.moto.process.pid
        self.azurite = self.procs.start_server(azurite())
        self.connection_string = azurite_connection_string(self.azurite)
        log.info("moto on %s, Azurite on %s", self.moto.url, self.azurite.url)

    def s3_client(self, endpoint: str) -> Any:
        import boto3
        import botocore.config

        from shared.demo.servers import FAKE_AWS_KEY_ID, FAKE_AWS_SECRET

        return boto3.client("s3", endpoint_url=endpoint, region_name="eu-west-1",
                            aws_access_key_id=FAKE_AWS_KEY_ID, aws_secret_access_key=FAKE_AWS_SECRET,
                            config=botocore.config.Config(max_pool_connections=32, s3={"addressing_style": "path"}))

    def blob_service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def new_container(self, name: str) -> str:
        container = f"{name}-{self.run_tag}"[:63].lower()
        self.blob_service().create_container(container)
        return container

    def drop_container(self, container: str) -> None:
        with contextlib.suppress(Exception):
            self.blob_service().delete_container(container)

    def count_copied(self, container: str) -> tuple[int, int]:
        """Files and bytes below parquet/ in a container (Delta logs left out)."""
        files = size = 0
        for blob in self.blob_service().get_container_client(container).list_blobs(name_starts_with="parquet/"):
            if "/_delta_log/" not in blob.name:
                files += 1
                size += blob.size
        return files, size

    def server_cpu(self) -> dict[str, float]:
        import resource

        cpu = {"azurite": cpu_seconds(self.azurite.process.pid)}
        if self.moto_pid is not None:
            cpu["moto"] = cpu_seconds(self.moto_pid)
        else:  # moto in this process (the no-op workload)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu["moto"] = usage.ru_utime + usage.ru_stime
        return cpu

    # the three tools

    def bridge_env(self, bucket: str, endpoint: str, container: str) -> dict[str, str]:
        from shared.demo.servers import FAKE_AWS_KEY_ID, FAKE_AWS_SECRET

        return {
            "HALTIAN_S3_BUCKET": bucket,
            "HALTIAN_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": FAKE_AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_AWS_SECRET,
            "ADLS_CONNECTION_STRING": self.connection_string,
            "ADLS_CONTAINER": container,
            "ADLS_ROOT": "",
            "BRIDGE_MAX_CONCURRENCY": str(self.concurrency),
        }

    def child_env(self) -> dict[str, str]:
        from shared.demo.servers import FAKE_AWS_KEY_ID, FAKE_AWS_SECRET

        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(AWS_ACCESS_KEY_ID=FAKE_AWS_KEY_ID, AWS_SECRET_ACCESS_KEY=FAKE_AWS_SECRET,
                   PYTHONPATH=str(PROJECT_ROOT))
        env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
        return env

    def run_bridge(self, workload: str, rnd: int, bucket: str, endpoint: str, container: str,
                   profile_title: str | None = None, concurrency: int | None = None) -> Measurement:
        config = {"env": self.bridge_env(bucket, endpoint, container)}
        if concurrency:
            config["env"]["BRIDGE_MAX_CONCURRENCY"] = str(concurrency)
        if profile_title:
            config.update(profile=str(PROFILE), title=profile_title)
        before = self.server_cpu()
        rc, out, usage, _ = self.procs.run(
            [sys.executable, "-m", "bench.workers", "bridge", json.dumps(config)],
            name=f"{workload}-bridge-r{rnd}{'-profile' if profile_title else ''}{f'-c{concurrency}' if concurrency else ''}",
            capture=True,
            env=self.child_env())
        after = self.server_cpu()
        if rc != 0 or not out.strip():
            raise RuntimeError(f"the bridge child failed (exit {rc}); see {LOGS}/{workload}-bridge-r{rnd}.log")
        if profile_title:
            self.keep_profile_summary(profile_title)
        data = json.loads(out.strip().splitlines()[-1])
        if data["failed"] or data["table_errors"] or data["status"] != "complete":
            self.note(workload, f"round {rnd}: bridge run {data['status']}: {data['failed']} failed, "
                                f"{data['table_errors']} table errors, {data['deferred']} deferred")
        cpu = {k: after[k] - before[k] for k in after}
        cpu["tool"] = usage.cpu_s
        extra = {k: data[k] for k in ("verify_s", "verify_cpu_s", "file_s", "stages_s", "startup_s", "mode", "listed_objects",
                                      "listed_prefixes", "present", "quarantined", "tables_changed", "status",
                                      "vm_hwm_mb", "copy_hwm_mb")}
        return Measurement(workload, "bridge", rnd, data["wall_s"], data["files"], data["bytes"],
                           usage.rss_mb, data["concurrency"], data["s3_requests"],
                           data["azure_requests"], cpu, extra, container)

    def rclone_conf(self, s3_endpoint: str) -> Path:
        from shared.demo.servers import FAKE_AWS_KEY_ID, FAKE_AWS_SECRET

        path = OUT / f"rclone-{self.run_tag}.conf"
        path.write_text(
            "[s3src]\ntype = s3\nprovider = Other\n"
            f"access_key_id = {FAKE_AWS_KEY_ID}\nsecret_access_key = {FAKE_AWS_SECRET}\n"
            f"endpoint = {s3_endpoint}\nforce_path_style = true\nregion = eu-west-1\n\n"
            "[azdst]\ntype = azureblob\nuse_emulator = true\n"
            f"endpoint = {self.azurite.url}/devstoreaccount1\n"
        )
        return path

    def run_rclone(self, workload: str, rnd: int, bucket: str, endpoint: str, container: str,
                   expect: tuple[int, int], noop: bool = False, census: bool = False) -> Measurement:
        """One ``rclone copy``; with ``census``, an extra untimed run that dumps and counts its requests."""
        conf = self.rclone_conf(endpoint)
        n = str(self.concurrency)
        name = f"{workload}-rclone-{'census' if census else f'r{rnd}'}"
        cmd = ["env", "-u", "AWS_CA_BUNDLE", "rclone", "--config", str(conf), "copy",
               f"s3src:{bucket}/parquet", f"azdst:{container}/parquet", "--transfers", n, "--checkers", n]
        if noop:
            cmd.append("--size-only")  # seeded blobs carry no rclone mtime; size is what both can compare
        if census:
            (LOGS / f"{name}-dump.log").unlink(missing_ok=True)  # rclone appends to a log file
            cmd += ["--dump", "headers", "--log-file", str(LOGS / f"{name}-dump.log")]
        before = self.server_cpu()
        rc, _, usage, wall = self.procs.run(cmd, name=name, capture=False,
                                            env={k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"})
        after = self.server_cpu()
        if rc != 0:
            raise RuntimeError(f"rclone failed (exit {rc}); see {LOGS}/{name}.log")
        cpu = {k: after[k] - before[k] for k in after}
        cpu["tool"] = usage.cpu_s
        files, size = expect
        s3_requests: dict[str, int] = {}
        azure_requests: dict[str, int] = {}
        if census:
            s3_port = int(endpoint.rsplit(":", 1)[1])
            s3_requests, azure_requests = _rclone_requests(LOGS / f"{name}-dump.log", s3_port)
        return Measurement(workload, "rclone", rnd, wall, files, size, usage.rss_mb,
                           self.concurrency, s3_requests, azure_requests, cpu, {}, container)

    def rclone_census(self, workload: str, bucket: str, endpoint: str, container: str | None,
                      expect: tuple[int, int], noop: bool = False) -> None:
        """Counts rclone's requests in one extra, untimed run (--dump headers slows it down)."""
        if container is None:
            self.fresh_azurite()
            container = self.new_container(f"{workload}-rclone-census")
        try:
            m = self.run_rclone(workload, 0, bucket, endpoint, container, expect, noop=noop, census=True)
        except (RuntimeError, OSError, ValueError) as err:
            self.note(workload, f"rclone's requests could not be counted: {err}")
            return
        finally:
            if not noop:
                self.drop_container(container)
        for x in self.measurements:
            if x.workload == workload and x.tool == "rclone":
                x.s3_requests, x.azure_requests = dict(m.s3_requests), dict(m.azure_requests)
        self.facts.setdefault("rclone_census", {})[workload] = {"s3": m.s3_requests, "azure": m.azure_requests}
        if noop and any(k.startswith("PUT") for k in m.azure_requests):
            self.note(workload, f"rclone wrote to the lake in a no-op run: {m.azure_requests}")

    def run_ceiling(self, workload: str, rnd: int, bucket: str, endpoint: str, container: str,
                    setup: tuple[int, str], noop_months: list[str] | None = None,
                    profile_title: str | None = None) -> Measurement:
        from shared.demo.servers import FAKE_AWS_KEY_ID, FAKE_AWS_SECRET

        concurrency, client = setup
        config = {"endpoint": endpoint, "bucket": bucket, "key_id": FAKE_AWS_KEY_ID, "secret": FAKE_AWS_SECRET,
                  "connection_string": self.connection_string, "container": container,
                  "concurrency": concurrency, "client": client, "prefix": "parquet/",
                  "mode": "noop" if noop_months else "copy", "months": noop_months or []}
        if profile_title:
            config.update(profile=str(PROFILE), title=profile_title)
        before = self.server_cpu()
        rc, out, usage, _ = self.procs.run(
            [sys.executable, "-m", "bench.workers", "ceiling", json.dumps(config)],
            name=f"{workload}-ceiling-r{rnd}-c{concurrency}-{client}"
                 f"{'-profile' if profile_title else ''}", capture=True,
            env=self.child_env())
        after = self.server_cpu()
        if rc != 0 or not out.strip():
            raise RuntimeError(f"the ceiling child failed (exit {rc}); see {LOGS}")
        if profile_title:
            self.keep_profile_summary(profile_title)
        data = json.loads(out.strip().splitlines()[-1])
        cpu = {k: after[k] - before[k] for k in after}
        cpu["tool"] = usage.cpu_s
        return Measurement(workload, "ceiling", rnd, data["wall_s"], data["files"], data["bytes"],
                           usage.rss_mb, concurrency, data["s3_requests"], data["azure_requests"],
                           cpu, {"present": data["present"], "client": client}, container)

    def keep_profile_summary(self, title: str) -> None:
        """Keeps the CPU summary of a profiled child's run (from its .pstats), for the report."""
        summary = profile_summary(title)
        if summary:
            self.facts.setdefault("profiles", {})[title.strip("= ")] = summary

    def note(self, workload: str, text: str) -> None:
        log.warning("%s: %s", workload, text)
        self.notes.setdefault(workload, []).append(text)

    # copy workloads

    def seed_bucket(self, bucket: str, files: list[SourceFile]) -> float:
        from boto3.s3.transfer import TransferConfig

        s3 = self.s3_client(self.moto.url)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        config = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024,
                                max_concurrency=4)
        begun = time.perf_counter()

        def put(item: SourceFile) -> None:
            if item.size > config.multipart_threshold:
                s3.upload_file(str(item.path), bucket, item.key, Config=config)
            else:
                s3.put_object(Bucket=bucket, Key=item.key, Body=item.path.read_bytes())

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, files))
        return time.perf_counter() - begun

    def copy_workload(self, workload: str, files: list[SourceFile]) -> None:
        bucket = f"bench-{workload}-{self.run_tag}"
        seconds = self.seed_bucket(bucket, files)
        expect = (len(files), sum(f.size for f in files))
        self.facts[workload] = {"files": expect[0], "bytes": expect[1], "seed_s": seconds,
                                "min_size": min(f.size for f in files), "max_size": max(f.size for f in files),
                                "datasets": len({f.key.split("/")[2] for f in files}),
                                "months": len({tuple(f.key.split("/")[3:5]) for f in files})}
        log.info("%s: %d files, %.1f MB seeded into moto in %.1f s", workload, expect[0], expect[1] / MB, seconds)
        endpoint = self.moto.url
        best_ceiling: tuple[int, str] | None = None
        for rnd in range(1, self.rounds + 1):
            for tool in TOOLS:
                if tool == "ceiling" and best_ceiling is None:
                    trials = [self._one_copy(workload, tool, rnd, bucket, endpoint, expect, setup)
                              for setup in CEILING_TRIALS]
                    best = max(trials, key=lambda m: m.files_per_s)
                    best_ceiling = (best.concurrency, best.extra["client"])
                    self.facts[workload]["ceiling_trials"] = {_setup(m): round(m.wall_s, 2) for m in trials}
                    self.measurements.append(best)
                    continue
                m = self._one_copy(workload, tool, rnd, bucket, endpoint, expect,
                                   best_ceiling or (self.concurrency, "sdk"))
                self.measurements.append(m)
        self.rclone_census(workload, bucket, endpoint, None, expect)
        if best_ceiling and best_ceiling[0] != self.concurrency:
            # What-if, not in the table: the bridge at the ceiling's best thread count.
            self.fresh_azurite()
            container = self.new_container(f"{workload}-bridge-c{best_ceiling[0]}")
            try:
                m = self.run_bridge(workload, 0, bucket, endpoint, container, concurrency=best_ceiling[0])
                self.facts[workload]["bridge_what_if"] = {"concurrency": best_ceiling[0], "wall_s": m.wall_s,
                                                          "files_per_s": m.files_per_s, "mb_per_s": m.mb_per_s,
                                                          "rss_mb": m.rss_mb}
            finally:
                self.drop_container(container)
        if self.args.profile:
            self.fresh_azurite()
            container = self.new_container(f"{workload}-profile")
            try:
                self.run_bridge(workload, 0, bucket, endpoint, container,
                                profile_title=f"== {workload}: bridge run under cProfile ==")
            finally:
                self.drop_container(container)
            if best_ceiling:
                self.fresh_azurite()
                container = self.new_container(f"{workload}-ceiling-profile")
                try:
                    self.run_ceiling(workload, 0, bucket, endpoint, container, best_ceiling,
                                     profile_title=f"== {workload}-ceiling: ceiling run under cProfile, for comparison ==")
                finally:
                    self.drop_container(container)
        self.delete_bucket(bucket)

    def fresh_azurite(self) -> None:
        """Restarts Azurite (same port, empty) and warms it up, so every run meets the same server.

        An in-memory Azurite does not give back the memory of deleted containers at once, and
        it slows down as it grows: without a restart, later runs in a round would be handicapped.
        """
        self.azurite.kill()  # in memory: nothing to save, and SIGTERM makes it linger for seconds
        self.azurite.start()
        service = self.blob_service()
        warm = service.create_container(f"warmup-{secrets.token_hex(3)}")
        for i in range(50):
            warm.upload_blob(f"w/{i}", b"x" * 4096, overwrite=True)
        list(warm.list_blobs())
        service.delete_container(warm.container_name)

    def _one_copy(self, workload: str, tool: str, rnd: int, bucket: str, endpoint: str,
                  expect: tuple[int, int], setup: tuple[int, str]) -> Measurement:
        self.fresh_azurite()
        container = self.new_container(f"{workload}-{tool}-r{rnd}")
        try:
            if tool == "bridge":
                m = self.run_bridge(workload, rnd, bucket, endpoint, container)
            elif tool == "rclone":
                m = self.run_rclone(workload, rnd, bucket, endpoint, container, expect)
            else:
                m = self.run_ceiling(workload, rnd, bucket, endpoint, container, setup)
            m.extra["azurite_rss_mb"] = rss_mb(self.azurite.process.pid)
            m.extra["moto_rss_mb"] = rss_mb(self.moto.process.pid)
            copied = self.count_copied(container)
            if copied != expect:
                self.note(workload, f"round {rnd}: {tool} left {copied[0]} files / {copied[1]:,} bytes in the lake, "
                                    f"expected {expect[0]} / {expect[1]:,}")
            log.info("%s r%d %-7s %-9s %6.2f s  %7.1f files/s  %7.1f MB/s  rss %s", workload, rnd, tool,
                     _setup(m), m.wall_s, m.files_per_s, m.mb_per_s,
                     f"{m.rss_mb:.0f} MB" if m.rss_mb else "-")
            return m
        finally:
            self.drop_container(container)

    def delete_bucket(self, bucket: str) -> None:
        s3 = self.s3_client(self.moto.url)
        with contextlib.suppress(Exception):
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            s3.delete_bucket(Bucket=bucket)

    # the no-op workload

    def noop_workload(self) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends
        from moto.server import ThreadedMotoServer

        from shared.plan import window_months
        from shared.paths import RECONCILE_STATE

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            self.moto_pid = None  # moto now runs inside this process
            backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
            now = datetime.now(timezone.utc)
            months = [f"{y:04d}/{m:02d}" for y, m in window_months(now, 1)]
            sides: dict[int, tuple[str, str, History]] = {}
            facts: dict[str, Any] = {"window_months": months, "datasets": len(NOOP_DATASETS), "histories": {}}
            self.facts["noop"] = facts
            for count in self.scale.histories:
                h = history(count, now)
                bucket, container = f"bench-noop-{count}-{self.run_tag}", self.new_container(f"noop-{count}")
                begun = time.perf_counter()
                backend.create_bucket(bucket, "eu-west-1")
                for key, dataset in h.keys:
                    backend.put_object(bucket, key, h.bodies[dataset])
                s3_seed = time.perf_counter() - begun
                lake_seed, rate = self.seed_lake(container, h)
                self.write_reconcile(container, RECONCILE_STATE, now)
                in_window = sum(1 for key, _ in h.keys if "/".join(key.split("/")[3:5]) in months)
                facts["histories"][count] = {
                    "s3_seed_s": s3_seed, "lake_seed_s": lake_seed, "lake_seed_per_s": rate,
                    "months": len(h.months), "first_month": h.months[0], "last_month": h.months[-1],
                    "in_window": in_window,
                }
                log.info("noop %d: seeded moto in %.1f s and the lake in %.1f s (%.0f blobs/s); %d keys in the window",
                         count, s3_seed, lake_seed, rate, in_window)
                sides[count] = (bucket, container, h)
                # The first hourly run after seeding registers the window's files in Delta tables;
                # measured separately, the later runs are the true no-ops.
                warm = self.run_bridge(f"noop{count}", 0, bucket, endpoint, container)
                facts["histories"][count]["warmup"] = {"wall_s": warm.wall_s, "files": warm.files,
                                                        "tables_changed": warm.extra["tables_changed"],
                                                        "mode": warm.extra["mode"]}
                facts["histories"][count]["list_probe_s"] = self.list_probe(endpoint, bucket, container, h, months[-1])
            best_ceiling: tuple[int, str] | None = None
            for rnd in range(1, self.rounds + 1):
                for count, (bucket, container, h) in sides.items():
                    workload = f"noop{count}"
                    expect = (facts["histories"][count]["in_window"], 0)
                    for tool in TOOLS:
                        if tool == "bridge":
                            m = self.run_bridge(workload, rnd, bucket, endpoint, container)
                            m.files = m.extra["present"]
                            if m.extra["mode"] != "window" or m.files != expect[0]:
                                self.note(workload, f"round {rnd}: bridge ran in {m.extra['mode']} mode and found "
                                                    f"{m.files} files present (expected {expect[0]} in the window)")
                        elif tool == "rclone":
                            m = self.run_rclone(workload, rnd, bucket, endpoint, container, (count, 0), noop=True)
                        elif best_ceiling is None:
                            trials = [self.run_ceiling(workload, rnd, bucket, endpoint, container, (c, "sdk"),
                                                       noop_months=months) for c in (8, 16, 32)]
                            m = min(trials, key=lambda t: t.wall_s)
                            best_ceiling = (m.concurrency, "sdk")
                            facts["ceiling_trials"] = {_setup(t): round(t.wall_s, 2) for t in trials}
                        else:
                            m = self.run_ceiling(workload, rnd, bucket, endpoint, container, best_ceiling,
                                                 noop_months=months)
                        self.measurements.append(m)
                        log.info("%s r%d %-7s %6.2f s  files %d  S3 %s", workload, rnd, tool, m.wall_s, m.files,
                                 m.s3_requests)
            for count, (bucket, container, _) in sides.items():
                self.rclone_census(f"noop{count}", bucket, endpoint, container, (count, 0), noop=True)
            if self.args.profile:
                for count, (bucket, container, _) in sides.items():
                    self.run_bridge(f"noop{count}", 0, bucket, endpoint, container,
                                    profile_title=f"== noop {count}: bridge no-op run under cProfile ==")
            for _, container, _ in sides.values():
                self.drop_container(container)
        finally:
            server.stop()
            self.moto_pid = self.moto.process.pid

    def seed_lake(self, container: str, h: History) -> tuple[float, float]:
        """Writes every history key into the lake as the bridge would have left it (Put Blob + metadata).

        Raw HTTP with a container SAS (no SDK overhead per request): Azurite is the limit.
        """
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        from shared.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY
        from shared.sink.records import META_RUN_ID, META_SOURCE_ETAG, META_SOURCE_KEY, META_SOURCE_SIZE

        sas = generate_container_sas(AZURITE_ACCOUNT, container, account_key=AZURITE_KEY,
                                     permission=ContainerSasPermissions(write=True, create=True),
                                     expiry=datetime.now(timezone.utc) + timedelta(hours=6))
        local = threading.local()
        etags = {d: h.etag(d) for d in h.bodies}

        def put(item: tuple[str, str]) -> None:
            key, dataset = item
            body = h.bodies[dataset]
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = http.client.HTTPConnection("127.0.0.1", self.azurite.port, timeout=60)
            headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06",
                       "Content-Type": "application/vnd.apache.parquet", "Content-Length": str(len(body)),
                       f"x-ms-meta-{META_SOURCE_ETAG}": etags[dataset],
                       f"x-ms-meta-{META_SOURCE_SIZE}": str(len(body)),
                       f"x-ms-meta-{META_SOURCE_KEY}": key, f"x-ms-meta-{META_RUN_ID}": "bench-seed"}
            connection.request("PUT", f"/{AZURITE_ACCOUNT}/{container}/{key}?{sas}", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"seeding {key}: HTTP {response.status}")

        begun = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, h.keys))
        seconds = time.perf_counter() - begun
        return seconds, len(h.keys) / seconds

    def write_reconcile(self, container: str, path: str, now: datetime) -> None:
        blob = self.blob_service().get_blob_client(container, path)
        blob.upload_blob(json.dumps({"completed_at": now.isoformat(), "run_id": "bench"}).encode(), overwrite=True)

    def list_probe(self, endpoint: str, bucket: str, container: str, h: History, month: str) -> dict[str, float]:
        """Median time of listing one window month folder of one dataset, on each side, alone.

        The emulators' own cost per list call: it should not depend on how much history the
        bucket or the container hold (it does not in S3 or Azure).
        """
        s3 = self.s3_client(endpoint)
        blobs = self.blob_service().get_container_client(container)
        prefix = "/".join(h.keys[0][0].split("/")[:3]) + f"/{month}/"
        s3_times, blob_times = [], []
        for _ in range(5):
            begun = time.perf_counter()
            s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
            s3_times.append(time.perf_counter() - begun)
            begun = time.perf_counter()
            list(blobs.list_blobs(name_starts_with=prefix, include=["metadata"]))
            blob_times.append(time.perf_counter() - begun)
        return {"s3": statistics.median(s3_times), "lake": statistics.median(blob_times)}

    def save(self, path: Path) -> None:
        data = {"args": vars(self.args), "rounds": self.rounds, "concurrency": self.concurrency,
                "facts": self.facts, "notes": self.notes, "failures": self.failures,
                "measurements": [dataclasses.asdict(m) for m in self.measurements]}
        path.write_text(json.dumps(data, indent=1, default=str))

    def load(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.args = argparse.Namespace(**{**vars(self.args), **data["args"], "render": ""})
        self.rounds, self.concurrency = data["rounds"], data["concurrency"]
        self.facts, self.notes, self.failures = data["facts"], data["notes"], data.get("failures", [])
        if "noop" in self.facts:  # JSON turned the history sizes into strings
            self.facts["noop"]["histories"] = {int(k): v for k, v in self.facts["noop"]["histories"].items()}
        self.measurements = [Measurement(**m) for m in data["measurements"]]

    # the whole thing

    def run(self) -> None:
        only = set(self.args.only.split(",")) if self.args.only else {"small", "large", "noop"}
        self.facts["machine"] = machine_details()
        self.facts["started"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.facts["load_before"] = os.getloadavg()
        if self.args.profile:
            PROFILE.parent.mkdir(parents=True, exist_ok=True)
            PROFILE.write_text(f"bench profile, {self.facts['started']}\n\n")
        begun = time.perf_counter()
        self.start_servers()
        workloads: list[tuple[str, Callable[[], None]]] = [
            ("small", lambda: self.copy_workload("small", small_files(self.scale.small_files))),
            ("large", lambda: self.copy_workload("large", large_files(self.scale.large_files,
                                                                      self.scale.large_bytes))),
            ("noop", self.noop_workload),
        ]
        for name, workload in workloads:
            if name not in only:
                continue
            try:
                workload()
            except (RuntimeError, OSError, ValueError, KeyError) as err:  # report the others anyway
                log.exception("workload %s failed", name)
                self.failures.append(f"{name}: {type(err).__name__}: {err}")
            self.facts["load_after"] = os.getloadavg()
            self.facts["total_s"] = time.perf_counter() - begun
            self.save(OUT / "last-run.json")
        self.facts["load_after"] = os.getloadavg()
        self.facts["total_s"] = time.perf_counter() - begun
        self.save(OUT / "last-run.json")
        report = render(self)
        sys.stdout.write(report)
        if not self.args.no_write:
            RESULTS.write_text(report)
            log.info("wrote %s", RESULTS)


_DUMPED_REQUEST = re.compile(r" : (GET|PUT|HEAD|POST|DELETE|PATCH) (\S+) HTTP/1\.[01]$")


def _rclone_requests(path: Path, s3_port: int) -> tuple[dict[str, int], dict[str, int]]:
    """Requests in an ``rclone --dump headers`` log: S3 ones by operation, Azure ones by method and comp.

    Each dumped request is one log entry: the request line, then its headers (Host first), on
    the lines after it; other goroutines' log lines never fall inside an entry.
    """
    from urllib.parse import parse_qs, urlsplit

    s3: Counter[str] = Counter()
    azure: Counter[str] = Counter()
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines[:-1]):
        match = _DUMPED_REQUEST.search(line)
        host = lines[i + 1]
        if match is None or not host.startswith("Host:"):
            continue
        method, target = match[1], urlsplit(match[2])
        try:
            port = int(host.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
        if port == s3_port:
            object_level = target.path.strip("/").count("/") >= 1
            kind = {("GET", False): "ListObjects", ("GET", True): "GetObject", ("HEAD", True): "HeadObject",
                    ("HEAD", False): "HeadBucket", ("PUT", True): "PutObject"}.get((method, object_level), method)
            s3[kind] += 1
        else:
            query = parse_qs(target.query)
            comp = query.get("comp", [""])[0]
            restype = query.get("restype", [""])[0]
            azure[f"{method} {comp or restype or 'blob'}"] += 1
    return dict(s3), dict(azure)


# --- entry -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small scale, about a minute (for development)")
    parser.add_argument("--rounds", type=int, default=0, help="alternating rounds per workload (default 3; quick 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="BRIDGE_MAX_CONCURRENCY and rclone's N")
    parser.add_argument("--profile", action="store_true",
                        help=f"one extra cProfiled bridge run per workload, written to {PROFILE}")
    parser.add_argument("--only", default="", help="comma-separated subset of: small,large,noop")
    parser.add_argument("--no-write", action="store_true", help="print the table but leave RESULTS.md alone")
    parser.add_argument("--render", default="", metavar="JSON",
                        help="only print the report of an earlier run's bench/out/last-run.json")
    args = parser.parse_args(argv)
    if args.rounds and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("azure", "botocore", "boto3", "urllib3", "s3transfer", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.render:
        bench = Bench(args)
        bench.load(Path(args.render))
        sys.stdout.write(render(bench))
        return 0
    if shutil.which("rclone") is None:
        parser.error("rclone is not installed (apt-get install -y rclone)")
    OUT.mkdir(parents=True, exist_ok=True)
    DATA.mkdir(parents=True, exist_ok=True)

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    bench = Bench(args)
    try:
        bench.run()
        if bench.failures:
            log.error("failed workloads: %s", "; ".join(bench.failures))
            return 1
    except KeyboardInterrupt:
        log.error("interrupted: stopping servers and children")
        return 130
    finally:
        bench.procs.stop_all()
        for conf in OUT.glob(f"rclone-{bench.run_tag}.conf"):
            conf.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
