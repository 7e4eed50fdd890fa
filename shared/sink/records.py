"""What the bridge keeps in blob metadata: each mirrored or quarantined file's ledger record,
written with its bytes in the same request, so a file and its record land together or not at all;
and the run ids every record carries.

:class:`FileRecord` is the one reader and writer of those names. Names are C# identifiers, as
Azure requires; values are ASCII.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

_RUN_ID_TIME = "%Y%m%dT%H%M%SZ"


def new_run_id(now: datetime) -> str:
    """``{UTC start, to the second}-{6 random hex digits}``: sorts by start time, unique per run."""
    return f"{now:{_RUN_ID_TIME}}-{secrets.token_hex(3)}"


def run_started(run_id: str) -> datetime | None:
    """When the run of ``run_id`` started; None when ``run_id`` is not a run id."""
    try:
        return datetime.strptime(run_id[:16], _RUN_ID_TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


META_SOURCE_KEY = "haltian_source_key"
META_SOURCE_ETAG = "haltian_source_etag"
META_SOURCE_SIZE = "haltian_source_size"
META_ROWS = "haltian_rows"
META_SCHEMA = "haltian_schema_fingerprint"
META_CONTRACT = "haltian_contract"
META_RUN_ID = "haltian_run_id"
META_REASON = "haltian_quarantine_reason"
#: Set on a mirrored file while a run replaces it (a new source version): no table sync reads it
#: then; the new version's write clears it.
META_REPLACING = "haltian_replacing"
#: On a manifest written for an interrupted run: when the listing it was written from began.
META_LISTED_AT = "haltian_listed_at"


@dataclass(frozen=True)
class FileRecord:
    """A file's ledger record: the source version it is, what verification found, the run that
    wrote it. Every field may be missing on a blob the bridge did not write whole (None)."""

    source_key: str | None = None
    source_etag: str | None = None
    source_size: int | None = None
    run_id: str | None = None
    rows: int | None = None
    schema_fingerprint: str | None = None
    #: The contract the file was judged against ("none": the first-seen schema).
    contract: str | None = None
    #: Why the file is in quarantine.
    reason: str | None = None
    #: The run replacing this mirrored file with a new source version, while it does.
    replacing: str | None = None

    @classmethod
    def read(cls, metadata: Mapping[str, str]) -> FileRecord:
        return cls(
            source_key=metadata.get(META_SOURCE_KEY),
            source_etag=metadata.get(META_SOURCE_ETAG),
            source_size=_int(metadata.get(META_SOURCE_SIZE)),
            run_id=metadata.get(META_RUN_ID),
            rows=_int(metadata.get(META_ROWS)),
            schema_fingerprint=metadata.get(META_SCHEMA),
            contract=metadata.get(META_CONTRACT),
            reason=metadata.get(META_REASON),
            replacing=metadata.get(META_REPLACING),
        )

    def metadata(self) -> dict[str, str]:
        """The blob metadata that holds this record (its missing fields left out)."""
        fields = {
            META_SOURCE_KEY: self.source_key,
            META_SOURCE_ETAG: self.source_etag,
            META_SOURCE_SIZE: None if self.source_size is None else str(self.source_size),
            META_RUN_ID: self.run_id,
            META_ROWS: None if self.rows is None else str(self.rows),
            META_SCHEMA: self.schema_fingerprint,
            META_CONTRACT: self.contract,
            META_REASON: None if self.reason is None else _ascii(self.reason)[:1024],
            META_REPLACING: self.replacing,
        }
        return {name: value for name, value in fields.items() if value is not None}

    @staticmethod
    def names_version(metadata: Mapping[str, str], source_etag: str, source_size: int) -> bool:
        """True when the record in ``metadata`` names that exact source version (read without the
        rest of the record: the plan asks it of every listed blob)."""
        return (
            metadata.get(META_SOURCE_ETAG) == source_etag
            and _int(metadata.get(META_SOURCE_SIZE)) == source_size
        )

    def same_write(self, other: FileRecord) -> bool:
        """True when both records come from one run's write of one source version."""
        return bool(self.run_id) and (self.run_id, self.source_etag, self.source_size) == (
            other.run_id,
            other.source_etag,
            other.source_size,
        )


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _ascii(text: str) -> str:
    # Metadata values travel as HTTP headers: ASCII only.
    return text.encode("ascii", "replace").decode("ascii").replace("\n", " ")
