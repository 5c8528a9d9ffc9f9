"""The first pass: read every segment, validate, de-duplicate, and spool what is valid.

Why a spool: ``maxProfiles`` and mirror's guards must refuse *before any write*, which
needs the unique count and the segment's full membership first. Reading the source twice
would cost a second database query or download (and the source may change in between);
keeping contacts in memory would not fit a 1,000,000-profile export in 200 MB. So each
valid row is encoded once and appended to a temporary file (about 150 bytes a contact),
and memory holds only fixed-width arrays per row: the email key (8 bytes), the content
hash (4) and the encoded length (4), 16 bytes a row. A record's offset in the spool is
derived from the lengths when it is needed, and its segment and row number from where
each segment and each run of consecutive rows start. De-duplication (first occurrence
wins) runs on those arrays after the pass, bucket by bucket (:mod:`.buckets`).
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.api.export import Segment
from sendgrid_operator.api.report import MAX_SAMPLES, SAMPLES_PER_REASON, RejectedRow, SegmentCounts
from sendgrid_operator.engine import buckets, fastpath
from sendgrid_operator.engine.batching import overhead
from sendgrid_operator.engine.dedupe import deduplicate
from sendgrid_operator.engine.early import EarlyBodies
from sendgrid_operator.engine.keyhash import KeyHasher
from sendgrid_operator.engine.mapping import CompiledMapping, check_columns, convert_row
from sendgrid_operator.engine.outcomes import Reason, RunStopped
from sendgrid_operator.engine.plan import Resolver
from sendgrid_operator.engine.readahead import read_ahead
from sendgrid_operator.engine.sources import RowBatch, Source, build_source
from sendgrid_operator.engine.spool import Spool, mask_array
from sendgrid_operator.engine.state import ExportState

TOO_LARGE = "too_large"
TICK_ROWS = 2048

Tick = Callable[[int, int | None], None]  # (rows read, expected total)


@dataclass
class Prepared:
    """What the first pass learned, and the spool of valid encoded contacts."""

    segments: list[SegmentCounts]
    labels: list[str]
    spool: Spool
    keys: array[int] = field(default_factory=lambda: array("Q"))
    content: array[int] = field(default_factory=lambda: array("I"))
    seg_starts: list[int] = field(default_factory=list)  # first spool index of each segment
    present_extra: array[int] = field(default_factory=lambda: array("Q"))
    invalid_by_reason: dict[str, int] = field(default_factory=dict)
    invalid_samples: list[RejectedRow] = field(default_factory=list)
    keep: bytearray = field(default_factory=bytearray)
    profiles: int = 0
    payload_bytes: int = 0  # sum of the kept contacts' encoded sizes

    def ref(self, segment: int, row: int) -> str:
        return f"{self.segments[segment].name}:{self.labels[segment]}:{row}"

    @property
    def read(self) -> int:
        return sum(s.read for s in self.segments)

    def present(self) -> pa.Array:
        """Email keys of every row with a valid email (even rows invalid otherwise)."""
        return pa.concat_arrays([buckets.u64(self.keys), buckets.u64(self.present_extra)])

    def kept_indices(self) -> pa.Array:
        return pc.indices_nonzero(mask_array(self.keep))

    def keys_array(self) -> pa.Array:
        return buckets.u64(self.keys)

    def payload_size(self, mask: bytearray, force: bool = False) -> int:
        """Total encoded size of the contacts selected by ``mask``."""
        if mask == self.keep and not force:
            return self.payload_bytes
        lengths = self.spool.lengths
        everything = pa.Array.from_buffers(pa.uint32(), len(lengths), [None, pa.py_buffer(lengths)])
        selected = mask_array(mask)
        total = 0
        for start in range(0, len(lengths), buckets.SLICE):
            part = pc.filter(
                everything.slice(start, buckets.SLICE), selected.slice(start, buckets.SLICE)
            )
            total += pc.sum(part).as_py() or 0  # a uint64 sum
        return total

    def release(self) -> None:
        """Drop the per-row arrays once nothing needs them (before the state is written)."""
        self.keys = array("Q")
        self.content = array("I")
        self.present_extra = array("Q")
        self.spool.lengths = array("I")
        self.keep = bytearray()


def _sample(
    prepared: Prepared, reason: str, ref: str, fld: str | None, message: str | None
) -> None:
    samples = prepared.invalid_samples
    if len(samples) >= MAX_SAMPLES:
        return
    if sum(1 for s in samples if s.reason == reason) >= SAMPLES_PER_REASON:
        return
    samples.append(RejectedRow(reason=reason, row=ref, field=fld, message=message))


_MESSAGES = {
    "missing_email": "the email column is empty",
    "invalid_email": "not a valid email address",
    "too_long": "longer than SendGrid allows for this field",
    "invalid_number": "not a number, but the custom field is a Number field",
    "invalid_date": "not a date (YYYY-MM-DD, ISO 8601 or MM/DD/YYYY)",
    TOO_LARGE: "the contact's JSON is larger than an upsert request may be",
}


def read_segments(
    segments: Sequence[Segment],
    compiled: CompiledMapping,
    state: ExportState,
    list_ids: Sequence[str],
    resolver: Resolver,
    *,
    max_profiles: int,
    max_body: int,
    spool_dir: Path | None = None,
    tick: Tick | None = None,
    early: EarlyBodies | None = None,
) -> Prepared:
    """Read, validate and spool every segment, then de-duplicate. Refuses early when the
    segments certainly hold more than ``max_profiles`` unique profiles. With ``early``,
    first occurrences go out in bodies while the pass reads, once nothing can refuse the
    run (:mod:`.early`); after a pass that succeeds, the caller finishes ``early`` with the
    pass's first occurrences (``EarlyBodies.finish(prepared.keep)``)."""
    spool = Spool(spool_dir)
    prepared = Prepared([SegmentCounts(name=s.name) for s in segments], [], spool)
    hasher = KeyHasher(state.salt)
    try:
        _read_all(
            segments,
            compiled,
            state,
            list_ids,
            resolver,
            prepared,
            hasher,
            max_profiles,
            max_body,
            tick,
            early,
        )
        hasher.fill(prepared.keys)
        if early is not None:
            early.advance(prepared.keys, len(prepared.keys))
        spool.finish()
        deduplicate(prepared, early.possible_duplicates(len(prepared.keys)) if early else None)
    except BaseException:
        if early is not None:
            early.finish()
        spool.remove()
        raise
    finally:
        hasher.close()
    if prepared.profiles > max_profiles:
        spool.remove()
        raise RunStopped(
            Reason.TOO_MANY_PROFILES, _too_many(prepared.profiles, max_profiles, exact=True)
        )
    return prepared


