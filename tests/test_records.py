"""The ledger record in blob metadata (shared.sink.records): what Azure allows in metadata, and
read back exactly as written."""

from __future__ import annotations

import json
import re

from shared.sink.records import FileRecord

# Azure: "Metadata names must adhere to the naming rules for C# identifiers"; values travel as
# HTTP headers (ASCII).
C_SHARP_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def test_a_record_is_metadata_azure_accepts_and_reads_back_as_written() -> None:
    record = FileRecord(
        source_key="parquet/org/measurementCO2/2026/12/co2-2026-12-04T10.parquet",
        source_etag="9b2cf535f27731c974343645a3985328",
        source_size=4096,
        run_id="20261204T100000Z-abc123",
        rows=24,
        schema_fingerprint="f" * 16,
        contract="none",
        reason="breaks its contract: column co2 is string, the contract says float\nsecond line ü",
        replacing="20261204T110000Z-def456",
    )
    metadata = record.metadata()
    assert all(C_SHARP_IDENTIFIER.match(name) for name in metadata)
    assert all(value.isascii() and "\n" not in value for value in metadata.values())
    back = FileRecord.read(metadata)
    assert back.reason == "breaks its contract: column co2 is string, the contract says float second line ?"
    assert back == FileRecord(**{**record.__dict__, "reason": back.reason})
    assert FileRecord.names_version(metadata, "9b2cf535f27731c974343645a3985328", 4096)
    assert not FileRecord.names_version(metadata, "9b2cf535f27731c974343645a3985328", 4095)


def test_missing_and_malformed_fields_read_as_missing() -> None:
    assert FileRecord.read({}) == FileRecord()
    assert FileRecord().metadata() == {}
    odd = FileRecord.read({"haltian_source_size": "12x", "haltian_rows": "", "other_tool": "kept out"})
    assert odd.source_size is None and odd.rows is None
    assert not FileRecord(run_id="a", source_etag="e", source_size=1).same_write(
        FileRecord(run_id="b", source_etag="e", source_size=1)
    )
    assert not FileRecord().same_write(FileRecord())  # no run: not one write


def test_a_lock_record_written_before_the_typed_record_reads_the_same() -> None:
    """A lake upgraded while a run of the older version holds (or last held) its lock: the body
    that version wrote (JSON with run_id, host, since, previous and scope) is read field for field."""
    from shared.sink.lock import Holder, LockRecord, Scope

    older = (
        b'{"run_id": "20261204T100000Z-abc123", "host": "h1", "since": "2026-12-04T10:00:00+00:00", '
        b'"previous": {"run_id": "20261204T090000Z-0f0f0f", "released": true, "scope": {"mode": "partition", '
        b'"months": null, "partition": "parquet/org/measurementCO2/2026/05/"}}, '
        b'"scope": {"mode": "window", "months": ["2026/11", "2026/12"], "partition": null}}'
    )
    record = LockRecord.parse(older)
    assert record == LockRecord(
        "20261204T100000Z-abc123",
        "h1",
        "2026-12-04T10:00:00+00:00",
        Holder(
            "20261204T090000Z-0f0f0f", True, Scope("partition", None, "parquet/org/measurementCO2/2026/05/")
        ),
        Scope("window", ("2026/11", "2026/12"), None),
    )
    assert LockRecord.parse(record.to_bytes()) == record
    assert json.loads(record.to_bytes()) == json.loads(older)
    for broken in (
        b"",
        b"{}",
        b"[]",
        b"not json",
        b'{"run_id": 7, "previous": "x", "scope": {"months": []}}',
    ):
        assert LockRecord.parse(broken) == LockRecord(), broken


def test_a_run_id_tells_when_its_run_started_and_anything_else_is_no_run_id() -> None:
    from datetime import datetime, timezone

    from shared.sink.records import new_run_id, run_started

    began = datetime(2026, 12, 4, 10, 5, 9, tzinfo=timezone.utc)
    run_id = new_run_id(began)
    assert re.fullmatch(r"20261204T100509Z-[0-9a-f]{6}", run_id)
    assert run_started(run_id) == began
    assert new_run_id(began) != run_id
    for other in ("run-a", "", "preserve", "2026-12-04T10:05:09Z-abcdef", "20261304T100509Z-abcdef"):
        assert run_started(other) is None, other
