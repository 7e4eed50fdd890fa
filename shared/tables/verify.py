"""Tables that prove their row counts: per source version, the rows a measurement table holds
against the rows of its mirrored file (the row count the bridge recorded when it verified the copy,
or else the file's Parquet footer).

Month by month (the table's ``_source_month`` partitions), so memory is one month's counts:

* **exact**: the table holds a version's rows once;
* **duplicated**: more rows than the file (two commits added the same rows: the race of
  :mod:`shared.tables.compaction`, or any other writer's mistake);
* **deleted**: fewer rows than the file, the version delivered; another engine's DELETE, UPDATE or
  MERGE is the expected cause: reported, left alone;
* **missing**: a delivered version (its application transaction is in the log) with no row, and no
  other engine's row-removing commit in the log's history to explain it;
* **pending**: a mirrored version the table has not been given yet (the next sync delivers it);
* **unexpected**: rows of a version the mirror does not hold (not as that version).

``repair`` rewrites each month with duplicated or missing versions in one commit the bridge writes
itself, as the version after the one it read (like a compaction): every other version's rows as
the table holds them (another engine's deletes stay deleted); a duplicated version's rows each
kept as often as the mirrored file holds that row, a row the file does not hold (another engine
updated it) once; a missing version's rows from the mirror.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from azure.core.exceptions import AzureError
from deltalake import DeltaTable, QueryBuilder

from shared.errors import describe
from shared.haltian.contracts import MEASUREMENT, dataset_kind
from shared.haltian.keys import parse_key
from shared.paths import table_folder, table_name
from shared.sink.lake import Lake
from shared.tables.append import CommitConflict, commit_own, upload_all
from shared.tables.compaction import Compaction, compaction_body, conform, data_file_batches
from shared.tables.data_files import data_file_schema, write_month_files
from shared.tables.delta import DeltaPublisher
from shared.tables.ledger import TableLog, read_log
from shared.tables.rows import (
    LINEAGE,
    SOURCE_KEY,
    SOURCE_MONTH,
    SOURCE_VERSION,
    lineage_fields,
    table_batches,
)
from shared.tables.sources import candidate
from shared.tables.types import table_schema
from shared.transport import TransportError
from shared.verify.parquet import UnreadableParquet, read_footer

log = logging.getLogger(__name__)

#: Operations by which another engine removes or changes rows.
_ROW_REMOVING = {"DELETE", "UPDATE", "MERGE", "TRUNCATE"}


@dataclass(frozen=True)
class Version:
    """One source version: its rows in the mirrored file and in the table."""

    key: str
    version: str
    month: str
    expected: int
    actual: int

    def line(self, kind: str) -> str:
        return f"{kind}: {self.key} ({self.version}): {self.actual} rows in the table, {self.expected} in the file"


@dataclass
class TableCheck:
    """What ``tables verify`` found in one table."""

    table: str
    version: int | None = None
    months: int = 0
    versions: int = 0
    duplicated: list[Version] = field(default_factory=list)
    missing: list[Version] = field(default_factory=list)
    deleted: list[Version] = field(default_factory=list)
    pending: list[Version] = field(default_factory=list)
    unexpected: list[Version] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def exact(self) -> bool:
        """No version duplicated, missing or unexpected (deleted and pending ones are expected)."""
        return not (self.duplicated or self.missing or self.unexpected or self.error)

    def lines(self) -> list[str]:
        if self.error:
            return [f"table {self.table}: not verified: {self.error}"]
        head = (
            f"table {self.table} (version {self.version}): {self.versions} source versions in "
            f"{self.months} months, "
            + ("exact" if self.exact else "NOT exact")
            + (f"; repaired {', '.join(self.repaired)}" if self.repaired else "")
        )
        kinds = ("duplicated", "missing", "unexpected", "deleted", "pending")
        return [head] + [v.line(kind) for kind in kinds for v in getattr(self, kind)]

    def document(self) -> dict[str, Any]:
        def rows(found: list[Version]) -> list[dict[str, Any]]:
            return [v.__dict__ for v in found]

        return {
            "table": self.table,
            "version": self.version,
            "exact": self.exact,
            "months": self.months,
            "versions": self.versions,
            "duplicated": rows(self.duplicated),
            "missing": rows(self.missing),
            "deleted": rows(self.deleted),
            "pending": rows(self.pending),
            "unexpected": rows(self.unexpected),
            "repaired": self.repaired,
            "error": self.error,
        }


def verify_table(
    publisher: DeltaPublisher, roots: list[str], layout: str, dataset: str, repair: bool = False
) -> TableCheck:
    """Checks the table of ``layout``/``dataset`` against its mirrored files below ``roots`` (the
    organization folders), month by month; with ``repair``, rewrites each month that has duplicated
    or missing versions (the caller holds the run lock)."""
    lake = publisher.lake
    folder = table_folder(layout, dataset)
    check = TableCheck(table_name(layout, dataset))
    if dataset_kind(layout, dataset) != MEASUREMENT:
        check.error = "only measurement tables are verified per source version (a snapshot table holds the newest snapshot)"
        return check
    found = read_log(lake, folder)
    table = publisher.load(publisher.uri(folder))
    if found is None or table is None:
        check.error = "no table yet (a run writes it once the dataset has a mirrored file)"
        return check
    check.version = found.version
    history = _History(table)
    months = sorted(set(found.months) | set(_mirror_months(lake, roots, dataset)))
    for month in months:
        check.months += 1
        expected = _mirrored(lake, roots, dataset, layout, month)
        actual = _counts(table, month)
        before = len(check.duplicated) + len(check.missing)
        _classify(check, month, expected, actual, found, history)
        if repair and len(check.duplicated) + len(check.missing) > before:
            if _repair_month(publisher, folder, found, month, check):
                check.repaired.append(month)
                found = read_log(lake, folder) or found
                table = publisher.load(publisher.uri(folder)) or table
    check.version = found.version
    return check


def _classify(
    check: TableCheck,
    month: str,
    expected: dict[tuple[str, str], int],
    actual: dict[tuple[str, str], int],
    found: TableLog,
    history: _History,
) -> None:
    for (key, version), rows in sorted(expected.items()):
        held = actual.get((key, version), 0)
        item = Version(key, version, month, rows, held)
        check.versions += 1
        if held > rows:
            check.duplicated.append(item)
        elif held == rows:
            continue
        elif not found.delivered.holds(key, version):
            check.pending.append(item)
        elif held == 0 and rows > 0 and not history.rows_removed():
            check.missing.append(item)
        else:
            check.deleted.append(item)
    for (key, version), held in sorted(actual.items()):
        if (key, version) not in expected:
            check.unexpected.append(Version(key, version, month, 0, held))


class _History:
    """Whether another engine removed or changed rows within the log's retained history."""

    def __init__(self, table: DeltaTable) -> None:
        self._table = table
        self._answer: bool | None = None

    def rows_removed(self) -> bool:
        if self._answer is None:
            self._answer = any(
                str(commit.get("operation", "")).upper() in _ROW_REMOVING
                and commit.get("engineInfo") != "haltian-azure-bridge"
                for commit in self._table.history()
            )
        return self._answer


