"""Parquet inspection and the schema check: the rules that decide publish or quarantine."""

import io
import random
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.demo.bucket import legacy_schema, make_table, parquet_bytes, v1_schema
from shared.haltian.contracts import (
    Column,
    Verdict,
    check_schema,
    columns_of,
    contract_for,
    dataset_kind,
    fingerprint,
    type_matches,
)
from shared.haltian.keys import LEGACY, V1
from shared.verify.parquet import (
    FOOTER_GUESS_BYTES,
    FooterNeeded,
    ParquetFacts,
    UnreadableParquet,
    inspect_parquet,
    read_footer,
)

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)


def co2_file(rows: int = 20) -> bytes:
    return parquet_bytes(make_table(legacy_schema("measurementCO2"), rows, AT, random.Random(1)))


def test_whole_file_gives_rows_and_schema() -> None:
    facts = inspect_parquet(co2_file(20), len(co2_file(20)))
    assert isinstance(facts, ParquetFacts)
    assert facts.rows == 20 and facts.pages_checked
    assert [c.name for c in facts.columns] == ["deviceId", "ts", "organizationId", "co2"]


def test_an_empty_parquet_file_is_fine() -> None:
    data = co2_file(0)
    facts = inspect_parquet(data, len(data))
    assert isinstance(facts, ParquetFacts) and facts.rows == 0


def test_footer_alone_is_enough_and_a_long_footer_asks_for_more() -> None:
    data = co2_file(50)
    facts = inspect_parquet(data[-2000:], len(data))
    assert isinstance(facts, ParquetFacts) and facts.rows == 50 and not facts.pages_checked
    needed = inspect_parquet(data[-20:], len(data))
    assert isinstance(needed, FooterNeeded)
    facts = inspect_parquet(data[-needed.tail_bytes :], len(data))
    assert isinstance(facts, ParquetFacts) and facts.rows == 50


def _tail_reader(data: bytes, reads: list[int]):
    def read_tail(length: int) -> bytes:
        reads.append(length)
        return data[-length:]

    return read_tail


def test_a_footer_is_read_in_one_ranged_read_or_exactly_two_when_it_is_long() -> None:
    small = co2_file(50)
    reads: list[int] = []
    assert read_footer(_tail_reader(small, reads), len(small)).rows == 50 and reads == [FOOTER_GUESS_BYTES]

    wide = parquet_bytes(pa.table({f"column{i:04d}": pa.array([i, i], pa.int64()) for i in range(2000)}))
    footer = int.from_bytes(wide[-8:-4], "little")
    assert footer + 8 > FOOTER_GUESS_BYTES  # the file this test needs
    reads = []
    facts = read_footer(_tail_reader(wide, reads), len(wide))
    assert reads == [FOOTER_GUESS_BYTES, footer + 8]
    expected = pq.ParquetFile(io.BytesIO(wide)).metadata  # pyarrow's own reading of the whole file
    assert (facts.rows, facts.row_groups, len(facts.columns)) == (
        expected.num_rows,
        expected.num_row_groups,
        2000,
    )


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "0 bytes"),
        (b"PAR1", "too short"),
        (b"id,value\n1,2\n" * 3, "does not start with the Parquet magic"),
    ],
)
def test_not_parquet_is_named(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableParquet, match=reason):
        inspect_parquet(data, len(data))


def test_a_truncated_file_is_caught() -> None:
    data = co2_file(200)
    with pytest.raises(UnreadableParquet, match="truncated"):
        inspect_parquet(data[: len(data) - 100], len(data) - 100)


def _claim_200_rows(everywhere: bool) -> bytes:
    table = pa.table({"a": pa.array(range(100), pa.int64())})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=100, compression="none")
    data = bytearray(sink.getvalue())
    # The footer is Thrift compact. FileMetaData.num_rows comes first (header 0x16, zigzag varint
    # 200 = 100 rows); the row group's num_rows and the column's num_values follow with the same
    # bytes. 0x90 0x03 is 200 rows.
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    footer = bytes(data[start:-8])
    assert footer.count(b"\x16\xc8\x01") >= 2
    patched = footer.replace(b"\x16\xc8\x01", b"\x16\x90\x03", -1 if everywhere else 1)
    data[start:-8] = patched
    return bytes(data)


def test_a_footer_that_claims_rows_its_row_groups_do_not_hold_is_caught() -> None:
    data = _claim_200_rows(everywhere=False)
    with pytest.raises(UnreadableParquet, match="footer claims 200 rows but its row groups hold 100"):
        inspect_parquet(data, len(data))


