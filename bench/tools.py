"""The three tools the benchmark runs, each in a child process: the bridge, rclone and the plain
copy loop (the ceiling); and rclone's requests, counted from its header dump."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.data import OUT
from bench.measure import LOGS, PROFILE, PROJECT_ROOT, Measurement, Usage

log = logging.getLogger("bench")


#: What a bridge measurement keeps of its child's answer besides the table's figures.
_BRIDGE_EXTRA = (
    "verify_s",
    "verify_cpu_s",
    "file_s",
    "stages_s",
    "startup_s",
    "mode",
    "listed_objects",
    "listed_prefixes",
    "present",
    "quarantined",
    "tables_changed",
    "status",
    "vm_hwm_mb",
    "copy_hwm_mb",
)


class Tools:
    """Mixed into :class:`bench.run.Bench`: running each tool once and measuring it."""

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
        env.update(
            AWS_ACCESS_KEY_ID=FAKE_AWS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=FAKE_AWS_SECRET,
            PYTHONPATH=str(PROJECT_ROOT),
        )
        env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
        return env

    def run_bridge(
        self,
        workload: str,
        rnd: int,
        bucket: str,
        endpoint: str,
        container: str,
        profile_title: str | None = None,
        concurrency: int | None = None,
    ) -> Measurement:
        config = {"env": self.bridge_env(bucket, endpoint, container)}
        if concurrency:
            config["env"]["BRIDGE_MAX_CONCURRENCY"] = str(concurrency)
        if profile_title:
            config.update(profile=str(PROFILE), title=profile_title)
        name = f"{workload}-bridge-r{rnd}{'-profile' if profile_title else ''}{f'-c{concurrency}' if concurrency else ''}"
        data, usage, cpu = self._child("bridge", config, name, profile_title)
        if data["failed"] or data["table_errors"] or data["status"] != "complete":
            self.note(
                workload,
                f"round {rnd}: bridge run {data['status']}: {data['failed']} failed, "
                f"{data['table_errors']} table errors, {data['deferred']} deferred",
            )
        extra = {k: data[k] for k in _BRIDGE_EXTRA}
        return Measurement(
            workload,
            "bridge",
            rnd,
            data["wall_s"],
            data["files"],
            data["bytes"],
            usage.rss_mb,
            data["concurrency"],
            data["s3_requests"],
            data["azure_requests"],
            cpu,
            extra,
            container,
        )

    def _child(
        self, kind: str, config: dict[str, Any], name: str, profile_title: str | None
    ) -> tuple[dict[str, Any], Usage, dict[str, float]]:
        """One ``bench.workers`` child: its JSON answer, its usage, and the CPU of every process
        in the run (``tool``: the child's own; the servers' during it)."""
        before = self.server_cpu()
        rc, out, usage, _ = self.procs.run(
            [sys.executable, "-m", "bench.workers", kind, json.dumps(config)],
            name=name,
            capture=True,
            env=self.child_env(),
        )
        after = self.server_cpu()
        if rc != 0 or not out.strip():
            raise RuntimeError(f"the {kind} child failed (exit {rc}); see {LOGS}/{name}.log")
        if profile_title:
            self.keep_profile_summary(profile_title)
        cpu = {k: after[k] - before[k] for k in after}
        cpu["tool"] = usage.cpu_s
        return json.loads(out.strip().splitlines()[-1]), usage, cpu

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

    def run_rclone(
        self,
        workload: str,
        rnd: int,
        bucket: str,
        endpoint: str,
        container: str,
        expect: tuple[int, int],
        noop: bool = False,
        census: bool = False,
    ) -> Measurement:
        """One ``rclone copy``; with ``census``, an extra untimed run that dumps and counts its requests."""
        name = f"{workload}-rclone-{'census' if census else f'r{rnd}'}"
        cmd = self._rclone_cmd(endpoint, bucket, container, name, noop, census)
        before = self.server_cpu()
        rc, _, usage, wall = self.procs.run(
            cmd, name=name, capture=False, env={k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        )
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
        return Measurement(
            workload,
            "rclone",
            rnd,
            wall,
            files,
            size,
            usage.rss_mb,
            self.concurrency,
            s3_requests,
            azure_requests,
            cpu,
            {},
            container,
        )

    def _rclone_cmd(
        self, endpoint: str, bucket: str, container: str, name: str, noop: bool, census: bool
    ) -> list[str]:
        """The ``rclone copy`` command line; with ``census``, dumping its requests' headers to a log."""
        conf = self.rclone_conf(endpoint)
        n = str(self.concurrency)
        cmd = [
            "env",
            "-u",
            "AWS_CA_BUNDLE",
            "rclone",
            "--config",
            str(conf),
            "copy",
            f"s3src:{bucket}/parquet",
            f"azdst:{container}/parquet",
            "--transfers",
            n,
            "--checkers",
            n,
        ]
        if noop:
            cmd.append("--size-only")  # seeded blobs carry no rclone mtime; size is what both can compare
        if census:
            (LOGS / f"{name}-dump.log").unlink(missing_ok=True)  # rclone appends to a log file
            cmd += ["--dump", "headers", "--log-file", str(LOGS / f"{name}-dump.log")]
        return cmd

    def rclone_census(
        self,
        workload: str,
        bucket: str,
        endpoint: str,
        container: str | None,
        expect: tuple[int, int],
        noop: bool = False,
    ) -> None:
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
        self.facts.setdefault("rclone_census", {})[workload] = {
            "s3": m.s3_requests,
            "azure": m.azure_requests,
        }
        if noop and any(k.startswith("PUT") for k in m.azure_requests):
            self.note(workload, f"rclone wrote to the lake in a no-op run: {m.azure_requests}")

    def run_ceiling(
        self,
        workload: str,
        rnd: int,
        bucket: str,
        endpoint: str,
        container: str,
        setup: tuple[int, str],
        noop_months: list[str] | None = None,
        profile_title: str | None = None,
    ) -> Measurement:
        from shared.demo.servers import FAKE_AWS_KEY_ID, FAKE_AWS_SECRET

        concurrency, client = setup
        config = {
            "endpoint": endpoint,
            "bucket": bucket,
            "key_id": FAKE_AWS_KEY_ID,
            "secret": FAKE_AWS_SECRET,
            "connection_string": self.connection_string,
            "container": container,
            "concurrency": concurrency,
            "client": client,
            "prefix": "parquet/",
            "mode": "noop" if noop_months else "copy",
            "months": noop_months or [],
        }
        if profile_title:
            config.update(profile=str(PROFILE), title=profile_title)
        name = f"{workload}-ceiling-r{rnd}-c{concurrency}-{client}{'-profile' if profile_title else ''}"
        data, usage, cpu = self._child("ceiling", config, name, profile_title)
        return Measurement(
            workload,
            "ceiling",
            rnd,
            data["wall_s"],
            data["files"],
            data["bytes"],
            usage.rss_mb,
            concurrency,
            data["s3_requests"],
            data["azure_requests"],
            cpu,
            {"present": data["present"], "client": client},
            container,
        )


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
            kind = {
                ("GET", False): "ListObjects",
                ("GET", True): "GetObject",
                ("HEAD", True): "HeadObject",
                ("HEAD", False): "HeadBucket",
                ("PUT", True): "PutObject",
            }.get((method, object_level), method)
            s3[kind] += 1
        else:
            query = parse_qs(target.query)
            comp = query.get("comp", [""])[0]
            restype = query.get("restype", [""])[0]
            azure[f"{method} {comp or restype or 'blob'}"] += 1
    return dict(s3), dict(azure)
