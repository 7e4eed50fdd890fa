"""Runs beside other runs and backfill workers, under faults: a run acts only while it holds its
lock, manifests are written for dead runs only, and no table describes other bytes."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import BlobLeaseClient

from shared.demo.bucket import legacy_key, legacy_schema, make_table, parquet_bytes
from shared.manifest import index
from shared.model import FAILED, PUBLISHED
from shared.copy import CopyContext, copy_file
from shared.run import RunFailed, build_bridge, new_run_id, plan_run, run_once
from shared.timer import run_for_timer
from shared.sink.connect import delta_storage_options
from shared.sink.lake import ALWAYS, write_id
from shared.sink.records import META_RUN_ID
from shared.paths import LOCK_PATH
from shared.sink.lock import LockLost, RunLock
from shared.tables.delta import DeltaPublisher
from shared.tables.stage import TableStage
from shared.verify.schema import SchemaJudge
from tests import crashcheck
from tests.faultproxy import DELAY, PASS, FaultProxy
from tests.tables import table, table_rows
from tests.promise import (
    check_nothing_partial,
    check_no_write_after_lock_loss,
    check_promise,
    check_tables_match_blobs,
    manifests,
)
from tests.test_reliability import bridge_for, proxied_env, run_once_the_lock_is_free

pytestmark = pytest.mark.integration

ORG = "6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11"
ROOT = "haltian/raw"
# A publish sent just before a run learnt that it lost its lock still lands (the README's failure
# model): the proxy holds each for 0.15 s, and a loaded machine adds some.
IN_FLIGHT_SECONDS = 2


def seed_hours(stack, hours: int, dataset: str = "measurementCO2", seed: int = 3) -> list[str]:
    """One small file per hour, newest first from the current hour back."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    keys = []
    for back in range(hours):
        at = now - timedelta(hours=back)
        key = legacy_key(ORG, dataset, at)
        stack.s3.put_object(
            Bucket=stack.bucket,
            Key=key,
            Body=parquet_bytes(make_table(legacy_schema(dataset), rng.randint(1, 20), at, rng)),
        )
        keys.append(key)
    return keys


def slow_publishes(seconds: float, arrivals: list[datetime] | None = None):
    """A proxy rule that delays every Put Blob of a data file (so a run takes a while) and
    notes when each arrived in ``arrivals``."""

    def rule(method: str, path: str) -> str:
        if (
            method == "PUT"
            and "/parquet/" in path
            and "comp=" not in path
            and "_delta_log" not in path
            and "/_state/" not in path
        ):
            if arrivals is not None:
                arrivals.append(datetime.now(timezone.utc))
            return f"{DELAY}{seconds}"
        return PASS

    return rule


def files_of_run(stack, run_id: str) -> list:
    return [
        b
        for b in stack.container.list_blobs(name_starts_with=f"{ROOT}/parquet/", include=["metadata"])
        if (b.metadata or {}).get(META_RUN_ID) == run_id
    ]


