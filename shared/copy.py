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
from dataclasses import dataclass, field, replace
from datetime import datetime
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
    ALWAYS,
    IF_MISSING,
    Condition,
    Lake,
    PublishConflict,
    if_unchanged,
    write_id,
)
from shared.sink.lock import LockLost
from shared.source.s3 import S3Source, SourceChanged
from shared.tables.facts import TableFacts, table_facts
from shared.transport import TransportError
from shared.verify.parquet import (
    FOOTER_GUESS_BYTES,
    ParquetFacts,
    UnreadableParquet,
    inspect_parquet,
    read_footer,
)
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
    steps = _Steps()
    if item.replaces is not None and item.replaces.mirrors(item.source.etag, item.source.size):
        # Already mirrored at this version (a release of a file published since it was quarantined).
        return _outcome(item, PRESENT, "already in the lake at this source version", steps, 0.0)
    try:
        if ctx.server_side and item.source.size > FOOTER_GUESS_BYTES:
            _copy_server_side(item, ctx, steps)
        elif item.source.size <= SINGLE_PUT_MAX_BYTES:
            _copy_whole(item, ctx, steps)
        else:
            _copy_in_blocks(item, ctx, steps)
        action, reason = (
            (PUBLISHED, None) if steps.quarantine_reason is None else (QUARANTINED, steps.quarantine_reason)
        )
    except PublishConflict as err:
        current = ctx.lake.get_entry(item.key.key)
        if current is not None and current.holds(item.source.etag, item.source.size):
            action, reason = PRESENT, "published meanwhile by another run"
        else:
            action, reason = FAILED, str(err)
    except (SourceChanged, Corrupted) as err:
        action, reason = FAILED, str(err)
    except (
        BotoCoreError,
        ClientError,
        AzureError,
        TransportError,
        urllib3.exceptions.HTTPError,
        OSError,
    ) as err:
        action, reason = FAILED, describe(err)
    except LockLost:
        raise
    except Exception as err:  # noqa: BLE001 - one file's bug must not end the run
        log.exception("unexpected error copying %s", item.key.key)
        action, reason = FAILED, f"unexpected error: {describe(err)}"
    if action == FAILED:
        log.warning("left for the next run: %s: %s", item.key.key, reason)
    return _outcome(item, action, reason, steps, time.monotonic() - started)


@dataclass
class _Steps:
    """What one file's copy has learned and done so far (a failed copy reports as far as it got).

    The copy paths fill it in as they go; :func:`_outcome` alone turns it into the file's outcome.
    """

    facts: ParquetFacts | None = None
    schema: SchemaOutcome | None = None
    quarantine_reason: str | None = None
    fingerprint: str | None = None
    verify_seconds: float = 0.0
    verify_cpu_seconds: float = 0.0
    table: TableFacts | None = None
    replaced_copy: str | None = None
    integrity: list[str] = field(default_factory=list)
    destination: str | None = None
    lake_modified: datetime | None = None
    content: bytes | None = None


def _outcome(item: WorkItem, action: str, reason: str | None, steps: _Steps, seconds: float) -> FileOutcome:
    """The one place a file's outcome is built."""
    written = action in (PUBLISHED, QUARANTINED)
    return FileOutcome(
        action,
        item,
        destination=steps.destination,
        bytes=item.source.size if written else 0,
        rows=None if steps.facts is None else steps.facts.rows,
        schema_fingerprint=steps.fingerprint,
        schema=steps.schema,
        reason=reason,
        integrity=steps.integrity,
        seconds=seconds,
        verify_seconds=steps.verify_seconds,
        verify_cpu_seconds=steps.verify_cpu_seconds,
        table=steps.table,
        lake_modified=steps.lake_modified,
        replaced_copy=steps.replaced_copy,
        content=steps.content if written else None,
    )


def _copy_whole(item: WorkItem, ctx: CopyContext, steps: _Steps) -> None:
    body = ctx.source.get(item.source)
    data = body.data
    _check_bytes(item, len(data), hashlib.md5(data) if body.etag_is_md5 else None, steps.integrity)
    _judge(item, ctx.judge, lambda: inspect_parquet(data, len(data)), steps)
    destination, metadata, condition = _make_way(item, ctx, steps)
    ctx.guard()
    steps.lake_modified = ctx.lake.put(destination, data, metadata=metadata, condition=condition)
    steps.integrity.append("content-md5")
    steps.destination = destination
    steps.content = data  # its table's rows are read from these very bytes (unless the run drops them)


def _copy_in_blocks(item: WorkItem, ctx: CopyContext, steps: _Steps) -> None:
    _judge(item, ctx.judge, lambda: _footer_facts(item, ctx.source), steps)
    destination, metadata, condition = _make_way(item, ctx, steps)
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
    _check_bytes(item, total, md5, steps.integrity)
    ctx.guard()
    steps.lake_modified = ctx.lake.commit(
        destination, block_ids, md5=md5.digest() if md5 else None, metadata=metadata, condition=condition
    )
    steps.integrity.append("content-md5")
    steps.destination = destination


