"""Arrow types to Delta Lake types, losing no value and staying within reader 1 / writer 2.

Synapse serverless SQL and Fabric read tables at protocol reader 1 / writer 2. That rules out
``timestamp_ntz`` (a table feature) and leaves no Delta type for decimal256 or uint64. delta-rs
would map uint32 to ``integer``, which overflows above 2**31 - 1 (legacy wirepas ids are
uint32), so unsigned types are widened to the next signed type here.

The rule for a table column's one type: the Delta type of the column's *logical* Arrow type
(:func:`shared.haltian.contracts.logical_type`), so every spelling of one logical type maps
to one Delta type:

* ``string``, ``large_string`` and a dictionary of strings: ``string`` (likewise ``binary``);
* a timestamp with a time zone, in ms or us, in any spelling of UTC (or another zone: the
  Parquet values are UTC instants either way): ``timestamp`` (microseconds, UTC), which holds
  every ms and us value exactly; ns and zone-less timestamps have no reader 1 / writer 2 type;
* ``decimal128(p, s)``: ``decimal(p,s)``; decimal256 and uint64: none (the file is copied and
  kept out of the table, with the reason in the manifest);
* integers and floats: the Delta type of the same width, unsigned ones one size up.

A file whose column maps to another Delta type than the table's is kept out of the table
(a type clash is breaking drift); the first file registered decides a new column's type.
"""

from __future__ import annotations

import pyarrow as pa

from shared.errors import TerminalError
from shared.haltian.contracts import logical_type

_EXACT = {
    pa.bool_(): "boolean",
    pa.int8(): "byte",
    pa.int16(): "short",
    pa.int32(): "integer",
    pa.int64(): "long",
    pa.uint8(): "short",
    pa.uint16(): "integer",
    pa.uint32(): "long",
    pa.float32(): "float",
    pa.float64(): "double",
    pa.string(): "string",
    pa.large_string(): "string",
    pa.binary(): "binary",
    pa.large_binary(): "binary",
    pa.date32(): "date",
}


class NoDeltaType(TerminalError):
    """A column whose values no reader 1 / writer 2 Delta type can hold."""


def delta_type(arrow_type: pa.DataType) -> str:
    """The Delta type name for an Arrow type.

    Raises:
        NoDeltaType: with the reason, e.g. for decimal256 or a timestamp without a time zone.
    """
    arrow_type = logical_type(arrow_type)
    if arrow_type in _EXACT:
        return _EXACT[arrow_type]
    if pa.types.is_decimal128(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.tz is None:
            raise NoDeltaType(
                f"{arrow_type} has no time zone: Delta's timestamp_ntz needs writer version 7, "
                "which Synapse serverless SQL does not read"
            )
        if arrow_type.unit == "ns":
            raise NoDeltaType(f"{arrow_type}: nanoseconds do not fit Delta's microsecond timestamps")
        return "timestamp"
    if pa.types.is_decimal(arrow_type):
        return _no(arrow_type, "Delta decimals hold at most 38 digits")
    if arrow_type == pa.uint64():
        return _no(arrow_type, "no signed Delta type holds every uint64")
    return _no(arrow_type, "not a flat type the bridge maps to Delta")


def _no(arrow_type: pa.DataType, why: str) -> str:
    raise NoDeltaType(f"{arrow_type} has no Delta type: {why}")


def delta_columns(schema: pa.Schema) -> dict[str, str]:
    """Column name to Delta type for a file's schema.

    Raises:
        NoDeltaType: naming the first column that cannot be mapped.
    """
    columns: dict[str, str] = {}
    for field in schema:
        try:
            columns[field.name] = delta_type(field.type)
        except NoDeltaType as err:
            raise NoDeltaType(f"column {field.name!r}: {err}") from err
    return columns


_ARROW_FOR_DELTA = {
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "short": pa.int16(),
    "integer": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_for(delta: str) -> pa.DataType:
    """The Arrow type that ``deltalake.Schema.from_arrow`` turns into this Delta type."""
    if delta.startswith("decimal("):
        precision, scale = delta[len("decimal(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return _ARROW_FOR_DELTA[delta]


def table_schema(columns: dict[str, str]) -> pa.Schema:
    """An Arrow schema for a Delta table with these columns, all nullable.

    Every table column is nullable: a later file that lacks a column then reads as nulls, and
    no reader fails on a null in a column the log declared not null.
    """
    return pa.schema([pa.field(name, arrow_for(delta), nullable=True) for name, delta in columns.items()])
