"""Dataset contracts (shipped as data in ``data/``) and the schema check against them.

A contract lists a dataset's columns with *logical* Arrow type names. A *complete* contract is
the whole schema; a *partial* one (where Haltian's pages contradict each other, or a column's
type may differ from file to file) still lists every column Haltian documents, and columns it
does not name are judged against the schema first seen in the lake, like a new dataset's.

The shipped contracts agree with Haltian's schema reference column by column; every place
where they deliberately differ is listed, with its reason, in ``data/deviations.json``
(``tests/test_contracts.py`` holds them to that). A contract accepted by an operator
(``python -m shared schema accept``) is stored in the lake and takes precedence
(:mod:`shared.verify.accepted`).

Types are judged by what they mean, not by how a writer spells them (:func:`logical_type`):
``large_string`` is ``string``, a dictionary column is its value type, and UTC is UTC however
it is written. A contract type may name alternatives (``a | b``) and use ``*`` in a
parameter, for the places where Haltian documents more than one type.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib import resources

import pyarrow as pa

MEASUREMENT = "measurement"
ENTITY = "entity"
RELATIONSHIP = "relationship"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    #: The column is documented but older files of the dataset predate it (see deviations.json).
    may_be_absent: bool = False


@dataclass(frozen=True)
class Contract:
    layout: str
    dataset: str
    kind: str
    complete: bool
    version: str
    columns: tuple[Column, ...]


class Verdict(str, Enum):
    MATCH = "match"
    ADDITIVE = "additive"
    BREAKING = "breaking"


@dataclass(frozen=True)
class SchemaCheck:
    """The outcome of comparing a file's schema with what was expected of it."""

    verdict: Verdict
    problems: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


@cache
def _contracts(layout: str) -> dict[str, Contract]:
    raw = json.loads(resources.files(__package__).joinpath(f"data/{layout}.json").read_text())
    return {
        name: Contract(
            layout=layout,
            dataset=name,
            kind=spec["kind"],
            complete=spec["complete"],
            version=raw["version"],
            columns=columns_from_json(spec["columns"]),
        )
        for name, spec in raw["datasets"].items()
    }


def shipped_contracts(layout: str) -> dict[str, Contract]:
    """Every contract shipped for a layout, by dataset."""
    return dict(_contracts(layout))


def contract_for(layout: str, dataset: str) -> Contract | None:
    """The shipped contract for a dataset, or None for a dataset Haltian never published."""
    return _contracts(layout).get(dataset)


def dataset_kind(layout: str, dataset: str) -> str:
    """Entity, relationship or measurement; an unknown dataset is judged by its name."""
    contract = contract_for(layout, dataset)
    if contract is not None:
        return contract.kind
    if dataset.startswith(MEASUREMENT):
        return MEASUREMENT
    return RELATIONSHIP if dataset.endswith("Devices") else ENTITY


def snapshots_first(layout: str, dataset: str) -> tuple[bool, str, str]:
    """A sort key: entity and relationship datasets (full snapshots) before measurements. A
    snapshot table's sync takes longest (its overwrite replaces files, through delta-rs whenever
    the log cannot show which), so it starts first."""
    return dataset_kind(layout, dataset) == MEASUREMENT, layout, dataset


#: Time zone names that all mean UTC; Arrow writers spell it each of these ways.
UTC_NAMES = frozenset(
    {
        "utc",
        "etc/utc",
        "etc/uct",
        "uct",
        "zulu",
        "etc/zulu",
        "z",
        "+00:00",
        "-00:00",
        "+0000",
        "gmt",
        "etc/gmt",
        "+00",
    }
)