def _copy_server_side(item: WorkItem, ctx: CopyContext, steps: _Steps) -> None:
    """The lake pulls the body from a presigned URL; the function moves only the footer.

    The footer is read first (one ranged GET) and verified; the body is staged from the URL
    in large blocks and the tail block from the very footer bytes that were verified, so the
    footer readers will see is byte for byte the one checked. The S3 ETag is read again before
    the commit: if the object was replaced during the copy, nothing is committed.
    """
    tails: list[bytes] = []
    _judge(item, ctx.judge, lambda: _footer_facts(item, ctx.source, tails), steps)
    tail = tails[-1]
    destination, metadata, condition = _make_way(item, ctx, steps)
    url = ctx.source.presign(item.source)
    write = write_id(ctx.run_id, item.source.etag)
    body_end = item.source.size - len(tail)
    block_ids = [
        ctx.lake.stage_from_url(
            destination, index, url, offset, min(SERVER_BLOCK_BYTES, body_end - offset), write
        )
        for index, offset in enumerate(range(0, body_end, SERVER_BLOCK_BYTES))
    ]
    block_ids.append(ctx.lake.stage(destination, len(block_ids), tail, write))
    if ctx.source.etag_now(item.source) != item.source.etag:
        raise SourceChanged("object replaced while the lake copied it; nothing was committed")
    ctx.guard()
    steps.lake_modified = ctx.lake.commit(
        destination, block_ids, md5=None, metadata=metadata, condition=condition
    )
    steps.integrity += ["size", "footer-bytes", "etag-unchanged", "service-copy"]
    steps.destination = destination


def _footer_facts(item: WorkItem, source: S3Source, tails: list[bytes] | None = None) -> ParquetFacts:
    """The source file's footer facts; each tail read is kept in ``tails`` (even when it turns
    out unreadable: a quarantined copy needs its bytes too)."""

    def read_tail(length: int) -> bytes:
        tail = source.read_tail(item.source, length)
        if tails is not None:
            tails.append(tail)
        return tail

    return read_footer(read_tail, item.source.size)


def _judge(item: WorkItem, judge: SchemaJudge, read_facts: Callable[[], Any], steps: _Steps) -> None:
    """The file's verification: its Parquet facts, its schema against the contract, and whether it
    goes to quarantine; then (not a check) the statistics its Delta add action carries."""
    started, started_cpu = time.monotonic(), time.thread_time()
    try:
        _verify(item, judge, read_facts, steps)
    finally:
        steps.verify_seconds = time.monotonic() - started
        steps.verify_cpu_seconds = time.thread_time() - started_cpu
    if steps.facts is not None and steps.quarantine_reason is None:
        steps.table = table_facts(steps.facts.metadata)


def _verify(item: WorkItem, judge: SchemaJudge, read_facts: Callable[[], Any], steps: _Steps) -> None:
    try:
        steps.facts = facts = read_facts()
    except UnreadableParquet as err:
        steps.quarantine_reason = f"not readable Parquet: {err}"
        return
    steps.fingerprint = fingerprint(facts.columns)
    steps.schema = judge.judge(item.key, facts.columns)
    steps.quarantine_reason = steps.schema.reason if steps.schema.quarantine else None


def _make_way(item: WorkItem, ctx: CopyContext, steps: _Steps) -> tuple[str, dict[str, str], Condition]:
    """Where the judged file goes, with the metadata and the condition its write must meet.

    A changed file overwritten at its mirrored path first makes way: its old version is kept in
    quarantine and the blob is marked as being replaced (no table sync reads it meanwhile). A
    crash anywhere in between leaves the old bytes marked; the next run does it again (the file
    is still changed at the source).
    """
    facts = steps.facts
    record = FileRecord(
        source_key=item.key.key,
        source_etag=item.source.etag,
        source_size=item.source.size,
        run_id=ctx.run_id,
        rows=None if facts is None else facts.rows,
        schema_fingerprint=steps.fingerprint,
        contract=None if steps.schema is None else steps.schema.contract or "none",
        reason=steps.quarantine_reason,
    )
    if steps.quarantine_reason is not None:
        return quarantined(item.key.key), record.metadata(), ALWAYS
    if item.replaces is None:
        return item.key.key, record.metadata(), IF_MISSING
    ctx.guard()
    steps.replaced_copy = _keep_replaced_version(item, ctx)
    ctx.guard()
    etag = ctx.lake.mark_replacing(item.key.key, item.replaces, ctx.run_id)
    return item.key.key, record.metadata(), if_unchanged(etag)


def replaced_path(item: WorkItem) -> str:
    """Where the version a changed source file replaces is kept: quarantine, by its source ETag."""
    old_etag = (item.replaces.record.source_etag or "unknown") if item.replaces else "none"
    return replaced(item.key.key, old_etag)


def _keep_replaced_version(item: WorkItem, ctx: CopyContext) -> str:
    """Before a changed file is republished, its old version goes to a versioned quarantine path
    (returned)."""
    assert item.replaces is not None
    record = replace(
        item.replaces.record,
        replacing=None,
        run_id=ctx.run_id,  # the run that wrote this copy (the reason names it too)
        reason=f"replaced at the mirrored path by source ETag {item.source.etag} in run {ctx.run_id}: "
        "Haltian delivered a new version of an already copied file",
    )
    ctx.lake.preserve(item.key.key, item.replaces.etag, replaced_path(item), record.metadata())
    return replaced_path(item)


def _check_bytes(item: WorkItem, length: int, md5: Any, integrity: list[str]) -> None:
    """Adds each integrity check the bytes read pass (``size``, then ``etag-md5`` when the ETag is an MD5)."""
    if length != item.source.size:
        raise Corrupted(f"read {length} bytes, the listing says {item.source.size}")
    integrity.append("size")
    if md5 is not None:
        if md5.hexdigest() != item.source.etag:
            raise Corrupted("the bytes read do not match the object's MD5 ETag")
        integrity.append("etag-md5")


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
