"""The month folders of an organization's history, in the order a full reconcile walks them.

Found with delimited listings (roots, then datasets, years and months): a few hundred requests
for years of history, and a few hundred bytes a folder in memory, never a key of their files.
Files found above the month level are not Haltian exports; they are reported as unrecognised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

from shared.haltian.contracts import snapshots_first
from shared.haltian.keys import LEGACY, V1
from shared.source.s3 import S3Source

_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DATASET = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Folder:
    """One ``.../{dataset}/{YYYY}/{MM}/`` folder: its key prefix, which is also its mirrored path."""

    prefix: str
    layout: str
    dataset: str
    #: ``YYYY-MM`` (empty for a folder that is not a month's, listed whole and reported).
    month: str

    @property
    def holds_exports(self) -> bool:
        """Whether a Haltian key can sit here (else its files are only counted: never mirrored,
        so the lake side is not listed, and no odd name reaches a lake path)."""
        return bool(_MONTH.match(self.month) and _DATASET.match(self.dataset))

    @property
    def order(self) -> tuple[str, bool, str, str, str]:
        """Oldest month first; within a month, snapshot datasets first (their syncs take longest)."""
        return (self.month, *snapshots_first(self.layout, self.dataset), self.prefix)


def folder_of(prefix: str, layout: str) -> Folder:
    """The folder at ``prefix`` (``{root}{dataset}/{YYYY}/{MM}/``, the root an organization's)."""
    parts = prefix.rstrip("/").rsplit("/", 3)
    if len(parts) == 4 and _YEAR.match(parts[2]):
        return Folder(prefix, layout, parts[1], f"{parts[2]}-{parts[3]}")
    return Folder(prefix, layout, parts[-1], "")


def layout_of(prefix: str) -> str:
    """The key layout of the files below an organization's folder (``.../v1/{org}/`` is v1's)."""
    return V1 if prefix.startswith("v1/") or "/v1/" in prefix else LEGACY


def order_of(prefix: str) -> tuple[str, bool, str, str, str]:
    """The walk order of a folder known by its prefix (a reconcile's cursor is one)."""
    return folder_of(prefix, layout_of(prefix)).order


@dataclass
class Found:
    """The folders below some roots, and the files found where no Haltian export sits."""

    folders: list[Folder]
    stray: list[str]


def month_folders(source: S3Source, roots: Iterable[str], executor: Executor) -> Found:
    """Every month folder below ``roots`` (organization folders), in walk order."""
    found = Found([], [])
    datasets: list[tuple[str, str]] = []
    for root, (folders, files) in zip(roots := list(roots), executor.map(source.list_level, roots)):
        layout = layout_of(root)
        datasets += [(folder, layout) for folder in folders]
        found.stray += files
    years: list[tuple[str, str]] = []
    for (dataset, layout), (folders, files) in zip(
        datasets, executor.map(source.list_level, [d for d, _ in datasets])
    ):
        found.stray += files
        for folder in folders:
            if _YEAR.match(folder[len(dataset) : -1]):
                years.append((folder, layout))
            else:  # not a year: listed whole, its keys reported as what they are
                found.folders.append(Folder(folder, layout, dataset.rstrip("/").rsplit("/", 1)[-1], ""))
    for (year, layout), (folders, files) in zip(
        years, executor.map(source.list_level, [y for y, _ in years])
    ):
        found.stray += files
        found.folders += [folder_of(folder, layout) for folder in folders]
    found.folders.sort(key=lambda folder: folder.order)
    return found
