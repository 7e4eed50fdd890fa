"""Accounting for files published by a run that stopped before it wrote its manifest.

Every file carries the id of the run that wrote it. A later run that lists a file whose run
has no manifest writes one for that run, status ``interrupted``, listing exactly the files the
lake shows it wrote, so the manifests account for every file and report each only once.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shared.haltian.contracts import dataset_kind
from shared.haltian.keys import HaltianKey, parse_key
from shared.manifest.build import MANIFEST_VERSION, manifest_path
from shared.plan import Plan
from shared.sink.lake import (
    MANIFESTS, META_REASON, META_ROWS, META_RUN_ID, META_SCHEMA, META_SOURCE_ETAG, META_SOURCE_SIZE, QUARANTINE,
    Lake, LakeEntry,
)


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
    entries = [_file(key, entry, quarantined) for key, entry, quarantined in sorted(files, key=lambda f: f[0].key)]
    datasets: dict[tuple[str, str], dict[str, Any]] = {}
    for (key, entry, quarantined), file in zip(sorted(files, key=lambda f: f[0].key), entries):
        counts = datasets.setdefault((key.layout, key.dataset), {
            "layout": key.layout, "dataset": key.dataset, "kind": dataset_kind(key.layout, key.dataset),
            "published": 0, "quarantined": 0, "failed": 0, "deferred": 0, "already_present": 0,
            "already_quarantined": 0, "bytes": 0, "rows": 0})
        counts[file["action"]] += 1
        if not quarantined:
            counts["bytes"] += file["bytes"]
            counts["rows"] += file["rows"] or 0
    rows = list(datasets.values())
    totals = {name: sum(d[name] for d in rows) for name in
              ("published", "quarantined", "failed", "deferred", "already_present", "already_quarantined",
               "bytes", "rows")}
    totals.update(unrecognized=0, other_organization=0, listed_objects=0, left_to_backfill=0)
    started = run_started(run_id)
    return {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "started_at": started.isoformat(),
        "finished_at": now.isoformat(),
        "duration_seconds": round((now - started).total_seconds(), 3),
        "status": "interrupted",
        "mode": "unknown",
        "months": None,
        "partition": None,
        "full_reconcile_completed": False,
        "settings": {},
        "recovered_by": recovered_by,
        "recovered_runs": [],
        "totals": totals,
        "datasets": rows,
        "unrecognized": {"count": 0, "examples": []},
        "files": entries,
        "tables": [],
    }


def _file(key: HaltianKey, entry: LakeEntry, quarantined: bool) -> dict[str, Any]:
    metadata = entry.metadata
    rows = metadata.get(META_ROWS)
    return {
        "action": "quarantined" if quarantined else "published",
        "source_key": key.key,
        "source_etag": metadata.get(META_SOURCE_ETAG, ""),
        "source_size": int(metadata.get(META_SOURCE_SIZE, entry.size)),
        "destination": f"{QUARANTINE}/{key.key}" if quarantined else key.key,
        "organization": key.organization,
        "layout": key.layout,
        "dataset": key.dataset,
        "window_start": key.window_start.isoformat(),
        "window_end": key.window_end.isoformat() if key.window_end else None,
        "bytes": entry.size,
        "rows": int(rows) if rows is not None else None,
        "schema_fingerprint": metadata.get(META_SCHEMA),
        "schema": None,
        "replaced_source_etag": None,
        "replaced_copy": None,
        "reason": metadata.get(META_REASON) if quarantined else None,
        "integrity": ["content-md5"],
        "seconds": 0,
    }


def write_interrupted(lake: Lake, plan: Plan, recovered_by: str, now: datetime) -> list[str]:
    """Writes a manifest for each interrupted run the plan saw; returns their run ids."""
    recovered = []
    for run_id, files in sorted(interrupted_runs(lake, plan).items()):
        lake.write_json(manifest_path(run_id, run_started(run_id)), interrupted_manifest(run_id, files, recovered_by,
                                                                                         now))
        recovered.append(run_id)
    return recovered
