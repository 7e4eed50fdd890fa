"""The no-op workload: an hourly run over a long history in which nothing is new, against rclone
and the plain listing loop."""

from __future__ import annotations

import http.client
import json
import logging
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.data import NOOP_DATASETS, History, history
from bench.measure import TOOLS
from bench.summary import setup_label


log = logging.getLogger("bench")


class NoopWorkload:
    """Mixed into :class:`bench.run.Bench`: the lake seeded as a bridge would have left it, then
    each tool's run over it."""

    def noop_workload(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            self.moto_pid = None  # moto now runs inside this process
            sides, months = self._seed_histories(endpoint)
            self._noop_rounds(endpoint, sides, months)
            for count, (bucket, container, _) in sides.items():
                self.rclone_census(f"noop{count}", bucket, endpoint, container, (count, 0), noop=True)
            if self.args.profile:
                for count, (bucket, container, _) in sides.items():
                    self.run_bridge(
                        f"noop{count}",
                        0,
                        bucket,
                        endpoint,
                        container,
                        profile_title=f"== noop {count}: bridge no-op run under cProfile ==",
                    )
            for _, container, _ in sides.values():
                self.drop_container(container)
        finally:
            server.stop()
            self.moto_pid = self.moto.process.pid

    def _seed_histories(self, endpoint: str) -> tuple[dict[int, tuple[str, str, History]], list[str]]:
        """Each history seeded on both sides: (bucket, container, history) by size; the window's months."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        from shared.plan import window_months

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        now = datetime.now(timezone.utc)
        months = [f"{y:04d}/{m:02d}" for y, m in window_months(now, 1)]
        sides: dict[int, tuple[str, str, History]] = {}
        facts: dict[str, Any] = {"window_months": months, "datasets": len(NOOP_DATASETS), "histories": {}}
        self.facts["noop"] = facts
        for count in self.scale.histories:
            sides[count] = self._seed_history(endpoint, backend, count, now, months)
        return sides, months

    def _seed_history(
        self, endpoint: str, backend: Any, count: int, now: datetime, months: list[str]
    ) -> tuple[str, str, History]:
        """One history in moto (through its backend) and in the lake, then the bridge's first run over it."""
        from shared.paths import RECONCILE_STATE

        facts = self.facts["noop"]
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
            "s3_seed_s": s3_seed,
            "lake_seed_s": lake_seed,
            "lake_seed_per_s": rate,
            "months": len(h.months),
            "first_month": h.months[0],
            "last_month": h.months[-1],
            "in_window": in_window,
        }
        log.info(
            "noop %d: seeded moto in %.1f s and the lake in %.1f s (%.0f blobs/s); %d keys in the window",
            count,
            s3_seed,
            lake_seed,
            rate,
            in_window,
        )
        # The first hourly run after seeding registers the window's files in Delta tables;
        # measured separately, the later runs are the true no-ops.
        warm = self.run_bridge(f"noop{count}", 0, bucket, endpoint, container)
        facts["histories"][count]["warmup"] = {
            "wall_s": warm.wall_s,
            "files": warm.files,
            "tables_changed": warm.extra["tables_changed"],
            "mode": warm.extra["mode"],
        }
        facts["histories"][count]["list_probe_s"] = self.list_probe(
            endpoint, bucket, container, h, months[-1]
        )
        return bucket, container, h

    def _noop_rounds(
        self, endpoint: str, sides: dict[int, tuple[str, str, History]], months: list[str]
    ) -> None:
        """The alternating rounds over both histories; round 1 tries the ceiling's thread counts."""
        facts = self.facts["noop"]
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
                            self.note(
                                workload,
                                f"round {rnd}: bridge ran in {m.extra['mode']} mode and found "
                                f"{m.files} files present (expected {expect[0]} in the window)",
                            )
                    elif tool == "rclone":
                        m = self.run_rclone(workload, rnd, bucket, endpoint, container, (count, 0), noop=True)
                    elif best_ceiling is None:
                        trials = [
                            self.run_ceiling(
                                workload, rnd, bucket, endpoint, container, (c, "sdk"), noop_months=months
                            )
                            for c in (8, 16, 32)
                        ]
                        m = min(trials, key=lambda t: t.wall_s)
                        best_ceiling = (m.concurrency, "sdk")
                        facts["ceiling_trials"] = {setup_label(t): round(t.wall_s, 2) for t in trials}
                    else:
                        m = self.run_ceiling(
                            workload, rnd, bucket, endpoint, container, best_ceiling, noop_months=months
                        )
                    self.measurements.append(m)
                    log.info(
                        "%s r%d %-7s %6.2f s  files %d  S3 %s",
                        workload,
                        rnd,
                        tool,
                        m.wall_s,
                        m.files,
                        m.s3_requests,
                    )

    def seed_lake(self, container: str, h: History) -> tuple[float, float]:
        """Writes every history key into the lake as the bridge would have left it (Put Blob + metadata).

        Raw HTTP with a container SAS (no SDK overhead per request): Azurite is the limit.
        """
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        from shared.demo.servers import AZURITE_ACCOUNT, AZURITE_KEY
        from shared.sink.records import META_RUN_ID, META_SOURCE_ETAG, META_SOURCE_KEY, META_SOURCE_SIZE

        sas = generate_container_sas(
            AZURITE_ACCOUNT,
            container,
            account_key=AZURITE_KEY,
            permission=ContainerSasPermissions(write=True, create=True),
            expiry=datetime.now(timezone.utc) + timedelta(hours=6),
        )
        local = threading.local()
        etags = {d: h.etag(d) for d in h.bodies}

        def put(item: tuple[str, str]) -> None:
            key, dataset = item
            body = h.bodies[dataset]
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.azurite.port, timeout=60
                )
            headers = {
                "x-ms-blob-type": "BlockBlob",
                "x-ms-version": "2021-08-06",
                "Content-Type": "application/vnd.apache.parquet",
                "Content-Length": str(len(body)),
                f"x-ms-meta-{META_SOURCE_ETAG}": etags[dataset],
                f"x-ms-meta-{META_SOURCE_SIZE}": str(len(body)),
                f"x-ms-meta-{META_SOURCE_KEY}": key,
                f"x-ms-meta-{META_RUN_ID}": "bench-seed",
            }
            connection.request(
                "PUT", f"/{AZURITE_ACCOUNT}/{container}/{key}?{sas}", body=body, headers=headers
            )
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
        blob.upload_blob(
            json.dumps({"completed_at": now.isoformat(), "run_id": "bench"}).encode(), overwrite=True
        )

    def list_probe(
        self, endpoint: str, bucket: str, container: str, h: History, month: str
    ) -> dict[str, float]:
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
