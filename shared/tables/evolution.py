"""Which files can join a table as its columns stand: a column may be missing, new, or narrower
than the table's; a type the table's cannot hold is breaking drift."""

from __future__ import annotations

from typing import Any

from deltalake import DeltaTable

from shared.tables.rows import LINEAGE


def columns_of(table: DeltaTable | None) -> dict[str, str]:
    """The table's data columns (not the lineage) and their Delta types."""
    if table is None:
        return {}
    return {f.name: _type_name(f.type) for f in table.schema().fields if f.name not in LINEAGE}


def _type_name(delta_type: Any) -> str:
    return str(getattr(delta_type, "type", delta_type))


def incompatibility(file_columns: dict[str, str] | None, table_columns: dict[str, str]) -> str | None:
    """Why a file cannot join a table with these columns, or None when it can.

    A file may lack table columns (they read as nulls), may bring new ones (the table schema
    grows), and may hold a column in a narrower type than the table's (its values are widened,
    losing nothing); a column whose type the table's cannot hold is breaking drift.
    """
    assert file_columns is not None
    clashes = [
        f"column {name!r} is {delta} in the file but {table_columns[name]} in the table"
        for name, delta in file_columns.items()
        if name in table_columns and not _widens(delta, table_columns[name])
    ]
    if clashes:
        return "kept out of the Delta table: breaking schema drift: " + "; ".join(clashes)
    return None


_WIDER = {"byte": 0, "short": 1, "integer": 2, "long": 3}


def _widens(delta: str, table: str) -> bool:
    """Whether every value of Delta type ``delta`` is a value of ``table`` (equal, or wider)."""
    if delta == table:
        return True
    if delta in _WIDER and table in _WIDER:
        return _WIDER[delta] <= _WIDER[table]
    if (delta, table) == ("float", "double"):
        return True
    if delta.startswith("decimal(") and table.startswith("decimal("):
        (p1, s1), (p2, s2) = (
            tuple(int(x) for x in t[len("decimal(") : -1].split(",")) for t in (delta, table)
        )
        return s2 >= s1 and p2 - s2 >= p1 - s1
    return False
