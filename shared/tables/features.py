"""Table features another engine may turn on, and what the bridge says when one stops a table.

Other engines turn features on, sometimes as a side effect (Spark's liquid clustering adds
domain metadata and row tracking). A feature delta-rs cannot write stops that table only, with
one line saying which feature and what to do; so does a CHECK constraint the new rows break.
"""

from __future__ import annotations

import re

from deltalake import DeltaTable

from shared.errors import TerminalError
from shared.model import TableChange
from shared.tables.ledger import forgets_deliveries
from shared.paths import table_name

#: The table features delta-rs 1.6 writes (or ignores safely when writing appends and compactions).
WRITABLE_FEATURES = frozenset(
    {
        "appendOnly",
        "invariants",
        "checkConstraints",
        "changeDataFeed",
        "generatedColumns",
        "timestampNtz",
        "columnMapping",
        "identityColumns",
    }
)


class UnwritableFeature(TerminalError):
    """Another engine turned on a table feature the bridge's Delta writer cannot write."""


def check_features(table: DeltaTable, change: TableChange) -> None:
    """Raises UnwritableFeature, in words an operator can act on, when another engine turned on
    a table feature the bridge cannot write."""
    protocol = table.protocol()
    features = sorted(set(protocol.writer_features or []) - WRITABLE_FEATURES)
    if features:
        raise UnwritableFeature(feature_message(change, features))
    if forgets_deliveries(table.metadata().configuration):
        name = table_name(change.layout, change.dataset)
        raise UnwritableFeature(
            f"table {name}: another engine set delta.setTransactionRetentionDuration, with which checkpoints forget "
            "which source files the table holds (the bridge would add their rows again), so the table gets no new "
            f"rows; the mirror and the other tables carry on. Unset it (in Spark: ALTER TABLE {name} UNSET "
            "TBLPROPERTIES ('delta.setTransactionRetentionDuration')) or rebuild the table from the mirror: "
            f"python -m shared tables rebuild {change.layout}/{change.dataset}"
        )


def feature_message(change: TableChange, features: list[str]) -> str:
    name = table_name(change.layout, change.dataset)
    return (
        f"table {name}: another engine turned on the Delta table feature {', '.join(features)}, which the "
        "bridge's Delta writer cannot write, so the table gets no new rows; the mirror and the other tables "
        f"carry on. Drop the feature in Spark (ALTER TABLE ... DROP FEATURE {features[0]}) or rebuild the "
        f"table from the mirror: python -m shared tables rebuild {change.layout}/{change.dataset}"
    )


def feature_error(change: TableChange, err: Exception) -> str | None:
    """delta-rs's refusal of an unsupported feature, said as :func:`check_features` says it."""
    text = str(err)
    if "nsupported" not in text or "feature" not in text.lower():
        return None
    known = sorted(f for f in _ALL_FEATURES if f in text) or [
        "(named in: " + text.splitlines()[0][:200] + ")"
    ]
    return feature_message(change, known)


def constraint_error(change: TableChange, err: Exception) -> str | None:
    """delta-rs's refusal of rows that break a CHECK constraint or invariant, in an operator's words."""
    found = re.search(r"(\d+) rows failed validation check", str(err))
    if found is None:
        return None
    return (
        f"{found.group(1)} new rows break a CHECK constraint (or invariant) that another engine added to the "
        "table, so it gets no new rows; the mirror is complete. Drop or change the constraint (in Spark: "
        f"SHOW TBLPROPERTIES, then ALTER TABLE {table_name(change.layout, change.dataset)} DROP CONSTRAINT "
        "...) and the next run adds them"
    )


_ALL_FEATURES = (
    "rowTracking",
    "domainMetadata",
    "inCommitTimestamp",
    "v2Checkpoint",
    "deletionVectors",
    "clustering",
    "typeWidening",
    "icebergCompatV1",
    "icebergCompatV2",
    "vacuumProtocolCheck",
    "variantType",
)