def test_row_groups_that_claim_rows_their_pages_do_not_hold_are_caught() -> None:
    data = _claim_200_rows(everywhere=True)
    with pytest.raises(UnreadableParquet, match="row group 0"):
        inspect_parquet(data, len(data))


def test_contract_match_additive_and_breaking() -> None:
    contract = contract_for(LEGACY, "measurementCO2")
    assert contract is not None and contract.complete
    schema = legacy_schema("measurementCO2")
    assert check_schema(contract.columns, columns_of(schema), complete=True).verdict is Verdict.MATCH

    added = columns_of(schema.append(pa.field("co2Raw", pa.int32(), True)))
    check = check_schema(contract.columns, added, complete=True)
    assert check.verdict is Verdict.ADDITIVE and check.added == ("co2Raw",)

    renamed = columns_of(schema.remove(3).append(pa.field("co2ppm", pa.float32(), True)))
    check = check_schema(contract.columns, renamed, complete=True)
    assert check.verdict is Verdict.BREAKING and "missing column 'co2'" in check.problems

    retyped = columns_of(schema.set(3, pa.field("co2", pa.float64(), False)))
    check = check_schema(contract.columns, retyped, complete=True)
    assert check.verdict is Verdict.BREAKING and "is double, expected float" in check.problems[0]

    required_new = columns_of(schema.append(pa.field("co2Raw", pa.int32(), False)))
    assert check_schema(contract.columns, required_new, complete=True).verdict is Verdict.BREAKING


def test_legacy_uint32_wirepas_ids_are_in_the_device_contract() -> None:
    contract = contract_for(LEGACY, "device")
    types = {c.name: c.type for c in contract.columns}
    assert types["wirepasNodeId"] == "uint32" and types["createdTs"] == "timestamp[ms, tz=UTC]"


def test_partial_v1_contracts_accept_any_timestamp_unit_and_unnamed_columns() -> None:
    contract = contract_for(V1, "measurementCO2")
    assert contract is not None and not contract.complete
    check = check_schema(contract.columns, columns_of(v1_schema("measurementCO2")), complete=False)
    assert check.verdict is Verdict.MATCH
    assert type_matches("timestamp[*, tz=*]", "timestamp[ms, tz=UTC]")
    assert type_matches("timestamp[*, tz=*]", "timestamp[us, tz=Europe/Helsinki]")
    assert not type_matches("timestamp[*, tz=*]", "int64")


def test_every_legacy_dataset_in_the_contract_document_is_shipped() -> None:
    for dataset in (
        "organization",
        "device",
        "deviceGroup",
        "deviceGroupDevices",
        "deviceKeyword",
        "space",
        "zone",
        "measurementCO2",
        "measurementTVOC",
        "measurementPositionZone",
    ):
        assert contract_for(LEGACY, dataset) is not None, dataset
    assert dataset_kind(LEGACY, "deviceGroupDevices") == "relationship"
    assert dataset_kind(V1, "measurementNoiseLevel") == "measurement"
    assert dataset_kind(V1, "buildings") == "entity"


def test_fingerprint_depends_on_names_types_and_order() -> None:
    a = (Column("a", "int64", True), Column("b", "string", True))
    assert fingerprint(a) == fingerprint(tuple(a))
    assert fingerprint(a) != fingerprint(a[::-1])
    assert fingerprint(a) != fingerprint((Column("a", "int32", True), a[1]))


def test_the_cheapest_chunk_of_a_nested_schema_is_the_one_decoded() -> None:
    """Chunks are leaf columns: with a struct first, a chunk's index is not its field's index.
    The cheapest chunk (``n``) is corrupted; decoding the field at its index (``m``) would miss it."""
    rows = 200
    table = pa.table(
        {
            "s": pa.array([{"a": f"a-{i:06d}" * 8, "b": f"b-{i:06d}" * 8} for i in range(rows)]),
            "n": pa.array([i % 2 for i in range(rows)], pa.int8()),
            "m": pa.array([f"m-{i:06d}" * 8 for i in range(rows)]),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", use_dictionary=False)
    data = bytearray(sink.getvalue())
    group = pq.ParquetFile(pa.BufferReader(bytes(data))).metadata.row_group(0)
    chunk = group.column(2)
    assert chunk.path_in_schema == "n"
    assert chunk.total_compressed_size == min(
        group.column(c).total_compressed_size for c in range(group.num_columns)
    )
    start = chunk.data_page_offset
    data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    with pytest.raises(UnreadableParquet, match="row group 0 cannot be decoded"):
        inspect_parquet(bytes(data), len(data))
