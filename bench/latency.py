"""The bridge at cloud latency: ``python -m bench.latency [--s3-ms 20] [--lake-ms 5] [--rounds 3]``.

moto and Azurite answer on loopback in microseconds, so no other benchmark sees a run's
sequential round trips. Here a proxy on each side (bench/latency_proxy.py) adds a fixed round
trip to every request and a new connection, and counts the requests that cross it. Two
workloads, on a bucket holding every dataset of Haltian's schema reference (legacy and v1), with
moto serving S3 over connections kept open, as S3 does (bench/s3_server.py):

* **first run into an empty lake** (the backfill of the history): the bridge's
  ``python -m shared run`` and ``rclone copy`` alternate, each into a fresh container; files/s.
* **the normal hour**: the lake the last first run left, plus one new file per dataset. The
  bridge's run against the least such a run must do, measured as a plain loop at the same
  concurrency (bench.workers ``ceiling`` in ``hour`` mode): list the window on both sides, copy
  the new files, one conditional PUT per changed table (a commit), one manifest.

Both tools run as whole processes (start-up included: an hourly timer on Flex Consumption mostly
meets a cold instance). Appends its section to bench/RESULTS.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.data import ORG, OUT, report
from bench.latency_proxy import LatencyProxy
from bench.latency_report import render
from bench.measure import LOGS, Processes, machine_details
from shared.demo import reference, servers
from shared.demo.bucket import legacy_key, legacy_schema, make_table, parquet_bytes, v1_key, v1_schema
from shared.haltian.keys import LEGACY, V1

log = logging.getLogger("bench.latency")


@dataclass(frozen=True)
class Dataset:
    layout: str
    name: str
    body: bytes

    def key(self, at: datetime, hours: int) -> str:
        if self.layout == LEGACY:
            return legacy_key(ORG, self.name, at)
        return v1_key(ORG, self.name, at, at + timedelta(hours=hours))


def documented_datasets(rows: int) -> list[Dataset]:
    """Every dataset of Haltian's schema reference, each with one real Parquet body of ``rows`` rows."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    found = []
    for layout, schema_of in ((LEGACY, legacy_schema), (V1, v1_schema)):
        for name in reference.datasets(layout):
            found.append(Dataset(layout, name, parquet_bytes(make_table(schema_of(name), rows, start, rng))))
    return found


def history_keys(
    datasets: list[Dataset], end: datetime, days: int, every_hours: int
) -> list[tuple[str, bytes]]:
    keys = []
    for d in datasets:
        at = end
        while at > end - timedelta(days=days):
            keys.append((d.key(at, every_hours), d.body))
            at -= timedelta(hours=every_hours)
    return keys


class LatencyBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = Processes()
        self.tag = f"{os.getpid() % 10000}"
        self.rows: dict[str, list[dict[str, Any]]] = {"first": [], "hour": []}

    # servers and clients

    def start(self) -> None:
        port = servers.free_port()  # moto as S3 serves it: connections kept open (bench/s3_server.py)
        self.moto = self.procs.start_server(
            servers.Server(
                "moto S3 server (keep-alive)",
                [sys.executable, "-m", "bench.s3_server", str(port)],
                port,
                probe_path="/moto-api/",
            )
        )
        self.azurite = self.procs.start_server(servers.azurite())
        self.s3_proxy = LatencyProxy("s3", ("127.0.0.1", self.moto.port), self.args.s3_ms)
        self.lake_proxy = LatencyProxy("lake", ("127.0.0.1", self.azurite.port), self.args.lake_ms)
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={servers.AZURITE_ACCOUNT};AccountKey={servers.AZURITE_KEY};"
            f"BlobEndpoint={self.lake_proxy.url}/{servers.AZURITE_ACCOUNT};"
        )

    def s3(self) -> Any:
        import boto3
        import botocore.config

        return boto3.client(
            "s3",
            endpoint_url=self.moto.url,
            region_name="eu-west-1",
            aws_access_key_id=servers.FAKE_AWS_KEY_ID,
            aws_secret_access_key=servers.FAKE_AWS_SECRET,
            config=botocore.config.Config(max_pool_connections=32, s3={"addressing_style": "path"}),
        )

    def blobs(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(servers.azurite_connection_string(self.azurite))

    def put(self, bucket: str, objects: list[tuple[str, bytes]]) -> None:
        s3 = self.s3()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda kb: s3.put_object(Bucket=bucket, Key=kb[0], Body=kb[1]), objects))

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("AWS_CA_BUNDLE", "APPLICATIONINSIGHTS_CONNECTION_STRING")
        }
        env.update(
            AWS_ACCESS_KEY_ID=servers.FAKE_AWS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=servers.FAKE_AWS_SECRET,
            PYTHONPATH=str(OUT.parent.parent),
        )
        return env

    # the tools

    def bridge(self, name: str, container: str, profile: Path | None = None) -> dict[str, Any]:
        env = self.env()
        env.update(
            HALTIAN_S3_BUCKET=self.bucket,
            HALTIAN_S3_ENDPOINT_URL=self.s3_proxy.url,
            ADLS_CONNECTION_STRING=self.connection_string,
            ADLS_CONTAINER=container,
            ADLS_ROOT="",
            BRIDGE_MAX_CONCURRENCY=str(self.args.concurrency),
            BRIDGE_TIME_BUDGET_SECONDS="3000",
        )
        cmd = [sys.executable, "-m", "shared", "run", "--json"]
        if profile:  # py-spy samples every thread, waiting ones too (--idle): where the wall time goes
            cmd = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                *([] if os.environ.get("PROFILE_CPU") else ["--idle"]),
                "--threads",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(profile),
                "--",
                *cmd,
            ]
        # py-spy's own progress lines go to the same stdout: the profiled run's report is not read.
        return self._measure(name, cmd, env, capture=profile is None)

    def rclone(self, name: str, container: str) -> dict[str, Any]:
        conf = OUT / f"rclone-latency-{self.tag}.conf"
        conf.write_text(
            "[s3src]\ntype = s3\nprovider = Other\n"
            f"access_key_id = {servers.FAKE_AWS_KEY_ID}\nsecret_access_key = {servers.FAKE_AWS_SECRET}\n"
            f"endpoint = {self.s3_proxy.url}\nforce_path_style = true\nregion = eu-west-1\n\n"
            "[azdst]\ntype = azureblob\nuse_emulator = true\n"
            f"endpoint = {self.lake_proxy.url}/{servers.AZURITE_ACCOUNT}\n"
        )
        n = str(self.args.concurrency)
        return self._measure(
            name,
            [
                "rclone",
                "--config",
                str(conf),
                "copy",
                f"s3src:{self.bucket}/parquet",
                f"azdst:{container}/parquet",
                "--transfers",
                n,
                "--checkers",
                n,
                "--timeout",
                "60s",
            ],
            self.env(),
            capture=False,
        )

    def loop(self, name: str, container: str, months: list[str]) -> dict[str, Any]:
        config = {
            "endpoint": self.s3_proxy.url,
            "bucket": self.bucket,
            "key_id": servers.FAKE_AWS_KEY_ID,
            "secret": servers.FAKE_AWS_SECRET,
            "connection_string": self.connection_string,
            "container": container,
            "concurrency": self.args.concurrency,
            "client": "sdk",
            "prefix": "parquet/",
            "mode": "hour",
            "months": months,
        }
        return self._measure(
            name,
            [sys.executable, "-m", "bench.workers", "ceiling", json.dumps(config)],
            self.env(),
            capture=True,
        )

    def _measure(self, name: str, cmd: list[str], env: dict[str, str], capture: bool) -> dict[str, Any]:
        for proxy in (self.s3_proxy, self.lake_proxy):
            proxy.take_counts()
            proxy.take_areas()
        rc, out, usage, wall = self.procs.run(cmd, name=f"latency-{name}", capture=capture, env=env)
        if rc != 0:
            raise RuntimeError(f"{name} failed (exit {rc}); see {LOGS}/latency-{name}.log")
        result = json.JSONDecoder().raw_decode(out[out.index("{") :])[0] if capture else {}
        return {
            "name": name,
            "wall_s": wall,
            "cpu_s": usage.cpu_s,
            "rss_mb": usage.rss_mb,
            "s3": self.s3_proxy.take_counts(),
            "lake": self.lake_proxy.take_counts(),
            "lake_areas": self.lake_proxy.take_areas(),
            "result": result,
        }

    # the workloads

    def run(self) -> str:
        args = self.args
        load_before = os.getloadavg()
        datasets = documented_datasets(args.rows)
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        end = now - timedelta(hours=args.rounds + 2)  # the normal hours' new files still lie in the past
        history = history_keys(datasets, end, args.days, args.every_hours)
        self.bucket = f"latency-{self.tag}"
        self.s3().create_bucket(
            Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        begun = time.perf_counter()
        self.put(self.bucket, history)
        log.info(
            "seeded %d keys over %d datasets in %.0f s",
            len(history),
            len(datasets),
            time.perf_counter() - begun,
        )
        kept = self._first_runs(len(history))
        self._normal_hours(datasets, now, end, kept)
        if args.profile:  # one more hour, untimed, under a wall-clock sampler
            self.put(
                self.bucket, [(d.key(end + timedelta(hours=args.rounds + 1), 1), d.body) for d in datasets]
            )
            self.bridge("hour-bridge-profile", kept, profile=OUT / "latency-hour.collapsed")
        (OUT / "latency-last-run.json").write_text(
            json.dumps(
                {"args": vars(args), "datasets": len(datasets), "history": len(history), "rows": self.rows},
                indent=1,
            )
        )
        return render(
            self.rows, args, len(datasets), len(history), load_before, machine_details()["bridge code"]
        )

    def _first_runs(self, files: int) -> str | None:
        """The first run into an empty lake, bridge and rclone alternating; the container the last
        bridge round left (the normal hours run on it)."""
        args = self.args
        service = self.blobs()
        kept = None
        for rnd in range(1, args.rounds + 1):
            for tool in ("bridge", "rclone"):
                container = f"first-{tool}-{rnd}-{self.tag}"
                service.create_container(container)
                m = getattr(self, tool)(f"first-{tool}-r{rnd}", container)
                m.update(tool=tool, round=rnd, files=files)
                self.rows["first"].append(m)
                log.info("first run, %s, round %d: %.1f s", tool, rnd, m["wall_s"])
                if tool == "bridge" and rnd == args.rounds:
                    kept = container
                else:
                    service.delete_container(container)
        return kept

    def _normal_hours(self, datasets: list[Dataset], now: datetime, end: datetime, kept: str | None) -> None:
        """The normal hour, the loop and the bridge alternating, one new file per dataset each round."""
        args = self.args
        months = sorted({(now - timedelta(days=d)).strftime("%Y/%m") for d in (0, 31)})
        for rnd in range(1, args.rounds + 1):
            at = end + timedelta(hours=rnd)
            self.put(self.bucket, [(d.key(at, 1), d.body) for d in datasets])
            for tool in ("loop", "bridge"):
                m = (
                    self.loop(f"hour-loop-r{rnd}", kept, months)
                    if tool == "loop"
                    else self.bridge(f"hour-bridge-r{rnd}", kept)
                )
                m.update(tool=tool, round=rnd, files=len(datasets))
                self.rows["hour"].append(m)
                log.info("normal hour, %s, round %d: %.2f s", tool, rnd, m["wall_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--s3-ms", type=float, default=20.0, help="round trip added to S3 (default 20)")
    parser.add_argument("--lake-ms", type=float, default=5.0, help="round trip added to the lake (default 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--days", type=int, default=365, help="history length (default a year)")
    parser.add_argument(
        "--every-hours", type=int, default=72, help="one file per dataset every N hours (default 72)"
    )
    parser.add_argument("--rows", type=int, default=24, help="rows in each file (default 24)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more normal hour under py-spy -> bench/out/latency-hour.collapsed",
    )
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    bench = LatencyBench(args)
    try:
        bench.start()
        report(bench.run(), write=not args.no_write)
    finally:
        bench.procs.stop_all()
        bench.s3_proxy.close()
        bench.lake_proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
