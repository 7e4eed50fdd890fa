"""Copying one file: read it from S3, verify it, publish it (or quarantine it) in the lake.

Small files (the common case) are read whole, verified down to their data pages, and
published with one Put Blob. Large files are judged from their footer first (one ranged GET),
then streamed in blocks to their destination and committed with one Put Block List, so
memory stays at one block per file in flight and no file is downloaded twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import urllib3
from azure.core.exceptions import AzureError
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import TransientError, describe
from shared.haltian.contracts import fingerprint
from shared.model import FAILED, PRESENT, PUBLISHED, QUARANTINED, FileOutcome, WorkItem
from shared.paths import quarantined, replaced
from shared.sink.records import FileRecord
from shared.sink.lake import (
    ALWAYS, IF_MISSING, Condition, Lake, PublishConflict, if_unchanged, write_id,
)
from shared.sink.lock import LockLost
from shared.source.s3 import S3Source, SourceBody, SourceChanged
from shared.tables.facts import table_facts
from shared.transport import TransportError
from shared.verify.parquet import FOOTER_GUESS_BYTES, ParquetFacts, UnreadableParquet, inspect_parquet, read_footer
from shared.verify.schema import SchemaJudge, SchemaOutcome

log = logging.getLogger(__name__)

#: Files up to this size are read whole and published with one Put Blob.
SINGLE_PUT_MAX_BYTES = 8 * 1024 * 1024
#: Larger files move in blocks of this size (Azure allows up to 50,000 blocks a blob).
BLOCK_BYTES = 8 * 1024 * 1024
#: Blocks the lake pulls itself (Put Block From URL allows up to 100 MiB a block).
SERVER_BLOCK_BYTES = 64 * 1024 * 1024

Guard = Callable[[], None]


def _no_guard() -> None:
    pass


@dataclass(frozen=True)
class CopyContext:
    """What copying a file needs from its run: both sides, the schema judge, the run's id (which
    every blob it writes carries), and the run's guard, called before every write readers can see
    (it raises when the run lost its lock; staged blocks stay invisible)."""

    source: S3Source
    lake: Lake
    judge: SchemaJudge
    run_id: str
    guard: Guard = _no_guard
    #: The lake pulls files larger than their footer read from a presigned S3 URL (Put Block From
    #: URL), so their bytes never pass through the function.
    server_side: bool = False


class Corrupted(TransientError):
    """The bytes read do not match what S3 said they are; the next run reads them again."""


def copy_file(item: WorkItem, ctx: CopyContext) -> FileOutcome:
    """Copies one file and reports the outcome; never raises for a per-file problem.

    A changed file is marked as being replaced before its blob is overwritten, so no table sync
    reads the old bytes as the new version.

    Terminal problems (not Parquet, breaking schema drift) quarantine the file. Transient
    ones (network, throttling, the source changing mid-copy, a concurrent writer) leave it
    for the next run as FAILED, and so does an error nobody expected (a bug): that one file
    fails, the run goes on.

    Raises:
        LockLost: from the context's guard; nothing was published.
    """
    started = time.monotonic()
    outcome = FileOutcome(FAILED, item)
    if item.replaces is not None and item.replaces.mirrors(item.source.etag, item.source.size):
        # Already mirrored at this version (a release of a file published since it was quarantined).
        outcome.action, outcome.reason = PRESENT, "already in the lake at this source version"
        return outcome
    try:
        if ctx.server_side and item.source.size > FOOTER_GUESS_BYTES:
            _copy_server_side(item, ctx, outcome)
        elif item.source.size <= SINGLE_PUT_MAX_BYTES:
            _copy_whole(item, ctx, outcome)
        else:
            _copy_in_blocks(item, ctx, outcome)
    except PublishConflict as err:
        current = ctx.lake.get_entry(item.key.key)
        if current is not None and current.holds(item.source.etag, item.source.size):
            outcome.action, outcome.reason = PRESENT, "published meanwhile by another run"
        else:
            outcome.action, outcome.reason = FAILED, str(err)
    except (SourceChanged, Corrupted) as err:
        outcome.action, outcome.reason = FAILED, str(err)
    except (BotoCoreError, ClientError, AzureError, TransportError, urllib3.exceptions.HTTPError, OSError) as err:
        outcome.action, outcome.reason = FAILED, describe(err)
    except LockLost:
        raise
    except Exception as err:  # noqa: BLE001 - one file's bug must not end the run
        log.exception("unexpected error copying %s", item.key.key)
        outcome.action, outcome.reason = FAILED, f"unexpected error: {describe(err)}"
    outcome.seconds = time.monotonic() - started
    if outcome.action == FAILED:
        log.warning("left for the next run: %s: %s", item.key.key, outcome.reason)
    return outcome


def _copy_whole(item: WorkItem, ctx: CopyContext, outcome: FileOutcome) -> None:
    body = ctx.source.get(item.source)
    data = body.data
    _check_bytes(item, body, len(data), hashlib.md5(data) if body.etag_is_md5 else None, outcome)
    verdict = _judge(item, ctx.judge, lambda: inspect_parquet(data, len(data)), outcome)
    destination, metadata, condition = _destination(item, verdict, outcome, ctx.run_id)
    if item.replaces is not None and destination == item.key.key:
        condition = _make_way(item, ctx, outcome)
    ctx.guard()
    outcome.lake_modified = ctx.lake.put(destination, data, metadata=metadata, condition=condition)
    outcome.integrity.append("content-md5")
    outcome.content = data  # its table's rows are read from these very bytes (unless the run drops them)
    _done(outcome, verdict, destination)


def _copy_in_blocks(item: WorkItem, ctx: CopyContext, outcome: FileOutcome) -> None:
    verdict = _judge(item, ctx.judge, lambda: _footer_facts(item, ctx.source), outcome)
    destination, metadata, condition = _destination(item, verdict, outcome, ctx.run_id)
    if item.replaces is not None and destination == item.key.key:
        condition = _make_way(item, ctx, outcome)
    body = ctx.source.get(item.source, stream=True)
    write = write_id(ctx.run_id, item.source.etag)
    # Each block is hashed once, for its Content-MD5. The whole file is hashed too only when its
    # S3 ETag is an MD5 to compare with (then the blob gets that MD5 as its Content-MD5).
    md5 = hashlib.md5() if body.etag_is_md5 else None
    block_ids: list[str] = []
    total = 0
    try:
        while block := _read_exactly(body, BLOCK_BYTES):
            if md5 is not None:
                md5.update(block)
            total += len(block)
            block_ids.append(ctx.lake.stage(destination, len(block_ids), block, write))
    finally:
        body.close()
    _check_bytes(item, body, total, md5, outcome)
    ctx.guard()
    outcome.lake_modified = ctx.lake.commit(destination, block_ids, md5=md5.digest() if md5 else None,
                                        metadata=metadata, condition=condition)
    outcome.integrity.append("content-md5")
    _done(outcome, verdict, destination)


def _copy_server_side(item: WorkItem, ctx: CopyContext, outcome: FileOutcome) -> None:
    """The lake pulls the body from a presigned URL; the function moves only the footer.

    The footer is read first (one ranged GET) and verified; the body is staged from the URL
    in large blocks and the tail block from the very footer bytes that were verified, so the
    footer readers will see is byte for byte the one checked. The S3 ETag is read again before
    the commit: if the object was replaced during the copy, nothing is committed.
    """
    tails: list[bytes] = []
    verdict = _judge(item, ctx.judge, lambda: _footer_facts(item, ctx.source, tails), outcome)
    tail = tails[-1]
    destination, metadata, condition = _destination(item, verdict, outcome, ctx.run_id)
    if item.replaces is not None and destination == item.key.key:
        condition = _make_way(item, ctx, outcome)
    url = ctx.source.presign(item.source)
    write = write_id(ctx.run_id, item.source.etag)
    body_end = item.source.size - len(tail)
    block_ids = [
        ctx.lake.stage_from_url(destination, index, url, offset, min(SERVER_BLOCK_BYTES, body_end - offset), write)
        for index, offset in enumerate(range(0, body_end, SERVER_BLOCK_BYTES))
    ]
    block_ids.append(ctx.lake.stage(destination, len(block_ids), tail, write))
    if ctx.source.etag_now(item.source) != item.source.etag:
        raise SourceChanged("object replaced while the lake copied it; nothing was committed")
    ctx.guard()
    outcome.lake_modified = ctx.lake.commit(destination, block_ids, md5=None, metadata=metadata, condition=condition)
    outcome.integrity += ["size", "footer-bytes", "etag-unchanged", "service-copy"]
    _done(outcome, verdict, destination)


def _footer_facts(item: WorkItem, source: S3Source, tails: list[bytes] | None = None) -> ParquetFacts:
    """The source file's footer facts; each tail read is kept in ``tails`` (even when it turns
    out unreadable: a quarantined copy needs its bytes too)."""
    def read_tail(length: int) -> bytes:
        tail = source.read_tail(item.source, length)
        if tails is not None:
            tails.append(tail)
        return tail
    return read_footer(read_tail, item.source.size)


@dataclass(frozen=True)
class _Verdict:
    facts: ParquetFacts | None
    schema: SchemaOutcome | None
    quarantine_reason: str | None


def _judge(item: WorkItem, judge: SchemaJudge, read_facts: Any, outcome: FileOutcome) -> _Verdict:
    started, started_cpu = time.monotonic(), time.thread_time()
    try:
        verdict = _verdict(item, judge, read_facts, outcome)
    finally:
        outcome.verify_seconds = time.monotonic() - started
        outcome.verify_cpu_seconds = time.thread_time() - started_cpu
    if verdict.facts is not None and verdict.quarantine_reason is None:
        # Not a check: the statistics the file's Delta add action carries, read from the same footer.
        outcome.table = table_facts(verdict.facts.metadata)
    return verdict


def _verdict(item: WorkItem, judge: SchemaJudge, read_facts: Any, outcome: FileOutcome) -> _Verdict:
    try:
        facts = read_facts()
    except UnreadableParquet as err:
        return _Verdict(None, None, f"not readable Parquet: {err}")
    outcome.rows = facts.rows
    outcome.schema_fingerprint = fingerprint(facts.columns)
    schema = judge.judge(item.key, facts.columns)
    outcome.schema = schema
    return _Verdict(facts, schema, schema.reason if schema.quarantine else None)


def _destination(item: WorkItem, verdict: _Verdict, outcome: FileOutcome,
                 run_id: str) -> tuple[str, dict[str, str], Condition]:
    facts = verdict.facts
    record = FileRecord(
        source_key=item.key.key, source_etag=item.source.etag, source_size=item.source.size, run_id=run_id,
        rows=None if facts is None else facts.rows,
        schema_fingerprint=None if facts is None else outcome.schema_fingerprint or fingerprint(facts.columns),
        contract=None if verdict.schema is None else verdict.schema.contract or "none",
        reason=verdict.quarantine_reason,
    )
    if verdict.quarantine_reason is not None:
        outcome.reason = verdict.quarantine_reason
        return quarantined(item.key.key), record.metadata(), ALWAYS
    if item.replaces is not None:
        return item.key.key, record.metadata(), if_unchanged(item.replaces.etag)
    return item.key.key, record.metadata(), IF_MISSING


def replaced_path(item: WorkItem) -> str:
    """Where the version a changed source file replaces is kept: quarantine, by its source ETag."""
    old_etag = (item.replaces.record.source_etag or "unknown") if item.replaces else "none"
    return replaced(item.key.key, old_etag)


def _make_way(item: WorkItem, ctx: CopyContext, outcome: FileOutcome) -> Condition:
    """Before a changed file is overwritten at its mirrored path: its old version is kept in
    quarantine and the blob is marked as being replaced (no table sync reads it meanwhile).
    Returns the condition the new version's write must meet. A crash anywhere in between leaves
    the old bytes marked; the next run does it again (the file is still changed at the source).
    """
    assert item.replaces is not None
    ctx.guard()
    _keep_replaced_version(item, ctx, outcome)
    ctx.guard()
    etag = ctx.lake.mark_replacing(item.key.key, item.replaces, ctx.run_id)
    return if_unchanged(etag)


def _keep_replaced_version(item: WorkItem, ctx: CopyContext, outcome: FileOutcome) -> None:
    """Before a changed file is republished, its old version goes to a versioned quarantine path."""
    assert item.replaces is not None
    record = replace(
        item.replaces.record, replacing=None,
        run_id=ctx.run_id,  # the run that wrote this copy (the reason names it too)
        reason=f"replaced at the mirrored path by source ETag {item.source.etag} in run {ctx.run_id}: "
               "Haltian delivered a new version of an already copied file")
    ctx.lake.preserve(item.key.key, item.replaces.etag, replaced_path(item), record.metadata())
    outcome.replaced_copy = replaced_path(item)


def _check_bytes(item: WorkItem, body: SourceBody, length: int, md5: Any, outcome: FileOutcome) -> None:
    if length != item.source.size:
        raise Corrupted(f"read {length} bytes, the listing says {item.source.size}")
    outcome.integrity.append("size")
    if md5 is not None:
        if md5.hexdigest() != item.source.etag:
            raise Corrupted("the bytes read do not match the object's MD5 ETag")
        outcome.integrity.append("etag-md5")


def _done(outcome: FileOutcome, verdict: _Verdict, destination: str) -> None:
    outcome.destination = destination
    outcome.bytes = outcome.item.source.size
    outcome.action = QUARANTINED if verdict.quarantine_reason is not None else PUBLISHED


def _read_exactly(stream: Any, size: int) -> bytes:
    chunks: list[bytes] = []
    wanted = size
    while wanted:
        chunk = stream.read(wanted)
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)

