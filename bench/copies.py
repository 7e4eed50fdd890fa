"""The copy workloads (small and large files): the bucket seeded once, then each tool's run into
a fresh container in alternating rounds, the ceiling's trials in round 1, rclone's request census,
the what-if run and the profiled runs."""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from bench.data import SourceFile
from bench.measure import CEILING_TRIALS, MB, TOOLS, Measurement, rss_mb
from bench.summary import setup_label

log = logging.getLogger("bench")


class CopyWorkloads:
    """Mixed into :class:`bench.run.Bench`: a copy workload over a list of source files."""

    def seed_bucket(self, bucket: str, files: list[SourceFile]) -> float:
        from boto3.s3.transfer import TransferConfig

        s3 = self.s3_client(self.moto.url)
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        config = TransferConfig(
            multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=4
        )
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
        expect = self._seed_input(workload, bucket, files)
        endpoint = self.moto.url
        best_ceiling = self._copy_rounds(workload, bucket, endpoint, expect)
        self.rclone_census(workload, bucket, endpoint, None, expect)
        if best_ceiling and best_ceiling[0] != self.concurrency:
            self._what_if(workload, bucket, endpoint, best_ceiling[0])
        if self.args.profile:
            self._profiled_copies(workload, bucket, endpoint, best_ceiling)
        self.delete_bucket(bucket)

    def _seed_input(self, workload: str, bucket: str, files: list[SourceFile]) -> tuple[int, int]:
        """Seeds the bucket and records the input's facts; the files and bytes each tool must copy."""
        seconds = self.seed_bucket(bucket, files)
        expect = (len(files), sum(f.size for f in files))
        self.facts[workload] = {
            "files": expect[0],
            "bytes": expect[1],
            "seed_s": seconds,
            "min_size": min(f.size for f in files),
            "max_size": max(f.size for f in files),
            "datasets": len({f.key.split("/")[2] for f in files}),
            "months": len({tuple(f.key.split("/")[3:5]) for f in files}),
        }
        log.info(
            "%s: %d files, %.1f MB seeded into moto in %.1f s", workload, expect[0], expect[1] / MB, seconds
        )
        return expect

    def _copy_rounds(
        self, workload: str, bucket: str, endpoint: str, expect: tuple[int, int]
    ) -> tuple[int, str] | None:
        """The alternating rounds; round 1 tries the ceiling's setups. The ceiling's best setup."""
        best_ceiling: tuple[int, str] | None = None
        for rnd in range(1, self.rounds + 1):
            for tool in TOOLS:
                if tool == "ceiling" and best_ceiling is None:
                    trials = [
                        self._one_copy(workload, tool, rnd, bucket, endpoint, expect, setup)
                        for setup in CEILING_TRIALS
                    ]
                    best = max(trials, key=lambda m: m.files_per_s)
                    best_ceiling = (best.concurrency, best.extra["client"])
                    self.facts[workload]["ceiling_trials"] = {
                        setup_label(m): round(m.wall_s, 2) for m in trials
                    }
                    self.measurements.append(best)
                    continue
                m = self._one_copy(
                    workload, tool, rnd, bucket, endpoint, expect, best_ceiling or (self.concurrency, "sdk")
                )
                self.measurements.append(m)
        return best_ceiling

    def _what_if(self, workload: str, bucket: str, endpoint: str, concurrency: int) -> None:
        # What-if, not in the table: the bridge at the ceiling's best thread count.
        self.fresh_azurite()
        container = self.new_container(f"{workload}-bridge-c{concurrency}")
        try:
            m = self.run_bridge(workload, 0, bucket, endpoint, container, concurrency=concurrency)
            self.facts[workload]["bridge_what_if"] = {
                "concurrency": concurrency,
                "wall_s": m.wall_s,
                "files_per_s": m.files_per_s,
                "mb_per_s": m.mb_per_s,
                "rss_mb": m.rss_mb,
            }
        finally:
            self.drop_container(container)

    def _profiled_copies(
        self, workload: str, bucket: str, endpoint: str, best_ceiling: tuple[int, str] | None
    ) -> None:
        """One untimed run of the bridge under cProfile, and one of the ceiling for comparison."""
        self.fresh_azurite()
        container = self.new_container(f"{workload}-profile")
        try:
            self.run_bridge(
                workload,
                0,
                bucket,
                endpoint,
                container,
                profile_title=f"== {workload}: bridge run under cProfile ==",
            )
        finally:
            self.drop_container(container)
        if best_ceiling:
            self.fresh_azurite()
            container = self.new_container(f"{workload}-ceiling-profile")
            try:
                self.run_ceiling(
                    workload,
                    0,
                    bucket,
                    endpoint,
                    container,
                    best_ceiling,
                    profile_title=f"== {workload}-ceiling: ceiling run under cProfile, for comparison ==",
                )
            finally:
                self.drop_container(container)

    def _one_copy(
        self,
        workload: str,
        tool: str,
        rnd: int,
        bucket: str,
        endpoint: str,
        expect: tuple[int, int],
        setup: tuple[int, str],
    ) -> Measurement:
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
                self.note(
                    workload,
                    f"round {rnd}: {tool} left {copied[0]} files / {copied[1]:,} bytes in the lake, "
                    f"expected {expect[0]} / {expect[1]:,}",
                )
            log.info(
                "%s r%d %-7s %-9s %6.2f s  %7.1f files/s  %7.1f MB/s  rss %s",
                workload,
                rnd,
                tool,
                setup_label(m),
                m.wall_s,
                m.files_per_s,
                m.mb_per_s,
                f"{m.rss_mb:.0f} MB" if m.rss_mb else "-",
            )
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
