"""Synapse serverless SQL over the bridge's Delta tables: one view per table."""

from __future__ import annotations

import re
import uuid

from shared.settings import Settings
from shared.sink.lake import Lake

DELTA_LOG = "_delta_log/"


def find_tables(lake: Lake, prefix: str) -> list[str]:
    """The dataset folders (relative to the root) that hold a Delta table, below ``prefix``."""
    tables: list[str] = []
    pending = [prefix]
    while pending:
        folder = pending.pop()
        children = lake.list_folders(folder)
        if folder + DELTA_LOG in children:
            tables.append(folder)
            continue
        # Descend only through the export's own levels: v1/, organizations, datasets.
        depth = folder[len(prefix):].count("/")
        if depth < 3:
            pending.extend(c for c in children if not c.endswith(DELTA_LOG))
    return sorted(tables)


def view_name(folder: str, organizations: int) -> str:
    """``legacy_measurementCO2`` or ``v1_devices``; with several organizations, their id's start too."""
    parts = folder.rstrip("/").split("/")
    dataset = parts[-1]
    layout = "v1" if "v1" in parts else "legacy"
    organization = next((p for p in parts if _is_uuid(p)), "")
    name = f"{layout}_{dataset}" + (f"_{organization[:8]}" if organizations > 1 else "")
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def synapse_sql(settings: Settings, lake: Lake, tables: list[str]) -> str:
    """A script creating one Synapse serverless SQL view per table over OPENROWSET(FORMAT = 'DELTA')."""
    base = _dfs_base(settings)
    organizations = len({p for t in tables for p in t.split("/") if _is_uuid(p)})
    lines = [
        "-- Synapse serverless SQL: one view per Delta table written by the Haltian bridge.",
        "-- Run in a database of your serverless pool (CREATE DATABASE haltian; then USE haltian;).",
        "-- The querying identity needs 'Storage Blob Data Reader' on the container.",
    ]
    for folder in tables:
        url = f"{base}/{lake.path(folder)}"
        lines += [
            "GO",
            f"CREATE OR ALTER VIEW [dbo].[{view_name(folder, organizations)}] AS",
            "SELECT * FROM OPENROWSET(",
            f"    BULK '{url}',",
            "    FORMAT = 'DELTA'",
            ") AS [rows];",
        ]
    lines.append("GO")
    return "\n".join(lines)


def _dfs_base(settings: Settings) -> str:
    if settings.adls_account_url:
        return f"{settings.adls_account_url.replace('.blob.', '.dfs.')}/{settings.adls_container}"
    fields = dict(p.split("=", 1) for p in (settings.adls_connection_string or "").split(";") if "=" in p)
    return f"{fields.get('BlobEndpoint', 'http://127.0.0.1:10000/devstoreaccount1').rstrip('/')}/{settings.adls_container}"


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
