"""The customer's ADLS Gen2 account, written through its Blob endpoint.

Every path the bridge touches is below the configured root folder. Mirrored files sit at
``{root}/{s3 key}``; the bridge's own folders start with ``_`` and can never be produced by a
Haltian key (keys start with ``parquet/`` or ``downloads/``, see ``haltian.keys``).

Publishing is atomic: a single Put Blob, or blocks staged on the final name (invisible to
readers) and committed by one Put Block List. Every request body carries Content-MD5, so
the service itself checks each byte that lands. Those publishing requests go through
:class:`~shared.sink.blob_writer.BlobWriter`; everything else through the SDK's container client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.errors import CONFLICT_ATTEMPTS, Contention, TransientError
from shared.sink.blob_writer import BlobMissing, BlobWriter, WriteConflict, azure_transport
from shared.sink.lake_root import LakeRoot
from shared.sink.records import FileRecord
from shared.transport import Transport

log = logging.getLogger(__name__)

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


@dataclass(frozen=True)
class LakeEntry:
    """A blob as listed, with the metadata the ledger needs."""

    path: str
    size: int
    etag: str
    metadata: dict[str, str]
    last_modified: datetime | None = None

    @cached_property
    def record(self) -> FileRecord:
        """The file's ledger record, from its metadata (read once)."""
        return FileRecord.read(self.metadata)

    def holds(self, source_etag: str, source_size: int) -> bool:
        """True when this blob is a verified copy of that exact source version."""
        return FileRecord.names_version(self.metadata, source_etag, source_size)

    def mirrors(self, source_etag: str, source_size: int) -> bool:
        """True when this blob at the mirrored path is that source version, whole: its metadata
        names it and its own size equals it (so nothing is left to copy)."""
        return self.holds(source_etag, source_size) and self.size == source_size


@dataclass(frozen=True)
class Condition:
    """When a write may happen: the blob is missing, is still one version, or always."""

    if_missing: bool = False
    etag: str | None = None

    def kwargs(self) -> dict[str, Any]:
        if self.if_missing:
            return {"match_condition": MatchConditions.IfMissing}
        if self.etag is not None:
            return {"etag": self.etag, "match_condition": MatchConditions.IfNotModified}
        return {}

    def headers(self) -> dict[str, str]:
        if self.if_missing:
            return {"if-none-match": "*"}
        if self.etag is not None:
            return {"if-match": self.etag}
        return {}


IF_MISSING = Condition(if_missing=True)
ALWAYS = Condition()


def if_unchanged(etag: str) -> Condition:
    return Condition(etag=etag)


class PublishConflict(TransientError):
    """Another writer published or replaced the blob first."""


