"""Backfill partitions: one (dataset, month) folder of Haltian's bucket each.

A partition is the month folder's key prefix, e.g. ``parquet/ORG/measurementCO2/2025/03/``.
Workers copy partitions with the same code as a normal run, restricted to that folder.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared.errors import TerminalError
from shared.plan import organization_roots
from shared.run import Bridge, plan_run

_MONTH = re.compile(r"^(?P<dataset>.+/(?P<name>[A-Za-z][A-Za-z0-9]*)/)(?P<year>\d{4})/(?P<month>\d{2})/$")


class BadPartition(TerminalError, ValueError):
    """A message that does not name a month folder below the configured prefix."""


@dataclass(frozen=True, order=True)
class Partition:
    prefix: str

    @property
    def dataset(self) -> str:
        return _MONTH.match(self.prefix)["name"]  # type: ignore[index]  # matched when the partition was made

    @property
    def month(self) -> str:
        match = _MONTH.match(self.prefix)
        return f"{match['year']}-{match['month']}"  # type: ignore[index]  # matched when made

    def message(self) -> str:
        return json.dumps({"partition": self.prefix})

    @classmethod
    def from_message(cls, body: str, s3_prefix: str) -> Partition:
        """The partition a queue message names.

        Raises:
            BadPartition: the message is not one the bridge wrote (it goes to the poison queue).
        """
        try:
            prefix = json.loads(body)["partition"]
        except (ValueError, KeyError, TypeError) as err:
            raise BadPartition(f"not a backfill message: {body[:100]!r}") from err
        if (
            not isinstance(prefix, str)
            or not prefix.startswith(s3_prefix)
            or not _MONTH.match(prefix)
            or any(part in ("", ".", "..") for part in prefix.split("/")[:-1])
        ):
            raise BadPartition(f"not a month folder below {s3_prefix!r}: {str(prefix)[:200]!r}")
        return cls(prefix)


def discover(
    bridge: Bridge, *, since: str | None = None, until: str | None = None, datasets: set[str] | None = None
) -> list[Partition]:
    """Every (dataset, month) folder in the bucket within the bounds (``YYYY-MM``, inclusive)."""
    settings = bridge.settings
    source = bridge.source
    roots = organization_roots(source, settings.s3_prefix, settings.organization_id)
    with ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="bridge-backfill") as executor:
        dataset_folders = [
            d
            for folders in executor.map(source.list_folders, roots)
            for d in folders
            if datasets is None or d.rstrip("/").rsplit("/", 1)[-1] in datasets
        ]
        years = [
            y
            for folders in executor.map(source.list_folders, dataset_folders)
            for y in folders
            if re.fullmatch(r"\d{4}", y.rstrip("/").rsplit("/", 1)[-1])
        ]
        months = [m for folders in executor.map(source.list_folders, years) for m in folders]
    partitions = []
    for folder in months:
        if not _MONTH.match(folder):
            continue
        partition = Partition(folder)
        if (since is None or partition.month >= since) and (until is None or partition.month <= until):
            partitions.append(partition)
    return sorted(partitions)


def incomplete(bridge: Bridge, partitions: list[Partition]) -> list[Partition]:
    """The partitions that still have files to copy (a plan of each: one listing on each side)."""
    with ThreadPoolExecutor(
        bridge.settings.max_concurrency, thread_name_prefix="bridge-backfill"
    ) as executor:
        plans = list(executor.map(lambda p: plan_run(bridge, partition=p.prefix), partitions))
    return [p for p, plan in zip(partitions, plans) if plan.items]
