"""The shipped contracts against Haltian's own schema reference, and files built from that reference.

The reference (``../shared/haltian-schema-reference.json``) transcribes Haltian's schema pages.
Nothing here derives its expectations from ``shared/haltian/contracts.py``: the comparison reads
the contracts as data, and the Parquet files come from :mod:`shared.demo.reference`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from shared.demo import reference
from shared.haltian.contracts import Verdict, check_schema, columns_of, contract_for

CONTRACTS = Path(__file__).resolve().parents[1] / "shared" / "haltian" / "data"
DEVIATIONS = json.loads((CONTRACTS / "deviations.json").read_text())


def _shipped(layout: str) -> dict:
    return json.loads((CONTRACTS / f"{layout}.json").read_text())["datasets"]


def _reference_arrow(layout: str, page_type: str) -> str:
    """The Arrow type name the pages' Data Types table gives for a Type cell (read independently here)."""
    cell = reference.reference()["arrow_types"][layout][page_type]
    match = re.match(r"(timestamp\[\w+, tz=\w+\]|decimal\d+\(\d+, ?\d+\)|[a-z0-9]+)", cell)
    assert match, cell
    name = match[1].replace(",", ", ").replace(",  ", ", ")
    return {"float": "float", "string": "string", "bool": "bool"}.get(name, name)


def test_the_reference_copy_in_the_project_is_haltians_reference() -> None:
    if not reference.AUTHORITY.is_file():
        pytest.skip("no ../shared/ beside the project on this machine")
    assert reference.COPY.read_bytes() == reference.AUTHORITY.read_bytes()


def test_every_documented_dataset_has_a_contract_and_no_other() -> None:
    ref = reference.reference()
    for layout in ("legacy", "v1"):
        assert set(_shipped(layout)) == set(ref[layout]), layout
    assert (len(ref["legacy"]), len(ref["v1"])) == (20, 41)


def test_contracts_agree_with_the_reference_column_by_column_except_the_listed_deviations() -> None:
    rules = {(r["layout"], r["reference_type"]): r["contract_type"] for r in DEVIATIONS["type_rules"]}
    columns = {(c["layout"], c["dataset"], c["column"]): c for c in DEVIATIONS["columns"]}
    partial = {(p["layout"], d) for p in DEVIATIONS["partial"] for d in p["datasets"]}
    used_rules, used_columns, differences = set(), set(), []
    for layout in ("legacy", "v1"):
        shipped = _shipped(layout)
        for dataset, documented in reference.reference()[layout].items():
            contract = shipped[dataset]
            assert [c["name"] for c in contract["columns"]] == [c["name"] for c in documented], dataset
            assert contract["complete"] == ((layout, dataset) not in partial), f"{layout}/{dataset} complete"
            for want, have in zip(documented, contract["columns"]):
                name = (layout, dataset, want["name"])
                expected_type = _reference_arrow(layout, want["type"])
                if (layout, want["type"]) in rules:
                    used_rules.add((layout, want["type"]))
                    expected_type = rules[(layout, want["type"])]
                deviation = columns.get(name, {})
                if deviation:
                    used_columns.add(name)
                expected_type = deviation.get("contract_type", expected_type)
                if have["type"] != expected_type:
                    differences.append(f"{name}: type {have['type']!r}, reference says {expected_type!r}")
                if have["nullable"] != want["nullable"]:
                    differences.append(
                        f"{name}: nullable {have['nullable']}, reference says {want['nullable']}"
                    )
                if have.get("may_be_absent", False) != deviation.get("may_be_absent", False):
                    differences.append(f"{name}: may_be_absent not as listed in deviations.json")
    assert differences == []
    # Every listed deviation is one that exists: the list never outlives what it explains.
    assert used_rules == set(rules)
    assert used_columns == set(columns)
    assert all(
        entry.get("reason")
        for entry in DEVIATIONS["type_rules"] + DEVIATIONS["columns"] + DEVIATIONS["partial"]
    )


def test_the_device_dates_are_timestamps_as_haltian_documents() -> None:
    for dataset in ("device", "deviceGroup"):
        types = {c.name: c.type for c in contract_for("legacy", dataset).columns}
        for column in ("manufacturingDate", "shippingDate", "warrantyDate"):
            assert types[column] == "timestamp[ms, tz=UTC]", (dataset, column)


@pytest.mark.parametrize("layout", ["legacy", "v1"])
def test_every_documented_schema_matches_its_contract(layout: str) -> None:
    for dataset in reference.datasets(layout):
        contract = contract_for(layout, dataset)
        units = ("ms", "us") if layout == "v1" else (None,)
        for unit in units:
            schema = reference.schema(layout, dataset, timestamp_unit=unit)
            check = check_schema(contract.columns, columns_of(schema), complete=contract.complete)
            assert check.verdict is Verdict.MATCH, (dataset, unit, check.problems)
        early = reference.schema(layout, dataset, without=reference.later_columns(layout, dataset))
        assert (
            check_schema(contract.columns, columns_of(early), complete=contract.complete).verdict
            is Verdict.MATCH
        )


SPELLINGS = [
    ("deviceId", pa.large_string()),
    ("deviceId", pa.dictionary(pa.int32(), pa.string())),
    ("deviceId", pa.dictionary(pa.int8(), pa.large_string())),
    ("ts", pa.timestamp("ms", tz="Etc/UTC")),
    ("ts", pa.timestamp("ms", tz="+00:00")),
    ("ts", pa.timestamp("ms", tz="Z")),
]


@pytest.mark.parametrize("column, spelled", SPELLINGS, ids=[str(t) for _, t in SPELLINGS])
def test_a_writers_spelling_of_a_type_is_a_match(column: str, spelled: pa.DataType) -> None:
    schema = reference.schema("legacy", "measurementCO2")
    index = schema.get_field_index(column)
    variant = schema.set(index, schema.field(index).with_type(spelled))
    contract = contract_for("legacy", "measurementCO2")
    assert check_schema(contract.columns, columns_of(variant), complete=True).verdict is Verdict.MATCH


def test_binary_spellings_and_v1_units_and_wide_decimals_match() -> None:
    assert columns_of(pa.schema([pa.field("b", pa.large_binary())]))[0].type == "binary"
    contract = contract_for("v1", "measurementCO2")
    wide = reference.schema("v1", "measurementCO2").set(2, pa.field("co2", pa.decimal256(50, 20), False))
    assert check_schema(contract.columns, columns_of(wide), complete=False).verdict is Verdict.MATCH


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda s: s.remove(3), "missing column 'co2'"),
        (lambda s: s.set(3, pa.field("co2", pa.float64(), False)), "is double, expected float"),
        (
            lambda s: s.set(1, pa.field("ts", pa.timestamp("us", tz="UTC"), False)),
            "expected timestamp[ms, tz=UTC]",
        ),
        (
            lambda s: s.set(1, pa.field("ts", pa.timestamp("ms", tz="Europe/Helsinki"), False)),
            "Europe/Helsinki",
        ),
        (lambda s: s.append(pa.field("co2Raw", pa.int32(), False)), "new column 'co2Raw' is not nullable"),
    ],
)
def test_what_is_breaking_stays_breaking(change, problem: str) -> None:
    contract = contract_for("legacy", "measurementCO2")
    check = check_schema(
        contract.columns, columns_of(change(reference.schema("legacy", "measurementCO2"))), complete=True
    )
    assert check.verdict is Verdict.BREAKING and any(problem in p for p in check.problems), check.problems
