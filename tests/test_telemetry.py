"""Metrics a run emits, collected with the OpenTelemetry SDK's in-memory reader."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import EndpointConnectionError
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import telemetry_names as names
from shared.model import PUBLISHED
from shared.demo.bucket import BucketSpec
from shared.run import run_once

pytestmark = pytest.mark.integration

SMALL = dict(
    legacy_hours=3,
    v1_hours=2,
    legacy_measurements=["measurementCO2"],
    v1_measurements=["measurementCO2"],
    legacy_snapshots=["device"],
    v1_snapshots=["devices"],
)


@pytest.fixture(scope="session")
def reader() -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))  # once per process
    return reader


def collect(reader: InMemoryMetricReader) -> dict[str, list]:
    points: dict[str, list] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points.setdefault(metric.name, []).extend(metric.data.data_points)
    return points


def test_a_run_emits_every_metric_the_alerts_and_workbook_use(stack, reader) -> None:
    objects = stack.seed(BucketSpec(**SMALL))
    victim = next(w.key for w, _ in objects if w.expect == "good")
    bridge = stack.bridge()

    def refuse(method: str, url: str) -> None:  # the transport's hook, called before each GET is sent
        if url.endswith(victim):
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1 (injected)")

    bridge.source.transport.hook = refuse
    # A table delta-rs cannot load (as if its log were damaged): that table's error, the run goes on.
    damaged = "haltian/raw/_tables/legacy_measurementCO2/_delta_log/00000000000000000000.json"
    stack.container.upload_blob(damaged, b"not a Delta log")
    result = run_once(bridge)
    stack.container.delete_blob(damaged)
    bridge.source.transport.hook = None
    tight = stack.bridge(BRIDGE_TIME_BUDGET_SECONDS="1")

    class SpendBudget:
        def start(self, files: int, size: int) -> None:
            time.sleep(1.1)

        def advance(self, files: int, size: int) -> None:
            pass

    deferred = run_once(tight, full=True, progress=SpendBudget())
    assert sum(deferred.deferred.values()) == 1

    points = collect(reader)
    assert set(names.ALL) <= set(points), set(names.ALL) - set(points)
    published = sum(
        p.value
        for p in points[names.FILES_PUBLISHED]
        if p.attributes["dataset"] == "measurementCO2" and p.attributes["layout"] == "legacy"
    )
    assert published >= sum(
        1
        for o in result.outcomes
        if o.action == PUBLISHED and o.item.key.dataset == "measurementCO2" and o.item.key.layout == "legacy"
    )
    assert {(p.attributes["layout"], p.attributes["dataset"]) for p in points[names.TABLE_ERRORS]} == {
        ("legacy", "measurementCO2")
    }
    statuses = {p.attributes["status"] for p in points[names.RUNS]}
    assert {"failed", "incomplete"} <= statuses
    lag = {
        (p.attributes["layout"], p.attributes["dataset"]): p.value for p in points[names.LAG_OLDEST_PENDING]
    }
    failed_key = next(o.item.key for o in result.outcomes if o.item.key.key == victim)
    assert lag[(failed_key.layout, failed_key.dataset)] > 0  # the failed file is still waiting
