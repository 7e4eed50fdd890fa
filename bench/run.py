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
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.data import DATA, OUT, RESULTS, SourceFile, large_files, small_files
from bench.measure import (
    CEILING_TRIALS, FULL, MB, PROFILE, QUICK, TOOLS, Measurement, Processes, cpu_seconds,
    machine_details, rss_mb,
)
from bench.noop import NoopWorkload
from bench.report import profile_summary, render
from bench.summary import setup_label
from bench.tools import Tools

log = logging.getLogger("bench")


# --- the benchmark -----------------------------------------------------------------------


class Bench(Tools, NoopWorkload):
    """The benchmark: its servers, its measurements, the copy workloads (small and large files);
    the tools it runs are :class:`~bench.tools.Tools`'s, the no-op workload
    :class:`~bench.noop.NoopWorkload`'s."""

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
                    self.facts[workload]["ceiling_trials"] = {setup_label(m): round(m.wall_s, 2) for m in trials}
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
                     setup_label(m), m.wall_s, m.files_per_s, m.mb_per_s,
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
