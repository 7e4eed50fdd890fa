"""Haltian's S3 key layouts, parsed by one small function.

Two layouts can be live in one bucket at the same time (see ``haltian-data-contract.md``)::

    legacy  [downloads/]parquet/{org}/{dataset}/{YYYY}/{MM}/{YYYY}_{MM}_{DD}_{HH}_{dataset}.parquet
    v1      parquet/v1/{org}/{dataset}/{YYYY}/{MM}/{YYYY_MM_DD_HHMM}_{YYYY_MM_DD_HHMM}_{dataset}.parquet

The patterns are strict on purpose: a key that parses is made only of a known root, a UUID,
an alphanumeric dataset name and digits, so it can never climb out of the lake folder it is
mirrored into. Anything else is reported as unrecognised, never copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

LEGACY = "legacy"
V1 = "v1"

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_DATASET = r"[A-Za-z][A-Za-z0-9]{0,99}"

_LEGACY_KEY = re.compile(
    rf"^(?P<root>(?:downloads/)?parquet)/(?P<org>{_UUID})/(?P<dataset>{_DATASET})/"
    r"(?P<year>\d{4})/(?P<month>\d{2})/"
    r"(?P<start>(?P=year)_(?P=month)_\d{2}_\d{2})_(?P=dataset)\.parquet$"
)
_V1_KEY = re.compile(
    rf"^(?P<root>parquet/v1)/(?P<org>{_UUID})/(?P<dataset>{_DATASET})/"
    r"(?P<year>\d{4})/(?P<month>\d{2})/"
    r"(?P<start>(?P=year)_(?P=month)_\d{2}_\d{4})_(?P<end>\d{4}_\d{2}_\d{2}_\d{4})"
    r"_(?P=dataset)\.parquet$"
)


@dataclass(frozen=True)
class HaltianKey:
    """What a key says about its file."""

    key: str
    layout: str
    organization: str
    dataset: str
    year: int
    month: int
    window_start: datetime
    window_end: datetime | None

    @property
    def month_folder(self) -> str:
        """The ``.../{dataset}/{YYYY}/{MM}/`` folder the file sits in (with trailing slash)."""
        return self.key.rsplit("/", 1)[0] + "/"

    @property
    def dataset_folder(self) -> str:
        """The ``.../{dataset}/`` folder, the root of the dataset's mirrored tree."""
        return self.key.rsplit("/", 3)[0] + "/"


def parse_key(key: str) -> HaltianKey | None:
    """Parses a Haltian export key, or returns None when it fits no layout.

    The rule: the key must match one layout exactly, the dataset in the file name must be the
    dataset folder, the date in the file name must lie in the ``{YYYY}/{MM}`` folder, the
    time must be a real UTC time, and a v1 window must not end before it starts.
    """
    for layout, pattern, start_format in (
        (V1, _V1_KEY, "%Y_%m_%d_%H%M"),
        (LEGACY, _LEGACY_KEY, "%Y_%m_%d_%H"),
    ):
        match = pattern.match(key)
        if match is None:
            continue
        try:
            start = _utc(match["start"], start_format)
            end = _utc(match["end"], "%Y_%m_%d_%H%M") if layout == V1 else None
        except ValueError:
            return None
        if end is not None and end < start:
            return None
        return HaltianKey(
            key=key,
            layout=layout,
            organization=match["org"],
            dataset=match["dataset"],
            year=start.year,
            month=start.month,
            window_start=start,
            window_end=end,
        )
    return None


def _utc(text: str, fmt: str) -> datetime:
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
