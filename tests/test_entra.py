"""The bridge as Azure runs it: Entra tokens from a managed identity, over HTTPS on a private CA.

The bridge gets ``ADLS_ACCOUNT_URL``, ``AZURE_CLIENT_ID``, the host's identity variables and
``REQUESTS_CA_BUNDLE``, nothing else: no key, no connection string (see tests/rig.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from deltalake import DeltaTable

from shared import cli
from shared.copy import PUBLISHED
from shared.demo.bucket import BucketSpec
from shared.run import run_once
from shared.sink.connect import delta_storage_options
from shared.sink.lake import ALWAYS
from shared.transport import TransportError
from tests.promise import check_promise

pytestmark = pytest.mark.integration

STORAGE = "https://storage.azure.com"
SMALL = dict(
    legacy_hours=3,
    v1_hours=2,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
)


def callers(identity, since: int = 0) -> Counter:
    """Who asked the identity endpoint for storage tokens: the Python SDK or delta-rs (Rust)."""
    return Counter(
        "delta-rs" if "object_store" in i.caller else "azure-identity" if "identity" in i.caller else i.caller
        for i in identity.tokens_for(STORAGE)[since:]
    )


def test_the_timer_run_publishes_files_blocks_and_tables_on_entra_tokens(entra) -> None:
    import function_app

    entra.seed(BucketSpec(**SMALL, large_file_bytes=9 * 1024 * 1024))  # one file goes in blocks
    entra.apply()
    before = len(entra.rig.identity.issued)
    function_app.haltian_bridge.build().get_user_function()(TimerRequest(past_due=False))

    check_promise(entra)  # every file byte for byte, quarantine, manifests
    settings = entra.settings()
    options = delta_storage_options(settings, None)
    assert "account_key" not in options and "bearer_token" not in options  # delta-rs asks the identity itself
    manifest = json.loads(
        entra.container.get_blob_client("haltian/raw/_manifests/latest.json").download_blob().readall()
    )
    assert manifest["status"] == "complete" and manifest["totals"]["failed"] == 0
    assert manifest["tables"] and not any(t["error"] for t in manifest["tables"])
    for entry in (t for t in manifest["tables"] if t["version"] is not None):  # not the all-excluded ones
        table = DeltaTable(
            f"az://{entra.container_name}/{entry['table'].rstrip('/')}", storage_options=options
        )
        assert table.version() == entry["version"]
        assert table.to_pyarrow_table().num_rows > 0
    big = [f for f in manifest["files"] if f["action"] == PUBLISHED and f["bytes"] > 8 * 1024 * 1024]
    assert big, "no file went through Put Block / Put Block List"

    assert not entra.rig.identity.refused
    asked = callers(entra.rig.identity, before)
    assert asked["azure-identity"] >= 1 and asked["delta-rs"] >= 1, asked
    assert {i.client_id for i in entra.rig.identity.issued[before:]} == {entra.rig.identity.client_id}


def test_backfill_queue_status_and_the_queue_and_http_functions_on_entra_tokens(entra, capsys) -> None:
    import function_app

    entra.seed(BucketSpec(**SMALL, bad_files=False))
    entra.apply()
    assert cli.main(["backfill", "--json"]) == cli.EXIT_OK  # through BridgeQueue__queueServiceUri
    queued = json.loads(capsys.readouterr().out)["queued"]
    assert queued

    import threading

    from shared.backfill.local import drain, serve
    from shared.run import Bridge

    # A worker as the Functions host runs one: it reads the queue by identity and invokes the
    # queue-triggered function with each message.
    bridge = Bridge.from_settings(entra.settings())
    handler = function_app.backfill_partition.build().get_user_function()
    stop, handled = threading.Event(), Counter()
    worker = threading.Thread(
        target=serve, args=(bridge.settings, lambda c: handler(func.QueueMessage(body=c)), stop, handled, 5)
    )
    worker.start()
    assert drain(bridge.settings, bridge.lake, stop, settle_seconds=1, timeout=120)
    worker.join(timeout=30)
    assert handled["done"] == len(queued) and not handled["retried"], handled
    assert cli.main(["backfill", "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"queued": [], "skipped_complete": len(queued)}

    http = function_app.backfill.build().get_user_function()
    response = http(func.HttpRequest("POST", "/api/backfill", body=b"{}"))
    assert response.status_code == 202 and json.loads(response.get_body())["skipped_complete"] == len(queued)

    assert cli.main(["status", "--json"]) == cli.EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert document["backfill"]["queued"] == 0 and not document["backfill"]["failed"]
    assert {d["dataset"] for d in document["datasets"]} >= {"legacy/measurementCO2", "v1/measurementCO2"}
    assert not entra.rig.identity.refused


def test_a_refused_token_brings_one_refresh_and_one_retry(entra) -> None:
    identity = entra.rig.identity
    bridge = entra.bridge()
    puts = Counter()
    bridge.lake.writer.transport.hook = lambda method, url: puts.update([method])

    identity.stale_next = 1  # the next token is expired by the service's clock, not by its expires_on
    issued = len(identity.issued)
    bridge.lake.put("probe/one.parquet", b"PAR1", metadata={}, condition=ALWAYS)
    assert puts["PUT"] == 2 and len(identity.issued) - issued == 2
    assert (
        entra.container.get_blob_client("haltian/raw/probe/one.parquet").download_blob().readall() == b"PAR1"
    )

    bridge = entra.bridge()
    puts.clear()
    bridge.lake.writer.transport.hook = lambda method, url: puts.update([method])
    identity.stale_next = 2  # refused twice: one refresh, one retry, then the file fails (for the next run)
    issued = len(identity.issued)
    with pytest.raises(TransportError, match="403 AuthenticationFailed"):
        bridge.lake.put("probe/two.parquet", b"PAR1", metadata={}, condition=ALWAYS)
    assert puts["PUT"] == 2 and len(identity.issued) - issued == 2
    identity.stale_next = 0


def test_a_long_lived_worker_and_a_long_run_outlive_their_tokens(entra) -> None:
    """One bridge (as one worker process keeps it) runs again, and every token it holds expires in
    the middle of that run: each client fetches a new one before it is refused. A dataset new in
    that run has its table created by delta-rs after the tokens expired (the hourly commits are
    the bridge's own, so delta-rs is asked only for what they cannot do)."""
    identity = entra.rig.identity
    entra.seed(BucketSpec(**SMALL, bad_files=False))
    bridge = entra.bridge(BRIDGE_MAX_CONCURRENCY="1")
    first = run_once(bridge)
    assert first.exit_code == 0 and first.count(PUBLISHED)

    entra.seed(
        BucketSpec(
            **{
                **SMALL,
                "end": BucketSpec().end - timedelta(hours=12),
                "legacy_measurements": ["measurementCO2", "measurementAmbientTemperature"],
            },
            bad_files=False,
        )
    )
    before = len(identity.tokens_for(STORAGE))

    puts = Counter()

    def outlive_the_tokens(method: str, url: str) -> None:
        """Before the run's second upload (the one copy thread), waits until every token is expired."""
        puts[method] += 1
        if puts["PUT"] == 2:
            newest = max(i.exp for i in identity.tokens_for(STORAGE))
            time.sleep(max(0.0, newest - time.time() + 1.5))

    bridge.lake.writer.transport.hook = outlive_the_tokens
    second = run_once(bridge, full=True)
    assert second.exit_code == 0 and second.count(PUBLISHED) > 2 and puts["PUT"] > 2, second.summary()
    assert any(t.added for t in second.tables) and not any(t.error for t in second.tables)
    assert any(t.dataset == "measurementAmbientTemperature" and t.added for t in second.tables)
    asked = callers(identity, before)
    assert asked["azure-identity"] >= 1 and asked["delta-rs"] >= 1, asked
    assert not identity.refused
    check_promise(entra)