class Lake(LakeRoot):
    """One container and root folder; paths given to its methods are relative to the root (the
    container's check, blob names, leases and deletes: :class:`~shared.sink.lake_root.LakeRoot`)."""

    def __init__(
        self, container: ContainerClient, root: str = "", transport: Transport | None = None
    ) -> None:
        super().__init__(container, root)
        # Publishing (the copy path's requests) goes through the lean writer; the rest through the SDK.
        self.writer = BlobWriter(container, transport or azure_transport(pool_size=32))

    def list_entries(self, prefix: str) -> Iterator[LakeEntry]:
        """Blobs below a relative folder prefix (ending in '/'), with their metadata.

        One request per 5,000 blobs. A hierarchical-namespace account also lists its
        directories as empty blobs marked ``hdi_isfolder``; they are not files and are skipped.
        """
        for blob in self.container.list_blobs(name_starts_with=self.path(prefix), include=["metadata"]):
            metadata = blob.metadata or {}
            if metadata.get("hdi_isfolder") == "true":
                continue
            yield LakeEntry(self.relative(blob.name), blob.size, blob.etag, metadata, blob.last_modified)

    def list_folders(self, prefix: str) -> list[str]:
        """The immediate sub-folders of a relative folder prefix, relative to the root."""
        return [
            self.relative(item.name)
            for item in self.container.walk_blobs(name_starts_with=self.path(prefix), delimiter="/")
            if item.name.endswith("/")
        ]

    def put(self, relative: str, data: bytes, *, metadata: dict[str, str], condition: Condition) -> datetime:
        """Publishes a whole file with one Put Blob (Content-MD5 checked by the service).

        Returns the blob's Last-Modified time.

        Raises:
            PublishConflict: the condition failed.
        """
        try:
            return self.writer.put_blob(
                self.path(relative),
                data,
                content_type=PARQUET_CONTENT_TYPE,
                metadata=metadata,
                condition=condition.headers(),
            )
        except WriteConflict as err:
            return self._own_earlier_attempt(relative, metadata, err)

    def stage(self, relative: str, index: int, data: bytes, write: str) -> str:
        """Stages one block on the final name; readers see nothing until :meth:`commit`.

        ``write`` names this write (see :func:`write_id`): two writers of one blob never
        share a block id, so neither can commit the other's blocks.
        """
        block_id = _block_id(write, index)
        self.writer.put_block(self.path(relative), block_id, data)
        return block_id

    def stage_from_url(
        self, relative: str, index: int, url: str, offset: int, length: int, write: str
    ) -> str:
        """Has the service pull one block from ``url`` (bytes ``offset``..+``length``); invisible until commit."""
        block_id = _block_id(write, index)
        blob = self.container.get_blob_client(self.path(relative))
        blob.stage_block_from_url(block_id, url, source_offset=offset, source_length=length)
        return block_id

    def commit(
        self,
        relative: str,
        block_ids: list[str],
        *,
        md5: bytes | None,
        metadata: dict[str, str],
        condition: Condition,
    ) -> datetime:
        """Makes the staged blocks the blob's content in one Put Block List.

        Returns the blob's Last-Modified time.

        Raises:
            PublishConflict: the condition failed.
        """
        try:
            return self.writer.put_block_list(
                self.path(relative),
                block_ids,
                content_type=PARQUET_CONTENT_TYPE,
                content_md5=md5,
                metadata=metadata,
                condition=condition.headers(),
            )
        except WriteConflict as err:
            return self._own_earlier_attempt(relative, metadata, err)

    def _own_earlier_attempt(self, relative: str, metadata: dict[str, str], err: Exception) -> datetime:
        """A conditional write failed: fine when it was this very write, retried after a timeout,
        whose first attempt landed; otherwise another writer won.

        Raises:
            PublishConflict: the blob holds someone else's write.
        """
        current = self.get_entry(relative)
        if (
            current is not None
            and current.last_modified is not None
            and FileRecord.read(metadata).same_write(current.record)
        ):
            return current.last_modified
        raise PublishConflict(f"{relative} was written by another run") from err

    def preserve(self, relative: str, etag: str, destination: str, metadata: dict[str, str]) -> None:
        """Copies one exact version of a blob (``etag``) to ``destination``, block by block.

        The bytes pass through the bridge rather than a server-side copy, so it needs no
        permission beyond reading and writing this container; it is used only for the rare
        file that changed at the source.
        """
        source = self.container.get_blob_client(self.path(relative))
        downloader = source.download_blob(
            etag=etag, match_condition=MatchConditions.IfNotModified, max_concurrency=1
        )
        write = write_id("preserve", downloader.properties.etag)
        block_ids = [
            self.stage(destination, index, chunk, write) for index, chunk in enumerate(downloader.chunks())
        ]
        self.commit(
            destination,
            block_ids,
            md5=bytes(downloader.properties.content_settings.content_md5 or b""),
            metadata=metadata,
            condition=ALWAYS,
        )

    def mark_replacing(self, relative: str, entry: LakeEntry, run_id: str) -> str:
        """Marks a mirrored file as being replaced (``FileRecord.replacing``), only if it is still
        the version listed; returns its new ETag, which the replacing write must match.

        Raises:
            PublishConflict: the blob changed since it was listed.
        """
        blob = self.container.get_blob_client(self.path(relative))
        metadata = {**entry.metadata, **FileRecord(replacing=run_id).metadata()}
        try:
            answer = blob.set_blob_metadata(
                metadata, etag=entry.etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError) as err:
            raise PublishConflict(f"{relative} changed since it was listed") from err
        return str(answer["etag"])

    def read_tail(self, relative: str, size: int, length: int, etag: str | None = None) -> bytes:
        """The last ``length`` bytes of a blob of ``size`` bytes (a Parquet footer); with
        ``etag``, only of that version.

        Raises:
            PublishConflict: the blob is another version now (with ``etag``), or gone.
        """
        try:  # the lean Get Blob, as every read below: the SDK's download costs milliseconds of CPU
            return self.writer.read(self.path(relative), etag=etag, start=size - min(length, size))[0]
        except WriteConflict as err:
            raise PublishConflict(f"{relative} changed or went while its footer was read") from err

    def read_bytes(self, relative: str) -> bytes:
        """A whole (small) blob, such as a Delta log entry.

        Raises:
            PublishConflict: the blob is gone.
        """
        try:
            return self.writer.read(self.path(relative))[0]
        except WriteConflict as err:
            raise PublishConflict(f"{relative} went while it was read") from err

    def download_to(self, relative: str, target: Any, etag: str | None = None) -> dict[str, str]:
        """Streams a blob into a file object (only that version, with ``etag``); returns its metadata.

        Raises:
            PublishConflict: with ``etag``, the blob is another version now (or gone).
        """
        try:  # the lean Get Blob: through the SDK, a small file's download costs several times its CPU
            return self.writer.download_to(self.path(relative), target, etag)
        except WriteConflict as err:
            raise PublishConflict(f"{relative} changed or went since it was listed") from err

    def get_entry(self, relative: str) -> LakeEntry | None:
        blob = self.container.get_blob_client(self.path(relative))
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
        return LakeEntry(relative, props.size, props.etag, props.metadata or {}, props.last_modified)

    def read_json(self, relative: str) -> Any | None:
        """A JSON document below the root, or None when there is none."""
        return self.read_json_version(relative)[0]

    def read_json_version(self, relative: str) -> tuple[Any | None, str | None]:
        """A JSON document and its ETag (for a conditional write over it), or (None, None).

        A body cut off mid-way is read again (the lean Get Blob's own retry).
        """
        try:
            body, headers = self.writer.read(self.path(relative))
        except BlobMissing:
            return None, None
        return json.loads(body), headers.get("etag")

    def write_json_forward(self, relative: str, document: Any, order: Callable[[Any], Any]) -> bool:
        """Replaces a JSON document only with one that is further on by ``order``, never back.

        Each write is conditional on the version read, so a slower writer that read an older
        version loses and reads again. Returns whether this document was written.
        """
        for _ in range(CONFLICT_ATTEMPTS):
            current, etag = self.read_json_version(relative)
            if current is not None and order(current) >= order(document):
                return False
            if self.write_json(
                relative, document, condition=IF_MISSING if etag is None else if_unchanged(etag)
            ):
                return True
        raise Contention(f"{relative}: other writers kept writing it first ({CONFLICT_ATTEMPTS} attempts)")

    def write_json(
        self,
        relative: str,
        document: Any,
        *,
        condition: Condition | None = None,
        metadata: dict[str, str] | None = None,
    ) -> bool:
        """Writes a JSON document atomically (with ``metadata`` on its blob); False when the
        condition failed."""
        data = json.dumps(
            document, separators=(",", ":"), default=str
        ).encode()  # C encoder: fast on big manifests
        blob = self.container.get_blob_client(self.path(relative))
        try:
            blob.upload_blob(
                data,
                overwrite=True,
                validate_content=True,
                content_settings=ContentSettings(content_type="application/json"),
                metadata=metadata,
                **(condition or ALWAYS).kwargs(),
            )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True


def write_id(run_id: str, version: str) -> str:
    """A name for one write of one blob: the run and the source version it writes."""
    return hashlib.sha256(f"{run_id}/{version}".encode()).hexdigest()[:24]


def _block_id(write: str, index: int) -> str:
    # Every block id of a blob must have the same length (all of them are); a retried stage of
    # the same write replaces its block, and another write's blocks never share an id with it.
    return base64.b64encode(f"{write}-{index:08d}".encode()).decode()