def _wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _run_in_thread(bridge) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = run_once(bridge)
        except Exception as err:  # noqa: BLE001 - the test looks at it
            box["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _published_count(stack) -> int:
    return len(stack.data_files())


def _no_write_after(stack, run_id: str, lost_at: datetime, arrivals: list[datetime], in_flight: int) -> None:
    """The run began no write after it learnt of the loss: the publishes the proxy saw arrive
    after it are at most the ones already in flight (one per copy thread), and they landed
    within their delay (blob times have whole seconds)."""
    sent_after = [at for at in arrivals if at > lost_at]
    assert len(sent_after) <= in_flight, f"{len(sent_after)} publishes arrived after the run lost its lock"
    limit = lost_at.replace(microsecond=0) + timedelta(seconds=IN_FLIGHT_SECONDS)
    late = [b.name for b in files_of_run(stack, run_id) if b.last_modified > limit]
    assert not late, f"written after the run lost its lock: {late[:3]}"
    names = stack.lake_names(f"{ROOT}/_manifests/")
    assert not any(run_id in n for n in names) and not any(n.endswith("latest.json") for n in names)


def test_a_run_whose_lease_is_broken_and_taken_stops_before_its_next_write(stack) -> None:
    keys = seed_hours(stack, 120)
    arrivals: list[datetime] = []
    proxy = FaultProxy(stack.azurite.port, azure=True, rule=slow_publishes(0.15, arrivals))
    lock_blob = stack.container.get_blob_client(f"{ROOT}/{LOCK_PATH}")
    try:
        bridge = bridge_for(
            proxied_env(stack, None, proxy, BRIDGE_LOCK_SECONDS="15", BRIDGE_MAX_CONCURRENCY="2")
        )
        thread, box = _run_in_thread(bridge)
        _wait_for(lambda: _published_count(stack) >= 5)
        BlobLeaseClient(lock_blob).break_lease(
            lease_break_period=0
        )  # as an operator might, or an expired lease
        taker = RunLock(stack.bridge().lake, new_run_id(datetime.now(timezone.utc)), 15)
        taker.__enter__()  # ... and another run takes the lock
        broken = time.monotonic()
        thread.join(timeout=60)
        stopped_after = time.monotonic() - broken
    finally:
        proxy.close()
    error = box.get("error")
    assert isinstance(error, LockLost), f"the run went on: {sorted(box)} {error!r}"
    assert stopped_after < 5 + 3  # the next renewal (a third of the lease) finds the lease taken
    message = str(error)
    assert "\n" not in message and "lost its lock" in message and "LeaseLost" not in message
    run_id = message.split()[1]
    assert 0 < len(files_of_run(stack, run_id)) < len(keys)
    _no_write_after(stack, run_id, error.lost_at, arrivals, in_flight=2)
    assert (
        check_no_write_after_lock_loss(stack, {run_id: error.lost_at}, in_flight_seconds=IN_FLIGHT_SECONDS)
        > 0
    )
    check_nothing_partial(stack)

    taker.__exit__(
        None, None, None
    )  # the race scenario (test_soak.py) checks the next run accounts for its files


def test_a_renewal_stalled_past_its_period_stops_the_run_and_the_timer_fails(stack, monkeypatch) -> None:
    seed_hours(stack, 120)
    leases = {"n": 0}
    stalled: dict[str, float] = {}

    def rule(method: str, path: str) -> str:
        if method == "PUT" and f"/{LOCK_PATH}?" in path and "comp=lease" in path:
            leases["n"] += 1
            if leases["n"] >= 2:  # the acquire passes; every renewal after it stalls for 20 s
                stalled.setdefault("at", time.monotonic())
                return f"{DELAY}20"
        return slow_publishes(0.15)(method, path)

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    env = proxied_env(stack, None, proxy, BRIDGE_LOCK_SECONDS="15", BRIDGE_MAX_CONCURRENCY="2")
    try:
        started = time.monotonic()
        with pytest.raises(RunFailed) as failed:
            run_for_timer(env)
        ended = time.monotonic()
    finally:
        proxy.close()
    assert "at" in stalled, "no renewal was attempted"
    assert ended - stalled["at"] < 5 + 3, "a renewal blocked the run for longer than a third of the lease"
    assert ended - started < 30
    assert "lost its lock" in str(failed.value) and "\n" not in str(failed.value)
    assert check_nothing_partial(stack) > 0

    # The timer's next run, once a lease has passed since the stopped run's last write, accounts
    # for every file it published (an interrupted manifest) and finishes the rest.
    time.sleep(16)
    run_once_the_lock_is_free(stack.bridge(BRIDGE_LOCK_SECONDS="15"))  # the stalled renewal landed late
    check_promise(stack)


def test_an_unexpected_error_on_one_file_fails_that_file_only(stack) -> None:
    keys = seed_hours(stack, 6)
    bad = keys[2]
    bridge = stack.bridge()

    def hook(method: str, url: str) -> None:
        if bad.rsplit("/", 1)[1] in url:
            raise ValueError("a bug nobody expected")

    bridge.source.transport.hook = hook  # called before each GET of the copy path
    try:
        result = run_once(bridge)
    finally:
        bridge.source.transport.hook = None
    failed = [o for o in result.outcomes if o.action == FAILED]
    assert [o.item.key.key for o in failed] == [bad]
    assert "a bug nobody expected" in failed[0].reason
    assert result.count(PUBLISHED) == len(keys) - 1
    assert result.tables and not result.table_errors and result.manifest_path
    manifest = json.loads(stack.container.get_blob_client(result.manifest_path).download_blob().readall())
    assert [f["source_key"] for f in manifest["files"] if f["action"] == "failed"] == [bad]
    run_once(stack.bridge())  # the next run copies it
    check_promise(stack)


def test_a_full_reconcile_never_writes_a_manifest_for_a_live_backfill_worker(stack) -> None:
    now = datetime.now(timezone.utc)
    previous = (now.replace(day=1) - timedelta(days=1)).replace(hour=5)
    worker_keys = []
    rng = random.Random(9)
    for hour in range(6):
        at = previous.replace(hour=hour)
        key = legacy_key(ORG, "measurementCO2", at)
        stack.s3.put_object(
            Bucket=stack.bucket,
            Key=key,
            Body=parquet_bytes(make_table(legacy_schema("measurementCO2"), 5, at, rng)),
        )
        worker_keys.append(key)
    seed_hours(stack, 2)
    partition = worker_keys[0].rsplit("/", 1)[0] + "/"
    puts = {"n": 0}

    def rule(method: str, path: str) -> str:
        if (
            method == "PUT"
            and "/parquet/" in path
            and "comp=" not in path
            and "_delta_log" not in path
            and "/_state/" not in path
        ):
            puts["n"] += 1
            if puts["n"] == 4:  # the worker is alive and holds its lease, but quiet for longer than a lease
                return f"{DELAY}18"
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        # The worker's own lease is longer than the timer's (15 s), so that its renewals, sent while
        # the timer loads the emulator, have 10 s to succeed rather than 5: what this test checks is
        # the timer's judgment of a worker whose lease is live and whose files are older than a lease.
        worker_bridge = bridge_for(
            proxied_env(stack, None, proxy, BRIDGE_LOCK_SECONDS="30", BRIDGE_MAX_CONCURRENCY="1")
        )
        box: dict = {}
        worker = threading.Thread(
            target=lambda: box.update(result=run_once(worker_bridge, partition=partition))
        )
        worker.start()
        _wait_for(lambda: puts["n"] >= 4)
        time.sleep(16)  # the worker's files are older than a lease; its lease is live
        timer = run_once(stack.bridge(BRIDGE_LOCK_SECONDS="15"), full=True)
        worker.join(timeout=60)
    finally:
        proxy.close()
    assert timer.recovered_runs == [], "a manifest was written for a live worker"
    result = box["result"]
    own = json.loads(stack.container.get_blob_client(result.manifest_path).download_blob().readall())
    assert (
        own["status"] == "complete" and own["mode"] == "partition" and len(own["files"]) == len(worker_keys)
    )
    reported = [f["source_key"] for m in manifests(stack) for f in m["files"] if f["action"] == PUBLISHED]
    assert sorted(reported) == sorted(set(reported))  # every file reported exactly once
    entries = index.read_after(stack.bridge().lake, 0)
    assert [e["run_id"] for e in entries] == [timer.run_id, result.run_id]  # in the order they were written
    check_promise(stack)


def test_the_reconcile_state_never_moves_back(stack) -> None:
    seed_hours(stack, 2)
    bridge = stack.bridge()
    newer = run_once(bridge, full=True)
    older = run_once(
        bridge, full=True, now=newer.started_at - timedelta(hours=1)
    )  # a slower run, started earlier
    assert older.full_reconcile_completed
    state = bridge.lake.read_json("_state/reconcile.json")
    assert state["run_id"] == newer.run_id


def test_latest_json_never_moves_back(stack) -> None:
    from dataclasses import replace

    from shared.manifest.publish import write_manifest
    from shared.run import new_run_id

    seed_hours(stack, 2)
    bridge = stack.bridge()
    done = run_once(bridge)
    first = replace(
        done, run_id=new_run_id(datetime.now(timezone.utc)), finished_at=datetime.now(timezone.utc)
    )
    second = replace(
        done,
        run_id=new_run_id(datetime.now(timezone.utc)),
        finished_at=first.finished_at + timedelta(seconds=1),
    )

    def rule(method: str, path: str) -> str:
        return (
            f"{DELAY}3" if method == "PUT" and path.split("?")[0].endswith("_manifests/latest.json") else PASS
        )

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        slow = bridge_for(proxied_env(stack, None, proxy))
        writer = threading.Thread(target=write_manifest, args=(slow.lake, first, lambda: None))
        writer.start()
        time.sleep(1.5)  # the first run's manifest landed; its latest.json is on its way
        write_manifest(bridge.lake, second, lambda: None)
        writer.join(timeout=30)
    finally:
        proxy.close()
    latest = bridge.lake.read_json("_manifests/latest.json")
    assert latest["run_id"] == second.run_id


def test_two_writers_of_one_blob_never_commit_each_others_blocks(stack) -> None:
    lake = stack.bridge().lake
    mine = [b"a" * 1000, b"A" * 1000]
    theirs = [b"b" * 1000, b"B" * 1000]  # another source version of the same file, staged by another run
    path = "parquet/mixed.parquet"
    my_ids = [lake.stage(path, i, block, write_id("run-1", "etag-1")) for i, block in enumerate(mine)]
    for i, block in enumerate(theirs):
        lake.stage(path, i, block, write_id("run-2", "etag-2"))
    lake.commit(path, my_ids, md5=hashlib.md5(b"".join(mine)).digest(), metadata={}, condition=ALWAYS)
    assert stack.lake_bytes(path) == b"".join(mine)


def test_each_log_record_carries_its_own_runs_id_with_two_runs_in_one_process(stack, caplog) -> None:
    import logging

    keys = seed_hours(stack, 6) + seed_hours(stack, 6, dataset="measurementTVOC")
    partitions = sorted({k.rsplit("/", 1)[0] + "/" for k in keys})
    proxy = FaultProxy(stack.azurite.port, azure=True, rule=slow_publishes(0.3))
    caplog.set_level(logging.INFO, logger="shared")
    try:
        bridge = bridge_for(proxied_env(stack, None, proxy, BRIDGE_MAX_CONCURRENCY="1"))
        runs = [
            threading.Thread(target=run_once, args=(bridge,), kwargs={"partition": p}) for p in partitions
        ]
        for run in runs:
            run.start()
            time.sleep(0.5)
        for run in runs:
            run.join(timeout=60)
    finally:
        proxy.close()
    summaries = [r for r in caplog.records if r.name == "shared.run" and r.getMessage().startswith("run ")]
    assert len(summaries) == len(partitions) >= 2
    for record in summaries:
        assert record.run_id == record.getMessage().split()[1]


class Crash(BaseException):
    """The host stopping the process between two steps of a run."""


def _change(stack, key: str, rows: int) -> None:
    at = datetime.now(timezone.utc)
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=key,
        Body=parquet_bytes(make_table(legacy_schema("measurementCO2"), rows, at, random.Random(rows))),
    )