def logical_type(arrow_type: pa.DataType) -> pa.DataType:
    """The type a column's values have, whatever the writer's spelling of it.

    The rule: ``large_string`` is ``string``, ``large_binary`` is ``binary``, a dictionary
    column is its value type, and a timestamp in any spelling of UTC is in ``UTC``. Parquet
    stores each pair identically (the spelling lives only in the writer's Arrow schema), so
    every reader gets the same values either way. Nested types are normalised inside.
    """
    if pa.types.is_dictionary(arrow_type):
        return logical_type(arrow_type.value_type)
    if pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return pa.string()
    if pa.types.is_large_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return pa.binary()
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is not None and arrow_type.tz.lower() in UTC_NAMES:
        return pa.timestamp(arrow_type.unit, tz="UTC")
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return pa.list_(logical_type(arrow_type.value_type))
    if pa.types.is_struct(arrow_type):
        return pa.struct([pa.field(f.name, logical_type(f.type), f.nullable) for f in arrow_type])
    return arrow_type


def columns_of(schema: pa.Schema) -> tuple[Column, ...]:
    """A file's schema as contract columns (logical Arrow type names, nullability)."""
    return tuple(Column(f.name, str(logical_type(f.type)), f.nullable) for f in schema)


def fingerprint(columns: tuple[Column, ...]) -> str:
    """A short stable hash of names, (logical) types and nullability, in column order."""
    canonical = json.dumps([[c.name, c.type, c.nullable] for c in columns], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def type_matches(expected: str, actual: str) -> bool:
    """True when a logical Arrow type name satisfies a contract type.

    A contract type is one type name or alternatives separated by ``|``; a ``*`` stands for
    any one parameter (``decimal256(*, *)``, ``timestamp[*, tz=UTC]``).
    """
    return any(_one_type_matches(option.strip(), actual) for option in expected.split("|"))


def _one_type_matches(expected: str, actual: str) -> bool:
    if "*" not in expected:
        return expected == actual
    pattern = re.escape(expected).replace(r"\*", r"[^,\]\)]+")
    return re.fullmatch(pattern, actual) is not None


def check_schema(expected: tuple[Column, ...], actual: tuple[Column, ...], *, complete: bool) -> SchemaCheck:
    """Compares a file's columns with the expected ones.

    The rule:
      * every expected column must be present with a matching type, else BREAKING
        (a missing or renamed column, or a changed logical type); a column marked
        ``may_be_absent`` (documented, but newer than some files) may be missing;
      * a column the expectation does not name is additive drift when it is nullable and
        breaking when it is not (old readers could not fill it); for a partial contract
        unnamed columns are not drift at all, since the contract never claimed them;
      * nullability of an expected column is not compared: Parquet writers mark required
        columns optional freely, and no value is lost either way.
    """
    by_name = {c.name: c for c in actual}
    problems: list[str] = []
    for column in expected:
        found = by_name.get(column.name)
        if found is None:
            if not column.may_be_absent:
                problems.append(f"missing column {column.name!r}")
        elif not type_matches(column.type, found.type):
            problems.append(f"column {column.name!r} is {found.type}, expected {column.type}")
    known = {c.name for c in expected}
    added: list[str] = []
    if complete:
        for column in actual:
            if column.name in known:
                continue
            if column.nullable:
                added.append(column.name)
            else:
                problems.append(f"new column {column.name!r} is not nullable")
    if problems:
        return SchemaCheck(Verdict.BREAKING, tuple(problems), tuple(added))
    if added:
        return SchemaCheck(Verdict.ADDITIVE, (), tuple(added))
    return SchemaCheck(Verdict.MATCH)


def columns_to_json(columns: tuple[Column, ...]) -> list[dict[str, object]]:
    return [
        {
            "name": c.name,
            "type": c.type,
            "nullable": c.nullable,
            **({"may_be_absent": True} if c.may_be_absent else {}),
        }
        for c in columns
    ]


def columns_from_json(raw: list[dict[str, object]]) -> tuple[Column, ...]:
    return tuple(
        Column(str(c["name"]), str(c["type"]), bool(c["nullable"]), bool(c.get("may_be_absent", False)))
        for c in raw
    )
