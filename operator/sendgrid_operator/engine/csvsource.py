"""CSV files: the ``csv`` module's reading, with Arrow's parser where it gives the same rows.

Why a module of its own: CSV is the one format with two readers. :class:`CsvSource` reads
rows with the ``csv`` module (``delimiter``, ``encoding``, a byte-order mark, quoted
values over several lines), and gives the first pass Arrow batches either from
:mod:`.csvarrow` (when its check of the whole file proves Arrow's parser gives the ``csv``
module's rows and line numbers) or from runs of ``csv`` records. It registers itself as
the ``csv`` file format of :mod:`.sources`.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sendgrid_operator.api.export import FileFormat
from sendgrid_operator.engine.mapping import ColumnKind
from sendgrid_operator.engine.outcomes import SourceError
from sendgrid_operator.engine.sources import (
    FileSourceBase,
    Row,
    RowBatch,
    register_file_format,
)

if TYPE_CHECKING:  # csvarrow (and pyarrow.csv) is imported only for a file Arrow may read
    from sendgrid_operator.engine.csvarrow import Plain

#: CSV rows per :class:`RowBatch` (at most; a batch also ends where row numbers skip).
CSV_BATCH_ROWS = 8192
#: A run of consecutive CSV rows shorter than this gets no Arrow arrays (its rows go one
#: by one through ``convert_row``): ``fastpath.convert_batch`` costs about a millisecond a
#: batch whatever its length, as much as ``convert_row`` on some 400 rows.
CSV_MIN_ARROW_ROWS = 512


class CsvSource(FileSourceBase):
    """CSV with a header row; ``delimiter`` and ``encoding`` from the spec."""

    def open(self, columns: Sequence[str]) -> Mapping[str, ColumnKind]:
        try:
            codec = codecs.lookup(self.spec.encoding)
        except LookupError as exc:
            raise SourceError(f"{self.label}: unknown encoding {self.spec.encoding!r}") from exc
        # UTF-8 files often start with a byte-order mark (Excel writes one); decoding it
        # away before csv sees it keeps a quoted first header name ("email") intact
        self._utf8 = codec.name == "utf-8"
        header = self._start_reader()
        if not header:
            raise SourceError(f"{self.label}: the file is empty (a CSV needs a header row)")
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        self._header = [h.strip() for h in header]
        self._columns = [c for c in dict.fromkeys(columns) if c in self._header]
        self._arrow_checked = False
        self._plain: Plain | None = None
        return dict.fromkeys(self._header, "string")

    def row_bound(self) -> int | None:
        """The file's record count, but only for a file Arrow reads (its check has parsed
        the whole file and counted them): the ``csv`` module could still stop at a bad
        line half-way, and a run must not have sent anything by then."""
        if self._file is None:
            return None
        self._arrow()  # the check, once
        return self._plain.records if self._plain is not None else None

    def _arrow(self) -> Iterator[RowBatch] | None:
        """:mod:`.csvarrow`'s batches when its check of the whole file passes (run once:
        it reads the file; the ``csv`` module starts again after the header if not)."""
        from sendgrid_operator.engine import csvarrow

        if not self._arrow_checked:
            self._arrow_checked = True
            if self._utf8 and self._reader.line_num == 1:
                self._plain = csvarrow.plain_batches(
                    self._handle(), self._header, self.spec.delimiter, self._columns
                )
                if self._plain is None:
                    self._text.detach()
                    self._handle().seek(0)
                    self._start_reader()
        return self._plain.batches if self._plain is not None else None

    def _start_reader(self) -> list[str] | None:
        """A ``csv`` reader over the file from its start; returns the header row."""
        encoding = "utf-8-sig" if self._utf8 else self.spec.encoding
        self._text = io.TextIOWrapper(
            self._handle(), encoding=encoding, errors="strict", newline=""
        )
        self._reader = csv.reader(self._text, delimiter=self.spec.delimiter)
        try:
            return next(self._reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{self.label}: cannot read the header row: {exc}") from exc

    def _read_error(self, exc: Exception) -> SourceError:
        return SourceError(
            f"{self.label}:{self._reader.line_num}: cannot read the file as {self.spec.encoding} CSV: {exc}"
        )

    def rows(self) -> Iterator[tuple[int, Row]]:
        header = self._header
        reader = self._reader
        try:
            for values in reader:
                if not values:
                    continue
                yield reader.line_num, dict(zip(header, values, strict=False))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise self._read_error(exc) from exc

    def _runs(self) -> Iterator[tuple[int, list[tuple[str, ...]]]]:
        """``(first row number, records)``: the records of :meth:`rows`, in runs of at
        most ``CSV_BATCH_ROWS`` with consecutive row numbers. A run ends early where the
        numbers skip: a blank line, or a quoted value that spans lines.

        Records are kept as tuples: the cyclic GC stops tracking a tuple of strings, but
        not a list, and thousands of live lists a batch set off a full collection (of
        every object in the process) every few batches: about 0.5 s a million rows."""
        reader = self._reader
        size = CSV_BATCH_ROWS
        records: list[tuple[str, ...]] = []
        append = records.append
        first = expected = 0
        try:
            for values in map(tuple, reader):
                if not values:
                    continue
                number = reader.line_num
                if number != expected or len(records) >= size:
                    if records:
                        yield first, records
                    records = []
                    append = records.append
                    first = number
                append(values)
                expected = number + 1
        except (UnicodeDecodeError, csv.Error) as exc:
            if records:  # the rows before the bad line, as rows() yields them
                yield first, records
            raise self._read_error(exc) from exc
        if records:
            yield first, records

    def batches(self) -> Iterator[RowBatch]:
        """The rows of :meth:`rows` as batches, the mapped columns as Arrow string arrays
        (None where a row has fewer fields than the header)."""
        import pyarrow as pa

        plain = self._arrow()
        if plain is not None:
            yield from plain
            return
        header = self._header
        # dict(zip(header, values)) keeps a repeated name's last value *within the row*:
        # each column's positions, last first
        positions = {
            name: [j for j in range(len(header) - 1, -1, -1) if header[j] == name]
            for name in self._columns
        }
        width = len(header)
        for first, records in self._runs():
            arrays: dict[str, Any] = {}
            if len(records) >= CSV_MIN_ARROW_ROWS:
                full = min(map(len, records)) >= width
                for name, places in positions.items():
                    j = places[0]
                    if full:
                        column: list[str | None] = [values[j] for values in records]
                    elif len(places) == 1:
                        column = [values[j] if len(values) > j else None for values in records]
                    else:
                        column = [_last_value(values, places) for values in records]
                    try:
                        arrays[name] = pa.array(column, type=pa.string())
                    except UnicodeEncodeError:  # a lone surrogate (unicode_escape): no array,
                        continue  # so these rows take convert_row, as rows() would
            yield RowBatch(
                first,
                len(records),
                arrays,
                _record_row(header, records),
                _record_rows(header, records),
            )


def _last_value(values: tuple[str, ...], places: list[int]) -> str | None:
    """The value ``dict(zip(header, values))`` keeps for a column at ``places`` (descending)."""
    count = len(values)
    for j in places:
        if j < count:
            return values[j]
    return None


def _record_row(header: list[str], records: list[tuple[str, ...]]) -> Callable[[int], Row]:
    def row(index: int) -> Row:
        return dict(zip(header, records[index], strict=False))

    return row


def _record_rows(header: list[str], records: list[tuple[str, ...]]) -> Callable[[], Sequence[Row]]:
    def rows() -> Sequence[Row]:
        return [dict(zip(header, values, strict=False)) for values in records]

    return rows


register_file_format(FileFormat.CSV.value, CsvSource)