def test_a_changed_file_never_leaves_its_table_describing_other_bytes_even_after_a_crash(
    stack, monkeypatch
) -> None:
    keys = seed_hours(stack, 3)
    bridge = stack.bridge()
    run_once(bridge)
    _change(stack, keys[1], 300)  # the vendor delivers a new, larger version of a copied file

    def crash(*args, **kwargs):
        raise Crash()

    with monkeypatch.context() as patched:
        patched.setattr(DeltaPublisher, "sync", crash)  # dies after publishing, before the table commit
        with pytest.raises(Crash):
            run_once(bridge)
    assert check_tables_match_blobs(stack) > 0
    run_once(bridge)  # the next run heals the table
    assert check_tables_match_blobs(stack) > 0
    rows = [r for r in table_rows(table(stack, "legacy_measurementCO2")) if r["_source_key"] == keys[1]]
    assert len(rows) == 300  # the new version's rows, and only those
    check_promise(stack)


def test_healing_from_a_listing_older_than_another_writers_commit_never_puts_an_old_size_back(stack) -> None:
    keys = seed_hours(stack, 3)
    bridge = stack.bridge()
    slow = run_once(bridge)  # a slow run published these files; its table commit comes late ...
    _change(stack, keys[1], 300)
    run_once(bridge)  # ... after another run replaced one of them and committed its table
    with ThreadPoolExecutor(2) as pool:  # the slow run's commit, from what it listed and copied
        tables = TableStage(slow.plan, bridge.delta_publisher(slow.run_id), pool)
        for outcome in slow.outcomes:
            tables.copied(outcome.item, outcome)
        tables.finish()
    assert check_tables_match_blobs(stack) > 0
    check_promise(stack)


