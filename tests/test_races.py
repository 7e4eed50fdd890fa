"""Runs beside other runs and backfill workers, under faults: a run acts only while it holds its
lock, manifests are written for dead runs only, and no table describes other bytes."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import BlobLeaseClient

from shared.demo.bucket import legacy_key, legacy_schema, make_table, parquet_bytes
from shared.model import FAILED, PUBLISHED
from shared.run import run_for_timer, run_once, RunFailed
from shared.sink.lake import META_RUN_ID
from shared.sink.lock import LOCK_PATH, LockLost
from tests.faultproxy import DELAY, PASS, FaultProxy
from tests.promise import check_nothing_partial, check_promise
from tests.test_reliability import bridge_for, proxied_env

pytestmark = pytest.mark.integration

ORG = "6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11"
ROOT = "haltian/raw"


def seed_hours(stack, hours: int, dataset: str = "measurementCO2", seed: int = 3) -> list[str]:
    """One small file per hour, newest first from the current hour back."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    keys = []
    for back in range(hours):
        at = now - timedelta(hours=back)
        key = legacy_key(ORG, dataset, at)
        stack.s3.put_object(Bucket=stack.bucket, Key=key,
                            Body=parquet_bytes(make_table(legacy_schema(dataset), rng.randint(1, 20), at, rng)))
        keys.append(key)
    return keys


def slow_publishes(seconds: float):
    """A proxy rule that delays every Put Blob of a data file (so a run takes a while)."""
    def rule(method: str, path: str) -> str:
        if method == "PUT" and "/parquet/" in path and "comp=" not in path and "_delta_log" not in path:
            return f"{DELAY}{seconds}"
        return PASS
    return rule


def files_of_run(stack, run_id: str) -> list:
    return [b for b in stack.container.list_blobs(name_starts_with=f"{ROOT}/parquet/", include=["metadata"])
            if (b.metadata or {}).get(META_RUN_ID) == run_id]


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


def _no_write_after(stack, run_id: str, lost_at: datetime) -> None:
    # Blob times have whole seconds; a write after the loss shows unless it fell in the same second.
    limit = lost_at.replace(microsecond=0)
    late = [b.name for b in files_of_run(stack, run_id) if b.last_modified > limit]
    assert not late, f"written after the run lost its lock: {late[:3]}"
    manifests = [n for n in stack.lake_names(f"{ROOT}/_manifests/")]
    assert not any(run_id in n for n in manifests) and not any(n.endswith("latest.json") for n in manifests)


def test_a_run_whose_lease_is_broken_and_taken_stops_before_its_next_write(stack) -> None:
    keys = seed_hours(stack, 120)
    proxy = FaultProxy(stack.azurite.port, azure=True, rule=slow_publishes(0.15))
    lock_blob = stack.container.get_blob_client(f"{ROOT}/{LOCK_PATH}")
    try:
        bridge = bridge_for(proxied_env(stack, None, proxy, BRIDGE_LOCK_SECONDS="15", BRIDGE_MAX_CONCURRENCY="2"))
        thread, box = _run_in_thread(bridge)
        _wait_for(lambda: _published_count(stack) >= 5)
        taker = BlobLeaseClient(lock_blob)
        taker.break_lease(lease_break_period=0)  # as an operator might, or an expired lease
        taker.acquire(lease_duration=15)  # ... and another run takes the lock
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
    _no_write_after(stack, run_id, error.lost_at)
    check_nothing_partial(stack)

    taker.release()
    after = run_once(stack.bridge())
    assert run_id in after.recovered_runs  # the next run accounts for the stopped run's files
    check_promise(stack)


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
    check_nothing_partial(stack)


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
