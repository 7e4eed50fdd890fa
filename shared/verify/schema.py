"""Judging a file's schema: against the contract in force, or the schema first seen in the lake.

The contract in force is the newest one an operator accepted in the lake, else the shipped
one (:mod:`shared.verify.accepted`).

* A complete contract decides alone: match or additive drift publishes, breaking drift
  quarantines.
* A dataset with no contract (new datasets appear without notice) or a partial one is
  published; its first schema is recorded in ``_schemas/{layout}/{dataset}.json`` and later
  files report drift from it in the columns the contract does not name. A partial contract
  still quarantines a file that breaks the columns it does name.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from shared.haltian.contracts import (
    Column,
    Verdict,
    check_schema,
    columns_from_json,
    columns_to_json,
    fingerprint,
)
from shared.haltian.keys import HaltianKey
from shared.paths import schema_path
from shared.sink.lake import IF_MISSING, Lake
from shared.verify.accepted import ContractBook

CONTRACT = "contract"
FIRST_SEEN = "first-seen schema"
#: The verdict for the file whose schema became a new dataset's first-seen schema.
RECORDED = "recorded"


@dataclass(frozen=True)
class SchemaOutcome:
    """What the manifest says about a file's schema, and whether it blocks publishing."""

    verdict: str
    against: str
    contract: str | None
    drift: tuple[str, ...] = ()
    quarantine: bool = False

    @property
    def reason(self) -> str:
        return f"breaking schema drift against the {self.against}: " + "; ".join(self.drift)


@dataclass
class SchemaJudge:
    """Judges schemas for one run; caches first-seen schemas it reads from the lake."""

    lake: Lake
    run_id: str
    book: ContractBook | None = None
    _observed: dict[tuple[str, str], tuple[Column, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.book is None:
            self.book = ContractBook(self.lake)

    def judge(self, key: HaltianKey, columns: tuple[Column, ...]) -> SchemaOutcome:
        contract = self.book.contract(key.layout, key.dataset)  # type: ignore[union-attr]  # made above
        contract_drift: tuple[str, ...] = ()
        if contract is not None:
            check = check_schema(contract.columns, columns, complete=contract.complete)
            if check.verdict is Verdict.BREAKING:
                return SchemaOutcome(
                    Verdict.BREAKING.value, CONTRACT, contract.version, check.problems, quarantine=True
                )
            if contract.complete:
                return SchemaOutcome(check.verdict.value, CONTRACT, contract.version, _added(check.added))
            contract_drift = _added(check.added)
        version = contract.version if contract is not None else None
        first = self._first_seen(key, columns)
        if first is None:
            return SchemaOutcome(RECORDED, FIRST_SEEN, version, contract_drift)
        # The contract judges the columns it names; the first-seen schema only the others.
        named = {c.name for c in contract.columns} if contract is not None else set()
        check = check_schema(
            tuple(c for c in first if c.name not in named),
            tuple(c for c in columns if c.name not in named),
            complete=True,
        )
        drift = contract_drift + _added(check.added) + check.problems
        return SchemaOutcome(check.verdict.value, FIRST_SEEN, version, drift)

    def _first_seen(self, key: HaltianKey, columns: tuple[Column, ...]) -> tuple[Column, ...] | None:
        """The dataset's first-seen schema; None when this file's schema just became it."""
        name = (key.layout, key.dataset)
        with self._lock:  # one dataset's read at a time, the datasets' reads at once
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name in self._observed:
                return self._observed[name]
            path = schema_path(key.layout, key.dataset)
            stored = self.lake.read_json(path)
            if stored is None:
                document = {
                    "layout": key.layout,
                    "dataset": key.dataset,
                    "fingerprint": fingerprint(columns),
                    "columns": columns_to_json(columns),
                    "first_seen_key": key.key,
                    "first_seen_run": self.run_id,
                }
                if self.lake.write_json(path, document, condition=IF_MISSING):
                    self._observed[name] = columns
                    return None
                stored = self.lake.read_json(path)
                if stored is None:  # another writer's, deleted since: these columns are the first seen
                    self._observed[name] = columns
                    return None
            self._observed[name] = columns_from_json(stored["columns"])
            return self._observed[name]


def _added(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"added nullable column {name!r}" for name in columns)
