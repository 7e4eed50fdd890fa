"""The manifests in the order they were written: an append-only index a pipeline can follow.

Every manifest the bridge writes (a run's, a backfill partition's, one written for an
interrupted run) gets the next entry ``_manifests/index/{n:012d}.json``, created with
If-None-Match, so two writers never take the same number and the numbers have no gaps: a
writer takes ``n`` only after it found ``n - 1``. A consumer keeps the last ``n`` it processed
and reads ``n + 1``, ``n + 2``, ... until one is missing; nothing can appear below a number it
has seen. ``_state/manifest-index.json`` holds a recent number as a hint for writers (it only
moves forward); readers need not use it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shared.sink.lake import IF_MISSING, MANIFESTS, STATE, Lake

INDEX = f"{MANIFESTS}/index"
HINT = f"{STATE}/manifest-index.json"


def entry_path(sequence: int) -> str:
    return f"{INDEX}/{sequence:012d}.json"


def append(lake: Lake, manifest_path: str, manifest: dict[str, Any]) -> int:
    """Adds a written manifest to the index; returns its number."""
    hint = lake.read_json(HINT) or {}
    sequence = int(hint.get("last", 0)) + 1
    entry = {
        "run_id": manifest["run_id"],
        "manifest": manifest_path,
        "status": manifest["status"],
        "mode": manifest["mode"],
        "partition": manifest["partition"],
        "finished_at": manifest["finished_at"],
    }
    while True:
        document = {"sequence": sequence, **entry, "indexed_at": datetime.now(timezone.utc).isoformat()}
        if lake.write_json(entry_path(sequence), document, condition=IF_MISSING):
            break
        sequence += 1
    lake.write_json_forward(HINT, {"last": sequence}, order=lambda d: int(d.get("last", 0)))
    return sequence


def read_after(lake: Lake, sequence: int) -> list[dict[str, Any]]:
    """The index entries after ``sequence``, in order (what a consumer does)."""
    entries = []
    while (entry := lake.read_json(entry_path(sequence + 1))) is not None:
        entries.append(entry)
        sequence += 1
    return entries
