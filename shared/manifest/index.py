"""The manifests in the order they were written: an append-only index a pipeline can follow.

Every manifest the bridge writes (a run's, a backfill partition's, one written for an
interrupted run) gets the next entry ``_manifests/index/{n:012d}.json``, created with
If-None-Match, so two writers never take the same number and the numbers have no gaps: a
writer takes ``n`` only after it found ``n - 1``. A consumer keeps the last ``n`` it processed
and reads ``n + 1``, ``n + 2``, ... until one is missing; nothing can appear below a number it
has seen.

``_state/manifest-index.json`` (the hint; readers need not use it) holds a recent number for
writers and the manifests indexed in the last :data:`KEEP_DAYS` days. It makes adding a manifest
idempotent (a manifest already indexed is not indexed again) and lets a later run find a
manifest whose writer stopped before its index entry (:func:`unindexed`): every entry a writer
takes or finds taken goes into the hint with a conditional write that merges, never replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.errors import CONFLICT_ATTEMPTS, Contention
from shared.paths import INDEX_HINT as HINT
from shared.paths import MANIFEST_INDEX as INDEX
from shared.paths import manifests_of
from shared.sink.lake import IF_MISSING, Lake, LakeEntry, if_unchanged

#: How long the hint remembers an indexed manifest; one older than that is taken as indexed.
KEEP_DAYS = 14
#: Conditional writes of the hint tried before giving up (each loses only to another writer's hint).
HINT_ATTEMPTS = 20


def entry_path(sequence: int) -> str:
    return f"{INDEX}/{sequence:012d}.json"


@dataclass
class Indexed:
    """What the index holds, as far as the hint and the entries after its number tell."""

    last: int
    manifests: dict[str, list[Any]]  # manifest path -> [number, indexed at (epoch seconds)]
    since: datetime  # every manifest indexed from then on is in ``manifests``
    learned: dict[str, list[Any]] = field(default_factory=dict)  # the entries after the hint's number


def read(lake: Lake) -> Indexed:
    """The hint, completed with the entries written after its number (a writer that stopped
    between its entry and the hint leaves those)."""
    hint = lake.read_json(HINT) or {}
    indexed = _parse(hint)
    while (entry := lake.read_json(entry_path(indexed.last + 1))) is not None:
        indexed.last += 1
        indexed.learned[entry["manifest"]] = [indexed.last, _epoch(entry.get("indexed_at"))]
        indexed.manifests.setdefault(entry["manifest"], indexed.learned[entry["manifest"]])
    return indexed


def append(lake: Lake, manifest_path: str, manifest: dict[str, Any]) -> int:
    """Adds a written manifest to the index, unless it is there already; returns its number."""
    indexed = read(lake)
    found = dict(indexed.learned)  # the hint is to hold them too
    if manifest_path in indexed.manifests:
        if found:
            _remember(lake, found)
        return int(indexed.manifests[manifest_path][0])
    entry = {
        "run_id": manifest["run_id"],
        "manifest": manifest_path,
        "status": manifest["status"],
        "mode": manifest["mode"],
        "partition": manifest["partition"],
        "finished_at": manifest["finished_at"],
    }
    sequence = indexed.last + 1
    for _ in range(CONFLICT_ATTEMPTS):
        now = datetime.now(timezone.utc)
        document = {"sequence": sequence, **entry, "indexed_at": now.isoformat()}
        if lake.write_json(entry_path(sequence), document, condition=IF_MISSING):
            found[manifest_path] = [sequence, int(now.timestamp())]
            break
        taken = lake.read_json(entry_path(sequence)) or {}
        found[taken.get("manifest", "")] = [sequence, _epoch(taken.get("indexed_at"))]
        if taken.get("manifest") == manifest_path:  # another run indexed it meanwhile (a recovery)
            break
        sequence += 1
    else:
        _remember(lake, found)
        raise Contention(
            f"index entry for {manifest_path}: other writers kept taking the next number "
            f"({CONFLICT_ATTEMPTS} attempts); a later run indexes it"
        )
    _remember(lake, found)
    return sequence


def unindexed(lake: Lake, now: datetime, indexed: Indexed) -> list[LakeEntry]:
    """The manifests written in the last days (since the hint's memory begins) that no index
    entry names, oldest first. Two listings on a normal day (today and yesterday); more after
    the bridge stood still."""
    newest = max((at for _, at in indexed.manifests.values()), default=None)
    first = (now - timedelta(days=1)).date()
    if newest is not None:
        first = min(first, datetime.fromtimestamp(newest, timezone.utc).date() - timedelta(days=1))
    first = max(first, indexed.since.date(), (now - timedelta(days=KEEP_DAYS)).date())
    found = []
    day = first
    while day <= now.date():
        for entry in lake.list_entries(manifests_of(day)):
            if entry.path not in indexed.manifests and (
                entry.last_modified is None or entry.last_modified >= indexed.since
            ):
                found.append(entry)
        day += timedelta(days=1)
    return sorted(found, key=lambda e: (e.last_modified or now, e.path))


def read_after(lake: Lake, sequence: int) -> list[dict[str, Any]]:
    """The index entries after ``sequence``, in order (what a consumer does)."""
    entries = []
    while (entry := lake.read_json(entry_path(sequence + 1))) is not None:
        entries.append(entry)
        sequence += 1
    return entries


def _remember(lake: Lake, found: dict[str, list[Any]]) -> None:
    """Merges the entries a writer took or found into the hint; never moves it back."""
    for _ in range(HINT_ATTEMPTS):
        current, etag = lake.read_json_version(HINT)
        indexed = _parse(current or {})
        manifests = {**indexed.manifests, **{k: v for k, v in found.items() if k}}
        last = max([indexed.last] + [int(n) for n, _ in found.values()])
        if current is not None and manifests == indexed.manifests and last == indexed.last:
            return
        cutoff = datetime.now(timezone.utc) - timedelta(days=KEEP_DAYS)
        kept = {k: v for k, v in manifests.items() if v[1] >= cutoff.timestamp()}
        since = max(indexed.since, cutoff) if len(kept) < len(manifests) else indexed.since
        document = {"last": last, "since": since.isoformat(), "manifests": kept}
        if lake.write_json(HINT, document, condition=IF_MISSING if etag is None else if_unchanged(etag)):
            return
    # Others kept writing the hint first: it is a hint; the entries after its number complete it.


def _parse(hint: dict[str, Any]) -> Indexed:
    """A hint as stored. One written before the hint remembered runs says nothing about the
    manifests before now, which are taken as indexed; with no hint at all, nothing was indexed."""
    if "since" in hint:
        since = datetime.fromisoformat(hint["since"])
    else:
        since = datetime.now(timezone.utc) if hint else datetime(1970, 1, 1, tzinfo=timezone.utc)
    manifests = {k: list(v) for k, v in (hint.get("manifests") or {}).items()}
    return Indexed(int(hint.get("last", 0)), manifests, since)


def _epoch(text: str | None) -> int:
    return (
        int(datetime.fromisoformat(text).timestamp()) if text else int(datetime.now(timezone.utc).timestamp())
    )
