"""Delta per-file statistics (numRecords, minValues, maxValues, nullCount) from a Parquet footer.

Readers skip files with these, so a wrong value is worse than none: a column's min/max is
given only when every row group has them, strings only when short enough to be exact, and
floats never when a NaN could hide.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq

#: Longer strings are left out of min/max: a truncated max would no longer be an upper bound.
MAX_STRING_STAT = 32


def delta_stats(metadata: pq.FileMetaData) -> str:
    """The ``stats`` JSON of a Delta add action for a Parquet file with this footer."""
    minimums: dict[str, Any] = {}
    maximums: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    schema = metadata.schema.to_arrow_schema()
    for index, field in enumerate(schema):
        if metadata.num_row_groups == 0:
            nulls[field.name] = 0
            continue
        low = high = None
        null_count = 0
        exact = True
        for group in range(metadata.num_row_groups):
            chunk = metadata.row_group(group).column(index)
            stats = chunk.statistics
            if stats is None or not stats.has_null_count:
                null_count = None
                exact = False
                break
            null_count += stats.null_count
            if chunk.num_values == stats.null_count:
                continue  # all nulls: nothing to bound
            if not stats.has_min_max:
                exact = False
                continue
            low = stats.min if low is None else min(low, stats.min)
            high = stats.max if high is None else max(high, stats.max)
        if null_count is not None:
            nulls[field.name] = null_count
        if exact and low is not None and _fits(low) and _fits(high):
            minimums[field.name] = _json_value(low, round_up=False)
            maximums[field.name] = _json_value(high, round_up=True)
    return json.dumps({"numRecords": metadata.num_rows, "minValues": minimums, "maxValues": maximums,
                       "nullCount": nulls}, separators=(",", ":"))


def _fits(value: Any) -> bool:
    if isinstance(value, float):
        return value == value  # not NaN
    if isinstance(value, Decimal):
        return Decimal(repr(float(value))) == value  # JSON carries it as a double: only if exact
    if isinstance(value, (str, bytes)):
        return isinstance(value, str) and len(value) <= MAX_STRING_STAT
    return True


def _json_value(value: Any, *, round_up: bool) -> Any:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if round_up and value.microsecond % 1000:
            # Delta keeps milliseconds: a maximum is rounded up so it still bounds the data.
            value += timedelta(microseconds=1000 - value.microsecond % 1000)
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
