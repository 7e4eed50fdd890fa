"""Faults against the real servers, bad keys and odd files; the promise checked after each."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import jsonschema
import pyarrow as pa
import pytest
from azure.core.exceptions import AzureError
from botocore.exceptions import BotoCoreError, ClientError

from shared import cli
from shared.errors import describe
from shared.model import FAILED, FULL, PUBLISHED
from shared.demo import servers
from shared.demo.bucket import BucketSpec, make_table, parquet_bytes, v1_key
from shared.manifest.build import manifest_schema
from shared.run import run_once
from shared.sink.lock import LockLost, RunLocked
from tests.faultproxy import DELAY, FAULTS, FORBIDDEN, PASS, THROTTLE, FaultProxy, list_prefix, random_faults
from tests.promise import check_nothing_partial, check_promise
from tests.stacks import aws_credentials

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[1]
SMALL = dict(
    legacy_hours=4,
    v1_hours=3,
    legacy_measurements=["measurementCO2", "measurementTVOC"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
)


def proxied_env(stack, s3_proxy: FaultProxy | None, lake_proxy: FaultProxy | None, **overrides: str) -> dict:
    env = stack.env(**overrides)
    if s3_proxy is not None:
        env["HALTIAN_S3_ENDPOINT_URL"] = s3_proxy.url
    if lake_proxy is not None:
        env["ADLS_CONNECTION_STRING"] = env["ADLS_CONNECTION_STRING"].replace(
            stack.azurite.url, lake_proxy.url
        )
    return env


class HostKilled(BaseException):
    """Stands in for the host stopping the process."""


def run_killed_before_tables(stack, monkeypatch, **overrides: str) -> None:
    """One run that the host stops after it published its files, before its Delta tables and
    its manifest."""

    def crash(*args, **kwargs):
        raise HostKilled()

    with monkeypatch.context() as patched, pytest.raises(HostKilled):
        patched.setattr("shared.tables.delta.DeltaPublisher.sync", crash)
        run_once(stack.bridge(**overrides))


def bridge_for(env: dict):
    from shared.run import Bridge
    from shared.settings import Settings

    return Bridge.from_settings(Settings.from_mapping(env))


def run_once_the_lock_is_free(bridge, within: float = 60):
    """The timer's next run, which comes once any lease a stopped run left (or a renewal of it
    that landed late) has expired."""
    deadline = time.monotonic() + within
    while True:
        try:
            return run_once(bridge)
        except RunLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


def test_throttling_server_errors_and_resets_on_both_sides(stack) -> None:
    stack.seed(BucketSpec(**SMALL, large_file_bytes=10 * 1024 * 1024))
    s3_proxy = FaultProxy(stack.moto.port, rule=random_faults(seed=11, rate=0.2))
    lake_proxy = FaultProxy(stack.azurite.port, azure=True, rule=random_faults(seed=12, rate=0.2))
    lost_lock = False
    try:
        try:
            faulty = run_once(bridge_for(proxied_env(stack, s3_proxy, lake_proxy, BRIDGE_LOCK_SECONDS="15")))
            assert faulty.count(PUBLISHED) > 0 and check_nothing_partial(stack) > 0
            assert s3_proxy.counts[THROTTLE] > 0 and lake_proxy.counts[THROTTLE] > 0
        except (AzureError, BotoCoreError, ClientError, LockLost) as err:
            # One of the run's own requests (its plan's listings, its manifest, its lock's renewals)
            # met more faults in a row than the SDK retries: the run stops, as it would in Azure,
            # and the clean run below finishes the job. A file's or a table's error never stops a
            # run: it is that one's own. Stopped early, it may not have reached both sides' faults.
            print(f"the faulty run stopped: {describe(err)}")
            check_nothing_partial(stack)
            assert sum(proxy.counts[fault] for proxy in (s3_proxy, lake_proxy) for fault in FAULTS) > 0
            lost_lock = isinstance(err, LockLost)
    finally:
        s3_proxy.close()
        lake_proxy.close()
    if lost_lock:
        # A run that lost its lock is accounted for once one lease has passed since its last write
        # (it might still have had a publish on its way); the timer's next run comes an hour later.
        time.sleep(16)
    clean = run_once_the_lock_is_free(stack.bridge(BRIDGE_LOCK_SECONDS="15"))  # a release that met a fault
    assert clean.exit_code == 0
    check_promise(stack)


def test_transient_errors_are_retried_then_left_and_terminal_ones_are_not_retried(stack) -> None:
    objects = stack.seed(BucketSpec(**SMALL))
    victim = next(w.key for w, _ in objects if w.expect == "good")
    bad = next(w.key for w, _ in objects if w.expect == "quarantine")
    proxy = FaultProxy(
        stack.moto.port,
        rule=lambda method, path: (
            THROTTLE if method == "GET" and path.split("?")[0].endswith(victim.rsplit("/", 1)[1]) else PASS
        ),
    )
    try:
        result = run_once(bridge_for(proxied_env(stack, proxy, None)))
    finally:
        proxy.close()
    failed = [o for o in result.outcomes if o.action == FAILED]
    assert [o.item.key.key for o in failed] == [victim]
    assert "SlowDown" in failed[0].reason
    gets = {path: n for (method, path), n in proxy.requests.items() if method == "GET"}
    # botocore's standard mode: the first attempt and max_attempts=5 retries, with jittered backoff.
    assert gets[f"/{stack.bucket}/{victim}"] == 6
    assert gets[f"/{stack.bucket}/{bad}"] == 1  # unreadable: quarantined, never retried
    assert run_once(stack.bridge()).exit_code == 0
    check_promise(stack)


def test_the_time_budget_running_out_mid_copy(stack) -> None:
    stack.seed(BucketSpec(**SMALL))
    # Each file's GET slow, the listings not: the budget runs out while files are being copied.
    slow = FaultProxy(
        stack.moto.port,
        rule=lambda method, path: (
            f"{DELAY}0.3" if method == "GET" and path.split("?")[0].endswith(".parquet") else PASS
        ),
    )
    try:
        result = run_once(
            bridge_for(
                proxied_env(stack, slow, None, BRIDGE_TIME_BUDGET_SECONDS="1", BRIDGE_MAX_CONCURRENCY="2")
            )
        )
    finally:
        slow.close()
    assert result.count(PUBLISHED) > 0 and sum(result.deferred.values()) > 0
    check_nothing_partial(stack)
    assert run_once(stack.bridge()).status == "complete"
    check_promise(stack)


@pytest.fixture
def own_servers(tmp_path):
    """A moto and an Azurite (keeping its data on disk) that a test may kill and restart."""
    moto = servers.moto_server().start()
    azurite = servers.azurite(location=tmp_path / "azurite").start()
    yield moto, azurite
    moto.stop()
    azurite.stop()


def _run_in_thread(bridge):
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = run_once(bridge)
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            box["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _wait_for_files(stack, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(stack.data_files()) < at_least:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.05)


def test_azurite_killed_mid_run_and_restarted_with_its_data(own_servers, make_stack) -> None:
    moto, azurite = own_servers
    stack = make_stack(moto, azurite)
    stack.seed(BucketSpec(**{**SMALL, "legacy_hours": 24}, large_file_bytes=12 * 1024 * 1024))
    # Azurite saves its metadata database every few seconds: a SIGKILL loses what came after the
    # last save. Let the container itself be saved; losing the run's later writes is part of the test.
    time.sleep(6)
    thread, box = _run_in_thread(stack.bridge(BRIDGE_MAX_CONCURRENCY="2"))
    _wait_for_files(stack, 10)
    azurite.kill()
    time.sleep(1)
    azurite.start()
    thread.join(timeout=240)
    assert not thread.is_alive()
    check_nothing_partial(stack)
    # Unlike Azure Storage, a killed Azurite forgets writes it had acknowledged since its last
    # save, in any month: the follow-up run reconciles every month, not just the recent ones.
    assert run_once(stack.bridge(), full=True).exit_code == 0
    check_promise(
        stack, reported_once=False
    )  # Azurite forgot files a manifest reports; they are copied again


def test_moto_killed_mid_run_and_restarted(own_servers, make_stack) -> None:
    moto, azurite = own_servers
    stack = make_stack(moto, azurite)
    objects = stack.seed(BucketSpec(**{**SMALL, "legacy_hours": 24}, large_file_bytes=12 * 1024 * 1024))
    thread, box = _run_in_thread(stack.bridge(BRIDGE_MAX_CONCURRENCY="2"))
    _wait_for_files(stack, 10)
    moto.kill()
    time.sleep(1)
    moto.start()
    stack.reseed(objects)  # moto keeps nothing across a restart; Haltian's bucket would
    thread.join(timeout=240)
    assert not thread.is_alive()
    check_nothing_partial(stack)
    assert run_once(stack.bridge()).exit_code == 0
    check_promise(stack)


def test_a_killed_run_leaves_a_lock_that_expires(stack, monkeypatch, capsys) -> None:
    stack.seed(BucketSpec(**{**SMALL, "legacy_hours": 48}, large_file_bytes=12 * 1024 * 1024))
    env = {**os.environ, **stack.env(BRIDGE_LOCK_SECONDS="15", BRIDGE_MAX_CONCURRENCY="2")}
    process = subprocess.Popen(
        [sys.executable, "-m", "shared", "run"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_files(stack, 5)
    finally:
        process.send_signal(signal.SIGKILL)  # as the Functions host stopping the process
        process.wait()
    killed_at = time.monotonic()
    check_nothing_partial(stack)
    assert not any("_manifests/" in n for n in stack.lake_names())

    for name, value in stack.env(BRIDGE_LOCK_SECONDS="15").items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == cli.EXIT_LOCKED
    assert "another bridge run holds the lock" in capsys.readouterr().err
    time.sleep(max(0.0, 16 - (time.monotonic() - killed_at)))
    assert cli.main(["run"]) == cli.EXIT_OK
    latest = json.loads(
        stack.container.get_blob_client("haltian/raw/_manifests/latest.json").download_blob().readall()
    )
    (killed_run,) = latest["recovered_runs"]
    day = f"{killed_run[:4]}/{killed_run[4:6]}/{killed_run[6:8]}"
    stub = json.loads(
        stack.container.get_blob_client(f"haltian/raw/_manifests/{day}/{killed_run}.json")
        .download_blob()
        .readall()
    )
    jsonschema.validate(stub, manifest_schema())
    assert stub["status"] == "interrupted" and stub["recovered_by"] == latest["run_id"]
    assert len(stub["files"]) >= 5
    assert cli.main(["run"]) == cli.EXIT_OK
    again = json.loads(
        stack.container.get_blob_client("haltian/raw/_manifests/latest.json").download_blob().readall()
    )
    assert again["recovered_runs"] == []  # reported once
    check_promise(stack)


ODD_KEYS = [
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/measurementCO2/2026/11/2026_11_01_00_measurement CO2.parquet",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/measurementCO2/2026/11/2026+11+01_measurementCO2.parquet",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/measurementCO2/2026/11/100%_measurementCO2.parquet",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/measurementCO2/2026/11/2026_11_01_00_mittausCO2ä.parquet",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11//measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/./measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/../../_manifests/latest.json",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/measurementCO2/../../../_state/run.lock",
    "parquet/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/" + "x" * 900 + "/2026/11/2026_11_01_00_x.parquet",
    "parquet/_delta_log/00000000000000000000.json",
    "elsewhere/6f1c1f7e-3c5a-4a53-9f4e-2b7d9a1c0e11/measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
]


def test_odd_keys_are_counted_never_copied_and_never_escape_the_root(stack) -> None:
    spec = BucketSpec(**SMALL, bad_files=False)
    stack.seed(spec)
    body = parquet_bytes(
        make_table(pa.schema([pa.field("deviceId", pa.string())]), 1, spec.end, random.Random(1))
    )
    for key in ODD_KEYS:
        stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    other = "11111111-2222-4333-8444-555555555555"
    stack.s3.put_object(
        Bucket=stack.bucket,
        Key=f"parquet/{other}/measurementCO2/2026/11/2026_11_01_00_measurementCO2.parquet",
        Body=body,
    )
    result = run_once(stack.bridge(HALTIAN_ORGANIZATION_ID=spec.organization), full=True)
    in_prefix = [k for k in ODD_KEYS if k.startswith("parquet/6f1c")]
    assert result.plan.unrecognized == len(in_prefix)
    names = stack.lake_names()
    assert all(n.startswith("haltian/raw/") for n in names)
    assert not any(other in n for n in names)
    assert not any(part in n for n in names for part in ("//", "/./", "/../", " ", "%", "+", "ä"))
    latest = stack.container.get_blob_client("haltian/raw/_manifests/latest.json").download_blob().readall()
    assert result.run_id.encode() in latest  # the bridge's own manifest, not a Haltian file
    check_promise(stack, organization=spec.organization)


def test_a_huge_schema_and_an_empty_file_are_fine(stack) -> None:
    spec = BucketSpec(**SMALL, bad_files=False)
    stack.seed(spec)
    wide = pa.schema(
        [pa.field("deviceId", pa.string()), pa.field("measuredAt", pa.timestamp("us", tz="UTC"))]
        + [pa.field(f"sensor{i:04d}", pa.float64()) for i in range(3000)]
    )
    at = spec.end
    key = v1_key(spec.organization, "measurementWide", at, at)
    stack.s3.put_object(
        Bucket=stack.bucket, Key=key, Body=parquet_bytes(make_table(wide, 3, at, random.Random(2)))
    )
    empty = v1_key(spec.organization, "measurementWide", at - timedelta(hours=1), at)
    stack.s3.put_object(
        Bucket=stack.bucket, Key=empty, Body=parquet_bytes(make_table(wide, 0, at, random.Random(3)))
    )
    result = run_once(stack.bridge())
    outcome = next(o for o in result.outcomes if o.item.key.key == key)
    assert outcome.action == PUBLISHED and outcome.rows == 3
    assert next(o for o in result.outcomes if o.item.key.key == empty).rows == 0  # empty files are copied
    check_promise(stack)


def test_timeouts_are_retried_on_both_sides(stack) -> None:
    """A server that stalls past the client's read timeout: the SDKs retry, and the file lands."""
    import boto3
    import botocore.config
    from azure.storage.blob import BlobServiceClient

    from shared.run import Bridge
    from shared.sink.blob_writer import azure_transport
    from shared.sink.lake import Lake
    from shared.source.s3 import S3Source

    objects = stack.seed(BucketSpec(**SMALL, bad_files=False))
    victim = objects[0][0].key
    stalls = {"GET": 0, "PUT": 0}

    def stall_once(method: str, path: str) -> str:
        if method in stalls and victim.rsplit("/", 1)[1] in path and stalls[method] < 1:
            stalls[method] += 1
            return f"{DELAY}3"
        return PASS

    s3_proxy = FaultProxy(stack.moto.port, rule=stall_once)
    lake_proxy = FaultProxy(stack.azurite.port, azure=True, rule=stall_once)
    try:
        env = proxied_env(stack, s3_proxy, lake_proxy)
        settings = bridge_for(env).settings
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_proxy.url,
            region_name="eu-west-1",
            aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            config=botocore.config.Config(
                read_timeout=1, connect_timeout=1, retries={"mode": "standard", "max_attempts": 5}
            ),
        )
        service = BlobServiceClient.from_connection_string(
            env["ADLS_CONNECTION_STRING"], read_timeout=1, connection_timeout=1
        )
        lake = Lake(
            service.get_container_client(stack.container_name),
            settings.adls_root,
            azure_transport(8, connect_timeout=1, read_timeout=1),
        )
        result = run_once(Bridge(settings, S3Source(s3, stack.bucket, aws_credentials()), lake, None))
    finally:
        s3_proxy.close()
        lake_proxy.close()
    assert stalls == {"GET": 1, "PUT": 1}  # both sides stalled past their timeouts
    assert next(o for o in result.outcomes if o.item.key.key == victim).action == PUBLISHED
    assert result.exit_code == 0
    check_promise(stack)


