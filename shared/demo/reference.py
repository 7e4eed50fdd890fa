"""Haltian's published schemas, read from Haltian's own documents: the source of all test data.

``haltian-schema-reference.json`` transcribes Haltian's schema reference pages: every dataset
of both layouts, each column's Type and Nullable cells, and the pages' Data Types tables that
map those types to Arrow. The demo bucket and the test fixtures build their Parquet files from
it, by this module alone, never from the bridge's own contracts (``shared/haltian/``): a wrong
contract then quarantines a file that Haltian could really deliver, and a test fails.

The authority is the copy beside the project (``../shared/``); ``dev/haltian/`` holds the same
file for machines without it, and ``tests/test_contracts.py`` keeps the two identical.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AUTHORITY = PROJECT_ROOT.parent / "shared" / "haltian-schema-reference.json"
COPY = PROJECT_ROOT / "dev" / "haltian" / "haltian-schema-reference.json"

# The leading type in a Data Types table's Arrow cell: "timestamp[ms, tz=UTC]", "decimal128(10, 0)",
# "string (UTF-8)", "float (32-bit)", "decimal128(38, 20), the default ...".
_ARROW_CELL = re.compile(
    r"^\s*(?:timestamp\[(?P<unit>\w+),\s*tz=(?P<tz>[^\]]+)\]"
    r"|decimal(?P<width>128|256)\((?P<precision>\d+),\s*(?P<scale>\d+)\)"
    r"|(?P<name>[a-z][a-z0-9_]*))"
)


@cache
def reference() -> dict[str, Any]:
    """The schema reference document (the authority when it is beside the project)."""
    path = AUTHORITY if AUTHORITY.is_file() else COPY
    return json.loads(path.read_text())


def datasets(layout: str) -> list[str]:
    """Every dataset Haltian documents for a layout, in the pages' order."""
    return list(reference()[layout])


def is_measurement(dataset: str) -> bool:
    """Haltian names every time-window dataset ``measurement...``; the rest are snapshots."""
    return dataset.startswith("measurement")


def arrow_type(layout: str, page_type: str) -> pa.DataType:
    """The Arrow type a page's Type cell stands for, by the pages' own Data Types table."""
    cell = reference()["arrow_types"][layout][page_type]
    match = _ARROW_CELL.match(cell)
    if match is None:
        raise ValueError(f"cannot read the Arrow type of {layout} {page_type!r} from {cell!r}")
    if match["unit"]:
        return pa.timestamp(match["unit"], tz=match["tz"].strip())
    if match["width"]:
        make = pa.decimal128 if match["width"] == "128" else pa.decimal256
        return make(int(match["precision"]), int(match["scale"]))
    return pa.type_for_alias(match["name"])


def later_columns(layout: str, dataset: str) -> set[str]:
    """Columns Haltian added to a v1 page after its first publication (older files lack them)."""
    if layout != "v1":
        return set()
    return set(reference().get("v1_added_after_first_publication", {}).get("columns", {}).get(dataset, []))


def schema(
    layout: str,
    dataset: str,
    *,
    timestamp_unit: str | None = None,
    without: set[str] | frozenset[str] = frozenset(),
) -> pa.Schema:
    """The schema of a file Haltian documents for this dataset.

    ``timestamp_unit`` overrides the unit of every timestamp (Haltian's v1 pages give both ms
    and us); ``without`` leaves columns out (a file written before they were added).
    """
    fields = []
    for column in reference()[layout][dataset]:
        if column["name"] in without:
            continue
        arrow = arrow_type(layout, column["type"])
        if timestamp_unit and pa.types.is_timestamp(arrow):
            arrow = pa.timestamp(timestamp_unit, tz=arrow.tz)
        fields.append(pa.field(column["name"], arrow, column["nullable"]))
    return pa.schema(fields)
