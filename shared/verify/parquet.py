"""Reading a Parquet file's footer (and, when the whole file is in memory, its pages).

The copy path calls :func:`inspect_parquet` with either the whole file or only its footer
(fetched by a ranged GET), so verification never costs a second full download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from shared.errors import TerminalError
from shared.haltian.contracts import Column, columns_of

MAGIC = b"PAR1"
#: How much of a file's end the copy path fetches to find the footer in one request.
FOOTER_GUESS_BYTES = 64 * 1024


class UnreadableParquet(TerminalError):
    """The bytes are not a readable Parquet file; the message says why, for the manifest."""


@dataclass(frozen=True)
class FooterNeeded:
    """The footer is longer than the bytes given: fetch this many bytes from the end."""

    tail_bytes: int


@dataclass(frozen=True)
class ParquetFacts:
    rows: int
    row_groups: int
    schema: pa.Schema
    columns: tuple[Column, ...]
    pages_checked: bool
    metadata: pq.FileMetaData


def inspect_parquet(data: bytes, size: int) -> ParquetFacts | FooterNeeded:
    """Checks a Parquet file from its last ``len(data)`` bytes (all of it when ``len == size``).

    Always checked: both magic numbers (when the head is at hand), a footer that fits in the
    file, a footer pyarrow can decode, row groups whose row counts add up to the file's and
    whose column chunks lie inside the file. With the whole file, each row group's cheapest
    column is also decoded, so a footer that claims rows the pages do not hold is caught.

    Raises:
        UnreadableParquet: with a reason fit for an operator.
    """
    if size == 0:
        raise UnreadableParquet("empty object (0 bytes): not a Parquet file")
    if size < 12:
        raise UnreadableParquet(f"only {size} bytes: too short to be a Parquet file")
    whole = len(data) == size
    if whole and data[:4] != MAGIC:
        raise UnreadableParquet("does not start with the Parquet magic 'PAR1': not a Parquet file")
    if data[-4:] != MAGIC:
        raise UnreadableParquet("does not end with the Parquet magic 'PAR1': truncated or not Parquet")
    footer_length = int.from_bytes(data[-8:-4], "little")
    if footer_length + 12 > size:
        raise UnreadableParquet(
            f"footer length {footer_length} does not fit in a {size}-byte file: truncated"
        )
    if footer_length + 8 > len(data):
        return FooterNeeded(footer_length + 8)
    try:
        # With the whole file at hand, open it once; otherwise the footer alone is enough.
        parquet = pq.ParquetFile(pa.BufferReader(data if whole else MAGIC + data[-(footer_length + 8) :]))
        metadata = parquet.metadata
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as err:
        raise UnreadableParquet(f"Parquet footer cannot be decoded: {_short(err)}") from err
    _check_layout(metadata, size - footer_length - 8)
    if whole:
        _check_pages(parquet, metadata, schema)
    return ParquetFacts(
        rows=metadata.num_rows,
        row_groups=metadata.num_row_groups,
        schema=schema,
        columns=columns_of(schema),
        pages_checked=whole,
        metadata=metadata,
    )


def read_footer(read_tail: Callable[[int], bytes], size: int) -> ParquetFacts:
    """A ``size``-byte file's footer facts, read from its end through ``read_tail(n)`` (the
    last ``n`` bytes): one ranged read of :data:`FOOTER_GUESS_BYTES`, a second for a longer footer.

    Raises:
        UnreadableParquet: with a reason fit for an operator.
    """
    facts = inspect_parquet(read_tail(FOOTER_GUESS_BYTES), size)
    if isinstance(facts, FooterNeeded):
        facts = inspect_parquet(read_tail(facts.tail_bytes), size)
    assert isinstance(facts, ParquetFacts)  # the second read holds the whole footer
    return facts


def _check_layout(metadata: pq.FileMetaData, data_end: int) -> None:
    total = 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        total += group.num_rows
        for column_index in range(group.num_columns):
            chunk = group.column(column_index)
            # Writers leave an offset 0 for pages a chunk does not have (an empty group's data).
            offsets = [chunk.data_page_offset]
            if chunk.has_dictionary_page:
                offsets.append(chunk.dictionary_page_offset)
            offsets = [o for o in offsets if o]
            start = min(offsets) if offsets else 4
            if start < 4 or start + chunk.total_compressed_size > data_end:
                raise UnreadableParquet(
                    f"row group {index} column {chunk.path_in_schema!r} lies outside the file's "
                    "data: truncated or corrupt"
                )
    if total != metadata.num_rows:
        raise UnreadableParquet(f"footer claims {metadata.num_rows} rows but its row groups hold {total}")


def _check_pages(parquet: pq.ParquetFile, metadata: pq.FileMetaData, schema: pa.Schema) -> None:
    """Decodes, in every row group, the column chunk that is cheapest to decode, and checks that
    its pages hold the rows the row group claims (one column suffices to count rows; the
    others' chunks were checked to lie inside the file). Memory stays at one column chunk.

    Chunks are leaf columns; a nested column has several, so the chunk is read through the
    top-level field its path starts with (not by its index, which is not a field index).
    """
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if group.num_columns == 0:
            continue
        cheapest = min(range(group.num_columns), key=lambda c: group.column(c).total_compressed_size)
        top = group.column(cheapest).path_in_schema.split(".", 1)[0]
        name = top if schema.get_field_index(top) >= 0 else None
        try:
            decoded = parquet.read_row_group(index, columns=[name] if name else None).num_rows
        except (pa.ArrowException, OSError, ValueError) as err:
            raise UnreadableParquet(f"row group {index} cannot be decoded: {_short(err)}") from err
        if decoded != group.num_rows:
            raise UnreadableParquet(
                f"row group {index} claims {group.num_rows} rows but its pages hold {decoded}"
            )


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] or type(err).__name__