#: Rows of the slow path between two calls that let the early bodies take them.
SLOW_ADVANCE = 4096


def _too_many(count: int, limit: int, exact: bool) -> str:
    amount = f"{count:,}" if exact else f"at least {count:,}"
    return (
        f"the segments hold {amount} unique profiles, more than spec.maxProfiles ({limit:,}); "
        "nothing was sent. If this is expected, raise spec.maxProfiles (up to 10,000,000)"
    )


def _read_all(
    segments: Sequence[Segment],
    compiled: CompiledMapping,
    state: ExportState,
    list_ids: Sequence[str],
    resolver: Resolver,
    prepared: Prepared,
    hasher: KeyHasher,
    max_profiles: int,
    max_body: int,
    tick: Tick | None,
    early: EarlyBodies | None,
) -> None:
    room = max_body - overhead(list_ids)
    salt = state.salt
    seed = state.content_seed(list(list_ids))
    crc32 = zlib.crc32
    blake2b = hashlib.blake2b
    from_bytes = int.from_bytes
    keys, content = prepared.keys, prepared.content
    spool = prepared.spool
    by_reason = prepared.invalid_by_reason
    check_at = max_profiles + 1
    total_read = 0
    for seg_index, segment in enumerate(segments):
        counts = prepared.segments[seg_index]
        source = build_source(segment.source, resolver)
        prepared.labels.append(source.label)
        prepared.seg_starts.append(len(keys))
        spool.begin_segment()
        read = invalid = 0
        converted: Generator[Converted | FastRun] | None = None
        try:
            columns = source.open(compiled.columns)
            check_columns(compiled, columns, f"segment {segment.name!r} ({source.label})")
            expected = source.estimated_total()
            if early is not None and seg_index == len(segments) - 1:
                _enable_early(early, source, keys, hasher, max_profiles)
            converted = _converted(source, compiled)
            for item in converted:
                if item.__class__ is FastRun:
                    run: FastRun = item
                    n = run.length
                    encs = run.contacts.to_pylist()
                    sizes = list(map(len, encs))
                    if len(keys) + n < check_at and max(sizes) <= room:
                        # plainly valid rows, no limit reached: the per-row steps in bulk
                        start = len(keys)
                        hasher.add(keys, run.emails)
                        crcs = list(map(crc32, encs, repeat(seed)))
                        if 0 in crcs:
                            crcs = [c or 1 for c in crcs]
                        content.extend(crcs)
                        spool.extend(run.first, encs, sizes)
                        if early is not None and early.enabled:
                            early.offer(start, encs, sizes)
                            early.advance(keys, hasher.ready(keys))
                        if tick is not None:
                            done = total_read + read
                            for at in range(
                                done - done % TICK_ROWS + TICK_ROWS, done + n + 1, TICK_ROWS
                            ):
                                tick(at, expected)
                        read += n
                        continue
                    items: Iterable[Converted] = run.expand()
                else:
                    items = (item,)  # type: ignore[assignment]
                for row_number, email, encoded, reason, fld in items:
                    read += 1
                    if encoded is not None and len(encoded) > room:
                        encoded, reason, fld = None, TOO_LARGE, None
                    if encoded is None:
                        assert reason is not None
                        invalid += 1
                        by_reason[reason] = by_reason.get(reason, 0) + 1
                        if reason not in ("missing_email", "invalid_email") and email is not None:
                            prepared.present_extra.append(state.email_key(email))
                        message = _MESSAGES.get(reason.split(":", 1)[0])
                        _sample(prepared, reason, prepared.ref(seg_index, row_number), fld, message)
                    else:
                        keys.append(
                            from_bytes(
                                blake2b(email.encode(), digest_size=8, key=salt).digest(),  # type: ignore[union-attr]
                                "little",
                            )
                        )
                        content.append(crc32(encoded, seed) or 1)
                        spool.append(row_number, encoded)
                        if early is not None and early.enabled:
                            early.offer_row(len(keys) - 1, encoded)
                            if len(keys) % SLOW_ADVANCE == 0:
                                early.advance(keys, hasher.ready(keys))
                        if len(keys) >= check_at:
                            hasher.fill(keys)
                            unique = pc.count_distinct(buckets.u64(keys)).as_py()
                            if unique > max_profiles:
                                raise RunStopped(
                                    Reason.TOO_MANY_PROFILES,
                                    _too_many(unique, max_profiles, exact=False),
                                )
                            check_at = len(keys) + max(max_profiles - unique, 1) + len(keys) // 4
                    if tick is not None and (total_read + read) % TICK_ROWS == 0:
                        tick(total_read + read, expected)
        finally:
            counts.read = read
            counts.invalid = invalid
            total_read += read
            if converted is not None:
                converted.close()  # stops the read-ahead before the source closes
            source.close()
    if tick is not None:
        tick(total_read, None)


