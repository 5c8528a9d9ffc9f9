"""Upload bodies cut from the spool a slice at a time.

Why: building each body contact by contact (read a record, check that it fits, write it)
cost a full run more CPU time than reading the source did. The spool holds every contact's
JSON followed by a comma (:class:`.spool.Spool`), so contacts that are next to each other
in the spool are already next to each other in a body: a run of them is one slice of the
file. :func:`cut_bodies` finds the bodies the greedy rule gives (:func:`.batching.pack`:
fill a body until the next contact would break a ceiling) for the contacts the send mask
selects, in spool order, with a cumulative sum and a binary search per body over a window
of records, and copies each run of selected contacts with one slice.

Bytes and counts are the same as contact-by-contact packing
(``tests/engine/test_bodies.py`` compares them with :class:`.batching.BodyBuilder`).
"""

from __future__ import annotations

import io
import os
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.engine.batching import BODY_SUFFIX, body_prefix
from sendgrid_operator.engine.spool import Spool, mask_array

#: At most this many records, and this many bytes of the spool, are looked at at once.
WINDOW_RECORDS = 1 << 14
WINDOW_BYTES = 4 << 20


@dataclass
class Body:
    """One upsert body and the spool indices of its contacts, in order."""

    data: bytes
    positions: array[int]


def _u64_view(values: pa.Array) -> memoryview:
    """A uint64 array's values as a sequence of Python ints, without copying them."""
    start = values.offset * 8
    return memoryview(values.buffers()[1])[start : start + 8 * len(values)].cast("Q")


def cut_bodies(
    spool: Spool,
    send: bytearray,
    list_ids: Sequence[str],
    max_count: int,
    max_bytes: int,
) -> Iterator[Body | None]:
    """The bodies for the records ``send`` selects, in spool order. Between bodies it may
    yield ``None`` (a window of the spool was passed without finishing one), so a caller
    on an event loop can let other tasks run. A record that cannot fit in a body even
    alone raises ValueError (the first pass refuses such rows before)."""
    prefix = body_prefix(list_ids)
    fixed = len(prefix) + len(BODY_SUFFIX)
    n = len(spool.lengths)
    if n == 0 or 1 not in send:  # nothing to cut (everything went out while reading)
        return
    lengths = pa.Array.from_buffers(pa.uint32(), n, [None, pa.py_buffer(spool.lengths)])
    mask = mask_array(send)
    one = pa.scalar(1, pa.uint64())

    out = io.BytesIO()
    out.write(prefix)
    count = 0
    size = fixed
    positions = array("I")

    def take() -> Body:
        nonlocal out, count, size, positions
        out.seek(-1, io.SEEK_END)  # the last contact's separator becomes the suffix
        out.write(BODY_SUFFIX)
        body = Body(out.getvalue(), positions)
        assert len(body.data) == size, (len(body.data), size)
        out = io.BytesIO()
        out.write(prefix)
        count, size, positions = 0, fixed, array("I")
        return body

    fd = os.open(spool.path, os.O_RDONLY)
    try:
        start = 0  # the window's first record
        file_at = 0  # ... and its offset in the spool
        while start < n:
            window = lengths.slice(start, min(WINDOW_RECORDS, n - start))
            ends = pc.cumulative_sum(pc.add(window.cast(pa.uint64()), one))
            ends_view = _u64_view(ends)
            k = len(window)
            if ends_view[k - 1] > WINDOW_BYTES:
                k = max(1, bisect_right(ends_view, WINDOW_BYTES))
            span = ends_view[k - 1]
            chosen = pc.indices_nonzero(mask.slice(start, k))
            m = len(chosen)
            if m:
                chosen_view = _u64_view(chosen)
                sizes = pc.add(pc.take(window, chosen).cast(pa.uint64()), one)
                cum = _u64_view(pc.cumulative_sum(sizes))  # each with its separator
                breaks: list[int] = []  # where a run of consecutive records ends
                if m > 1:
                    steps = pc.subtract(chosen.slice(1), chosen.slice(0, m - 1))
                    breaks = [b + 1 for b in pc.indices_nonzero(pc.not_equal(steps, 1)).to_pylist()]
                first = chosen_view[0]
                lo = ends_view[first - 1] if first else 0
                want = ends_view[chosen_view[m - 1]] - lo
                buffer = memoryview(os.pread(fd, want, file_at + lo))
                if len(buffer) != want:
                    raise OSError(f"the spool {spool.path} is shorter than its records")
                pos = 0
                while pos < m:
                    if count == max_count:
                        yield take()
                    base = cum[pos - 1] if pos else 0
                    budget = max_bytes - size + (0 if count else 1)
                    fits = bisect_right(cum, base + budget, pos, m) - pos
                    n_take = min(max_count - count, fits, m - pos)
                    if n_take == 0:
                        if count == 0:
                            raise ValueError(
                                f"a contact of {cum[pos] - base - 1} bytes cannot fit in a "
                                f"body of {max_bytes} bytes"
                            )
                        yield take()
                        continue
                    stop = pos + n_take
                    run = pos
                    b = bisect_right(breaks, pos)
                    while run < stop:
                        run_end = min(stop, breaks[b]) if b < len(breaks) else stop
                        first_rec = chosen_view[run]
                        begin = ends_view[first_rec - 1] if first_rec else 0
                        out.write(buffer[begin - lo : ends_view[chosen_view[run_end - 1]] - lo])
                        run = run_end
                        b += 1
                    index = pc.add(chosen.slice(pos, n_take), pa.scalar(start, pa.uint64()))
                    as_u32 = index.cast(pa.uint32())
                    positions.frombytes(memoryview(as_u32.buffers()[1])[: 4 * n_take])
                    size += cum[stop - 1] - base - (0 if count else 1)
                    count += n_take
                    pos = stop
                    if pos < m:  # the next contact does not fit
                        yield take()
                del buffer
            yield None
            start += k
            file_at += span
        if count:
            yield take()
    finally:
        os.close(fd)
