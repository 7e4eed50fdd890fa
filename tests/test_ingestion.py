"""Telemetry as Application Insights receives it: the exporter's real requests, in a worker process.

A worker process (tests/worker_invocation.py) runs the timer function once on the Entra rig,
exporting to a local ingestion endpoint with a token from the managed identity, then stays alive
and idle, as a Functions worker does. Everything asserted comes from the envelopes received.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shared import telemetry_names as names
from shared.demo import servers
from shared.demo.bucket import BucketSpec
from tests.awsauth import aws_secrets
from tests.ingestion import Ingestion

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(
    legacy_hours=3,
    v1_hours=2,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
)
MONITOR = "https://monitor.azure.com"


def kql_queries() -> list[str]:
    """Every query the alerts and the workbook run."""
    alerts = (ROOT / "infra" / "app" / "alerts.bicep").read_text()
    queries = re.findall(r"= '''(.*?)'''", alerts, re.DOTALL)
    workbook = json.loads((ROOT / "infra" / "app" / "workbook.json").read_text())

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("query"), str):
                queries.append(node["query"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(workbook)
    assert len(queries) >= 10
    return queries


@pytest.fixture
def ingestion(rig):
    endpoint = Ingestion(str(rig.certificates.cert), str(rig.certificates.key)).start()
    yield endpoint
    endpoint.stop()


def test_a_worker_invocation_delivers_every_alert_and_workbook_metric_before_it_returns(
    entra, ingestion
) -> None:
    entra.seed(BucketSpec(**SMALL))
    # A table delta-rs cannot load (as if its log were damaged): the run's table error metric.
    entra.container.upload_blob(
        "haltian/raw/_tables/legacy_measurementCO2/_delta_log/00000000000000000000.json", b"not a Delta log"
    )
    client_id = entra.rig.identity.client_id
    env = {
        **os.environ,
        **entra.env(BRIDGE_MAX_CONCURRENCY="1", BRIDGE_TIME_BUDGET_SECONDS="3"),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string(str(uuid.uuid4())),
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={client_id};Authorization=AAD",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "HALTIAN_TEST_REFUSE_GET": "6",
        "HALTIAN_TEST_STALL_GET": "7",
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "worker_invocation.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = worker.stdout.readline()
        returned = time.time()
        assert line.strip() == "invocation returned", line
        # Flushed before the invocation returned: nothing waits for the exporter's 60 s interval.
        assert ingestion.wait_for(
            lambda: {names.RUNS, names.LAG_OLDEST_PENDING} <= metric_names(ingestion), 5
        ), metric_names(ingestion)
        time.sleep(0.5)
        assert worker.poll() is None  # the worker lives on, idle, as the Functions worker does
    finally:
        worker.kill()
        worker.wait()
    assert all(r.at <= returned + 5 for r in ingestion.received)

    # Authenticated as the managed identity, for Azure Monitor.
    tokens = {i.token for i in entra.rig.identity.issued if i.resource.rstrip("/") == MONITOR}
    assert tokens and {r.authorization for r in ingestion.received} <= {f"Bearer {t}" for t in tokens}

    metrics = {}
    for record in ingestion.metrics():
        for metric in record.data["metrics"]:
            metrics.setdefault(metric["name"], []).append(record.data.get("properties", {}))
    assert set(names.ALL) <= set(metrics), set(names.ALL) - set(metrics)
    for name in (names.RUNS, names.RUN_DURATION):
        assert all({"status", "mode"} <= set(p) for p in metrics[name]), metrics[name]
    for name in set(names.ALL) - {names.RUNS, names.RUN_DURATION}:
        assert all({"layout", "dataset"} <= set(p) for p in metrics[name]), (name, metrics[name])
    assert {p["status"] for p in metrics[names.RUNS]} == {"failed"}  # a file failed: the run alert's signal

    manifest = json.loads(
        entra.container.get_blob_client("haltian/raw/_manifests/latest.json").download_blob().readall()
    )
    totals = manifest["totals"]
    assert (
        totals["failed"] == 1
        and totals["quarantined"] >= 1
        and totals["deferred"] >= 1
        and totals["published"]
    )
    bridge_traces = [
        r for r in ingestion.traces() if r.data.get("properties", {}).get("run_id") not in (None, "-")
    ]
    assert bridge_traces and {r.data["properties"]["run_id"] for r in bridge_traces} == {manifest["run_id"]}
    summary = [r for r in bridge_traces if r.data["message"].startswith(f"run {manifest['run_id']} (")]
    assert any(r.data["severityLevel"] == 3 for r in summary)  # files failed: an error log (severityLevel 3)

    # No secret in any envelope: not the identity header, no token, no key.
    text = json.dumps([r.envelope for r in ingestion.received])
    for secret in [
        entra.rig.identity.header_secret,
        servers.AZURITE_KEY,
        *aws_secrets(),
        *(i.token for i in entra.rig.identity.issued),
    ]:
        assert secret not in text
    assert "Bearer" not in text and "eyJ" not in text

    # The alert and workbook queries read exactly the tables and columns these envelopes make.
    seen = {"customMetrics": set(), "traces": set()}
    for record in ingestion.received:
        if record.table in seen:
            seen[record.table] |= set(record.data.get("properties", {}))
    for query in kql_queries():
        tables = set(
            re.findall(r"\b(customMetrics|traces|exceptions|requests|dependencies|customEvents)\b", query)
        )
        assert tables and tables <= {"customMetrics", "traces", "exceptions"}, query
        columns = set(re.findall(r"customDimensions\.(\w+)", query))
        known = set().union(*(seen.get(t, set()) for t in tables))
        if "exceptions" not in tables:
            assert columns <= known, (columns - known, query)
        for metric in re.findall(r"'(bridge_\w+)'", query):
            assert metric in metrics, (metric, query)
    traced = ingestion.traces()[0].data
    assert {"message", "severityLevel"} <= set(traced)


def metric_names(ingestion: Ingestion) -> set[str]:
    return {m["name"] for r in ingestion.metrics() for m in r.data["metrics"]}