def _mirror_months(lake: Lake, roots: list[str], dataset: str) -> Iterator[str]:
    for root in roots:
        for year in lake.list_folders(f"{root}{dataset}/"):
            for month in lake.list_folders(year):
                y, m = year.rstrip("/").rsplit("/", 1)[-1], month.rstrip("/").rsplit("/", 1)[-1]
                if y.isdigit() and m.isdigit():
                    yield f"{y}-{m}"


def _mirrored(
    lake: Lake, roots: list[str], dataset: str, layout: str, month: str
) -> dict[tuple[str, str], int]:
    """Each verified copy of the month: (key, source version) -> its rows."""
    year, number = month.split("-")
    found: dict[tuple[str, str], int] = {}
    for root in roots:
        for entry in lake.list_entries(f"{root}{dataset}/{year}/{number}/"):
            file = candidate(entry)
            if file is None or file.key.layout != layout:
                continue
            rows = entry.record.rows
            if rows is None:
                try:
                    rows = read_footer(lambda n: lake.read_tail(entry.path, entry.size, n), entry.size).rows
                except UnreadableParquet:
                    continue
            found[(file.key.key, file.source_etag)] = rows
    return found


def _counts(table: DeltaTable, month: str) -> dict[tuple[str, str], int]:
    """The table's rows per (source key, source version) in one month partition."""
    quoted = month.replace("'", "''")
    result = (
        QueryBuilder()
        .register("t", table)
        .execute(
            f"SELECT {SOURCE_KEY} AS k, {SOURCE_VERSION} AS v, count(*) AS n FROM t "
            f"WHERE {SOURCE_MONTH} = '{quoted}' GROUP BY {SOURCE_KEY}, {SOURCE_VERSION}"
        )
        .read_all()
    )
    return {(k, v): n for k, v, n in zip(*(result.column(c).to_pylist() for c in ("k", "v", "n")))}


