"""Where the tables live: one folder of tables, apart from the mirror (the paths themselves are
in ``shared.paths``).

Every table is a direct child of ``_tables/``, named ``{layout}_{dataset}`` (``v1_devices``,
``legacy_measurementCO2``), so one Fabric lakehouse schema shortcut, or one Synapse database of
views, brings them all. Nothing of a table lives in a mirrored dataset folder: what another
engine does to a table (OPTIMIZE, VACUUM, DELETE) cannot touch a mirrored file.
"""

from __future__ import annotations


def parse_table(text: str) -> tuple[str, str] | None:
    """``LAYOUT/DATASET`` (as the commands take it) or a table name, as (layout, dataset)."""
    text = text.strip().strip("/")
    for separator in ("/", "_"):
        layout, found, dataset = text.partition(separator)
        if found and layout in ("legacy", "v1") and dataset.isalnum():
            return layout, dataset
    return None
