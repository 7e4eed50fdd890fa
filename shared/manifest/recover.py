"""Accounting for files published by a run that stopped before it wrote its manifest.

Every file carries the id of the run that wrote it. A later run that lists a file whose run
has no manifest writes one for that run, status ``interrupted``, listing exactly the files the
lake shows it wrote, so the manifests account for every file and report each only once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from shared.haltian.keys import HaltianKey, parse_key
from shared.manifest.build import build_manifest, manifest_path
from shared.model import PUBLISHED, QUARANTINED, FileOutcome, Plan, RunResult, WorkItem
from shared.sink.lake import (
    MANIFESTS, META_REASON, META_ROWS, META_RUN_ID, META_SCHEMA, META_SOURCE_ETAG, META_SOURCE_SIZE, QUARANTINE,
    Lake, LakeEntry,
)
from shared.source.s3 import SourceObject


def run_started(run_id: str) -> datetime:
    return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def interrupted_runs(lake: Lake, plan: Plan) -> dict[str, list[tuple[HaltianKey, LakeEntry, bool]]]:
    """Runs whose files the plan listed but which have no manifest: run id -> (key, entry, quarantined)."""
    by_run: dict[str, list[tuple[HaltianKey, LakeEntry, bool]]] = {}
    for entries, quarantined in ((plan.mirrored, False), (plan.quarantine, True)):
        for path, entry in entries.items():
            run_id = entry.metadata.get(META_RUN_ID)
            key = parse_key(path)
            if run_id and key is not None and len(run_id) >= 16:
                by_run.setdefault(run_id, []).append((key, entry, quarantined))
    if not by_run:
        return {}
    days = {f"{MANIFESTS}/{run_started(r):%Y/%m/%d}/" for r in by_run}
    reported = {entry.path.rsplit("/", 1)[1].removesuffix(".json") for day in days for entry in lake.list_entries(day)}
    return {run_id: files for run_id, files in by_run.items() if run_id not in reported}


def interrupted_manifest(run_id: str, files: list[tuple[HaltianKey, LakeEntry, bool]], recovered_by: str,
                         now: datetime) -> dict[str, Any]:
    """A manifest for a run that stopped before writing its own, from what its files say."""
    outcomes = [recovered_outcome(key, entry, quarantined)
                for key, entry, quarantined in sorted(files, key=lambda f: f[0].key)]
    result = RunResult(run_id, run_started(run_id), now, Plan(mode="unknown", months=None), {}, outcomes=outcomes)
    return build_manifest(result, recovered_by=recovered_by)


def recovered_outcome(key: HaltianKey, entry: LakeEntry, quarantined: bool) -> FileOutcome:
    """A file's outcome as its blob tells it (its metadata was written with its bytes)."""
    metadata = entry.metadata
    rows = metadata.get(META_ROWS)
    source = SourceObject(key.key, int(metadata.get(META_SOURCE_SIZE, entry.size)), metadata.get(META_SOURCE_ETAG, ""))
    return FileOutcome(
        QUARANTINED if quarantined else PUBLISHED,
        WorkItem(source, key),
        destination=f"{QUARANTINE}/{key.key}" if quarantined else key.key,
        bytes=entry.size,
        rows=int(rows) if rows is not None else None,
        schema_fingerprint=metadata.get(META_SCHEMA),
        reason=metadata.get(META_REASON) if quarantined else None,
        integrity=["content-md5"],
    )


def write_interrupted(lake: Lake, plan: Plan, recovered_by: str, now: datetime,
                      guard: Callable[[], None] = lambda: None) -> list[str]:
    """Writes a manifest for each interrupted run the plan saw; returns their run ids."""
    recovered = []
    for run_id, files in sorted(interrupted_runs(lake, plan).items()):
        guard()
        lake.write_json(manifest_path(run_id, run_started(run_id)), interrupted_manifest(run_id, files, recovered_by,
                                                                                         now))
        recovered.append(run_id)
    return recovered
