"""Upload while the first pass still reads, once nothing can refuse the run any more.

Why: a run that reads the whole segment before its first write takes about as long as
the read plus SendGrid's ingest. Sending during the read overlaps the two, as a tool that
just reads and sends would, without giving up what the engine promises: a run refused by
a guard has written nothing, and the first occurrence of an email wins.

When (decided before the read by :mod:`.run`, then by the first pass):

- not a dry run, and mode ``upsert``: mirror reads each list's members after the pass to
  learn which ones it did not add, and must not find this run's own contacts there;
- every contact read is to be sent: a full run, or no state from an earlier run;
- the last segment's source is open and its columns checked (so a mapping error can no
  longer stop the run), and the rows already spooled plus that source's bound
  (``row_bound()``, known before its rows are read: a Parquet footer, the records of a
  CSV file Arrow's check has parsed whole, a PostgreSQL count in the cursor's own
  snapshot) are within ``maxProfiles``.

From then on the only way the run can end early is the source failing part-way. The
contacts sent by then are members of the segment with their current values, so nothing
wrong is written; the run fails, its counts say what was sent and applied, and the state
is not advanced, so the next run sends them again.

Which contacts: rows whose email key was certainly not seen before. A bitmap
of key slots (at least 16 per row the bound allows, so a new key finds its slot taken
at most about 6% of the time, 3% on average) records every key in spool order; a row whose slot is
free is a first occurrence and goes into a body at once. A row whose slot is taken may
be a duplicate: it waits for the exact de-duplication after the pass, and is sent then
with the rest. The bodies here are packed greedily too.

The rest: when every row was offered here (one segment, with a bound), the
waiting rows are also held in memory (up to ``HELD_BYTES``), and once the exact
de-duplication has decided them (:meth:`EarlyBodies.finish`), those that are first
occurrences and the last, partly filled body go out from here: nothing is read back from
the spool. Otherwise that body is dropped and :mod:`.upload` cuts the rest from the spool.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate, compress

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.engine import buckets
from sendgrid_operator.engine.batching import BODY_SUFFIX, body_prefix
from sendgrid_operator.engine.spool import mask_array

#: Bitmap slots per row of the bound (a power of two at least this many times larger).
SLOTS_PER_ROW = 16
MIN_SLOTS = 1 << 16
MAX_SLOTS = 1 << 27  # 16 MB: 10,000,000 rows (maxProfiles' ceiling) still find ~7% taken
_FLIP = bytes.maketrans(b"\x00\x01", b"\x01\x00")
#: Keys recorded at once at least this many: the slot tests in Arrow kernels.
BULK_ROWS = 1024
_ONE, _ZERO = pa.scalar(1, pa.uint8()), pa.scalar(0, pa.uint8())
_THREE, _SEVEN = pa.scalar(3, pa.uint64()), pa.scalar(7, pa.uint64())
#: Encoded contacts of waiting rows held for the rest; past this, the spool serves it.
HELD_BYTES = 16 << 20

#: Hands a body and its contacts' spool indices to the uploader; False when it takes no
#: more (the run failed).
Submit = Callable[[bytes, "array[int]"], bool]


class EarlyBodies:
    """The first pass's side: which spooled contacts go out now, packed into bodies.

    The first pass calls :meth:`enable` when the run can no longer be refused,
    :meth:`offer` with each fast-path run of encoded contacts as it spools them (and
    :meth:`offer_row` with each contact of the slow path), and
    :meth:`advance` whenever more email keys are final; :meth:`finish` at the end.
    :attr:`streamed` marks (by spool index) every contact in a body handed over, and
    :meth:`possible_duplicates` names the only rows the exact de-duplication must look at."""

    def __init__(
        self, list_ids: Sequence[str], max_count: int, max_bytes: int, submit: Submit
    ) -> None:
        self._prefix = body_prefix(list_ids)
        self._fixed = len(self._prefix) + len(BODY_SUFFIX)
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._submit = submit
        self.streamed = bytearray()
        self.bodies = 0  # handed over
        self._bits: bytearray | None = None
        self._mask = 0
        self._next = 0  # the first spool index not yet decided
        self._taken = array("Q")  # spool indices whose slot was taken when recorded
        # the waiting rows' contacts, while every row recorded was offered and they fit
        self._held = True
        self._held_positions = array("Q")
        self._held_data = bytearray()  # their contacts, one after another
        self._held_sizes = array("I")
        self._runs: deque[tuple[int, list[bytes], list[int]]] = deque()
        self._row_run: tuple[int, list[bytes], list[int]] | None = None  # offer_row's
        self._body = bytearray(self._prefix)  # the body being filled, and its contacts
        self._positions = array("I")
        self._count = 0
        self._size = self._fixed
        self._stopped = False

    @property
    def enabled(self) -> bool:
        return self._bits is not None and not self._stopped

    def enable(self, bound: int) -> None:
        """Start: at most ``bound`` rows will have been spooled by the end of the pass."""
        slots = 1 << max(0, SLOTS_PER_ROW * max(bound, 1) - 1).bit_length()
        slots = min(max(slots, MIN_SLOTS), MAX_SLOTS)
        self._bits = bytearray(slots // 8)
        self._mask = slots - 1

    def offer(self, start: int, pieces: list[bytes], sizes: list[int]) -> None:
        """The encoded contacts spooled at indices ``start``, ``start + 1``, ..., and
        their sizes."""
        if self.enabled and pieces:
            self._runs.append((start, pieces, sizes))

    def offer_row(self, index: int, encoded: bytes) -> None:
        """A contact of the slow path, spooled at ``index``; consecutive ones share a run."""
        if not self.enabled:
            return
        runs, run = self._runs, self._row_run
        if runs and runs[-1] is run and run[0] + len(run[1]) == index:
            run[1].append(encoded)
            run[2].append(len(encoded))
        else:
            self._row_run = (index, [encoded], [len(encoded)])
            runs.append(self._row_run)

    def advance(self, keys: array[int], upto: int) -> None:
        """Decide every contact before spool index ``upto`` (their keys are final)."""
        bits = self._bits
        if bits is None or self._stopped or upto <= self._next:
            return
        runs = self._runs
        i = self._next
        while i < upto:
            while runs and runs[0][0] + len(runs[0][1]) <= i:
                runs.popleft()
            if runs and runs[0][0] <= i:
                stop = min(upto, runs[0][0] + len(runs[0][1]))
                self._pack(keys, i, stop, runs[0])
            else:
                stop = min(runs[0][0], upto) if runs else upto
                self._pack(keys, i, stop, None)  # rows of the slow path: recorded only
            i = stop
            if self._stopped:
                return
        self._next = upto

    def _pack(
        self,
        keys: array[int],
        lo: int,
        hi: int,
        run: tuple[int, list[bytes], list[int]] | None,
    ) -> None:
        """Record the keys of ``lo:hi``; pack the first occurrences among ``run``'s."""
        first = self._record(keys[lo:hi])  # 1: a first occurrence
        taken = first.translate(_FLIP) if 0 in first else None
        if taken is not None:
            self._taken.extend(compress(range(lo, hi), taken))
        if run is None:
            self._drop_held()  # rows of the slow path: the spool serves the rest
            return
        start, pieces, sizes = run
        a, b = lo - start, hi - start
        if taken is not None and self._held:
            self._hold(
                compress(range(lo, hi), taken),
                list(compress(pieces[a:b], taken)),
                list(compress(sizes[a:b], taken)),
            )
        self._place(
            array("I", compress(range(lo, hi), first)),
            list(compress(pieces[a:b], first)),
            list(compress(sizes[a:b], first)),
        )

    def _record(self, keys: array[int]) -> bytearray:
        """Set the slots of ``keys`` (in order); 1 for each key whose slot was free."""
        bits = self._bits
        assert bits is not None
        if len(keys) >= BULK_ROWS:
            return self._record_bulk(keys, bits)
        mask = self._mask
        first = bytearray(len(keys))
        for i, key in enumerate(keys):
            slot = key & mask
            byte = slot >> 3
            bit = 1 << (slot & 7)
            value = bits[byte]
            if not value & bit:
                bits[byte] = value | bit
                first[i] = 1
        return first

    def _record_bulk(self, keys: array[int], bits: bytearray) -> bytearray:
        """:meth:`_record`'s loop with the tests in Arrow kernels: a slot was free if its
        bit was clear before these keys and no earlier one of them has it (the slots in
        order of first appearance: a key is a first occurrence where that order reaches
        a new high). Only setting the new bits stays in Python."""
        m = len(keys)
        slots = pc.bit_wise_and(
            buckets.u64(keys),
            pa.scalar(self._mask, pa.uint64()),
        )
        byte = pc.shift_right(slots, _THREE)
        bit = pc.shift_left(_ONE, pc.bit_wise_and(slots, _SEVEN).cast(pa.uint8()))
        held = pc.take(
            pa.Array.from_buffers(pa.uint8(), len(bits), [None, pa.py_buffer(bits)]), byte
        )
        order = pc.dictionary_encode(slots).indices
        high = pc.cumulative_max(order)
        before = pa.concat_arrays([pa.array([-1], order.type), high.slice(0, m - 1)])
        first = pc.and_(pc.equal(pc.bit_wise_and(held, bit), _ZERO), pc.greater(order, before))
        for at, value in zip(
            pc.filter(byte, first).to_pylist(), pc.filter(bit, first).to_pylist(), strict=True
        ):
            bits[at] |= value
        flags = first.cast(pa.uint8())
        return bytearray(memoryview(flags.buffers()[1])[flags.offset : flags.offset + m])

    def _place(self, positions: array[int], pieces: list[bytes], sizes: list[int]) -> None:
        """Greedy packing of contacts (in spool order), a slice at a time: as many as
        the count allows, fewer when the bytes do not."""
        k, n = 0, len(pieces)
        while k < n:
            count, size = self._count, self._size
            stop = min(n, k + self._max_count - count)
            ends = list(accumulate(sizes[k:stop]))
            budget = self._max_bytes - size + (0 if count else 1)  # pieces plus commas
            m = stop - k
            if ends[-1] + m > budget:
                m = bisect_right(range(m), budget, key=lambda i: ends[i] + i + 1)
            if not m and not count:
                raise ValueError(f"a contact of {sizes[k]} bytes cannot fit in a body")
            if m:
                grown = size + ends[m - 1] + m - (0 if count else 1)
                self._add(pieces[k : k + m], count + m, grown)
                self._positions.extend(positions[k : k + m])
                k += m
            if self._count == self._max_count or k < stop:
                self._emit()
                if self._stopped:
                    return

    def _add(self, chunk: list[bytes], count: int, size: int) -> None:
        """Append ``chunk`` to the body, which then holds ``count`` contacts, ``size``
        bytes with its suffix."""
        if chunk:
            if count > len(chunk):
                self._body += b","
            self._body += b",".join(chunk)
        self._count, self._size = count, size

    def _emit(self) -> None:
        positions = self._positions
        self._body += BODY_SUFFIX
        data = bytes(self._body)
        self._reset()
        if not self._submit(data, positions):
            self._stopped = True
            return
        self.bodies += 1
        streamed = self.streamed
        last = max(positions) + 1  # the held rows come after later ones
        if len(streamed) < last:
            streamed.extend(bytes(last - len(streamed)))
        for p in positions:
            streamed[p] = 1

    def _reset(self) -> None:
        self._body = bytearray(self._prefix)
        self._positions = array("I")
        self._count = 0
        self._size = self._fixed

    def holds_rest(self, rows: int) -> bool:
        """Whether :meth:`finish` can send, from memory, every one of ``rows`` (all
        spooled) that is a first occurrence and not sent yet."""
        return self._held and self.enabled and self.possible_duplicates(rows) is not None

    def possible_duplicates(self, rows: int) -> array[int] | None:
        """The spool indices that may repeat an earlier key, if the bitmap recorded all
        ``rows`` keys (else ``None``). A row whose slot was free when its key was
        recorded is a first occurrence: every earlier key had set its slot. So only rows
        that found theirs taken, and the rows sharing their keys, can be duplicates."""
        if self._bits is None or self._next != rows:
            return None
        return self._taken

    def rest(self, send: bytearray) -> bytearray:
        """``send`` less the contacts handed over in bodies (what the upload still sends),
        once the pass is over; :attr:`streamed` is not kept after that."""
        n = len(send)
        streamed, self.streamed = self.streamed, bytearray()
        if len(streamed) < n:
            streamed += bytes(n - len(streamed))
        rest = pc.and_not(mask_array(send), mask_array(streamed[:n])).cast(pa.uint8())
        del streamed
        return bytearray(memoryview(rest.buffers()[1])[rest.offset : rest.offset + n])

    def _hold(self, positions: Iterable[int], pieces: list[bytes], sizes: list[int]) -> None:
        if len(self._held_data) + sum(sizes) > HELD_BYTES:
            self._drop_held()
            return
        self._held_positions.extend(positions)
        self._held_data += b"".join(pieces)
        self._held_sizes.extend(sizes)

    def _drop_held(self) -> None:
        self._held = False
        self._held_positions = array("Q")
        self._held_data, self._held_sizes = bytearray(), array("I")

    def finish(self, keep: bytearray | None = None) -> None:
        """The pass is over. With ``keep`` (the exact de-duplication's first occurrences)
        and every waiting row held, those kept go out, and the partly filled body with
        them; otherwise that body is left to the rest, read from the spool."""
        if keep is not None and self.holds_rest(len(keep)):
            positions, sizes = self._held_positions, self._held_sizes
            data = memoryview(self._held_data)
            ends = list(accumulate(sizes))
            chosen = [keep[p] for p in positions]
            self._place(
                array("I", compress(positions, chosen)),
                [
                    bytes(data[e - n : e])
                    for e, n in compress(zip(ends, sizes, strict=True), chosen)
                ],
                list(compress(sizes, chosen)),
            )
            data.release()
            if self._count and not self._stopped:
                self._emit()
        self._stopped = True
        self._runs.clear()
        self._drop_held()
        self._reset()
        self._bits, self._taken = None, array("Q")  # nothing is recorded any more
