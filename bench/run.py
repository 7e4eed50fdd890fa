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
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.data import BENCH_DIR, DATA, NOOP_DATASETS, OUT, RESULTS, History, SourceFile, history, large_files, small_files

PROJECT_ROOT = BENCH_DIR.parent
LOGS = OUT / "logs"
PROFILE = OUT / "profile.txt"
TOOLS = ("bridge", "rclone", "ceiling")
#: The ceiling's configurations tried in round 1: thread pool width x Content-MD5 on each PUT.
#: (Azurite ingests blocks several times faster when a request carries Content-MD5, so a
#: ceiling without it would be no ceiling; the fastest configuration is kept.)
#: The ceiling's trials: (threads, client). "sdk" is boto3 + azure-storage-blob; "raw" is the bridge's own
#: GET and Blob requests (shared.transport), without anything else.
CEILING_TRIALS = tuple((c, client) for client in ("sdk", "raw") for c in (8, 16, 32))
MB = 1_000_000
CHILD_TIMEOUT_S = 3600

log = logging.getLogger("bench")


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    small_files: int
    large_files: int
    large_bytes: int
    histories: tuple[int, int]
    rounds: int


FULL = Scale(small_files=2000, large_files=4, large_bytes=256 * 1024 * 1024, histories=(10_000, 100_000), rounds=3)
QUICK = Scale(small_files=200, large_files=2, large_bytes=16 * 1024 * 1024, histories=(1_000, 5_000), rounds=1)


@dataclass
class Measurement:
    """One run of one tool."""

    workload: str
    tool: str
    round: int
    wall_s: float
    files: int
    bytes: int
    rss_mb: float | None
    concurrency: int
    s3_requests: dict[str, int] = field(default_factory=dict)
    azure_requests: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    container: str = ""

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s if self.wall_s else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.wall_s if self.wall_s else 0.0


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    maxrss_kib: int
    cpu_user_s: float
    cpu_sys_s: float

    @property
    def rss_mb(self) -> float | None:
        return self.maxrss_kib * 1024 / MB if self.maxrss_kib else None

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


