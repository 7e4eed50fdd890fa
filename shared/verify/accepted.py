"""Contracts accepted by an operator, kept in the lake: schema changes without a redeploy.

When Haltian changes a dataset's schema, its new files are quarantined as breaking drift.
``python -m shared schema accept LAYOUT/DATASET`` makes the newest quarantined schema (or
else the newest seen) that dataset's contract from then on; ``quarantine release`` then
publishes the files that pass it. Each accepted contract is one JSON document,

    {root}/_contracts/{layout}/{dataset}/v{NNNN}.json

written once (If-None-Match) with when, by whom and from which file it was accepted. The
newest version is the contract in force; a shipped contract (in the package) never replaces
an accepted one silently: ``schema show`` says when the shipped one differs.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shared.haltian.contracts import (
    Column,
    Contract,
    columns_from_json,
    columns_to_json,
    contract_for,
    dataset_kind,
    type_matches,
)
from shared.errors import CONFLICT_ATTEMPTS, Contention
from shared.paths import contract_path, contracts_of
from shared.sink.lake import IF_MISSING, Lake

ACCEPTED = "accepted"
SHIPPED = "shipped"
_VERSION_FILE = re.compile(r"^v(\d{4,})\.json$")


def accepted_version(number: int) -> str:
    """The contract version the manifest names for an accepted contract."""
    return f"{ACCEPTED}-{number}"


@dataclass(frozen=True)
class ContractInForce:
    """The contract that judges a dataset's files now, and where it comes from."""

    contract: Contract
    origin: str  # SHIPPED or ACCEPTED
    document: dict[str, Any] | None = None  # the accepted contract's document


class ContractBook:
    """The contract in force for each dataset: the newest accepted one in the lake, else the shipped one.

    The lake's ``_contracts/`` folder is listed once (on first use) and each accepted document
    read once, so a run pays one listing however many files it judges.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._newest: dict[tuple[str, str], int] | None = None
        self._documents: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def in_force(self, layout: str, dataset: str) -> ContractInForce | None:
        document = self.accepted(layout, dataset)
        if document is not None:
            return ContractInForce(contract_from_document(document), ACCEPTED, document)
        shipped = contract_for(layout, dataset)
        return None if shipped is None else ContractInForce(shipped, SHIPPED)

    def contract(self, layout: str, dataset: str) -> Contract | None:
        found = self.in_force(layout, dataset)
        return None if found is None else found.contract

    def accepted(self, layout: str, dataset: str) -> dict[str, Any] | None:
        """The newest accepted contract document of a dataset, or None."""
        name = (layout, dataset)
        with self._lock:
            if self._newest is None:
                self._newest = _list_newest(self.lake)
            number = self._newest.get(name)
            if number is None:
                return None
            if name not in self._documents:
                document = self.lake.read_json(contract_path(layout, dataset, number))
                if document is None:  # listed, then deleted: as if never accepted
                    return None
                self._documents[name] = document
            return self._documents[name]

    def history(self, layout: str, dataset: str) -> list[dict[str, Any]]:
        """Every accepted version of a dataset's contract, oldest first."""
        numbers = sorted(_numbers(self.lake, layout, dataset))
        documents = (self.lake.read_json(contract_path(layout, dataset, n)) for n in numbers)
        return [document for document in documents if document is not None]


def _numbers(lake: Lake, layout: str, dataset: str) -> list[int]:
    prefix = contracts_of(layout, dataset)
    found = []
    for entry in lake.list_entries(prefix):
        match = _VERSION_FILE.match(entry.path[len(prefix) :])
        if match:
            found.append(int(match[1]))
    return found


def _list_newest(lake: Lake) -> dict[tuple[str, str], int]:
    newest: dict[tuple[str, str], int] = {}
    for entry in lake.list_entries(contracts_of()):
        parts = entry.path.split("/")
        if len(parts) != 4:
            continue
        match = _VERSION_FILE.match(parts[3])
        if match:
            name = (parts[1], parts[2])
            newest[name] = max(newest.get(name, 0), int(match[1]))
    return newest


def contract_from_document(document: dict[str, Any]) -> Contract:
    return Contract(
        layout=document["layout"],
        dataset=document["dataset"],
        kind=document["kind"],
        complete=document["complete"],
        version=document["version"],
        columns=columns_from_json(document["columns"]),
    )


def merged_columns(in_force: Contract | None, seen: tuple[Column, ...]) -> tuple[Column, ...]:
    """The columns of a contract accepted from a file's schema.

    The file decides which columns there are, their order and nullability. A column the
    contract in force already has, with a type the file satisfies, keeps the contract's type
    (which may name alternatives, e.g. ms or us timestamps) and its ``may_be_absent``;
    every other column takes the file's logical type.
    """
    known = {c.name: c for c in in_force.columns} if in_force is not None else {}
    merged = []
    for column in seen:
        previous = known.get(column.name)
        if previous is not None and type_matches(previous.type, column.type):
            merged.append(Column(column.name, previous.type, column.nullable, previous.may_be_absent))
        else:
            merged.append(Column(column.name, column.type, column.nullable))
    return tuple(merged)


def accept(
    lake: Lake,
    layout: str,
    dataset: str,
    seen: tuple[Column, ...],
    *,
    based_on: dict[str, Any],
    in_force: ContractInForce | None,
    run_id: str,
) -> dict[str, Any]:
    """Stores the next accepted version of a dataset's contract and returns its document.

    The caller holds the run lock; the write is conditional all the same, so two accepts
    can never overwrite one version.
    """
    previous = in_force.contract if in_force is not None else None
    number = max(_numbers(lake, layout, dataset), default=0) + 1
    for _ in range(CONFLICT_ATTEMPTS):
        document = {
            "layout": layout,
            "dataset": dataset,
            "version": accepted_version(number),
            "number": number,
            "kind": previous.kind if previous is not None else dataset_kind(layout, dataset),
            "complete": previous.complete if previous is not None else True,
            "columns": columns_to_json(merged_columns(previous, seen)),
            "accepted_at": datetime.now(timezone.utc).isoformat(),
            "accepted_by": accepted_by(),
            "accepted_in_run": run_id,
            "based_on": based_on,
            "replaces": None
            if previous is None
            else {"version": previous.version, "origin": in_force.origin},  # type: ignore[union-attr]  # previous comes from it
            "shipped_version": getattr(contract_for(layout, dataset), "version", None),
        }
        if lake.write_json(contract_path(layout, dataset, number), document, condition=IF_MISSING):
            return document
        number += 1
    raise Contention(
        f"{layout}/{dataset}: other writers kept taking the next contract number "
        f"({CONFLICT_ATTEMPTS} attempts); accept it again"
    )


def accepted_by() -> str:
    """Who accepted: the command, the user and the host (no secrets, no tokens)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return f"python -m shared schema accept, user {user} on {socket.gethostname()}"
