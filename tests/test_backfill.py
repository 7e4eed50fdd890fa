"""Backfills through an Azurite queue, processed by several workers the way the Functions host would."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceExistsError
from botocore.exceptions import EndpointConnectionError

from shared import cli
from shared.backfill.local import WorkerKilled, drain, serve
from shared.backfill.queue import MAX_DEQUEUE_COUNT, process_message, queue_client
from shared.demo import servers
from shared.demo.bucket import BucketSpec, legacy_key, legacy_schema, make_table, parquet_bytes
from shared.run import build_bridge, run_once
from tests.faultproxy import DELAY, PASS, FaultProxy
from tests.promise import check_promise, manifests
from tests.test_reliability import bridge_for, proxied_env

pytestmark = pytest.mark.integration

VISIBILITY = 3  # seconds a received message stays invisible (the host renews it while it works)
ORG = BucketSpec().organization


@pytest.fixture(scope="session")
def queue_server():
    server = servers.azurite_queue().start()
    yield server
    server.stop()


@pytest.fixture
def env(stack, queue_server, monkeypatch) -> dict[str, str]:
    values = stack.env(
        BridgeQueue=servers.azurite_queue_connection_string(queue_server),
        BRIDGE_BACKFILL_QUEUE=f"backfill-{stack.container_name}"[:63],
        BRIDGE_LOCK_SECONDS="15",
        BRIDGE_MAX_CONCURRENCY="2",
    )
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def seed_history(stack, months: int = 4, per_month: int = 6) -> None:
    now = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(5)
    for back in range(months):
        first = (now - timedelta(days=32 * back)).replace(day=1)
        for i in range(per_month):
            at = first + timedelta(days=i, hours=i)
            for dataset in ("measurementCO2", "measurementTVOC"):
                stack.s3.put_object(
                    Bucket=stack.bucket,
                    Key=legacy_key(ORG, dataset, at),
                    Body=parquet_bytes(make_table(legacy_schema(dataset), rng.randint(0, 20), at, rng)),
                )


def test_four_workers_one_killed_leave_the_lake_exact_and_copy_nothing_twice(stack, env, capsys) -> None:
    from function_app import backfill_partition

    seed_history(stack)
    assert cli.main(["backfill", "--json"]) == cli.EXIT_OK
    queued = json.loads(capsys.readouterr().out)
    assert len(queued["queued"]) == 8 and queued["skipped_complete"] == 0

    settings = build_bridge(stack.settings(**env)).settings
    killed_bridge = build_bridge(settings)
    gets = Counter()

    def die_on_the_third_get(method: str, url: str) -> None:
        gets["n"] += 1
        if gets["n"] == 3:
            raise WorkerKilled()

    killed_bridge.source.transport.hook = die_on_the_third_get  # called before each GET is sent

    def real(content: bytes) -> None:
        backfill_partition.build().get_user_function()(func.QueueMessage(body=content))

    stop = threading.Event()
    handled = Counter()
    workers = [
        threading.Thread(
            target=serve,
            args=(settings, lambda c: process_message(killed_bridge, c.decode()), stop, handled, VISIBILITY),
        )
    ]
    workers += [
        threading.Thread(target=serve, args=(settings, real, stop, handled, VISIBILITY)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    assert drain(settings, killed_bridge.lake, stop, settle_seconds=VISIBILITY + 1, timeout=180)
    for worker in workers:
        worker.join(timeout=30)
    assert handled["killed"] == 1 and handled["done"] >= 8

    check_promise(stack)
    published = Counter()
    for manifest in manifests(stack):
        published.update(f["source_key"] for f in manifest["files"] if f["action"] == "published")
    assert published and max(published.values()) == 1  # every file copied (and reported) exactly once
    assert cli.main(["backfill", "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"queued": [], "skipped_complete": 8}


def test_http_trigger_validates_and_queues(stack, env) -> None:
    from function_app import backfill

    seed_history(stack, months=2, per_month=2)
    handler = backfill.build().get_user_function()
    bad = handler(func.HttpRequest("POST", "/api/backfill", body=b'{"from": "March"}'))
    assert bad.status_code == 400 and "must be a month" in json.loads(bad.get_body())["error"]
    now = datetime.now(timezone.utc)
    body = json.dumps({"from": f"{now:%Y-%m}", "datasets": ["measurementCO2"]}).encode()
    response = handler(func.HttpRequest("POST", "/api/backfill", body=body))
    assert response.status_code == 202
    assert json.loads(response.get_body())["queued"] == [f"parquet/{ORG}/measurementCO2/{now:%Y/%m}/"]


def test_a_partition_that_keeps_failing_ends_in_the_poison_queue_and_status_reports_it(
    stack, env, capsys
) -> None:
    seed_history(stack, months=1, per_month=2)
    settings = build_bridge(stack.settings(**env)).settings
    assert cli.main(["backfill"]) == cli.EXIT_OK
    capsys.readouterr()
    broken = build_bridge(settings)

    def refuse(method: str, url: str) -> None:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1 (injected)")

    broken.source.transport.hook = refuse  # called before each GET is sent
    stop = threading.Event()
    handled = Counter()
    worker = threading.Thread(
        target=serve,
        args=(settings, lambda c: process_message(broken, c.decode()), stop, handled, VISIBILITY),
    )
    worker.start()
    poison = queue_client(settings, poison=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if poison.get_queue_properties().approximate_message_count >= 2:
                break
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(0.5)
    stop.set()
    worker.join(timeout=30)
    assert handled["retried"] >= 2 * MAX_DEQUEUE_COUNT
    assert cli.main(["status", "--json"]) == cli.EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert sorted(document["backfill"]["failed"]) == sorted(
        f"parquet/{ORG}/{d}/{datetime.now(timezone.utc):%Y/%m}/"
        for d in ("measurementCO2", "measurementTVOC")
    )
    assert {d["dataset"] for d in document["datasets"]} >= {"legacy/measurementCO2"}


def _take(settings, partition_dataset: str) -> str:
    """Receives the queued message of one dataset's partition (as a worker would) and deletes it."""
    queue = queue_client(settings)
    found = None
    for message in queue.receive_messages(max_messages=32, visibility_timeout=60):
        body = message.content.decode()
        if found is None and f"/{partition_dataset}/" in body:
            queue.delete_message(message)
            found = body
        else:
            queue.update_message(message, visibility_timeout=0)  # visible again for the next taker
    assert found is not None, f"no message for {partition_dataset}"
    return found


