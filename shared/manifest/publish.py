"""Writing a finished run's manifest: the document, its index entry, ``latest.json`` and the
reconcile state, in that order (the manifest is the last thing a run writes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from shared.manifest import index
from shared.manifest.build import build_manifest
from shared.model import RunResult
from shared.paths import LATEST_MANIFEST, RECONCILE_STATE, manifest_path
from shared.sink.lake import IF_MISSING, Lake
from shared.sink.lock import LockLost


def write_manifest(lake: Lake, result: RunResult, guard: Callable[[], None]) -> None:
    """The manifest (If-None-Match), its index entry, then ``latest.json`` and the reconcile
    state, which only ever move forward (conditional writes: a slower run cannot move them back).

    Raises:
        LockLost: another run found this one without its lock and wrote its manifest for it.
    """
    document = build_manifest(result)
    path = manifest_path(result.run_id, result.started_at)
    guard()
    if not lake.write_json(path, document, condition=IF_MISSING):
        raise LockLost(
            f"run {result.run_id} found its manifest written for it by another run (it had lost its "
            "lock); that manifest reports its files",
            datetime.now(timezone.utc),
            result.run_id,
        )
    result.manifest_path = lake.path(path)
    guard()
    index.append(lake, path, document)
    if result.plan.partition is None:
        guard()
        lake.write_json_forward(
            LATEST_MANIFEST, document, order=lambda d: datetime.fromisoformat(d["finished_at"])
        )
    if result.full_reconcile_completed:
        guard()
        lake.write_json_forward(
            RECONCILE_STATE,
            # A pass may take several runs: it vouches for the lake as of its first run's start.
            {"completed_at": _pass_started(result).isoformat(), "run_id": result.run_id},
            order=lambda d: datetime.fromisoformat(d["completed_at"]),
        )


def _pass_started(result: RunResult) -> datetime:
    reconcile = result.plan.reconcile
    return result.started_at if reconcile is None else min(reconcile.pass_started_at, result.started_at)