def test_a_lake_that_fails_the_recovery_leaves_it_to_the_next_run(stack, monkeypatch) -> None:
    """A run stopped before its manifest. The next run cannot list the manifests' day folder (a
    403), so it cannot tell whether that run is accounted for: it writes its own manifest all
    the same, and the run after it writes the interrupted one."""
    objects = stack.seed(BucketSpec(**SMALL, bad_files=False))
    run_killed_before_tables(stack, monkeypatch, BRIDGE_LOCK_SECONDS="15")
    crashed_at = time.time()
    refused: list[str] = []

    def rule(method: str, path: str) -> str:
        prefix = list_prefix(method, path)
        if prefix is not None and re.fullmatch(r".*_manifests/\d{4}/\d{2}/\d{2}/", prefix):
            refused.append(path)
            return FORBIDDEN
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=rule)
    try:
        second = run_once(bridge_for(proxied_env(stack, None, proxy, BRIDGE_LOCK_SECONDS="15")))
    finally:
        proxy.close()
    assert refused and second.manifest_path is not None and second.recovered_runs == []
    assert second.exit_code == 0 and second.status == "incomplete"  # its own work is done, not the recovery
    assert "AuthorizationPermissionMismatch" in second.recovery_error
    written = json.loads(stack.lake_bytes(second.manifest_path[len("haltian/raw/") :]))
    jsonschema.validate(written, manifest_schema())
    assert written["status"] == "incomplete" and written["recovery_error"] == second.recovery_error

    # The crashed run is now two holders back in the lock's record, so it counts as gone once
    # its newest file is older than a lease.
    time.sleep(max(0.0, 15.5 - (time.time() - crashed_at)))
    third = run_once(
        stack.bridge(BRIDGE_LOCK_SECONDS="15")
    )  # a full reconcile again: the second was not done
    assert third.plan.mode == FULL
    (crashed,) = third.recovered_runs
    day = f"{crashed[:4]}/{crashed[4:6]}/{crashed[6:8]}"
    manifest = json.loads(stack.lake_bytes(f"_manifests/{day}/{crashed}.json"))
    assert manifest["status"] == "interrupted" and len(manifest["files"]) == len(objects)
    check_promise(stack)
