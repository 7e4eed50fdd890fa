"""The run manifest: one JSON document per run, written last, describing what changed.

``_manifests/{YYYY}/{MM}/{DD}/{run_id}.json`` and a copy at ``_manifests/latest.json``.
The JSON Schema is ``manifest.schema.json`` beside this file; tests validate real
manifests against it.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from importlib import resources
from typing import Any

from shared.haltian.contracts import dataset_kind
from shared.model import FAILED, PRESENT, PUBLISHED, QUARANTINED, FileOutcome, RunResult, TableChange

MANIFEST_VERSION = 1


@cache
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema every manifest satisfies."""
    schema: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath("manifest.schema.json").read_text()
    )
    return schema


def build_manifest(result: RunResult, *, recovered_by: str | None = None) -> dict[str, Any]:
    """The manifest document for a finished run, or (``recovered_by``) for an interrupted one
    that a later run writes from the files it left."""
    plan = result.plan
    datasets = _datasets(result)
    totals = {field: sum(d[field] for d in datasets) for field in _DATASET_COUNTS}
    totals["unrecognized"] = plan.unrecognized
    totals["other_organization"] = plan.other_organization
    totals["listed_objects"] = plan.listed_objects
    totals["left_to_backfill"] = plan.leased
    document = {
        "manifest_version": MANIFEST_VERSION,
        "run_id": result.run_id,
        "started_at": result.started_at.isoformat(),
        "finished_at": result.finished_at.isoformat(),
        "duration_seconds": round((result.finished_at - result.started_at).total_seconds(), 3),
        **(
            {"stage_seconds": {name: round(seconds, 3) for name, seconds in result.stage_seconds.items()}}
            if result.stage_seconds
            else {}
        ),
        "status": "interrupted" if recovered_by else result.status,
        "mode": plan.mode,
        "months": plan.months,
        "partition": plan.partition,
        "full_reconcile_completed": result.full_reconcile_completed,
        **({"reconcile": plan.reconcile.to_json()} if plan.reconcile is not None else {}),
        "recovered_runs": result.recovered_runs,
        **({"indexed_runs": result.indexed_runs} if result.indexed_runs else {}),
        **({"recovery_error": result.recovery_error} if result.recovery_error else {}),
        "settings": result.settings,
        "totals": totals,
        "datasets": datasets,
        "unrecognized": {"count": plan.unrecognized, "examples": plan.unrecognized_examples},
        "schema_drift": result.schema_drift(),
        "files": [file_entry(o) for o in result.outcomes if o.action in (PUBLISHED, QUARANTINED, FAILED)],
        "tables": [_table_entry(t) for t in result.tables],
    }
    if recovered_by:
        document["recovered_by"] = recovered_by
    return document


def _datasets(result: RunResult) -> list[dict[str, Any]]:
    """Each dataset's counts: what the plan found already done, and what this run did."""
    plan = result.plan
    per_dataset: dict[tuple[str, str], Counter[str]] = {}

    def bucket(name: tuple[str, str]) -> Counter[str]:
        return per_dataset.setdefault(name, Counter())

    for name, count in plan.present.items():
        bucket(name)["already_present"] += count
    for name, count in plan.quarantined.items():
        bucket(name)["already_quarantined"] += count
    for name, count in result.deferred.items():
        bucket(name)["deferred"] += count
    for outcome in result.outcomes:
        counts = bucket((outcome.item.key.layout, outcome.item.key.dataset))
        action = "already_present" if outcome.action == PRESENT else outcome.action
        counts[action] += 1
        if outcome.action == PUBLISHED:
            counts["bytes"] += outcome.bytes
            counts["rows"] += outcome.rows or 0

    return [
        {
            "layout": layout,
            "dataset": dataset,
            "kind": dataset_kind(layout, dataset),
            **{field: counts[field] for field in _DATASET_COUNTS},
        }
        for (layout, dataset), counts in sorted(per_dataset.items())
    ]


def _table_entry(t: TableChange) -> dict[str, Any]:
    return {
        "layout": t.layout,
        "organization": t.organization,
        "dataset": t.dataset,
        "table": t.table,
        "version": t.version,
        "added": t.added,
        "removed": t.removed,
        "excluded": t.excluded,
        "compacted": t.compacted,
        "error": t.error,
    }


_DATASET_COUNTS = (
    PUBLISHED,
    QUARANTINED,
    FAILED,
    "deferred",
    "already_present",
    "already_quarantined",
    "bytes",
    "rows",
)


def file_entry(outcome: FileOutcome) -> dict[str, Any]:
    """One file's entry, the same for a normal and a recovered manifest."""
    key = outcome.item.key
    schema = outcome.schema
    return {
        "action": outcome.action,
        "source_key": key.key,
        "source_etag": outcome.item.source.etag,
        "source_size": outcome.item.source.size,
        "destination": outcome.destination,
        "organization": key.organization,
        "layout": key.layout,
        "dataset": key.dataset,
        "window_start": key.window_start.isoformat(),
        "window_end": key.window_end.isoformat() if key.window_end else None,
        "bytes": outcome.bytes,
        "rows": outcome.rows,
        "schema_fingerprint": outcome.schema_fingerprint,
        "schema": None
        if schema is None
        else {
            "verdict": schema.verdict,
            "against": schema.against,
            "contract": schema.contract,
            "drift": list(schema.drift),
        },
        "replaced_source_etag": (outcome.item.replaces.record.source_etag if outcome.item.replaces else None),
        "replaced_copy": outcome.replaced_copy,
        "released_from": outcome.released_from,
        "reason": outcome.reason,
        "integrity": outcome.integrity,
        "seconds": round(outcome.seconds, 4),
    }
