"""Which snapshot of an entity dataset a table holds: each organization's newest."""

from __future__ import annotations

from datetime import datetime, timezone

from shared.haltian.keys import parse_key
from shared.model import TableFile
from shared.tables.ledger import Delivered


def newest_snapshots(files: list[TableFile], delivered: Delivered) -> list[TableFile]:
    """Per organization, the newest snapshot not yet delivered, unless the table holds one of
    that organization at least as new (a snapshot that arrives late never replaces a newer one)."""
    chosen: list[TableFile] = []
    for organization in sorted({f.key.organization for f in files}):
        newest = max(
            (f for f in files if f.key.organization == organization),
            key=lambda f: (f.key.window_start, f.key.key),
        )
        if not any(
            (_window(key), key) > (newest.key.window_start, newest.key.key)
            for key in delivered.versions
            if f"/{organization}/" in key
        ):
            chosen.append(newest)
    return chosen


def current_snapshots(delivered: Delivered, organizations: list[str]) -> list[str]:
    """The delivered snapshot of each of these organizations (its newest delivery)."""
    current: list[str] = []
    for organization in organizations:
        keys = [key for key in delivered.numbers if f"/{organization}/" in key]
        if keys:
            newest = max(delivered.numbers[key] for key in keys)
            current += sorted(key for key in keys if delivered.numbers[key] == newest)
    return current


def _window(key: str) -> datetime:
    parsed = parse_key(key)
    return parsed.window_start if parsed is not None else datetime.min.replace(tzinfo=timezone.utc)