def _queued(settings) -> list[str]:
    return sorted(m.content.decode() for m in queue_client(settings).peek_messages(max_messages=32))


def test_a_partition_out_of_time_budget_is_queued_again(stack, env, capsys) -> None:
    seed_history(stack, months=1, per_month=8)
    assert cli.main(["backfill"]) == cli.EXIT_OK
    capsys.readouterr()
    settings = build_bridge(stack.settings(**env)).settings
    body = _take(settings, "measurementCO2")

    def slow(method: str, path: str) -> str:
        if (
            method == "PUT"
            and "/parquet/" in path
            and "comp=" not in path
            and "_delta_log" not in path
            and "/_state/" not in path
        ):
            return f"{DELAY}1.0"
        return PASS

    proxy = FaultProxy(stack.azurite.port, azure=True, rule=slow)
    try:
        hurried = bridge_for(
            proxied_env(
                stack,
                None,
                proxy,
                **{**env, "BRIDGE_TIME_BUDGET_SECONDS": "3", "BRIDGE_MAX_CONCURRENCY": "1"},
            )
        )
        result = process_message(hurried, body)
    finally:
        proxy.close()
    assert result.outcomes and result.deferred
    assert body in _queued(settings), "the partition's files left by the budget were dropped from the queue"
    process_message(build_bridge(settings), _take(settings, "measurementCO2"))
    process_message(build_bridge(settings), _take(settings, "measurementTVOC"))
    assert _queued(settings) == []
    check_promise(stack)


def test_a_partition_whose_table_commit_keeps_conflicting_is_not_failed(
    stack, env, capsys, monkeypatch
) -> None:
    from deltalake.exceptions import CommitFailedError

    from shared.tables import delta

    seed_history(stack, months=1, per_month=3)
    assert cli.main(["backfill"]) == cli.EXIT_OK
    capsys.readouterr()
    settings = build_bridge(stack.settings(**env)).settings

    def conflict(self, files, change):
        raise CommitFailedError("another writer committed first (injected)")

    with monkeypatch.context() as patched:
        patched.setattr(delta.DeltaPublisher, "_sync_once", conflict)  # as other partitions' workers would
        patched.setattr(delta, "COMMIT_ATTEMPTS", 2)
        result = process_message(build_bridge(settings), _take(settings, "measurementCO2"))
    assert result.table_errors and not result.failed and result.count("published") == 3
    assert [m for m in _queued(settings) if "measurementCO2" in m] == []  # done, not retried towards poison
    process_message(build_bridge(settings), _take(settings, "measurementTVOC"))
    run_once(build_bridge(settings), full=True)  # the next full reconcile commits the table
    check_promise(stack)


def test_a_message_is_kept_invisible_while_its_handler_works(stack, env) -> None:
    """As the Functions host does: a handler that runs for several visibility timeouts keeps its
    message, so no second worker gets it, and the message is deleted when the handler returns."""
    settings = build_bridge(stack.settings(**env)).settings
    queue = queue_client(settings)
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    queue.send_message(b"one partition")
    calls: list[str] = []

    def slow(content: bytes) -> None:
        calls.append(threading.current_thread().name)
        time.sleep(VISIBILITY * 2.5)

    stop = threading.Event()
    handled = Counter()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            serve(settings, slow, stop, handled, VISIBILITY)
        except BaseException as err:  # noqa: BLE001 - what the thread would die of
            errors.append(err)

    workers = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(2)]
    for thread in workers:
        thread.start()
    deadline = time.monotonic() + VISIBILITY * 6
    while time.monotonic() < deadline and not handled["done"]:
        time.sleep(0.2)
    time.sleep(VISIBILITY + 1)  # were the message to reappear, the other worker would take it now
    stop.set()
    for thread in workers:
        thread.join(timeout=30)
    assert errors == [] and len(calls) == 1 and handled == Counter(done=1)
    assert queue.get_queue_properties().approximate_message_count == 0
