"""Incremental runs: which contacts to send, and the state the next run starts from.

Why apart from :mod:`.state`: that module is the storage format; this one is the rule.
A contact is sent when it is new or its content hash differs from the state's (``--full``
sends every one). After the run, a contact is recorded with its content hash only if its
job completed and SendGrid did not reject it; a contact sent but not applied keeps its old
ownership with content 0, so the next run sends it again. Ownership bits are added for
the lists a contact was applied to (except lists where mirror saw it as a member this
export does not own) and cleared for memberships mirror removed.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_operator.engine import buckets, memory
from sendgrid_operator.engine.reading import Prepared
from sendgrid_operator.engine.state import MAX_LISTS, ExportState


def _u32(values: array[int]) -> pa.Array:
    return pa.Array.from_buffers(pa.uint32(), len(values), [None, pa.py_buffer(values)])


def _mask(values: bytearray) -> pa.Array:
    return pa.Array.from_buffers(pa.uint8(), len(values), [None, pa.py_buffer(values)]).cast(
        pa.bool_()
    )


def to_send(prepared: Prepared, state: ExportState, full: bool) -> tuple[bytearray, int]:
    """A mask over the spool of the contacts to send, and how many were unchanged.

    Vectorised bucket by bucket (:mod:`.buckets`): each bucket's kept rows are looked up
    in the matching slice of the state's sorted keys, so the hash table is one bucket's,
    and only the unchanged rows' indices become Python objects. This is the whole cost of
    an unchanged re-run after reading."""
    send = bytearray(prepared.keep)
    if full or not len(state) or not prepared.profiles:
        return send, 0
    keys = buckets.u64(prepared.keys)
    content = _u32(prepared.content)
    keep = _mask(prepared.keep)
    bits = buckets.bits_for(max(len(keys), len(state)))
    ids = buckets.bucket_ids(keys, bits) if bits else None
    for bucket, (offset, length) in enumerate(buckets.slices(state.keys, bits)):
        if not length:
            continue  # every key of this bucket is new
        rows = buckets.rows_in(ids, bucket, keep)
        if not len(rows):
            continue
        where = pc.index_in(pc.take(keys, rows), value_set=state.keys.slice(offset, length))
        previous = pc.take(state.content.slice(offset, length), where)
        same = pc.fill_null(pc.equal(previous, pc.take(content, rows)), False)
        for i in pc.filter(rows, same).to_pylist():
            send[i] = 0
        del rows, where, previous, same
    return send, prepared.profiles - send.count(1)


def _remap_flags(flags: pa.Array, old_ids: Sequence[str], list_ids: Sequence[str]) -> pa.Array:
    """The old flags with bits moved to the positions of ``list_ids`` (others dropped)."""
    if list(old_ids) == list(list_ids) or not len(flags):
        return flags
    remapped = pa.nulls(len(flags), pa.uint16()).fill_null(0)
    for old_bit, list_id in enumerate(old_ids):
        if list_id not in list_ids:
            continue
        new_bit = list(list_ids).index(list_id)
        has = pc.not_equal(pc.bit_wise_and(flags, pa.scalar(1 << old_bit, pa.uint16())), 0)
        remapped = pc.if_else(
            has, pc.bit_wise_or(remapped, pa.scalar(1 << new_bit, pa.uint16())), remapped
        )
    return remapped


_NO_CONTENT = pa.scalar(0, pa.uint32())


def next_state(
    state: ExportState,
    list_ids: Sequence[str],
    prepared: Prepared,
    send: bytearray,
    applied: bytearray,
    foreign: Mapping[str, array[int]] | None = None,
    removed: Mapping[str, Sequence[int]] | None = None,
) -> ExportState:
    """The state after this run (see the module docstring for the rules).

    Built bucket by bucket (:mod:`.buckets`): each bucket's kept rows are merged with the
    matching slice of the old state and sorted, and the buckets, in order, are the new
    sorted arrays (chunked, one chunk per bucket), so no step holds a second copy of all
    of them."""
    list_ids = list(list_ids)[:MAX_LISTS]
    all_bits = (1 << len(list_ids)) - 1
    keys = buckets.u64(prepared.keys)
    content = _u32(prepared.content)
    keep = _mask(prepared.keep)
    sent = _mask(send)
    was_applied = _mask(applied)
    bits = buckets.bits_for(max(len(keys), len(state)))
    ids = buckets.bucket_ids(keys, bits) if bits else None
    others = {
        list_id: buckets.split_values(buckets.u64(values), bits)
        for list_id, values in (foreign or {}).items()
        if values and list_id in list_ids
    }
    gone = {
        list_id: buckets.split_values(buckets.u64(values), bits)
        for list_id, values in (removed or {}).items()
        if values and list_id in list_ids
    }
    out_keys: list[pa.Array] = []
    out_content: list[pa.Array] = []
    out_flags: list[pa.Array] = []
    for bucket, (offset, length) in enumerate(buckets.slices(state.keys, bits)):
        rows = buckets.rows_in(ids, bucket, keep)
        key = pc.take(keys, rows)
        applied_here = pc.take(was_applied, rows)
        known = pc.or_(applied_here, pc.invert(pc.take(sent, rows)))
        new = pc.if_else(known, pc.take(content, rows), _NO_CONTENT)
        flags = pc.if_else(
            applied_here, pa.scalar(all_bits, pa.uint16()), pa.scalar(0, pa.uint16())
        )
        del rows, applied_here, known
        for position, list_id in enumerate(list_ids):
            not_ours_keys = others.get(list_id)
            if not_ours_keys is not None and len(not_ours_keys[bucket]):
                not_ours = pc.is_in(key, value_set=not_ours_keys[bucket])
                flags = pc.if_else(
                    not_ours,
                    pc.bit_wise_and(flags, pa.scalar(all_bits & ~(1 << position), pa.uint16())),
                    flags,
                )
        if length:  # merge with the old state's slice: a full outer join on the key
            old_keys = state.keys.slice(offset, length)
            old_flags = _remap_flags(state.flags.slice(offset, length), state.list_ids, list_ids)
            if len(key):
                where = pc.index_in(key, value_set=old_keys)
                flags = pc.bit_wise_or(flags, pc.fill_null(pc.take(old_flags, where), 0))
                only_old = pc.invert(pc.is_in(old_keys, value_set=key))
                old_keys = pc.filter(old_keys, only_old)
                old_flags = pc.filter(old_flags, only_old)
                del where, only_old
            key = pa.concat_arrays([key, old_keys])
            flags = pa.concat_arrays([flags.cast(pa.uint16()), old_flags.cast(pa.uint16())])
            new = pa.concat_arrays([new, pa.nulls(len(old_keys), pa.uint32()).fill_null(0)])
            del old_keys, old_flags
        for list_id, removals in gone.items():
            if not len(removals[bucket]):
                continue
            bit = 1 << list_ids.index(list_id)
            hit = pc.is_in(key, value_set=removals[bucket])
            flags = pc.if_else(
                hit, pc.bit_wise_and(flags, pa.scalar(0xFFFF & ~bit, pa.uint16())), flags
            )
            # a removed contact that comes back must be sent again (to be re-added)
            new = pc.if_else(hit, _NO_CONTENT, new)
        live = pc.or_(pc.not_equal(new, 0), pc.not_equal(flags, 0))
        key, new, flags = pc.filter(key, live), pc.filter(new, live), pc.filter(flags, live)
        order = pc.sort_indices(key)
        out_keys.append(pc.take(key, order))
        out_content.append(pc.take(new, order).cast(pa.uint32()))
        out_flags.append(pc.take(flags, order).cast(pa.uint16()))
        del key, new, flags, live, order
    return ExportState(
        state.salt,
        list_ids,
        pa.chunked_array(out_keys, pa.uint64()),
        pa.chunked_array(out_content, pa.uint32()),
        pa.chunked_array(out_flags, pa.uint16()),
    )


def encoded_next_state(
    state: ExportState,
    list_ids: Sequence[str],
    prepared: Prepared,
    send: bytearray,
    applied: bytearray,
    foreign: Mapping[str, array[int]],
    removed: Mapping[str, Sequence[int]],
    *,
    last: bool,
) -> bytes:
    """:func:`next_state`, encoded. ``last``: nothing reads the per-row arrays or the old
    state afterwards, so they are dropped before the new state is encoded (a lower peak);
    otherwise (the state built ahead, during the upload) they are left as they are."""
    new_state = next_state(state, list_ids, prepared, send, applied, foreign, removed)
    if last:
        prepared.release()
        state.release()
        memory.release()
    encoded = new_state.encode()
    del new_state
    memory.release()
    return encoded