def _enable_early(
    early: EarlyBodies, source: Source, keys: array[int], hasher: KeyHasher, max_profiles: int
) -> None:
    """Let ``early`` send, if the rows spooled so far plus what ``source`` can still give
    are within ``max_profiles`` (nothing can refuse the run then)."""
    row_bound = getattr(source, "row_bound", None)
    bound = row_bound() if row_bound is not None else None
    if bound is None or len(keys) + bound > max_profiles:
        return
    hasher.fill(keys)
    early.enable(len(keys) + bound)
    early.advance(keys, len(keys))  # the earlier segments' keys: recorded, not sent


Converted = tuple[int, str | None, bytes | None, str | None, str | None]


class FastRun:
    """Consecutive rows :mod:`.fastpath` found plainly valid: row numbers ``first``...,
    their lower-cased emails (string array) and encoded contacts (binary array)."""

    __slots__ = ("contacts", "emails", "first", "length")

    def __init__(self, first: int, emails: pa.Array, contacts: pa.Array) -> None:
        self.first = first
        self.length = len(contacts)
        self.emails = emails
        self.contacts = contacts

    def expand(self) -> list[Converted]:
        """The same rows as ``convert_row`` results."""
        return [
            (self.first + index, email, encoded, None, None)
            for index, (email, encoded) in enumerate(
                zip(self.emails.to_pylist(), self.contacts.to_pylist(), strict=True)
            )
        ]


def _converted(source: Source, compiled: CompiledMapping) -> Generator[Converted | FastRun]:
    """``(row number, *convert_row(row))`` for every row of the source, in order. A source
    with batches (:class:`.sources.BatchSource`) gets :mod:`.fastpath`'s answer for its
    plainly valid rows, as :class:`FastRun` items, and ``convert_row``'s for the others."""
    batches = getattr(source, "batches", None)
    if batches is None:
        for row_number, row in source.rows():
            yield (row_number, *convert_row(compiled, row))
        return

    def prepare(batch: RowBatch) -> tuple[Any, Any, Any] | None:
        if not fastpath.usable(compiled, batch.arrays):
            return None
        return fastpath.convert_batch(compiled, batch.arrays)

    with closing(read_ahead(batches, prepare)) as ahead:
        yield from _batch_items(compiled, ahead)


def _batch_items(
    compiled: CompiledMapping, ahead: Iterator[tuple[RowBatch, tuple[Any, Any, Any] | None]]
) -> Iterator[Converted | FastRun]:
    for batch, converted in ahead:
        first = batch.first
        if converted is None:
            for index, row in enumerate(batch.rows()):
                yield (first + index, *convert_row(compiled, row))
            continue
        good, emails, contacts = converted
        bad: list[int] = pc.indices_nonzero(pc.invert(good)).to_pylist()
        start = 0
        for stop in [*bad, batch.length]:
            if stop > start:
                count = stop - start
                yield FastRun(
                    first + start, emails.slice(start, count), contacts.slice(start, count)
                )
            if stop < batch.length:
                yield (first + stop, *convert_row(compiled, batch.row(stop)))
            start = stop + 1
