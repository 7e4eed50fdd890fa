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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.copies import CopyWorkloads
from bench.data import DATA, OUT, RESULTS, large_files, small_files
from bench.measure import FULL, PROFILE, QUICK, Measurement, Processes, cpu_seconds, machine_details
from bench.noop import NoopWorkload
from bench.report import profile_summary, render
from bench.tools import Tools

log = logging.getLogger("bench")


# --- the benchmark -----------------------------------------------------------------------


class Bench(CopyWorkloads, Tools, NoopWorkload):
    """The benchmark: its servers and its measurements; the copy workloads (small and large files)
    are :class:`~bench.copies.CopyWorkloads`'s, the tools it runs :class:`~bench.tools.Tools`'s, the
    no-op workload :class:`~bench.noop.NoopWorkload`'s."""

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

        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="eu-west-1",
            aws_access_key_id=FAKE_AWS_KEY_ID,
            aws_secret_access_key=FAKE_AWS_SECRET,
            config=botocore.config.Config(max_pool_connections=32, s3={"addressing_style": "path"}),
        )

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
        for blob in (
            self.blob_service().get_container_client(container).list_blobs(name_starts_with="parquet/")
        ):
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

    # Azurite between runs

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

    # saving and loading a run

    def save(self, path: Path) -> None:
        data = {
            "args": vars(self.args),
            "rounds": self.rounds,
            "concurrency": self.concurrency,
            "facts": self.facts,
            "notes": self.notes,
            "failures": self.failures,
            "measurements": [dataclasses.asdict(m) for m in self.measurements],
        }
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
            (
                "large",
                lambda: self.copy_workload(
                    "large", large_files(self.scale.large_files, self.scale.large_bytes)
                ),
            ),
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
    parser.add_argument(
        "--rounds", type=int, default=0, help="alternating rounds per workload (default 3; quick 1)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="BRIDGE_MAX_CONCURRENCY and rclone's N")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"one extra cProfiled bridge run per workload, written to {PROFILE}",
    )
    parser.add_argument("--only", default="", help="comma-separated subset of: small,large,noop")
    parser.add_argument("--no-write", action="store_true", help="print the table but leave RESULTS.md alone")
    parser.add_argument(
        "--render",
        default="",
        metavar="JSON",
        help="only print the report of an earlier run's bench/out/last-run.json",
    )
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
