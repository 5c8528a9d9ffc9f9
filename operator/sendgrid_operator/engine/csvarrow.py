"""CSV read by Arrow's parser, when that gives exactly the rows Python's ``csv`` module would.

Why: the CSV source reads with the ``csv`` module (its dialect and row numbers are the
reference) and turns records into Arrow columns in Python: about 2.5 s a million rows,
holding the GIL the first pass's other thread needs. Arrow's parser does the same work in
C++ without the GIL: about 0.8 s, the check below included (one thread: the first pass
keeps the other core busy).

When: a UTF-8 file that can be read twice, with a one-line header, and, checked by reading
the whole file once before any row is handed out,

- no NUL byte and no value over ``csv.field_size_limit()`` (the ``csv`` module refuses
  those);
- Arrow parses it without error: every record exactly as wide as the header, valid UTF-8
  (Arrow's strings are checked), every quoted value closed;
- as many records as lines after the header: no blank line and no value spanning lines,
  so record *i* is on line *i* + 2, the row number the ``csv`` module reports.

Within that, both parse the same dialect the same way (``"`` quotes with doubled quotes
inside, no escape character, a quote after the start of a field kept as it is, text after
a closing quote appended); ``tests/engine/test_csv_batches.py`` holds the batches equal to
the row path on generated files. Anything else gets ``None`` and the ``csv`` module.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sendgrid_operator.engine.sources import Row, RowBatch

#: Bytes Arrow parses per block. Its streaming reader holds many blocks and their parsed
#: columns at once (about +60 MB at 2 MB blocks, +25 MB at 512 KB, +9 MB at 128 KB), and
#: each block is one GIL hand-over for the read-ahead thread (128 KB: 0.4 s slower a
#: million rows); its records are handed out in batches of at least ``BATCH_ROWS``.
BLOCK_SIZE = 1 << 19
BATCH_ROWS = 16_384
_CHUNK = 1 << 22


class Plain(NamedTuple):
    """A file Arrow reads as the ``csv`` module would: how many records it holds (the
    check counted them) and the batches that hand them out."""

    records: int
    batches: Iterator[RowBatch]


def plain_batches(
    handle: IO[bytes], header: list[str], delimiter: str, columns: Sequence[str]
) -> Plain | None:
    """Batches of the file's records (the header is line 1) with the ``columns`` as Arrow
    string arrays, or ``None`` when Arrow's reading could differ from the ``csv`` module's.
    Leaves ``handle`` anywhere."""
    if not handle.seekable() or not header:
        return None
    handle.seek(0)
    lines = _lines(handle)
    if lines is None:
        return None
    names = [f"c{j}" for j in range(len(header))]
    limit = csv.field_size_limit()
    records = 0
    try:
        for batch in _reader(handle, names, delimiter):
            records += batch.num_rows
            for column in batch.columns:
                if (pc.max(pc.binary_length(column)).as_py() or 0) > limit:
                    return None  # the csv module refuses it (it counts characters)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if records + 1 != lines:
        return None
    return Plain(records, _batches(handle, header, names, delimiter, columns))


def _lines(handle: IO[bytes]) -> int | None:
    """Lines as the ``csv`` module counts them (ended by ``\\n``, ``\\r\\n`` or ``\\r``),
    or ``None`` if the file holds a NUL byte."""
    terminators = 0
    carriage = False  # the previous chunk ended with \r
    last = b""
    while chunk := handle.read(_CHUNK):
        if b"\x00" in chunk:
            return None
        terminators += chunk.count(b"\n")
        if b"\r" in chunk:  # two more passes, only for a chunk that needs them
            terminators += chunk.count(b"\r") - chunk.count(b"\r\n")
        if carriage and chunk.startswith(b"\n"):
            terminators -= 1  # a \r\n split between chunks
        carriage = chunk.endswith(b"\r")
        last = chunk[-1:]
    return terminators + (1 if last not in (b"", b"\n", b"\r") else 0)


def _reader(handle: IO[bytes], names: list[str], delimiter: str) -> Any:
    handle.seek(0)
    return pacsv.open_csv(
        handle,
        read_options=pacsv.ReadOptions(
            skip_rows=1, column_names=names, block_size=BLOCK_SIZE, use_threads=False
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char='"',
            double_quote=True,
            escape_char=False,
            newlines_in_values=True,
            ignore_empty_lines=True,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=True,
        ),
    )


def _batches(
    handle: IO[bytes],
    header: list[str],
    names: list[str],
    delimiter: str,
    columns: Sequence[str],
) -> Iterator[RowBatch]:
    # dict(zip(header, values)) keeps a repeated name's last value: its last position
    last = {name: j for j, name in enumerate(header)}
    first = 2
    for batch in _rebatched(_reader(handle, names, delimiter)):
        arrays = {name: batch.column(last[name]) for name in columns if name in last}
        yield RowBatch(first, batch.num_rows, arrays, _row(header, batch), _rows(header, batch))
        first += batch.num_rows


def _rebatched(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The same records in batches of at least ``BATCH_ROWS`` (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        if rows >= BATCH_ROWS:
            yield _combined(pending)
            pending, rows = [], 0
    if rows:
        yield _combined(pending)


def _combined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _row(header: list[str], batch: pa.RecordBatch) -> Callable[[int], Row]:
    def row(index: int) -> Row:
        return dict(zip(header, [column[index].as_py() for column in batch.columns], strict=True))

    return row


def _rows(header: list[str], batch: pa.RecordBatch) -> Callable[[], Sequence[Row]]:
    def rows() -> Sequence[Row]:
        values = zip(*[column.to_pylist() for column in batch.columns], strict=True)
        return [dict(zip(header, record, strict=True)) for record in values]

    return rows
