"""Dataset contracts (shipped as data in ``data/``) and the schema check against them.

A contract lists a dataset's columns with Arrow type names. A *complete* contract is the
whole schema; a *partial* one (v1, where Haltian has published only some columns) lists the
columns we know, and the rest of the schema is recorded on first sight like a new dataset.

Type names are ``str(pyarrow type)``; ``timestamp[*, tz=*]`` accepts any unit and zone and
``timestamp[*, tz=UTC]`` any unit in UTC, because Haltian's pages disagree on v1 precision.
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
            columns=tuple(Column(**c) for c in spec["columns"]),
        )
        for name, spec in raw["datasets"].items()
    }


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


def columns_of(schema: pa.Schema) -> tuple[Column, ...]:
    """A file's schema as contract columns (Arrow type names, nullability)."""
    return tuple(Column(f.name, str(f.type), f.nullable) for f in schema)


def fingerprint(columns: tuple[Column, ...]) -> str:
    """A short stable hash of names, types and nullability, in column order."""
    canonical = json.dumps([[c.name, c.type, c.nullable] for c in columns], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def type_matches(expected: str, actual: str) -> bool:
    """True when an Arrow type name satisfies a contract type (wildcards only for timestamps)."""
    if "*" not in expected:
        return expected == actual
    pattern = re.escape(expected).replace(r"\*", r"[^,\]]+")
    return re.fullmatch(pattern, actual) is not None


def check_schema(expected: tuple[Column, ...], actual: tuple[Column, ...], *, complete: bool) -> SchemaCheck:
    """Compares a file's columns with the expected ones.

    The rule:
      * every expected column must be present with a matching type, else BREAKING
        (a missing or renamed column, or a changed type);
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
    return [{"name": c.name, "type": c.type, "nullable": c.nullable} for c in columns]


def columns_from_json(raw: list[dict[str, object]]) -> tuple[Column, ...]:
    return tuple(Column(str(c["name"]), str(c["type"]), bool(c["nullable"])) for c in raw)
