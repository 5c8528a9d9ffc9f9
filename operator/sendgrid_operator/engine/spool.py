"""The spool: the first pass's valid contacts, encoded once, in a temporary file.

Why a file: ``maxProfiles`` and mirror's guards must refuse before any write, which needs
every row read first (:mod:`.reading`), and a 1,000,000-profile segment's contacts would
not fit in 200 MB of memory. Each valid contact's JSON is appended once, followed by a
comma, so a run of consecutive records is already a run of an upload body
(:mod:`.bodies` cuts bodies from it a slice at a time). Memory keeps 4 bytes a record
(its length) and a few entries per segment and per run of row numbers.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import pyarrow as pa

SEPARATOR = b","  # after every record: a run of records is a run of a body, as it is
_STRIDE = 256  # one remembered offset per this many records


class Spool:
    """An append-only temporary file of encoded contacts, each followed by a comma.

    The file holds nothing but the contacts' JSON, so consecutive records are already
    the middle of an upload body and :mod:`.bodies` cuts bodies from it a slice at a
    time. Memory holds each record's encoded length (:attr:`lengths`, 4 bytes a record),
    where each segment starts, and where a run of consecutive row numbers starts (one
    entry per run: a whole batch of valid rows, or the row after an invalid one), from
    which :meth:`locate` finds a record's segment and row number. Random access
    (:meth:`read_many`) derives offsets from the lengths, every ``_STRIDE``-th one kept,
    and walks forward from there."""

    def __init__(self, directory: Path | None) -> None:
        fd, self.path = tempfile.mkstemp(prefix="sgexport-spool-", dir=directory)
        self._out: IO[bytes] = os.fdopen(fd, "wb", buffering=1 << 20)
        self.lengths = array("I")
        self._seg_starts = array("Q")
        self._run_starts = array("Q")  # spool index of each run's first record
        self._run_rows = array("Q")  # ... and its row number
        self._next_row = -1  # the row number that continues the current run
        self._checkpoints: array[int] | None = None

    def begin_segment(self) -> None:
        """The records appended from now on belong to the next segment."""
        self._seg_starts.append(len(self.lengths))
        self._next_row = -1

    def _run(self, row: int, count: int) -> None:
        if row != self._next_row:
            self._run_starts.append(len(self.lengths))
            self._run_rows.append(row)
        self._next_row = row + count

    def append(self, row: int, encoded: bytes) -> None:
        self._run(row, 1)
        self.lengths.append(len(encoded))
        self._out.write(encoded)
        self._out.write(SEPARATOR)

    def extend(self, first_row: int, encoded: list[bytes], sizes: Iterable[int]) -> None:
        """Append ``encoded`` (rows ``first_row``, ``first_row + 1``, ...) in one write."""
        if not encoded:
            return
        self._run(first_row, len(encoded))
        self.lengths.extend(sizes)
        self._out.write(SEPARATOR.join(encoded))
        self._out.write(SEPARATOR)

    def finish(self) -> None:
        self._out.close()

    def __len__(self) -> int:
        return len(self.lengths)

    def locate(self, index: int) -> tuple[int, int]:
        """``(segment, row number)`` of the record at ``index``."""
        run = bisect_right(self._run_starts, index) - 1
        segment = bisect_right(self._seg_starts, index) - 1
        return max(segment, 0), self._run_rows[run] + index - self._run_starts[run]

    def scan(self) -> Iterator[tuple[int, int, int, bytes]]:
        """``(index, segment, row, encoded)`` in spool order."""
        with open(self.path, "rb", buffering=1 << 20) as f:
            read = f.read
            for index, length in enumerate(self.lengths):
                encoded = read(length + 1)[:-1]
                yield index, *self.locate(index), encoded

    def _offsets(self) -> array[int]:
        """The offset of every ``_STRIDE``-th record (built once, on first use)."""
        if self._checkpoints is None:
            checkpoints = array("Q")
            position = 0
            lengths = self.lengths
            for start in range(0, len(lengths), _STRIDE):
                checkpoints.append(position)
                chunk = lengths[start : start + _STRIDE]
                position += sum(chunk) + len(chunk)
            self._checkpoints = checkpoints
        return self._checkpoints

    def read_many(
        self, handle: IO[bytes], indices: Iterable[int]
    ) -> Iterator[tuple[int, int, int, bytes]]:
        """``(index, segment, row, encoded)`` for ``indices`` (fastest in ascending order)."""
        checkpoints = self._offsets()
        lengths = self.lengths
        cursor = -1  # the record the handle is positioned at, -1: unknown
        for index in indices:
            if cursor < 0 or index < cursor or index - cursor >= _STRIDE:
                cursor = index - index % _STRIDE
                handle.seek(checkpoints[cursor // _STRIDE])
            skip = 0
            while cursor < index:
                skip += lengths[cursor] + 1
                cursor += 1
            if skip:
                handle.seek(skip, os.SEEK_CUR)
            length = lengths[index]
            encoded = handle.read(length + 1)[:length]
            yield index, *self.locate(index), encoded
            cursor += 1

    def read(self, handle: IO[bytes], index: int) -> tuple[int, int, bytes]:
        for _, segment, row, encoded in self.read_many(handle, (index,)):
            return segment, row, encoded
        raise IndexError(index)  # pragma: no cover - read_many yields once

    def remove(self) -> None:
        try:
            self._out.close()
        finally:
            if os.path.exists(self.path):
                os.unlink(self.path)


def mask_array(values: bytearray) -> pa.Array:
    return pa.Array.from_buffers(pa.uint8(), len(values), [None, pa.py_buffer(values)]).cast(
        pa.bool_()
    )