class Processes:
    """Children and servers this benchmark started; all are stopped on the way out."""

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen] = {}
        self.servers: list[Any] = []
        self._lock = threading.Lock()

    def run(self, cmd: list[str], *, name: str, capture: bool, env: dict[str, str] | None = None,
            timeout: float = CHILD_TIMEOUT_S) -> tuple[int, str, Usage, float]:
        """Runs a child to its end: (exit code, stdout, its own peak RSS and CPU, wall seconds).

        The child is started through bench/_spawn.py, which reads its rusage with wait4.
        """
        LOGS.mkdir(parents=True, exist_ok=True)
        usage_path = OUT / f"usage-{os.getpid()}-{name}.json"
        usage_path.unlink(missing_ok=True)
        wrapped = [sys.executable, "-S", str(BENCH_DIR / "_spawn.py"), str(usage_path), "--", *cmd]
        with open(LOGS / f"{name}.log", "w") as logfile:
            begun = time.perf_counter()
            process = subprocess.Popen(wrapped, stdout=subprocess.PIPE if capture else logfile, stderr=logfile,
                                       cwd=PROJECT_ROOT, env=env, start_new_session=True)
            with self._lock:
                self.children[process.pid] = process
            timer = threading.Timer(timeout, self._kill, (process,))
            timer.start()
            try:
                out = process.stdout.read().decode() if capture else ""
                process.wait()
            finally:
                timer.cancel()
                if process.stdout:
                    process.stdout.close()
                with self._lock:
                    self.children.pop(process.pid, None)
            wall = time.perf_counter() - begun
        try:
            usage = Usage(**json.loads(usage_path.read_text()))
            usage_path.unlink()
        except (OSError, ValueError):
            usage = Usage(0, 0.0, 0.0)
        return process.returncode, out, usage, wall

    @staticmethod
    def _kill(process: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def start_server(self, server: Any) -> Any:
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        with self._lock:
            children = list(self.children.values())
        for process in children:
            self._kill(process)
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.kill()  # both hold only this run's in-memory data
        self.servers.clear()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return 0.0


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


def _setup(m: Measurement) -> str:
    if m.tool != "ceiling":
        return f"c{m.concurrency}"
    return f"c{m.concurrency} {m.extra.get('client', 'sdk')}"


_DUMPED_REQUEST = re.compile(r" : (GET|PUT|HEAD|POST|DELETE|PATCH) (\S+) HTTP/1\.[01]$")


def profile_summary(title: str) -> str | None:
    import pstats

    from bench.workers import focus_summary, pstats_path

    path = Path(pstats_path(str(PROFILE), title))
    try:
        return focus_summary(pstats.Stats(str(path)))
    except (OSError, ValueError, TypeError, EOFError):
        return None


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


def machine_details() -> dict[str, str]:
    import azure.storage.blob
    import boto3
    import deltalake
    import moto
    import pyarrow

    from shared.demo.servers import AZURITE_BIN

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"

    def version(cmd: list[str]) -> str:
        try:
            env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env).stdout
            return out.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "not found"

    azurite_bin = str(AZURITE_BIN) if AZURITE_BIN.exists() else (shutil.which("azurite-blob") or "azurite-blob")
    commit = version(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = version(["git", "--no-optional-locks", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--", "shared"])
    return {
        "bridge code": f"git {commit}, shared/ " + ("with uncommitted changes" if dirty != "not found" else "clean"),
        "CPU": cpu,
        "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable)",
        "memory": memory,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "rclone": version(["rclone", "version"]),
        "Azurite": version([azurite_bin, "--version"]) + " (in memory, --skipApiVersionCheck --loose)",
        "Node.js": version(["node", "--version"]),
        "libraries": f"moto {moto.__version__}, boto3 {boto3.__version__}, "
                     f"azure-storage-blob {azure.storage.blob.__version__}, pyarrow {pyarrow.__version__}, "
                     f"deltalake {deltalake.__version__}",
    }


# --- the report --------------------------------------------------------------------------


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else 0.0


@dataclass
class Row:
    tool: str
    wall_s: float
    files_per_s: float
    mb_per_s: float
    rss_mb: float
    s3_per_file: float | None
    azure_per_file: float | None
    s3_per_run: float | None
    azure_per_run: float | None
    verify_share: float | None
    verify_s: float | None
    concurrency: int
    cpu: dict[str, float]
    rounds: list[Measurement]


def summarize(measurements: list[Measurement]) -> Row:
    ms = measurements
    files = ms[0].files or 1

    def per_file(attr: str) -> float | None:
        counts = [sum(getattr(m, attr).values()) for m in ms]
        return median(counts) / files if any(counts) else None

    def per_run(attr: str) -> float | None:
        counts = [sum(getattr(m, attr).values()) for m in ms]
        return median(counts) if any(counts) else None

    verify = None
    share = None
    if ms[0].tool == "bridge":
        # The CPU the verifying threads spent verifying, over the run's wall time: how much shorter
        # the run could at most be without verification. (Their wall time would also count the
        # time they wait for the GIL while other threads move bytes; the details show it too.)
        verify = median([m.extra["verify_cpu_s"] for m in ms])
        share = median([m.extra["verify_cpu_s"] / m.wall_s for m in ms])
    cpu_keys = {k for m in ms for k in m.cpu}
    return Row(ms[0].tool, median([m.wall_s for m in ms]), median([m.files_per_s for m in ms]),
               median([m.mb_per_s for m in ms]), median([m.rss_mb for m in ms]), per_file("s3_requests"),
               per_file("azure_requests"), per_run("s3_requests"), per_run("azure_requests"), share, verify,
               ms[0].concurrency,
               {k: median([m.cpu.get(k, 0.0) for m in ms]) for k in cpu_keys}, ms)


def _f(value: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{fmt}}{suffix}"


def _check(measured: float, goal: float, higher_is_better: bool) -> str:
    """PASS or MISS, and by how much relative to the goal."""
    by = (measured / goal - 1) * 100 if goal else 0.0
    if higher_is_better:
        return f"**PASS** ({by:+.0f} % vs goal)" if measured >= goal else f"**MISS** ({-by:.0f} % short)"
    if measured == goal:
        return "**PASS** (at the limit)"
    return f"**PASS** ({-by:.0f} % under)" if measured <= goal else f"**MISS** ({by:.0f} % over)"


def render(bench: Bench) -> str:
    from bench.workers import pstats_path

    m = bench.facts["machine"]
    by: dict[str, dict[str, list[Measurement]]] = {}
    for x in bench.measurements:
        by.setdefault(x.workload, {}).setdefault(x.tool, []).append(x)
    rows = {w: {t: summarize(ms) for t, ms in tools.items()} for w, tools in by.items()}
    scale = "QUICK (development scale, not the reference numbers)" if bench.args.quick else "full"
    out = [
        "# Bridge benchmark results",
        "",
        f"Generated by `python -m bench.run{' --quick' if bench.args.quick else ''}` on {bench.facts['started']} "
        f"({scale}); {bench.rounds} alternating round(s) per workload, medians shown; "
        f"BRIDGE_MAX_CONCURRENCY = {bench.concurrency}; total {bench.facts['total_s'] / 60:.1f} min. "
        "How to read this: [bench/README.md](README.md).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in m.items()],
        f"| load average before / after | {' '.join(f'{x:.2f}' for x in bench.facts['load_before'])} / "
        f"{' '.join(f'{x:.2f}' for x in bench.facts['load_after'])} |",
        "",
        "moto, Azurite, the tool being measured and this driver all share these cores; the S3 and Azure "
        "sides are emulators on loopback, so absolute figures say little about a cloud deployment — the "
        "ratios against the peers measured in the same rounds are the point.",
        "",
        "## Results (medians)",
        "",
        "MB = 10^6 bytes. *vs rclone* and *vs ceiling* compare throughput (files/s; for the no-op, "
        "1 / wall time): above 1.00x the row's tool is faster than the peer.",
        "",
        "| workload | tool | wall s | files/s | MB/s | peak RSS MB | S3 req/file | Azure req/file "
        "| verify share (s) | vs rclone | vs ceiling |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    names = {"small": "small files", "large": "large files"}
    for workload, tools in rows.items():
        label = names.get(workload) or f"no-op, {workload.removeprefix('noop')} keys"
        rclone, ceiling = tools.get("rclone"), tools.get("ceiling")
        for tool in TOOLS:
            r = tools.get(tool)
            if r is None:
                continue
            noop = workload.startswith("noop")
            vs_r = (rclone.wall_s / r.wall_s) if (noop and rclone) else (r.files_per_s / rclone.files_per_s if rclone
                                                                         and rclone.files_per_s else None)
            vs_c = (ceiling.wall_s / r.wall_s) if (noop and ceiling) else (
                r.files_per_s / ceiling.files_per_s if ceiling and ceiling.files_per_s else None)
            verify = "–" if r.verify_share is None else f"{r.verify_share * 100:.1f} % ({r.verify_s:.2f} s)"
            tool_label = f"{tool} ({_setup(r.rounds[0])})" if tool == "ceiling" else tool
            out.append(
                f"| {label} | {tool_label} | {r.wall_s:.2f} | {_rate(r.files_per_s)} | "
                f"{'–' if noop else _f(r.mb_per_s)} | {_f(r.rss_mb, '.0f')} | "
                f"{_f(r.s3_per_run, '.0f', ' /run') if noop else _f(r.s3_per_file, '.2f')} | "
                f"{_f(r.azure_per_run, '.0f', ' /run') if noop else _f(r.azure_per_file, '.2f')} | {verify} | {_f(vs_r, '.2f', 'x')} | {_f(vs_c, '.2f', 'x')} |")
    out += ["", "No-op rows: files/s counts the files found already copied in the window (the bridge, the "
            "ceiling) or in the whole bucket (rclone, which has no notion of a window), and the request columns "
            "give requests per run. rclone's requests are counted in one extra, untimed run with "
            "`--dump headers`. The bridge's Azure count leaves out delta-rs's own requests (Delta tables).", ""]

    out += ["## Targets", "", "| target | measured | goal | result |", "|---|--:|--:|---|"]
    small, large = rows.get("small"), rows.get("large")
    if small and "rclone" in small and "ceiling" in small:
        b, r = small["bridge"], small["rclone"]
        # Whole processes on both sides: the bridge's start-up and imports count, as rclone's do.
        cpu_ratio = (b.cpu["tool"] / b.rounds[0].files) / (r.cpu["tool"] / r.rounds[0].files)
        whole = median([m.wall_s + m.extra["startup_s"] for m in b.rounds])
        out.append(f"| small files: bridge CPU per file (whole process, tables included) vs rclone | "
                   f"{cpu_ratio:.2f}x ({b.cpu['tool'] / b.rounds[0].files * 1000:.1f} vs "
                   f"{r.cpu['tool'] / r.rounds[0].files * 1000:.1f} ms) | ≤ 1.00x | {_check(cpu_ratio, 1.0, False)} |")
        out.append(f"| small files: rclone wall time / bridge wall time (whole process) | {r.wall_s / whole:.2f}x "
                   f"({whole:.1f} s vs {r.wall_s:.1f} s) | ≥ 1.00x | {_check(r.wall_s / whole, 1.0, True)} |")
        out.append(f"| small files: bridge files/s vs rclone | {b.files_per_s / small['rclone'].files_per_s:.2f}x "
                   f"| ≥ 1.50x | {_check(b.files_per_s / small['rclone'].files_per_s, 1.5, True)} |")
        out.append(f"| small files: bridge files/s vs ceiling | {b.files_per_s / small['ceiling'].files_per_s * 100:.1f} % "
                   f"| ≥ 70 % | {_check(b.files_per_s / small['ceiling'].files_per_s, 0.70, True)} |")
    if large and "rclone" in large and "ceiling" in large:
        b = large["bridge"]
        out.append(f"| large files: bridge MB/s vs rclone | {b.mb_per_s / large['rclone'].mb_per_s:.2f}x "
                   f"| ≥ 1.00x | {_check(b.mb_per_s / large['rclone'].mb_per_s, 1.0, True)} |")
        # The goal is the copy's: the loop writes no tables (their cost is in the rows above and below).
        copying = median([m.extra["stages_s"].get("plan_run", 0) + m.extra["stages_s"].get("_copy_all", 0)
                          for m in b.rounds])
        ceiling_wall = large["ceiling"].wall_s
        out.append(f"| large files: the bridge's plan and copy (verification included) vs the ceiling's wall time | "
                   f"{ceiling_wall / copying * 100:.1f} % ({copying:.2f} s vs {ceiling_wall:.2f} s) | ≥ 90 % | "
                   f"{_check(ceiling_wall / copying, 0.90, True)} |")
        hwm = [m.extra.get("copy_hwm_mb") for m in b.rounds]
        if all(h is not None for h in hwm):
            out.append(f"| large files: bridge peak RSS while copying (concurrency {b.concurrency}; before the tables) | "
                       f"{median(hwm):.0f} MB | ≤ 256 MB | {_check(median(hwm), 256, False)} |")
        out.append(f"| large files: whole run (tables included) MB/s vs ceiling | "
                   f"{b.mb_per_s / large['ceiling'].mb_per_s * 100:.1f} % | – | for scale |")
        out.append(f"| large files: whole run (tables included) peak RSS | {b.rss_mb:.0f} MB | – | for scale |")
    for workload in ("small", "large"):
        if rows.get(workload):
            b = rows[workload]["bridge"]
            out.append(f"| {names[workload]}: verification share of run time | {b.verify_share * 100:.1f} % | ≤ 10 % "
                       f"| {_check(b.verify_share, 0.10, False)} |")
    context = []
    for workload, tools in rows.items():
        if workload in names and "rclone" in tools and "ceiling" in tools:
            context.append(f"{names[workload]}: the ceiling itself reaches "
                           f"{tools['ceiling'].files_per_s / tools['rclone'].files_per_s:.2f}x rclone's throughput")
    noops = sorted((int(w.removeprefix("noop")), t) for w, t in rows.items() if w.startswith("noop"))
    if len(noops) == 2:
        (n1, t1), (n2, t2) = noops
        ratio = t2["bridge"].wall_s / t1["bridge"].wall_s
        out.append(f"| no-op: {n2:,} / {n1:,} keys wall time | {ratio:.2f}x | ≤ 1.20x | {_check(ratio, 1.2, False)} |")
        facts = bench.facts["noop"]
        bound = facts["datasets"] * len(facts["window_months"])
        for n, t in noops:
            lists = median([r.s3_requests.get("ListObjectsV2", 0) for r in t["bridge"].rounds])
            folder_lists = 2  # parquet/ -> organisation folders, organisation -> dataset folders
            out.append(f"| no-op {n:,}: S3 list calls vs datasets x months ({facts['datasets']} x "
                       f"{len(facts['window_months'])} = {bound}, + {folder_lists} folder listings) | {lists:.0f} "
                       f"| ≤ {bound + folder_lists} | {_check(lists, bound + folder_lists, False)} |")
    out.append("")
    if context:
        out += ["For scale, measured in the same rounds: " + "; ".join(context) + ".", ""]

    if bench.failures:
        out += ["## Failed workloads", "", *[f"- {f}" for f in bench.failures], ""]
    out += ["## Details", ""]
    for workload, tools in rows.items():
        label = names.get(workload) or f"no-op, {workload.removeprefix('noop')} keys"
        out += [f"### {label}", ""]
        facts = bench.facts.get(workload) or {}
        if facts:
            out.append(f"- input: {facts['files']:,} files, {facts['bytes'] / MB:,.1f} MB "
                       f"({facts['min_size']:,} to {facts['max_size']:,} bytes), {facts['datasets']} datasets, "
                       f"{facts['months']} month folders, legacy key layout; seeded into moto in "
                       f"{facts['seed_s']:.1f} s")
            if "ceiling_trials" in facts:
                out.append(f"- ceiling trials in round 1 (wall s; cN = N threads; sdk = boto3 and azure-storage-blob, raw = the bridge's own lean GET and Blob requests; Content-MD5 on every PUT): "
                           f"{facts['ceiling_trials']}; the fastest is kept for the later rounds")
            if "bridge_what_if" in facts:
                w = facts["bridge_what_if"]
                out.append(f"- what-if, one run, not in the table: the bridge at BRIDGE_MAX_CONCURRENCY = "
                           f"{w['concurrency']} (the ceiling's thread count): {w['wall_s']:.2f} s, "
                           f"{w['files_per_s']:.0f} files/s, {w['mb_per_s']:.1f} MB/s, peak RSS {w['rss_mb']:.0f} MB")
        if workload.startswith("noop"):
            count = int(workload.removeprefix("noop"))
            nf = bench.facts["noop"]
            h = nf["histories"][count]
            out.append(f"- history: {count:,} keys, {len(NOOP_DATASETS)} datasets, hourly, {h['months']} month "
                       f"folders ({h['first_month']} to {h['last_month']}); look-back window "
                       f"{', '.join(nf['window_months'])} holds {h['in_window']:,} of them")
            out.append(f"- seeding: moto through its in-process backend {h['s3_seed_s']:.1f} s; the lake by Put Blob "
                       f"with the bridge's metadata {h['lake_seed_s']:.1f} s ({h['lake_seed_per_s']:.0f} blobs/s); "
                       "`_state/reconcile.json` written with the current time, so runs are hourly (window) runs")
            w = h["warmup"]
            out.append(f"- first run after seeding ({w['mode']} mode, not in the table): {w['wall_s']:.2f} s, "
                       f"registered the window's files in {w['tables_changed']} Delta tables")
            probe = h["list_probe_s"]
            out.append(f"- the emulators' own time to list one dataset's window month folder, alone: moto "
                       f"ListObjectsV2 {probe['s3'] * 1000:.0f} ms, Azurite List Blobs with metadata "
                       f"{probe['lake'] * 1000:.0f} ms (in S3 and Azure this does not depend on the history size)")
            if "ceiling_trials" in nf and count == noops[0][0]:
                out.append(f"- ceiling (list the window on both sides and compare) concurrency trials in round 1 "
                           f"(wall s): {nf['ceiling_trials']}")
        for note in bench.notes.get(workload, []):
            out.append(f"- note: {note}")
        out += ["", "| tool | round | wall s | files/s | MB/s | peak RSS MB | CPU s: tool / moto / Azurite "
                "| S3 requests | Azure requests |", "|---|--:|--:|--:|--:|--:|--:|---|---|"]
        for tool in TOOLS:
            for x in tools.get(tool, Row(tool, 0, 0, 0, 0, None, None, None, None, None, None, 0, {}, [])).rounds:
                cpu = f"{x.cpu.get('tool', 0):.1f} / {x.cpu.get('moto', 0):.1f} / {x.cpu.get('azurite', 0):.1f}"
                out.append(f"| {tool} | {x.round} | {x.wall_s:.2f} | {_rate(x.files_per_s)} | "
                           f"{'–' if workload.startswith('noop') else f'{x.mb_per_s:.1f}'} | "
                           f"{_f(x.rss_mb, '.0f')} | {cpu} | {_counts(x.s3_requests)} | {_counts(x.azure_requests)} |")
        b = tools.get("bridge")
        if b:
            stages = Counter()
            for x in b.rounds:
                for k, v in x.extra["stages_s"].items():
                    stages[k] += v / len(b.rounds)
            accounted = sum(stages.values())
            wall = statistics.mean(x.wall_s for x in b.rounds)
            out += ["", "Bridge run, mean seconds per stage: "
                    + ", ".join(f"{_stage(k)} {v:.2f}" for k, v in stages.items())
                    + f", lock and the rest {max(0.0, wall - accounted):.2f} (of {wall:.2f}). "
                    f"Verification: {median([x.extra['verify_cpu_s'] for x in b.rounds]):.2f} CPU s summed over "
                    f"files ({median([x.extra['verify_s'] for x in b.rounds]):.2f} s of wall time, GIL waits "
                    f"included, = {median([x.extra['verify_s'] / (x.wall_s * x.concurrency) for x in b.rounds]):.1%}"
                    f" of the copy threads' time); "
                    f"copying: {median([x.extra['file_s'] for x in b.rounds]):.1f} s summed over files "
                    f"(= {median([x.extra['file_s'] / x.wall_s for x in b.rounds]):.1f} files in flight on average); "
                    f"process start-up and imports before the run: "
                    f"{median([x.extra['startup_s'] for x in b.rounds]):.1f} s (not in the wall time)."]
        out.append("")
    if bench.facts.get("profiles"):
        out += ["## CPU profiles", "",
                "One extra, untimed run per workload under a CPU-time cProfile over all threads "
                "(`time.thread_time`: waiting on sockets, locks and the GIL is not counted; the profiler's own "
                "overhead inflates Python-heavy code, so read the shares, not the seconds). Cumulative CPU of the "
                "main steps (they nest); the full listings are in "
                f"`{PROFILE.relative_to(PROJECT_ROOT)}`.", ""]
        for title, summary in bench.facts["profiles"].items():
            # Re-read from the raw profile when it is still this run's (the summary's layout may be newer).
            path = Path(pstats_path(str(PROFILE), title))
            started = datetime.fromisoformat(bench.facts["started"]).timestamp()
            if path.exists() and started <= path.stat().st_mtime <= started + bench.facts["total_s"] + 120:
                summary = profile_summary(title) or summary
            out += [f"**{title}**", "", "```", summary, "```", ""]
    return "\n".join(out) + "\n"


def _rate(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _stage(name: str) -> str:
    return {"plan_run": "plan (list S3 and lake)", "_copy_all": "copy + verify",
            "_sync_tables": "Delta tables", "_write_manifest": "manifest"}.get(name, name)


def _counts(counts: dict[str, int]) -> str:
    if not counts:
        return "–"
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


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