def _repair_month(
    publisher: DeltaPublisher, folder: str, found: TableLog, month: str, check: TableCheck
) -> bool:
    """One commit that rewrites ``month`` (see the module's docstring); False, with a line, when
    it cannot (a table the bridge does not write, another writer committed first, the lake failed)."""
    columns = found.columns()
    if not found.appendable() or columns is None:
        log.error(
            "table %s: month %s not repaired: the table uses features the bridge does not write",
            check.table,
            month,
        )
        return False
    full = pa.schema([*table_schema(columns), *lineage_fields()])
    schema = data_file_schema(full)
    duplicated = {(v.key, v.version) for v in check.duplicated if v.month == month}
    missing = [(v.key, v.version) for v in check.missing if v.month == month]
    compaction = Compaction(folder, found, [month])
    try:
        with tempfile.TemporaryDirectory(prefix="haltian-repair-") as scratch:
            work = Path(scratch)
            batches = _repaired_rows(publisher, compaction, (schema, full), duplicated, missing, work)
            written = write_month_files(((month, b) for b in batches), schema, work)
            uploaded = upload_all(publisher.lake, publisher.guard, folder, written)
            body = compaction_body(
                written,
                compaction.files(month),
                found.delivered.number + 1,
                publisher.run_id,
                data_change=True,
            )
        commit_own(publisher.lake, publisher.guard, folder, found.version + 1, body, uploaded)
    except (CommitConflict, AzureError, TransportError) as err:
        log.error("table %s: month %s not repaired: %s; run it again", check.table, month, describe(err))
        return False
    log.info("table %s: month %s rewritten from the table and the mirror", check.table, month)
    return True


def _repaired_rows(
    publisher: DeltaPublisher,
    compaction: Compaction,
    schemas: tuple[pa.Schema, pa.Schema],
    duplicated: set[tuple[str, str]],
    missing: list[tuple[str, str]],
    scratch: Path,
) -> Iterator[pa.RecordBatch]:
    """The month's rows after the repair, batch by batch: the rows of every version not duplicated
    as the table holds them, each duplicated version's rows capped by its file, each missing
    version's rows from its file. ``schemas``: the data files' and the table's."""
    schema, full = schemas
    lake, month = publisher.lake, compaction.months[0]
    held: list[pa.RecordBatch] = []  # the duplicated versions' rows, as the table holds them
    for add in compaction.files(month):
        name = compaction.folder + unquote(str(add["path"]))
        for batch in data_file_batches(lake, publisher.guard, name, schema, scratch):
            versions = zip(_plain(batch, SOURCE_KEY), _plain(batch, SOURCE_VERSION))
            twice = pa.array([v in duplicated for v in versions])
            held.append(batch.filter(twice))
            yield batch.filter(pc.invert(twice))
    rows = pa.Table.from_batches(held, schema)
    for key, etag in sorted(duplicated):
        mask = pc.and_(
            pc.equal(rows.column(SOURCE_KEY).cast(pa.string()), key),
            pc.equal(rows.column(SOURCE_VERSION).cast(pa.string()), etag),
        )
        yield from _capped(rows.filter(mask), _file_rows(lake, (key, etag), full, schema, scratch))
    for version in missing:
        yield from _file_rows(lake, version, full, schema, scratch).to_batches()


def _capped(rows: pa.Table, mirror: pa.Table) -> Iterator[pa.RecordBatch]:
    """A duplicated version's rows, each as often as the mirrored file holds it (once if it does not)."""
    data = [name for name in rows.schema.names if name not in LINEAGE]
    allowed = Counter(zip(*(mirror.column(n).to_pylist() for n in data)))
    kept: Counter[tuple[Any, ...]] = Counter()
    indices = []
    for index, row in enumerate(zip(*(rows.column(n).to_pylist() for n in data))):
        if kept[row] < allowed.get(row, 1):
            kept[row] += 1
            indices.append(index)
    yield from rows.take(pa.array(indices, pa.int64())).to_batches()


def _file_rows(
    lake: Lake, version: tuple[str, str], full: pa.Schema, schema: pa.Schema, scratch: Path
) -> pa.Table:
    """A mirrored file's rows (the source version named) in the data files' schema."""
    key, etag = version
    path = scratch / "mirrored.parquet"
    with path.open("wb") as target:
        lake.download_to(key, target)
    parsed = parse_key(key)
    assert parsed is not None  # a mirrored candidate's key
    with pq.ParquetFile(path) as source:
        batches = [conform(b, schema) for b in table_batches(source, full, parsed, etag)]
    return pa.Table.from_batches(batches, schema)


def _plain(batch: pa.RecordBatch, name: str) -> list[Any]:
    column = batch.column(batch.schema.get_field_index(name))
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    return list(column.to_pylist())
