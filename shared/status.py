"""``python -m shared status``: what an operator wants to know at a glance."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.run import Bridge, plan_run
from shared.paths import PARTITION_LOCKS, manifests_of, partition_of_lock, quarantined

RECENT_RUNS = 5


def status(bridge: Bridge, now: datetime | None = None) -> dict[str, Any]:
    """Lag per dataset, the last day's output, quarantine, backfill partitions and the last runs."""
    now = now or datetime.now(timezone.utc)
    plan = plan_run(bridge, now=now, window_only=True)
    delivered, published = plan.newest_delivered, plan.newest_published
    manifests = _recent_manifests(bridge, now)
    last_day = [m for m in manifests if datetime.fromisoformat(m["finished_at"]) >= now - timedelta(days=1)]
    published_24h: dict[str, int] = {}
    for manifest in last_day:
        for file in manifest["files"]:
            if file["action"] == "published":
                label = f"{file['layout']}/{file['dataset']}"
                published_24h[label] = published_24h.get(label, 0) + 1
    return {
        "at": now.isoformat(),
        "datasets": [
            {
                "dataset": f"{layout}/{dataset}",
                "newest_delivered": delivered[(layout, dataset)].isoformat(),
                "newest_published": published[(layout, dataset)].isoformat()
                if (layout, dataset) in published
                else None,
                "lag_seconds": (delivered[(layout, dataset)] - published[(layout, dataset)]).total_seconds()
                if (layout, dataset) in published
                else None,
                "waiting": sum(1 for i in plan.items if (i.key.layout, i.key.dataset) == (layout, dataset)),
                "published_24h": published_24h.get(f"{layout}/{dataset}", 0),
            }
            for layout, dataset in sorted(delivered)
        ],
        "quarantined": [
            {"path": entry.path, "reason": entry.record.reason or ""}
            for entry in bridge.lake.list_entries(quarantined(""))
        ],
        "backfill": _backfill(bridge),
        "last_runs": [
            {
                "run_id": m["run_id"],
                "finished_at": m["finished_at"],
                "mode": m["mode"],
                "status": m["status"],
                "published": m["totals"]["published"],
                "failed": m["totals"]["failed"],
                "manifest": bridge.lake.path(m["_path"]),
            }
            for m in manifests[:RECENT_RUNS]
        ],
    }


def _recent_manifests(bridge: Bridge, now: datetime) -> list[dict[str, Any]]:
    """Manifests of today and yesterday, newest first."""
    found = []
    for day in (now, now - timedelta(days=1)):
        for entry in bridge.lake.list_entries(manifests_of(day)):
            document = bridge.lake.read_json(entry.path)
            if document is not None:
                found.append({**document, "_path": entry.path})
    return sorted(found, key=lambda m: m["finished_at"], reverse=True)


def _backfill(bridge: Bridge) -> dict[str, Any]:
    running = sorted(partition_of_lock(p) for p in bridge.lake.leased(PARTITION_LOCKS))
    settings = bridge.settings
    if not (settings.queue_connection_string or settings.queue_service_uri):
        return {"queued": None, "running": running, "failed": [], "note": "no backfill queue configured"}
    from shared.backfill.queue import queue_client

    try:
        queued = queue_client(settings, bridge.credential).get_queue_properties().approximate_message_count
    except ResourceNotFoundError:
        queued = 0
    try:
        poison = queue_client(settings, bridge.credential, poison=True).peek_messages(max_messages=32)
        failed = [_partition_named(m.content) for m in poison]
    except ResourceNotFoundError:
        failed = []
    return {"queued": queued, "running": running, "failed": failed}


def _partition_named(content: bytes | str) -> str:
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    try:
        return str(json.loads(text)["partition"])
    except (ValueError, KeyError, TypeError):
        return f"(not a backfill message: {text[:80]!r})"


def format_status(document: dict[str, Any]) -> str:
    lines = [
        f"status at {document['at']}",
        f"{'dataset':42} {'newest delivered':26} {'newest published':26} {'waiting':>7} {'24h':>5}",
    ]
    for d in document["datasets"]:
        lines.append(
            f"{d['dataset']:42} {d['newest_delivered'][:25]:26} {(d['newest_published'] or '-')[:25]:26} "
            f"{d['waiting']:>7} {d['published_24h']:>5}"
        )
    lines.append(f"quarantined: {len(document['quarantined'])}")
    lines += [f"  {q['path']}: {q['reason']}" for q in document["quarantined"][:20]]
    b = document["backfill"]
    lines.append(
        f"backfill: {b['queued'] if b['queued'] is not None else '-'} queued, {len(b['running'])} running, "
        f"{len(b['failed'])} failed (poison queue)"
    )
    lines += [f"  running {p}" for p in b["running"]] + [f"  FAILED {p}" for p in b["failed"]]
    lines.append("last runs:")
    lines += [
        f"  {r['run_id']} {r['mode']:9} {r['status']:11} {r['published']:>6} published {r['failed']:>4} failed"
        f"  {r['manifest']}"
        for r in document["last_runs"]
    ]
    return "\n".join(lines)
