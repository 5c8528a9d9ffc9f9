"""Splitting the 64-bit email keys into ranges, so that whole-run operations stay small.

Why: de-duplication, the incremental diff and the new state each need a sort or a hash
table over every key. Done over all rows at once, their temporaries (indices, a hash
table of the state's keys, joined copies) cost tens of megabytes at 1,000,000 profiles,
on top of what the run already holds. Keys are keyed BLAKE2b hashes, so their top bits
are uniform: splitting by the top ``bits`` bits gives buckets of about equal size, the
state's keys (sorted) split into contiguous slices, and the buckets' results, taken in
order, are globally sorted. Each operation then runs bucket by bucket, and its temporaries
are those of one bucket.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

#: Aim for buckets of about this many keys (a test may lower it to exercise many buckets).
ROWS_PER_BUCKET = 1 << 16
MAX_BITS = 8
#: Whole-length element-wise steps run this many keys at a time.
SLICE = 1 << 16


def u64(values: array[int] | Sequence[int]) -> pa.Array:
    """Keys as a uint64 array: an ``array("Q")`` without copying it (do not grow it while
    the result lives), anything else converted."""
    if isinstance(values, array):
        return pa.Array.from_buffers(pa.uint64(), len(values), [None, pa.py_buffer(values)])
    return pa.array(values, pa.uint64())


def bits_for(count: int) -> int:
    """How many top bits split ``count`` keys into buckets of ``ROWS_PER_BUCKET`` or fewer."""
    bits = 0
    while bits < MAX_BITS and (count >> bits) > ROWS_PER_BUCKET:
        bits += 1
    return bits


def bucket_ids(keys: pa.Array, bits: int) -> pa.Array:
    """The bucket of each key (uint8), for ``bits`` > 0; computed a slice at a time, so
    the only array of the keys' length is this one-byte-a-key result."""
    shift = pa.scalar(64 - bits, pa.uint64())
    parts = [
        pc.shift_right(keys.slice(start, SLICE), shift).cast(pa.uint8())
        for start in range(0, len(keys), SLICE)
    ]
    return pa.concat_arrays(parts) if parts else pa.array([], pa.uint8())


def rows_in(ids: pa.Array | None, bucket: int, among: pa.Array | None = None) -> pa.Array:
    """Ascending indices of the keys in ``bucket`` (of all keys when ``ids`` is None),
    restricted to the rows where the boolean ``among`` is true."""
    if ids is None:
        assert among is not None
        return pc.indices_nonzero(among)
    hit = pc.equal(ids, pa.scalar(bucket, pa.uint8()))
    if among is not None:
        hit = pc.and_(hit, among)
    return pc.indices_nonzero(hit)


def split_values(values: pa.Array, bits: int) -> list[pa.Array]:
    """An unsorted key array split by bucket (for small sets such as removals)."""
    if bits == 0 or not len(values):
        return [values] * (1 << bits)
    ids = bucket_ids(values, bits)
    return [pc.filter(values, pc.equal(ids, pa.scalar(b, pa.uint8()))) for b in range(1 << bits)]


def sorted_bounds(keys: pa.Array, bits: int) -> list[int]:
    """For ascending ``keys``: the start of each bucket's slice, plus the end (binary search)."""
    n = len(keys)
    bounds = [0]
    for bucket in range(1, 1 << bits):
        floor = bucket << (64 - bits)
        lo, hi = bounds[-1], n
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid].as_py() < floor:
                lo = mid + 1
            else:
                hi = mid
        bounds.append(lo)
    bounds.append(n)
    return bounds


def slices(keys: pa.Array, bits: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each bucket's slice of ascending ``keys``."""
    bounds = sorted_bounds(keys, bits)
    for bucket in range(1 << bits):
        yield bounds[bucket], bounds[bucket + 1] - bounds[bucket]
