"""The run's data model has one home that imports none of the stages that fill it in."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from shared.demo.bucket import BucketSpec
from shared.manifest.recover import interrupted_manifest, interrupted_runs
from shared.model import FULL, Plan
from shared.run import run_once

PROJECT = Path(__file__).resolve().parents[1]
STAGES = (
    "shared.run",
    "shared.manifest",
    "shared.telemetry",
    "shared.copy",
    "shared.plan",
    "shared.tables.delta",
)


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


def test_the_model_imports_none_of_the_stages() -> None:
    loaded = _modules_after_import("shared.model")
    assert not [m for m in loaded if m.startswith(STAGES)]


@pytest.mark.parametrize("module", ["shared.manifest.build", "shared.manifest.recover", "shared.telemetry"])
def test_reports_do_not_import_the_run(module: str) -> None:
    assert "shared.run" not in _modules_after_import(module)


@pytest.mark.integration
def test_a_recovered_manifest_entry_says_what_the_lost_one_said(stack) -> None:
    stack.seed(
        BucketSpec(
            legacy_hours=2,
            v1_hours=1,
            legacy_measurements=["measurementCO2"],
            v1_measurements=[],
            legacy_snapshots=[],
            v1_snapshots=[],
        )
    )
    bridge = stack.bridge()
    first = run_once(bridge)
    lost = json.loads(stack.container.get_blob_client(first.manifest_path).download_blob().readall())
    stack.container.delete_blob(first.manifest_path)  # as if the run had died before its manifest

    # What a full reconcile's walk hands its recovery: every mirrored and quarantined copy it listed.
    plan = Plan(mode=FULL, months=None)
    plan.mirrored = {entry.path: entry for entry in bridge.lake.list_entries("parquet/")}
    plan.quarantine = {
        e.path.removeprefix("_quarantine/"): e for e in bridge.lake.list_entries("_quarantine/")
    }
    ((_, files),) = interrupted_runs(bridge.lake, plan, lease_seconds=0).values()
    recovered = interrupted_manifest(
        first.run_id, files, "20991231T000000Z-000000", datetime.now(timezone.utc)
    )
    assert recovered["status"] == "interrupted"
    assert recovered["totals"]["published"] == lost["totals"]["published"] > 0
    assert recovered["totals"]["quarantined"] == lost["totals"]["quarantined"]
    said = (
        "action",
        "source_key",
        "source_etag",
        "source_size",
        "destination",
        "organization",
        "layout",
        "dataset",
        "window_start",
        "window_end",
        "bytes",
        "rows",
        "schema_fingerprint",
        "reason",
    )
    for before, after in zip(lost["files"], recovered["files"], strict=True):
        assert after.keys() == before.keys()
        assert {k: after[k] for k in said} == {k: before[k] for k in said}