def test_a_publish_that_lands_after_its_run_was_accounted_for_is_in_a_manifest_too(stack) -> None:
    """A gone run's last publish, sent before it learnt it lost its lock, lands after a later run
    listed the lake and while it writes the gone run's manifest: it gets a manifest of its own."""
    keys = seed_hours(stack, 3)  # newest first
    settings = stack.settings(BRIDGE_LOCK_SECONDS="15", BRIDGE_MAX_CONCURRENCY="1")
    dead_run = new_run_id(datetime.now(timezone.utc))
    dead = build_bridge(settings)
    items = {item.key.key: item for item in plan_run(dead, full=True).items}
    judge = SchemaJudge(dead.lake, dead_run)
    for key in keys[1:]:  # the run that dies: two files published, no manifest, no lock any more
        assert copy_file(items[key], CopyContext(dead.source, dead.lake, judge, dead_run)).action == PUBLISHED
    time.sleep(16)  # its files are a lease old: proven gone
    landed: list[str] = []

    def the_late_publish_lands(method: str, url: str) -> None:
        if method == "GET" and not landed:  # after the next run's listing, before its first copy
            landed.append(
                copy_file(items[keys[0]], CopyContext(dead.source, dead.lake, judge, dead_run)).action
            )

    recovering = build_bridge(settings)
    recovering.source.transport.hook = the_late_publish_lands
    first = run_once(recovering, full=True)
    assert landed == [PUBLISHED] and first.recovered_runs == [dead_run]
    time.sleep(16)  # the late file is a lease old too
    run_once(build_bridge(settings), full=True)
    lake = crashcheck.Lake(stack.container, ROOT, delta_storage_options(settings, None), stack.container_name)
    crashcheck.check_finished(lake, stack.s3, stack.bucket, quarantined=set(), snapshots=set())
    check_promise(stack)
