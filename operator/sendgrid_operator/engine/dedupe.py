"""First occurrence wins: which spooled rows repeat an earlier row's email key.

Why apart from :mod:`.reading`: the first pass decides this once, over every key of the
run, and it is the one step whose cost grows with the whole run rather than a batch. A
stable sort by key puts each key's first row first in its run of equal keys; the others
are duplicates (usually few), so only they become Python objects. With sending while
reading (:mod:`.early`) the bitmap of key slots already names the only rows that can be
duplicates, and only they and the rows sharing their keys are sorted.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.engine import buckets

if TYPE_CHECKING:
    from sendgrid_operator.engine.reading import Prepared


def deduplicate(prepared: Prepared, suspects: array[int] | None = None) -> None:
    """First occurrence wins: a stable sort by key puts each key's first row first in its
    run; the others are duplicates (usually few), so only they become Python objects.
    ``suspects``: the only rows that can be duplicates, when the early bodies' bitmap
    knows them (:meth:`.EarlyBodies.possible_duplicates`); then only the rows sharing
    their keys are sorted. Otherwise every key, a bucket (:mod:`.buckets`) at a time."""
    n = len(prepared.keys)
    keep = bytearray(b"\x01") * n
    if n > 1 and suspects is not None:
        if suspects:
            keys = buckets.u64(prepared.keys)
            doubtful = pc.unique(pc.take(keys, pa.array(suspects, pa.uint64())))
            rows = pc.indices_nonzero(pc.is_in(keys, value_set=doubtful))
            _mark_repeats(keep, pc.take(keys, rows), rows)
    elif n > 1:
        keys = buckets.u64(prepared.keys)
        bits = buckets.bits_for(n)
        if not bits:
            _mark_repeats(keep, keys, None)
        else:
            ids = buckets.bucket_ids(keys, bits)
            for bucket in range(1 << bits):
                rows = buckets.rows_in(ids, bucket)
                _mark_repeats(keep, pc.take(keys, rows), rows)
                del rows  # before the next bucket's: one bucket's arrays at a time
            del ids
        del keys
    prepared.keep = keep
    prepared.profiles = keep.count(1)
    segments = prepared.segments
    starts = [*prepared.seg_starts, n]
    for index, counts in enumerate(segments):
        first, end = starts[index], starts[index + 1]
        counts.profiles = keep.count(1, first, end) if len(segments) > 1 else prepared.profiles
        counts.duplicates = (end - first) - counts.profiles
    prepared.payload_bytes = prepared.payload_size(keep, force=True)


def _mark_repeats(keep: bytearray, keys: pa.Array, rows: pa.Array | None) -> None:
    """Clear ``keep`` for every row of ``keys`` (at ``rows``, ascending, or at its own
    positions) whose key an earlier one of them has."""
    m = len(keys)
    if m < 2:
        return
    order = pc.sort_indices(keys)  # stable
    ordered = pc.take(keys, order)
    repeat = pc.equal(ordered.slice(1), ordered.slice(0, m - 1))
    duplicates = pc.filter(order.slice(1), repeat)
    if rows is not None and len(duplicates):
        duplicates = pc.take(rows, duplicates)
    for i in duplicates.to_pylist():
        keep[i] = 0
