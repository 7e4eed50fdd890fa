"""Synapse serverless SQL over the bridge's Delta tables: one view per table in ``_tables/``."""

from __future__ import annotations

from shared.settings import Settings
from shared.sink.lake import Lake
from shared.paths import DELTA_LOG, TABLES


def find_tables(lake: Lake) -> list[str]:
    """The table folders (relative to the root, ``_tables/{name}/``) that hold a Delta log."""
    return sorted(
        folder
        for folder in lake.list_folders(f"{TABLES}/")
        if folder + DELTA_LOG in lake.list_folders(folder)
    )


def view_name(folder: str) -> str:
    """The table's own name: ``legacy_measurementCO2`` or ``v1_devices``."""
    return folder.rstrip("/").rsplit("/", 1)[-1]


def synapse_sql(settings: Settings, lake: Lake, tables: list[str]) -> str:
    """A script creating one Synapse serverless SQL view per table over OPENROWSET(FORMAT = 'DELTA')."""
    base = _dfs_base(settings)
    lines = [
        "-- Synapse serverless SQL: one view per Delta table written by the Haltian bridge.",
        "-- Run in a database of your serverless pool (CREATE DATABASE haltian; then USE haltian;).",
        "-- The querying identity needs 'Storage Blob Data Reader' on the container.",
    ]
    for folder in tables:
        url = f"{base}/{lake.path(folder)}"
        lines += [
            "GO",
            f"CREATE OR ALTER VIEW [dbo].[{view_name(folder)}] AS",
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
