"""What a table takes from the mirror: which blobs are candidates, which source versions a
table lacks, and the files read back from the lake (from the version listed, and only while it is
still that source version)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from shared.haltian.keys import parse_key
from shared.model import TableFile
from shared.sink.lake import Lake, LakeEntry, PublishConflict
from shared.sink.records import FileRecord
from shared.tables.evolution import incompatibility
from shared.tables.facts import TableFacts, table_facts
from shared.tables.ledger import Delivered
from shared.tables.snapshots import newest_snapshots
from shared.verify.parquet import UnreadableParquet, read_footer

log = logging.getLogger(__name__)


def candidate(entry: LakeEntry) -> TableFile | None:
    """A mirrored blob as a table candidate: a verified copy (its source version in its metadata)
    that no run is replacing now; None for anything else."""
    key = parse_key(entry.path)
    record = entry.record
    if key is None or not record.source_etag or record.replacing:
        return None
    return TableFile(key, entry.size, record.source_etag, entry.etag, rows=record.rows)


def wanted(files: list[TableFile], delivered: Delivered, measurement: bool) -> list[TableFile]:
    """The files whose source versions the table lacks, in key order (a snapshot dataset's newest only)."""
    wanted = sorted(
        (f for f in files if not delivered.holds(f.key.key, f.source_etag)), key=lambda f: f.key.key
    )
    return wanted if measurement else newest_snapshots(wanted, delivered)


def chunks(files: list[TableFile], limit: int | None) -> Iterator[list[TableFile]]:
    """The files in order, in parts of at most ``limit`` source bytes (a larger file alone)."""
    chunk: list[TableFile] = []
    size = 0
    for item in files:
        if chunk and limit is not None and size + item.size > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk


def download(
    lake: Lake, guard: Callable[[], None], files: list[TableFile], scratch: Path
) -> list[tuple[TableFile, Path]]:
    """Each file's bytes: those this run verified and published, or the mirrored blob's, from
    the version listed and only while it is still that source version (a file replaced
    meanwhile is left to the next run)."""
    local: list[tuple[TableFile, Path]] = []
    for index, candidate in enumerate(files):
        guard()  # a run that lost its lock stops here, not after the whole download
        path = scratch / f"{index}.parquet"
        if candidate.content is not None:  # the bytes this run verified and published
            path.write_bytes(candidate.content)
            local.append((candidate, path))
            continue
        try:
            with path.open("wb") as target:
                metadata = lake.download_to(candidate.key.key, target, candidate.lake_etag)
        except PublishConflict:
            log.info(
                "table sync: %s changed since it was listed; the next run delivers it", candidate.key.key
            )
            continue
        record = FileRecord.read(metadata)
        if record.source_etag != candidate.source_etag or record.replacing:
            log.info("table sync: %s is being replaced; the next run delivers it", candidate.key.key)
            continue
        local.append((candidate, path))
    return local


def accept(
    lake: Lake,
    guard: Callable[[], None],
    wanted: list[TableFile],
    columns: dict[str, str],
    newest_first: bool = False,
) -> tuple[list[TableFile], list[dict[str, str]], dict[str, str]]:
    """The files among ``wanted`` that may join a table of ``columns`` (in key order), those kept
    out and why, and the columns the accepted ones bring that the table lacks (their types from
    the oldest file that has them; the newest with ``newest_first``)."""
    new_columns: dict[str, str] = {}
    accepted: list[TableFile] = []
    excluded: list[dict[str, str]] = []
    for candidate in list(reversed(wanted)) if newest_first else wanted:
        facts = candidate.facts or read_facts(lake, guard, candidate)
        problem = facts.exclusion or incompatibility(facts.columns, {**columns, **new_columns})
        if problem is not None:
            excluded.append({"source_key": candidate.key.key, "reason": problem})
            continue
        for name, delta in (facts.columns or {}).items():
            if name not in columns:
                new_columns.setdefault(name, delta)
        accepted.append(candidate)
    accepted.sort(key=lambda f: f.key.key)
    return accepted, excluded, new_columns


def read_facts(lake: Lake, guard: Callable[[], None], candidate: TableFile) -> TableFacts:
    """A mirrored file's footer, read back from the lake (a file this run did not copy)."""
    guard()
    try:  # PublishConflict (the blob changed since it was listed) is the sync's to retry
        facts = read_footer(
            lambda length: lake.read_tail(candidate.key.key, candidate.size, length, candidate.lake_etag),
            candidate.size,
        )
    except UnreadableParquet as err:
        return TableFacts(None, f"kept out of the Delta table: footer unreadable in the lake: {err}")
    return table_facts(facts.metadata)
